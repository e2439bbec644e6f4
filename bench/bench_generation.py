"""Benchmark: gradient explanations of a 6-layer GPT-2's forced output, interp_text vs floor vs peers.

Model: ``GPT2LMHeadModel(GPT2Config(n_layer=6))`` (width 768, vocabulary 50257 = the offline
byte-level BPE tokenizer's; seeded random weights). One prompt of PROMPT_TOKENS tokens and a
forced output of OUTPUT_TOKENS tokens (given as token ids to interp_text and the floor, as
the same text to the peers).

Two workloads, each timed for every contender that can run it:

1. SmoothGrad, n_perturbations=10, noise_std=0.1, input_x_gradient, LOGITS, batch_size=64
   (so the 10 noisy rows are one batch), WORD granularity.
   - floor: one teacher-forced forward of the 10 noisy rows (prompt + output), each target
     logit taken as ``h_t · W[target_t]`` (the LM head's target row at the scored position
     only), then one ``autograd.grad`` per output token (graph retained).
   - interp_text ``SmoothGrad``; interpreto ``SmoothGrad`` (same options).
2. Saliency of the log-probability of each output token (LOG_SOFTMAX), batch of 1 row.
   - floor: one teacher-forced forward, the log-softmax of each scored position computed as
     its own branch (so a token's backward crosses the LM head at its position only), one
     ``autograd.grad`` per output token.
   - interp_text ``Saliency(inference_mode="log_softmax")``; inseq ``saliency``
     (``attributed_fn="probability"`` with ``logprob=True``); captum ``LLMGradientAttribution``
     over ``TextTokenInput`` (captum's own target is the log-probability); captum 0.9 accepts
     only layer methods there, so ``LayerGradientXActivation(wte, multiply_by_inputs=False)``,
     the gradient w.r.t. the token embeddings, stands in for ``Saliency``.

Peers run in the peer interpreter (``$BENCH_PEER_PYTHON``, else ``.venv-bench/bin/python``,
else this one), each in its own subprocess loading the same saved model; one that is missing
or fails offline is reported with the reason and skipped.

Run: ``python bench/bench_generation.py`` (``--repeats N``, ``--threads N``, ``--no-peers``).
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

N_LAYER = 6
PROMPT_TOKENS = 20
OUTPUT_TOKENS = 40
SG_PERTURBATIONS = 10
NOISE_STD = 0.1
BATCH_SIZE = 64
SEED = 0


# --------------------------------------------------------------------------- setup
def _exact_tokens(tok, n: int, seed: int, leading_space: bool) -> str:
    """A text of pseudo-words that the tokenizer cuts into exactly ``n`` tokens."""
    vocab = C.pseudo_words(40_000, seed=0)
    for s in range(seed, seed + 1000):
        words = C.make_texts([n], seed=s, vocab=vocab)[0].rstrip(".").split()
        text = ""
        for w in words:
            cand = (text + " " + w) if (text or leading_space) else w
            k = len(tok(cand)["input_ids"])
            if k == n:
                return cand
            if k > n:
                break
            text = cand
    raise RuntimeError(f"no text of exactly {n} tokens found")


def prepare(workdir: str) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = C.bytelevel_bpe_tokenizer(50257)
    torch.manual_seed(SEED)
    config = GPT2Config(
        n_layer=N_LAYER, vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(os.path.join(workdir, "model"))
    tok.save_pretrained(os.path.join(workdir, "model"))
    prompt = _exact_tokens(tok, PROMPT_TOKENS, seed=11, leading_space=False)
    output = _exact_tokens(tok, OUTPUT_TOKENS, seed=12, leading_space=True)  # " word word ..."
    ids = tok(prompt + output)["input_ids"]
    p_ids, o_ids = tok(prompt)["input_ids"], tok(output)["input_ids"]
    assert ids == p_ids + o_ids, "prompt + output must tokenize as prompt tokens + output tokens"
    Path(workdir, "texts.json").write_text(json.dumps({"prompt": prompt, "output": output, "output_ids": o_ids}))


def load(workdir: str):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(os.path.join(workdir, "model")).to(C.DEVICE)
    model.eval()
    tok = AutoTokenizer.from_pretrained(os.path.join(workdir, "model"))
    data = json.loads(Path(workdir, "texts.json").read_text())
    return model, tok, data


# --------------------------------------------------------------------------- floor
def floor_inputs(model, tok, data, n_rows: int):
    """Embeddings of prompt + output (+ N(0, σ²) noise when n_rows > 1), target ids, positions."""
    import torch

    p_ids = tok(data["prompt"])["input_ids"]
    o_ids = data["output_ids"]
    ids = torch.tensor([p_ids + o_ids], device=C.DEVICE)
    with torch.no_grad():
        e = model.get_input_embeddings()(ids)[0].cpu()  # (seq, hidden); noise drawn on the CPU, as interp_text does
    gen = torch.Generator().manual_seed(SEED)
    if n_rows == 1:
        x = e[None].clone()
    else:
        x = torch.stack([e + torch.randn(e.shape, generator=gen) * NOISE_STD for _ in range(n_rows)])
    # Position p predicts token p + 1: output token t is scored at position n_prompt - 1 + t.
    pos = torch.arange(len(o_ids)) + len(p_ids) - 1
    return x.to(C.DEVICE), torch.tensor(o_ids, device=C.DEVICE), pos


def floor_run(model, x, targets, pos, log_softmax: bool) -> None:
    """One teacher-forced forward, then one backward per output token (graph retained).

    Each output token's score is its own branch of the graph after the last hidden state, so
    its backward goes through the LM head at its own position only: LOGITS take the target row
    of the LM head (``h · W[target]``); LOG_SOFTMAX takes that position's full-vocabulary
    normaliser. The transformer backward is the whole batch's, as in any library.
    """
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        h = model.transformer(inputs_embeds=x, use_cache=False).last_hidden_state  # (rows, seq, hidden)
        w = model.get_output_embeddings().weight  # (vocab, hidden); GPT-2's LM head has no bias
        scores = []
        for t in range(len(targets)):
            h_t = h[:, pos[t]]  # (rows, hidden)
            if log_softmax:
                logits = h_t @ w.T  # (rows, vocab)
                scores.append((logits[:, targets[t]] - torch.logsumexp(logits, -1)).sum())
            else:
                scores.append((h_t @ w[targets[t]]).sum())
        n = len(scores)
        for t in range(n):
            (g,) = torch.autograd.grad(scores[t], x, retain_graph=t < n - 1)


# --------------------------------------------------------------------------- peers (worker mode)
def worker_interpreto_smoothgrad(workdir: str, repeats: int) -> dict:
    import torch
    from interpreto import Granularity, SmoothGrad
    from interpreto.commons.granularity import GranularityAggregationStrategy

    model, tok, data = load(workdir)
    explainer = SmoothGrad(
        model,
        tok,
        batch_size=BATCH_SIZE,
        n_perturbations=SG_PERTURBATIONS,
        noise_std=NOISE_STD,
        granularity=Granularity.WORD,
        granularity_aggregation_strategy=GranularityAggregationStrategy.MEAN,
        input_x_gradient=True,
        device=torch.device(C.DEVICE),
    )
    warm_p, warm_o = data["prompt"], " " + " ".join(data["output"].split()[:2])
    res = C.timed(
        lambda: explainer.explain(data["prompt"], targets=data["output"]),
        repeats=repeats,
        warmup=lambda: explainer.explain(warm_p, targets=warm_o),
    )
    n_out = int(res["result"][0].targets.shape[-1])
    return {**res, "note": f"{n_out} output tokens", "versions": C.versions("interpreto")}


def worker_inseq(workdir: str, repeats: int) -> dict:
    import inseq

    model, tok, data = load(workdir)
    m = inseq.load_model(model, "saliency", tokenizer=tok)
    prompt, full = data["prompt"], data["prompt"] + data["output"]
    kwargs = {"attributed_fn": "probability", "logprob": True, "step_scores": [], "show_progress": False}

    def run(p=prompt, f=full):
        return m.attribute(p, f, **kwargs)

    warm_full = prompt + " " + " ".join(data["output"].split()[:2])
    try:  # the warm-up call, on a 2-word output
        run(prompt, warm_full)
        note = "attributed_fn=probability, logprob=True"
    except TypeError:  # an inseq that does not pass logprob through: plain probability
        kwargs.pop("logprob")
        note = "attributed_fn=probability (logprob not accepted)"
    res = C.timed(run, repeats=repeats, warmup=lambda: None)  # warmed up just above
    attr = res["result"].sequence_attributions[0]
    n_out = len(attr.target) - len(attr.source) if attr.target is not None else -1
    return {**res, "note": f"{note}; {n_out} output tokens", "versions": C.versions("inseq", "captum")}


def worker_captum(workdir: str, repeats: int) -> dict:
    import torch
    from captum.attr import LayerGradientXActivation, LLMGradientAttribution, Saliency, TextTokenInput

    model, tok, data = load(workdir)
    note = ""
    try:
        llm_attr = LLMGradientAttribution(Saliency(model), tok)
        note = "Saliency"
    except AssertionError:
        # captum accepts only layer methods here; the gradient w.r.t. the embedding layer's
        # output without multiplying by it is plain saliency.
        emb = model.get_input_embeddings()
        llm_attr = LLMGradientAttribution(LayerGradientXActivation(model, emb, multiply_by_inputs=False), tok)
        note = "LLMGradientAttribution rejects Saliency; used LayerGradientXActivation(wte, multiply_by_inputs=False)"
    target = torch.tensor(data["output_ids"])
    inp = TextTokenInput(data["prompt"], tok)

    def run(t=target):
        return llm_attr.attribute(inp, target=t)

    res = C.timed(run, repeats=repeats, warmup=lambda: run(target[:2]))
    n_out = res["result"].token_attr.shape[0]
    return {**res, "note": f"{note}; {n_out} output tokens", "versions": C.versions("captum")}


WORKERS = {
    "interpreto_smoothgrad": worker_interpreto_smoothgrad,
    "inseq_saliency": worker_inseq,
    "captum_saliency": worker_captum,
}


# --------------------------------------------------------------------------- main
def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], peers="interpreto, inseq and captum")
    if args.worker:
        return C.worker_entry(WORKERS, args)

    threads = C.set_threads(args.threads)
    C.quiet()
    from interp_text import InferenceModes, Saliency, SmoothGrad

    print(
        f"bench_generation: GPT2LMHeadModel(GPT2Config(n_layer={N_LAYER})) random init, "
        f"{PROMPT_TOKENS}-token prompt, {OUTPUT_TOKENS}-token forced output, {threads} torch threads"
    )
    print(f"machine: {C.machine()}; load average at start {C.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench_gen_") as workdir:
        t0 = time.perf_counter()
        prepare(workdir)
        model, tok, data = load(workdir)
        print(f"setup {time.perf_counter() - t0:.1f} s")
        prompt, out_ids = data["prompt"], data["output_ids"]
        warm_ids = out_ids[:2]

        sg = SmoothGrad(
            model, tok, n_perturbations=SG_PERTURBATIONS, noise_std=NOISE_STD, batch_size=BATCH_SIZE, seed=SEED
        )
        sal = Saliency(model, tok, inference_mode=InferenceModes.LOG_SOFTMAX, batch_size=BATCH_SIZE)
        x_sg, targets, pos = floor_inputs(model, tok, data, SG_PERTURBATIONS)
        x_sal, _, _ = floor_inputs(model, tok, data, 1)
        model.requires_grad_(False)  # the floor takes no parameter gradients (interp_text restores flags itself)

        print("timing SmoothGrad: floor, interp_text ...", flush=True)
        res_sg = C.interleaved(
            {
                "floor": lambda: floor_run(model, x_sg, targets, pos, log_softmax=False),
                "interp_text": lambda: sg.explain(prompt, targets=out_ids),
            },
            repeats=args.repeats,
            warmups={
                "floor": lambda: floor_run(model, x_sg, targets[:2], pos[:2], log_softmax=False),
                "interp_text": lambda: sg.explain(prompt, targets=warm_ids),
            },
        )
        print("timing Saliency: floor, interp_text ...", flush=True)
        res_sal = C.interleaved(
            {
                "floor": lambda: floor_run(model, x_sal, targets, pos, log_softmax=True),
                "interp_text": lambda: sal.explain(prompt, targets=out_ids),
            },
            repeats=args.repeats,
            warmups={
                "floor": lambda: floor_run(model, x_sal, targets[:2], pos[:2], log_softmax=True),
                "interp_text": lambda: sal.explain(prompt, targets=warm_ids),
            },
        )
        peers = {}
        for name in WORKERS:
            if args.no_peers:
                peers[name] = {"error": "skipped (--no-peers)"}
                continue
            print(f"timing {name} in {C.peer_python()} ...", flush=True)
            peers[name] = C.run_worker(__file__, name, workdir, threads)

    print(f"load average at end {C.load_average()}")
    print(f"\n== SmoothGrad (n_perturbations={SG_PERTURBATIONS}, batch of {SG_PERTURBATIONS} rows, LOGITS)")
    C.print_table(
        {
            "floor": res_sg["floor"],
            "interp_text": res_sg["interp_text"],
            "interpreto SmoothGrad": peers["interpreto_smoothgrad"],
        }
    )
    print()
    C.print_ratio("interp_text / floor", res_sg["interp_text"], res_sg["floor"])
    if "time" in peers["interpreto_smoothgrad"]:
        C.print_ratio("interpreto / interp_text", peers["interpreto_smoothgrad"], res_sg["interp_text"])

    print("\n== Saliency (log-probability of each output token, 1 row)")
    C.print_table(
        {
            "floor": res_sal["floor"],
            "interp_text": res_sal["interp_text"],
            "inseq saliency": peers["inseq_saliency"],
            "captum LLMGradientAttribution": peers["captum_saliency"],
        }
    )
    print()
    C.print_ratio("interp_text / floor", res_sal["interp_text"], res_sal["floor"])
    for name, label in (("inseq_saliency", "inseq / interp_text"), ("captum_saliency", "captum / interp_text")):
        if "time" in peers[name]:
            C.print_ratio(label, peers[name], res_sal["interp_text"])
    print()
    for name, r in peers.items():
        if r.get("note"):
            print(f"note {name}: {r['note']}")
    v = C.versions("torch", "transformers", "tokenizers")
    print(f"versions: {', '.join(f'{k} {x}' for k, x in v.items())}")
    peer_v = {}
    for r in peers.values():
        peer_v.update(r.get("versions", {}))
    if peer_v:
        print(f"peer versions: {', '.join(f'{k} {x}' for k, x in sorted(peer_v.items()))}")


if __name__ == "__main__":
    main()
