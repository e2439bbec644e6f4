"""Benchmark: the perturbation methods (Occlusion, Lime, KernelShap, Sobol), interp_text vs interpreto.

Three workloads (``--workload``, default all three), the same for both contenders: WORD
granularity, ``batch_size=64``, LOGITS, each method's sample count matched to interpreto's meaning.

- ``bert4``: a moderate random classifier, ``BertForSequenceClassification(BertConfig(
  num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024))``
  (vocabulary 30522 = the offline WordPiece tokenizer's, seeded weights), 4 texts of 8, 12, 20
  and 40 words, the predicted class. Lime and KernelShap 100 samples, Sobol N = 32.
- ``sentiment``: the comparison table's own workload (``interp-text compare``): the bundled
  sentiment classifier on 64 texts of its test split (7 to 22 words), the predicted class, each
  method's default sample count in interp_text (Lime and KernelShap 200, Sobol N = 32).
- ``facts``: generation: the bundled facts GPT-2 on 32 prompts of its test split, each with its
  answer forced as the target (teacher-forced), Lime and KernelShap 200 samples, Sobol N = 32.
- ``longprompt``: Occlusion only, of a 150-word prompt (about 250 tokens) with a forced 5-word
  answer, ``GPT2LMHeadModel(GPT2Config(n_layer=6))`` (random init, the offline 50257-entry BPE).
  Rows masked late share the unmasked prefix with the clean input: interp_text runs that prefix
  once per batch and the rows from there on (``interp_text.perturbation.prefix_batches``).

Sample counts, matched to interpreto's meaning:

- Occlusion: no option; one masked input per word on both sides (interpreto adds the unmasked
  reference row; interp_text scores the unmasked input as row 0 of the same forwards).
- Lime: ``n_samples`` in interp_text (the unperturbed input is one of them; masks drawn as LIME
  does: the number of masked words uniform, which ones uniform), ``n_perturbations`` in interpreto
  (each word masked with probability 0.5).
- KernelShap: ``n_samples`` coalitions (+ one forward for v(∅)) in interp_text, which enumerates
  all 2**n - 2 when that is not more; ``n_perturbations`` in interpreto, capped at 2**n.
- Sobol: N Monte-Carlo rows for A and B (``n_samples`` / ``n_token_perturbations``), so N * (n + 2)
  masks per text on both sides; total order, scrambled Sobol sequence on both sides.

interp_text scores each distinct mask once (the all-kept mask is the clean input, already
scored), so it may run fewer rows than masks; the script counts the rows and tokens each library
actually feeds the model (a forward pre-hook, in one extra untimed call) and prints them.

interpreto runs in the peer interpreter (``$BENCH_PEER_PYTHON``, else ``.venv-bench/bin/python``,
else this one) on the same model files and texts. Note: interpreto adds a mask token to the
tokenizer and resizes the model's embeddings when the tokenizer lacks one (the facts GPT-2); it
runs in its own process, so interp_text's model is not touched.

Timing: interp_text, the floor and interpreto run round-robin, ``--repeats`` rounds after one
warm-up on the shortest text; interpreto in a peer process kept running between its runs
(``_common.Peer``), so the three runs of a round are next to each other in time. Each ratio is the
median over rounds of the ratio within a round: on a shared machine whose speed drifts (here the
same forwards vary by 30 % from one second to the next), that is steadier than a ratio of medians
taken minutes apart.

Run: ``python bench/bench_perturbation.py`` (``--workload bert4|sentiment|facts``, ``--device cuda``,
``--repeats N`` (default 5 here), ``--threads N``, ``--methods Occlusion,Lime``, ``--no-peers``). Prints each time (median, wall
and CPU) and the ratio interpreto / interp_text (target >= 2).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as C  # noqa: E402

BATCH_SIZE = 64
SEED = 0
METHODS = ["Occlusion", "Lime", "KernelShap", "Sobol"]
BERT4 = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
WORKLOADS = {
    "bert4": {"samples": {"Lime": 100, "KernelShap": 100, "Sobol": 32}},
    "sentiment": {"samples": {"Lime": 200, "KernelShap": 200, "Sobol": 32}},
    "facts": {"samples": {"Lime": 200, "KernelShap": 200, "Sobol": 32}},
    "longprompt": {"samples": {"Lime": 200, "KernelShap": 200, "Sobol": 32}, "methods": ["Occlusion"]},
}
BUNDLED = Path(__file__).resolve().parent.parent / "interp_text" / "bundled"


def prepare(workdir: str, workload: str, device: str) -> None:
    """Write the model (or point at the bundled one), the texts and targets for every contender."""
    model_dir = os.path.join(workdir, "model")
    if workload == "bert4":
        import torch
        from transformers import BertConfig, BertForSequenceClassification

        tok = C.wordpiece_tokenizer(30522)
        torch.manual_seed(SEED)
        BertForSequenceClassification(BertConfig(vocab_size=len(tok), **BERT4)).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        texts, targets = C.make_texts([8, 12, 20, 40]), None
    elif workload == "sentiment":
        from interp_text.data import sentiment_examples

        model_dir = str(BUNDLED / "sentiment")
        texts, targets = [e["text"] for e in sentiment_examples(64, split="test")], None
    elif workload == "facts":
        from interp_text.data import facts_examples

        model_dir = str(BUNDLED / "facts")
        examples = facts_examples(32, split="test")
        texts, targets = [e["prompt"] for e in examples], [e["answer"] for e in examples]
    else:
        import torch
        from transformers import GPT2Config, GPT2LMHeadModel

        tok = C.bytelevel_bpe_tokenizer(50257)
        torch.manual_seed(SEED)
        config = GPT2Config(
            n_layer=6, vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id
        )
        GPT2LMHeadModel(config).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        texts, targets = C.make_texts([150], seed=3), [" and so it went"]
    config = {"workload": workload, "device": device, "model": model_dir, "texts": texts, "targets": targets}
    Path(workdir, "config.json").write_text(json.dumps(config))


def load(workdir: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads(Path(workdir, "config.json").read_text())
    auto = AutoModelForCausalLM if config["workload"] in ("facts", "longprompt") else AutoModelForSequenceClassification
    model = auto.from_pretrained(config["model"]).to(torch.device(config["device"])).eval()
    tok = AutoTokenizer.from_pretrained(config["model"])
    return model, tok, config


class Rows:
    """Counts the rows and tokens of every forward of ``model`` (a forward pre-hook)."""

    def __init__(self, model):
        self.model, self.rows, self.tokens, self.calls = model, 0, 0, 0

    def __enter__(self):
        def hook(module, args, kwargs):
            x = kwargs.get("inputs_embeds")
            if x is None:
                x = kwargs.get("input_ids")
            if x is None and args:
                x = args[0]
            if x is not None:
                self.rows += x.shape[0]
                self.tokens += x.shape[0] * x.shape[1]
                self.calls += 1

        self.handle = self.model.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def as_dict(self) -> dict:
        return {"rows": self.rows, "tokens": self.tokens, "forwards": self.calls}


def paired(num: list[float], den: list[float]) -> float:
    """The median of the ratios of times taken in the same round (next to each other in time): a
    machine whose speed drifts between rounds moves both times of a round alike."""
    import statistics

    return statistics.median(x / y for x, y in zip(num, den))


def capture_forwards(model, run) -> list | None:
    """The model calls ``run`` makes: ``[(inputs_embeds, other keyword arguments)]``.

    None when a call reuses a key/value cache (the causal prefix path), which a replay of the
    calls one by one cannot reproduce.
    """
    import torch

    calls = []

    def hook(module, args, kwargs):
        rest = {k: v for k, v in kwargs.items() if k != "inputs_embeds"}
        calls.append((kwargs["inputs_embeds"].detach().clone(), rest))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    if any(kw.get("past_key_values") is not None or kw.get("use_cache") for _, kw in calls):
        return None
    return calls


def floor_run(model, calls, readout=None) -> None:
    """The floor: only the model calls interp_text makes, on the same inputs, nothing else; with its
    last layer at the read position only (``readout``) where interp_text ran it so."""
    import contextlib

    import torch

    with torch.inference_mode(), readout.active() if readout else contextlib.nullcontext():
        for x, kwargs in calls:
            model(inputs_embeds=x, **kwargs)


# --------------------------------------------------------------------------- peers (worker mode)
def serve_interpreto(workdir: str) -> dict:
    """The peer's jobs (``_common.Peer``): one per method, each ``run`` explaining every text."""
    import interpreto
    import torch
    from interpreto import Granularity

    model, tok, config = load(workdir)
    samples = WORKLOADS[config["workload"]]["samples"]
    common = dict(batch_size=BATCH_SIZE, granularity=Granularity.WORD, device=torch.device(config["device"]))
    texts, targets = config["texts"], config["targets"]
    out: dict = {"jobs": {}, "errors": {}, "versions": C.versions("interpreto", "torch", "transformers")}
    k = min(range(len(texts)), key=lambda i: len(texts[i]))
    for name in WORKLOADS[config["workload"]].get("methods", METHODS):
        try:
            cls = getattr(interpreto, name)
            if name == "Occlusion":
                explainer = cls(model, tok, **common)
            elif name in ("Lime", "KernelShap"):
                explainer = cls(model, tok, n_perturbations=samples[name], **common)
            else:
                explainer = cls(
                    model,
                    tok,
                    n_token_perturbations=samples[name],
                    sobol_indices_order=cls.sobol_indices_orders.TOTAL_ORDER,
                    sampler=cls.samplers.SOBOL,
                    **common,
                )
        except Exception as err:  # a method failing is a result, not a crash
            out["errors"][name] = f"{type(err).__name__}: {err}"[:300]
            continue
        if targets is None:
            run, warm = (lambda ex=explainer: ex.explain(texts)), (lambda ex=explainer: ex.explain([texts[k]]))
        else:
            run = lambda ex=explainer: ex.explain(texts, targets=targets)  # noqa: E731
            warm = lambda ex=explainer: ex.explain([texts[k]], targets=[targets[k]])  # noqa: E731
        out["jobs"][name] = {"run": run, "warm": warm, "count": lambda run=run: count_rows(model, run)}
    return out


