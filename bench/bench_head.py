"""Benchmark: the per-position LM head against the whole-logits path, on generators whose logits are
not plain ``h · Wᵀ``.

A gradient method scores each output token from the hidden state its LM head reads at that
token's position (``tasks._by_position``), so that a target's backward crosses the head at its own
position only. The whole-logits path (``Engine.head = False``, which a model whose logits the
library cannot reproduce keeps) computes the logits of every scored position as one tensor and
takes each target's backward through all of them. Models whose head output is mapped before it
becomes their logits (a soft-cap, a scale, an added bias) use the per-position head when the map
is read off the model (``tasks.logit_map``); encoder-decoders read their decoder's states at the
head's input (``tasks.head_input``).

Workloads (random seeded weights; tiny bodies, real vocabulary sizes, where the head dominates):

- ``gemma2``: ``Gemma2ForCausalLM``, hidden 64, 2 layers, vocabulary 256 000, soft-cap 30; a
  prompt of 20 pseudo-words and a forced output of 16; SmoothGrad, 10 samples.
- ``bart``: ``BartForConditionalGeneration``, d_model 64, 2 + 2 layers, vocabulary 50 265, a
  non-zero ``final_logits_bias``; an input of 12 pseudo-words and a forced output of 16;
  SmoothGrad, 10 samples.
- ``kernelshap``: a perturbation explainer in LOGITS, where only each text's unperturbed input
  needs the vocabulary's normaliser: ``LlamaForCausalLM``, hidden 256, 4 layers, vocabulary
  128 256; a prompt of 40 pseudo-words and a forced output of 20 tokens; KernelShap, 200 samples.
  The whole path here is ``PerturbationEngine._split`` switched off.
- ``deletion``: Deletion of an Occlusion explanation of the same model and prompt with a forced
  40-token output: each masked input is normalised at the outputs its curve reads only.

Prints, per workload, both times (median of ``--repeats``), their ratio (whole / per-position),
the peak resident memory of each path (each measured in a fresh process), and the largest
difference between their scores relative to the largest score.

Run: ``python bench/bench_head.py`` (``--repeats N``, ``--threads N``, ``--workload
gemma2|bart|kernelshap|deletion``).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as C  # noqa: E402

SEED = 0
WORKLOADS = ("gemma2", "bart", "kernelshap", "deletion")


def build(workload: str):
    """The model, tokenizer, prompt and forced output of a workload."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, Gemma2Config, Gemma2ForCausalLM

    tok = C.bytelevel_bpe_tokenizer(50257)
    torch.manual_seed(SEED)
    if workload in ("kernelshap", "deletion"):
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=128_256,
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = LlamaForCausalLM(config).eval()
        prompt = C.make_texts([40], seed=5)[0]
        n_out = 20 if workload == "kernelshap" else 40
        out_ids = tok(" " + C.make_texts([60], seed=6)[0])["input_ids"][:n_out]
        return model, tok, prompt, out_ids
    if workload == "gemma2":
        config = Gemma2Config(
            vocab_size=256_000,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            final_logit_softcapping=30.0,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.eos_token_id,
        )
        model = Gemma2ForCausalLM(config).eval()
        prompt, output = C.make_texts([20], seed=1)[0], " " + C.make_texts([16], seed=2)[0]
    else:
        config = BartConfig(
            vocab_size=50_265,  # bart-base
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            pad_token_id=tok.eos_token_id,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.eos_token_id,
            forced_eos_token_id=None,
        )
        model = BartForConditionalGeneration(config).eval()
        with torch.no_grad():
            model.final_logits_bias.normal_()
        prompt, output = C.make_texts([12], seed=1)[0], " " + C.make_texts([16], seed=2)[0]
    out_ids = tok(output, add_special_tokens=False)["input_ids"]
    return model, tok, prompt, out_ids


def run(workload: str, path: str, repeats: int):
    """Time one path of one workload; its scores, time and peak memory."""
    from interp_text import Deletion, KernelShap, Occlusion, SmoothGrad
    from interp_text.engine import Engine
    from interp_text.perturbation import PerturbationEngine

    model, tok, prompt, out_ids = build(workload)
    if workload in ("kernelshap", "deletion"):
        if path == "whole":
            PerturbationEngine._split = lambda self, items, device, reading=False: None
        if workload == "kernelshap":
            explainer = KernelShap(model, tok, n_samples=200)

            def once():
                return explainer.explain(prompt, targets=out_ids)
        else:
            explained, metric = Occlusion(model, tok).explain(prompt, targets=out_ids), Deletion(model, tok)

            def once():
                return metric.curves(explained)

        res = C.timed(once, repeats=repeats)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        scores = res["result"].scores if workload == "kernelshap" else res["result"]
        return {"time": res["time"], "peak_gib": peak, "scores": scores.tolist(), "outputs": len(out_ids)}
    settings = SmoothGrad(model, tok, n_perturbations=10, batch_size=64).settings

    def once():
        engine = Engine(model, tok, settings)
        if path == "whole":
            engine.head = False  # the path a model whose logits cannot be reproduced keeps
        result = engine.explain(prompt, targets=out_ids)
        if path == "split":
            assert engine.head, "the per-position head was not used"
        return result

    res = C.timed(once, repeats=repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"time": res["time"], "peak_gib": peak, "scores": res["result"].scores.tolist(), "outputs": len(out_ids)}


def main() -> None:
    args = C.parse_args(
        __doc__.splitlines()[0],
        peers="nothing (no peers here)",
        extra=[
            ("--workload", dict(choices=WORKLOADS, default=None, help="one workload (default all)")),
            ("--child", dict(nargs=2, default=None, help=__import__("argparse").SUPPRESS)),
        ],
    )
    threads = C.set_threads(args.threads)
    C.quiet()
    if args.child:  # one path of one workload, in its own process: its own peak memory
        print(json.dumps(run(*args.child, args.repeats)))
        return
    import numpy as np

    print(f"bench_head: {C.machine()}, {threads} torch threads, median of {args.repeats}")
    for workload in [args.workload] if args.workload else WORKLOADS:
        got = {}
        for path in ("split", "whole"):
            argv = [sys.executable, __file__, "--child", workload, path, "--repeats", str(args.repeats)]
            argv += ["--threads", str(threads)]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            got[path] = json.loads(done.stdout.strip().splitlines()[-1])
        split, whole = got["split"], got["whole"]
        a, b = np.array(split["scores"], dtype=float), np.array(whole["scores"], dtype=float)
        diff = np.nanmax(np.abs(a - b)) / np.nanmax(np.abs(b))
        print(
            f"{workload:<7} {split['outputs']} output tokens: per-position head {split['time']:.2f} s, "
            f"{split['peak_gib']:.2f} GiB; whole logits {whole['time']:.2f} s, {whole['peak_gib']:.2f} GiB; "
            f"whole / per-position {whole['time'] / split['time']:.1f}x; max |diff| / max |score| {diff:.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
