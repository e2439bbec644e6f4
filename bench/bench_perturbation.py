"""Benchmark: the perturbation methods (Occlusion, Lime, KernelShap, Sobol), interp_text vs interpreto.

Work measured (the same for both contenders): each method on 4 texts of 8 to 40 words, WORD
granularity, ``batch_size=64``, LOGITS of the predicted class, with a moderate random BERT
classifier, ``BertForSequenceClassification(BertConfig(num_hidden_layers=4, hidden_size=256,
num_attention_heads=4, intermediate_size=1024))`` (vocabulary 30522 = the offline WordPiece
tokenizer's; seeded random weights). Sample counts, matched to interpreto's meaning:

- Occlusion: no option; one masked input per word on both sides (interpreto adds the unmasked
  reference row, interp_text scores f(x) separately).
- Lime: 100 masked inputs per text (interp_text ``n_samples=100``, the unperturbed input is one of
  them; interpreto ``n_perturbations=100``, all random, each word masked with probability 0.5).
- KernelShap: 100 coalitions per text (interp_text ``n_samples=100`` + one forward for v(∅);
  interpreto ``n_perturbations=100``, capped at 2**n when n < 20; interp_text enumerates all
  2**n - 2 coalitions when that is <= 100, which no text here triggers).
- Sobol: N=32 Monte-Carlo rows for A and B (interp_text ``n_samples=32``, interpreto
  ``n_token_perturbations=32``; both libraries' default), so N * (n + 2) masked inputs per text
  on both sides; total order on both sides (interp_text's default ``order="total"``, interpreto
  ``SobolIndicesOrders.TOTAL_ORDER``), scrambled Sobol sequence on both sides.

interpreto runs in the peer interpreter (``$BENCH_PEER_PYTHON``, else ``.venv-bench/bin/python``,
else this one) on the same saved model, tokenizer and texts.

Run: ``python bench/bench_perturbation.py`` (``--repeats N``, ``--threads N``, ``--no-peers``).
Prints each time (median of the repeats after one warm-up on the shortest text, wall and CPU)
and the ratio interpreto/interp_text per method (target >= 2).
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
N_LIME = 100
N_SHAP = 100
N_SOBOL = 32
WORD_COUNTS = [8, 12, 20, 40]
SEED = 0
METHODS = ["Occlusion", "Lime", "KernelShap", "Sobol"]
MODEL_CONFIG = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)

SETTINGS_INTERP_TEXT = {
    "Occlusion": "Occlusion(model, tok, batch_size=64, granularity=WORD)",
    "Lime": f"Lime(model, tok, n_samples={N_LIME}, batch_size=64, granularity=WORD)  # defaults: cosine, kernel_width=0.25, alpha=1",
    "KernelShap": f"KernelShap(model, tok, n_samples={N_SHAP}, batch_size=64, granularity=WORD)",
    "Sobol": f"Sobol(model, tok, n_samples={N_SOBOL}, order='total', sampler='sobol', batch_size=64, granularity=WORD)",
}
SETTINGS_INTERPRETO = {
    "Occlusion": "Occlusion(model, tok, batch_size=64, granularity=WORD, device=cpu)",
    "Lime": f"Lime(model, tok, n_perturbations={N_LIME}, batch_size=64, granularity=WORD, device=cpu)  # defaults: perturb_probability=0.5, COSINE, kernel_width=None",
    "KernelShap": f"KernelShap(model, tok, n_perturbations={N_SHAP}, batch_size=64, granularity=WORD, device=cpu)",
    "Sobol": f"Sobol(model, tok, n_token_perturbations={N_SOBOL}, sobol_indices_order=TOTAL_ORDER, sampler=SOBOL, batch_size=64, granularity=WORD, device=cpu)",
}


def load(workdir: str):
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(os.path.join(workdir, "model"))
    model.eval()
    tok = AutoTokenizer.from_pretrained(os.path.join(workdir, "model"))
    texts = json.loads(Path(workdir, "texts.json").read_text())
    return model, tok, texts


def prepare(workdir: str) -> None:
    """Build the tokenizer, the seeded random model and the texts; save them for every contender."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok = C.wordpiece_tokenizer(30522)
    torch.manual_seed(SEED)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), **MODEL_CONFIG))
    model.save_pretrained(os.path.join(workdir, "model"))
    tok.save_pretrained(os.path.join(workdir, "model"))
    Path(workdir, "texts.json").write_text(json.dumps(C.make_texts(WORD_COUNTS)))