def count_rows(model, run) -> dict:
    """The rows, tokens and forwards of one more (untimed) call of ``run``."""
    with Rows(model) as rows:
        run()
    return rows.as_dict()


SERVERS = {"interpreto": serve_interpreto}


# --------------------------------------------------------------------------- main
def make_interp_text(model, tok, samples: dict, device: str, generation: bool):
    from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol

    # interpreto masks a generation's output words too: interp_text masks the earlier ones (the last one's
    # mask cannot move any score it explains; on `facts`, whose answers are one word, nothing changes).
    common = dict(batch_size=BATCH_SIZE, granularity="word", seed=SEED, device=device, mask_outputs=generation)
    return {
        "Occlusion": Occlusion(model, tok, **common),
        "Lime": Lime(model, tok, n_samples=samples["Lime"], **common),
        "KernelShap": KernelShap(model, tok, n_samples=samples["KernelShap"], **common),
        "Sobol": Sobol(model, tok, n_samples=samples["Sobol"], order="total", sampler="sobol", **common),
    }


def run_workload(workload: str, args, threads: int) -> dict:
    samples = WORKLOADS[workload]["samples"]
    with tempfile.TemporaryDirectory(prefix="bench_pert_") as workdir:
        t0 = time.perf_counter()
        prepare(workdir, workload, args.device)
        model, tok, config = load(workdir)
        texts, targets = config["texts"], config["targets"]
        explainers = make_interp_text(model, tok, samples, args.device, targets is not None)
        first = explainers["Occlusion"].explain(texts, targets=targets)
        elements = [len(e.elements) for e in first]
        tokens = [len(tok(t)["input_ids"]) for t in texts]
        print(
            f"\n== workload {workload}: {type(model).__name__} "
            f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters) on {args.device}; "
            f"{len(texts)} texts, {min(tokens)}-{max(tokens)} tokens, {min(elements)}-{max(elements)} words"
            + ("" if targets is None else ", forced answers")
            + f"; samples {samples}; setup {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        k = min(range(len(texts)), key=lambda i: len(texts[i]))
        warm_t = None if targets is None else [targets[k]]
        methods = [m for m in WORKLOADS[workload].get("methods", METHODS) if m in args.methods]
        peer = None if args.no_peers else C.Peer(__file__, "interpreto", workdir, threads, timeout=1800)
        theirs = {"error": "skipped (--no-peers)"} if peer is None else {**peer.ready, "methods": {}}
        ours = {}
        try:
            for name in methods:
                ex = explainers[name]
                run = lambda ex=ex: ex.explain(texts, targets=targets)  # noqa: E731
                fns = {"interp_text": run}
                warms = {"interp_text": lambda ex=ex: ex.explain([texts[k]], targets=warm_t)}
                warms["interp_text"]()  # its one-time checks (a readout, an LM head) are not replayed
                calls = capture_forwards(model, run)
                if calls is not None:  # None: cache reuse, which a replay cannot reproduce
                    r = C.readout_of(model, ex)
                    fns["floor"] = lambda c=calls, r=r: floor_run(model, c, r)
                    warms["floor"] = lambda c=calls, r=r: floor_run(model, c[:1], r)
                if peer is not None and name in theirs.get("jobs", []):
                    fns["interpreto"], warms["interpreto"] = C.Remote(peer, name), C.Remote(peer, name, "warm")
                elif peer is not None:
                    theirs["methods"][name] = {"error": theirs.get("errors", {}).get(name, theirs.get("error", "?"))}
                try:  # all three round-robin, so that a burst of background load hits each alike
                    res = C.interleaved(fns, repeats=args.repeats, warmups=warms)
                except RuntimeError as err:  # the peer failed: a result; the others are timed again
                    theirs["methods"][name] = {"error": str(err)}
                    fns.pop("interpreto")
                    res = C.interleaved(fns, repeats=args.repeats, warmups=warms)
                ours[name] = {**res["interp_text"], **count_rows(model, run)}
                ours[name].pop("result", None)
                if "floor" in res:
                    ours[name]["vs_floor"] = paired(res["interp_text"]["times"], res["floor"]["times"])
                    ours[name]["floor_times"] = res["floor"]["times"]
                if "interpreto" in res:
                    theirs["methods"][name] = {**res["interpreto"], **peer.ask(name, "count")}
                    theirs["methods"][name].pop("result", None)
                print(
                    f"  interp_text {name:<10} {ours[name]['time']:.3f} s wall, {ours[name]['cpu']:.3f} s cpu"
                    + (
                        f"; / floor {ours[name]['vs_floor']:.2f}"
                        if "vs_floor" in ours[name]
                        else "; no floor (cache reuse)"
                    ),
                    flush=True,
                )
        finally:
            if peer is not None:
                peer.close()
        peer = theirs
    print(
        f"{'method':<11}{'it / floor':>11}{'interp_text s':>14}{'interpreto s':>13}{'ratio':>7}{'cpu ratio':>10}"
        f"{'bound':>7}{'forwards it | ipto':>20}{'rows it | ipto':>18}{'tokens it | ipto':>20}  target >= 2"
    )
    print(
        "  (bound: interpreto / floor, the ratio interp_text would reach if it cost nothing beyond the model calls it makes)"
    )
    ratios = {}
    for name in methods:
        a = ours[name]
        b = peer.get("methods", {}).get(name, {"error": peer.get("error", "?")})
        vs_floor = f"{a['vs_floor']:.2f}" if "vs_floor" in a else "-"
        fwd = f"{a['forwards']} | {b.get('forwards', '-')}"
        rows = f"{a['rows']} | {b.get('rows', '-')}"
        toks = f"{a['tokens']} | {b.get('tokens', '-')}"
        if "time" in b:
            wr, cr = paired(b["times"], a["times"]), paired(b["cpus"], a["cpus"])
            bound = f"{paired(b['times'], a['floor_times']):.2f}" if "floor_times" in a else "-"
            ratios[name] = wr
            print(
                f"{name:<11}{vs_floor:>11}{a['time']:>14.3f}{b['time']:>13.3f}{wr:>7.2f}{cr:>10.2f}{bound:>7}{fwd:>20}"
                f"{rows:>18}"
                f"{toks:>20}"
                f"  {'met' if wr >= 2 else 'NOT met'}"
            )
        else:
            print(
                f"{name:<11}{vs_floor:>11}{a['time']:>14.3f}{'-':>13}{'-':>7}{'-':>10}{'-':>7}{fwd:>20}{rows:>18}"
                f"{toks:>20}"
                f"  {b.get('error')}"
            )
    for name in methods:
        b = peer.get("methods", {}).get(name, {})
        line = f"  runs {name:<10} interp_text {C.fmt_times(ours[name]['times'])}"
        print(line + (f", interpreto {C.fmt_times(b['times'])}" if "times" in b else ""))
    if "versions" in peer:
        print(f"  peer: {', '.join(f'{k} {x}' for k, x in peer['versions'].items())}")
    return ratios


