"""Benchmark: one backward per target (loop) against vmapped backwards, per device.

``targets_per_backward`` = k makes one vmapped backward (``is_grads_batched``) compute k targets'
gradients; k = 1 is the loop over the retained graph. Its default is chosen per device from this
benchmark: the loop on a CPU, 8 on a CUDA device. Workload: ``bench_generation.py``'s model and
texts (``GPT2LMHeadModel(GPT2Config(n_layer=6))``, random init, a 20-token prompt and a forced
40-token output), with SmoothGrad (10 samples, LOGITS and LOG_SOFTMAX) and Saliency (LOG_SOFTMAX).
Prints the median time per k and the largest difference from the loop's scores.

Run: ``python bench/bench_backward.py`` (``--device cuda``, ``--repeats N``, ``--threads N``;
``--ks 1,8,40``). Measured on an H100 (torch 2.11, median of 7):

    SmoothGrad LOGITS       k=1 204 ms, 2: 171, 4: 116, 8: 97, 16: 95, 40: 94
    SmoothGrad LOG_SOFTMAX  k=1 216 ms, 2: 143, 4: 166, 8: 110, 16: 123, 40: 141
    Saliency LOG_SOFTMAX    k=1 223 ms, 2: 180, 4: 130, 8: 67, 16: 80, 40: 65

and on this project's 2-core CPU (1 thread, one run each):

    SmoothGrad LOGITS       k=1 18.6 s, 8: 24.6 s
    SmoothGrad LOG_SOFTMAX  k=1 22.2 s, 8: 28.2 s
    Saliency LOG_SOFTMAX    k=1 3.61 s, 8: 3.32 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as C  # noqa: E402


def main() -> None:
    args = C.parse_args(
        __doc__.splitlines()[0],
        peers="nothing (no peers here)",
        extra=[("--ks", dict(default="1,2,4,8,40", help="targets per backward to try (default 1,2,4,8,40)"))],
    )
    threads = C.set_threads(args.threads)
    C.quiet()
    import bench_generation as G
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from interp_text import InferenceModes, Saliency, SmoothGrad

    print(f"bench_backward: {C.machine()}, device {args.device}, {threads} torch threads")
    tok = C.bytelevel_bpe_tokenizer(50257)
    torch.manual_seed(G.SEED)
    config = GPT2Config(n_layer=6, vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(config).to(args.device).eval()
    prompt = G._exact_tokens(tok, G.PROMPT_TOKENS, seed=11, leading_space=False)
    out_ids = tok(G._exact_tokens(tok, G.OUTPUT_TOKENS, seed=12, leading_space=True))["input_ids"]
    noisy = dict(n_perturbations=10, noise_std=0.1)
    cases = {
        "SmoothGrad LOGITS": lambda k: SmoothGrad(model, tok, targets_per_backward=k, **noisy),
        "SmoothGrad LOG_SOFTMAX": lambda k: SmoothGrad(
            model, tok, inference_mode="log_softmax", targets_per_backward=k, **noisy
        ),
        "Saliency LOG_SOFTMAX": lambda k: Saliency(
            model, tok, inference_mode=InferenceModes.LOG_SOFTMAX, targets_per_backward=k
        ),
    }
    ks = [int(k) for k in args.ks.split(",")]
    for name, make in cases.items():
        reference = None
        for k in ks:
            explainer = make(k)
            res = C.timed(lambda ex=explainer: ex.explain(prompt, targets=out_ids), repeats=args.repeats)
            scores = res["result"].scores
            reference = scores if reference is None else reference
            diff = np.nanmax(np.abs(scores - reference)) / np.nanmax(np.abs(reference))
            print(f"{name:<24} k={k:<3} {res['time'] * 1e3:9.1f} ms   max |diff| / max |loop| {diff:.1e}", flush=True)


if __name__ == "__main__":
    main()