def rows_interp_text(method: str, n: int) -> int:
    """Masked inputs interp_text scores for a text of n elements (the clean forward not counted)."""
    if method == "Occlusion":
        return n
    if method == "Lime":
        return N_LIME
    if method == "KernelShap":
        return 2**n - 1 if n <= 1 or 2**n - 2 <= N_SHAP else 1 + 2 * ((N_SHAP + 1) // 2)
    return N_SOBOL * (n + 2)


def rows_interpreto(method: str, n: int) -> int:
    """Masked inputs interpreto scores for a text of n elements (from its perturbators' get_mask)."""
    if method == "Occlusion":
        return n + 1
    if method == "Lime":
        return N_LIME
    if method == "KernelShap":
        return 2**n if n < 20 and N_SHAP > 2**n else N_SHAP
    return N_SOBOL * (n + 2)


# --------------------------------------------------------------------------- peers (worker mode)
def worker_interpreto(workdir: str, repeats: int) -> dict:
    import interpreto
    import torch
    from interpreto import Granularity

    model, tok, texts = load(workdir)
    cpu = torch.device("cpu")
    common = dict(batch_size=BATCH_SIZE, granularity=Granularity.WORD, device=cpu)
    out: dict = {"methods": {}, "versions": C.versions("interpreto", "torch", "transformers")}
    shortest = min(texts, key=len)
    # Elements per text as interpreto sees them (WORD association matrix rows).
    out["elements"] = [
        int(Granularity.WORD.get_association_matrix(tok(t, return_tensors="pt"), tok)[0].shape[0]) for t in texts
    ]
    for name in METHODS:
        try:
            cls = getattr(interpreto, name, None)
            if cls is None:
                raise ImportError(f"interpreto has no {name}")
            if name == "Occlusion":
                explainer = cls(model, tok, **common)
            elif name in ("Lime", "KernelShap"):
                explainer = cls(model, tok, n_perturbations=N_LIME if name == "Lime" else N_SHAP, **common)
            else:
                explainer = cls(
                    model,
                    tok,
                    n_token_perturbations=N_SOBOL,
                    sobol_indices_order=cls.sobol_indices_orders.TOTAL_ORDER,
                    sampler=cls.samplers.SOBOL,
                    **common,
                )
            res = C.timed(
                lambda ex=explainer: ex.explain(texts),
                repeats=repeats,
                warmup=lambda ex=explainer: ex.explain([shortest]),
            )
            res.pop("result", None)
            out["methods"][name] = res
        except Exception as err:  # a method failing is a result, not a crash
            out["methods"][name] = {"error": f"{type(err).__name__}: {err}"[:300]}
    return out


WORKERS = {"interpreto": worker_interpreto}


# --------------------------------------------------------------------------- main
def make_interp_text(model, tok):
    from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol

    common = dict(batch_size=BATCH_SIZE, granularity="word", seed=SEED)
    return {
        "Occlusion": Occlusion(model, tok, **common),
        "Lime": Lime(model, tok, n_samples=N_LIME, **common),
        "KernelShap": KernelShap(model, tok, n_samples=N_SHAP, **common),
        "Sobol": Sobol(model, tok, n_samples=N_SOBOL, order="total", sampler="sobol", **common),
    }


def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], peers="interpreto")
    if args.worker:
        return C.worker_entry(WORKERS, args)

    threads = C.set_threads(args.threads)
    C.quiet()
    cfg = ", ".join(f"{k}={v}" for k, v in MODEL_CONFIG.items())
    print(
        f"bench_perturbation: Occlusion / Lime / KernelShap / Sobol, batch_size={BATCH_SIZE} WORD, LOGITS of the "
        f"predicted class, BertForSequenceClassification(BertConfig({cfg})) random init, {threads} torch threads"
    )
    print(f"machine: {C.machine()}; load average at start {C.load_average()}")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_pert_") as workdir:
        t0 = time.perf_counter()
        prepare(workdir)
        model, tok, texts = load(workdir)
        lens = [len(tok(t)["input_ids"]) for t in texts]
        explainers = make_interp_text(model, tok)
        elements = [len(e.elements) for e in explainers["Occlusion"].explain(texts)]
        print(
            f"texts: {len(texts)}, words {WORD_COUNTS}, tokens {lens}, WORD elements (interp_text) {elements}; "
            f"setup {time.perf_counter() - t0:.1f} s"
        )
        print("settings:")
        for name in METHODS:
            print(f"  interp_text {SETTINGS_INTERP_TEXT[name]}")
            print(f"  interpreto  {SETTINGS_INTERPRETO[name]}")

        shortest = min(texts, key=len)
        ours = {}
        for name in METHODS:
            ex = explainers[name]
            ours[name] = C.timed(
                lambda ex=ex: ex.explain(texts), repeats=args.repeats, warmup=lambda ex=ex: ex.explain([shortest])
            )
            print(
                f"  interp_text {name:<10} {ours[name]['time']:.2f} s wall, {ours[name]['cpu']:.2f} s cpu", flush=True
            )

        peer = {"error": "skipped (--no-peers)"}
        if not args.no_peers:
            print(f"interpreto: running in {C.peer_python()} ...", flush=True)
            peer = C.run_worker(__file__, "interpreto", workdir, threads, timeout=900)

    print(f"load average at end {C.load_average()}; total {time.perf_counter() - t_start:.0f} s")
    peer_elems = peer.get("elements")
    print("masked inputs per text (interp_text | interpreto), from the elements counts and each library's sampler:")
    for name in METHODS:
        a = [rows_interp_text(name, n) for n in elements]
        b = [rows_interpreto(name, n) for n in (peer_elems or elements)]
        print(f"  {name:<10} {a} = {sum(a)} | {b} = {sum(b)}")
    if peer_elems and peer_elems != elements:
        print(f"  note: interpreto counts {peer_elems} WORD elements, interp_text {elements}")

    print()
    print(
        f"{'method':<12}{'interp_text s':>14}{'interpreto s':>14}{'ratio':>8}"
        f"{'it cpu s':>10}{'ipto cpu s':>12}{'cpu ratio':>11}  target >= 2"
    )
    for name in METHODS:
        a = ours[name]
        b = peer.get("methods", {}).get(name, {"error": peer.get("error", "?")})
        if "time" in b:
            wr, cr = b["time"] / a["time"], b["cpu"] / a["cpu"]
            verdict = f"wall {'met' if wr >= 2 else 'NOT met'}, cpu {'met' if cr >= 2 else 'NOT met'}"
            print(
                f"{name:<12}{a['time']:>14.2f}{b['time']:>14.2f}{wr:>8.2f}{a['cpu']:>10.2f}{b['cpu']:>12.2f}{cr:>11.2f}  {verdict}"
            )
        else:
            print(
                f"{name:<12}{a['time']:>14.2f}{'-':>14}{'-':>8}{a['cpu']:>10.2f}{'-':>12}{'-':>11}  interpreto: {b.get('error')}"
            )
    print()
    print("runs (wall / cpu):")
    for name in METHODS:
        a = ours[name]
        print(f"  interp_text {name:<10} {C.fmt_times(a['times'])} / {C.fmt_times(a['cpus'])}")
        b = peer.get("methods", {}).get(name, {})
        if "times" in b:
            print(f"  interpreto  {name:<10} {C.fmt_times(b['times'])} / {C.fmt_times(b['cpus'])}")
    v = C.versions("torch", "transformers", "tokenizers")
    print(
        f"versions: {', '.join(f'{k} {x}' for k, x in v.items())}"
        + (f"; peer: {', '.join(f'{k} {x}' for k, x in peer['versions'].items())}" if "versions" in peer else "")
    )


if __name__ == "__main__":
    main()