def method_list(value: str) -> list[str]:
    """``--methods``: method names, comma-separated, each one of METHODS."""
    import argparse

    names = [m.strip() for m in value.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{value!r}: choose among {', '.join(METHODS)}")
    return names


def main() -> None:
    args = C.parse_args(
        __doc__.splitlines()[0],
        peers="interpreto",
        repeats=5,
        extra=[
            (
                "--workload",
                dict(choices=[*WORKLOADS, "all"], default="all", help="which workload (default all but longprompt)"),
            ),
            (
                "--methods",
                dict(
                    type=method_list,
                    default=METHODS,
                    help="comma-separated methods to time (default all four)",
                ),
            ),
        ],
    )
    if args.worker:
        return C.worker_serve(SERVERS, args)
    threads = C.set_threads(args.threads)
    C.quiet()
    print(f"bench_perturbation: batch_size={BATCH_SIZE}, WORD granularity, LOGITS, {threads} torch threads")
    print(f"machine: {C.machine()}; load average at start {C.load_average()}")
    v = C.versions("torch", "transformers", "tokenizers")
    print(f"versions: {', '.join(f'{k} {x}' for k, x in v.items())}")
    t_start = time.perf_counter()
    names = [w for w in WORKLOADS if w != "longprompt"] if args.workload == "all" else [args.workload]
    summary = {w: run_workload(w, args, threads) for w in names}
    print(f"\nload average at end {C.load_average()}; total {time.perf_counter() - t_start:.0f} s")
    print("summary, interpreto / interp_text wall-time ratio:")
    for w, ratios in summary.items():
        print(f"  {w:<10} " + "  ".join(f"{m} {r:.2f}" for m, r in ratios.items()))


if __name__ == "__main__":
    main()
