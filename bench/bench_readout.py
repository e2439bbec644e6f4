"""Benchmark: a classifier's forward (and forward + backward) with its last layer at [CLS] only.

``interp_text.readout`` runs a BERT-style classifier's last layer at the position its head reads
only. This measures what that saves on its own, for the same rows: the model's full forward
against the same forward with the readout, both plain PyTorch calls with ``inputs_embeds``
(64 rows, seeded random weights), and the same for a forward + backward to the inputs (the
gradient methods' pass). Shapes:

- ``sentiment``: the bundled sentiment classifier (2 layers, hidden 64), 16 tokens;
- ``bert4``: ``bench_perturbation``'s 4-layer BERT (hidden 256), 24 tokens;
- ``distilbert``: DistilBERT-base's shape (6 layers, hidden 768), 32 tokens;
- ``bert-base``: BERT-base's shape (12 layers, hidden 768), 32 tokens.

The four runs of a shape go round-robin, for ``--repeats`` rounds or as many as fit in about 2 s
(up to 300). Run: ``python bench/bench_readout.py`` (``--threads N``, default 1; ``--repeats N``;
``--device``). Prints each median time and the ratio full / readout (the median of the ratios
within a round; above 1: the readout is faster), with the largest difference between the two
paths' logits.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _common as C  # noqa: E402

ROWS = 64
BUNDLED = Path(__file__).resolve().parent.parent / "interp_text" / "bundled" / "sentiment"


def models():
    """``(name, model, tokens)`` of each shape measured."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.manual_seed(0)
    yield "sentiment", AutoModelForSequenceClassification.from_pretrained(BUNDLED), 16
    bert4 = BertConfig(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
    yield "bert4", BertForSequenceClassification(bert4), 24
    yield "distilbert", DistilBertForSequenceClassification(DistilBertConfig()), 32
    base = BertForSequenceClassification(BertConfig())
    yield "bert-base", base, 32


def ratio(num: list[float], den: list[float]) -> float:
    """The median of the ratios within a round: steadier than a ratio of medians on a machine whose
    speed drifts."""
    return statistics.median(a / b for a, b in zip(num, den))


def forward(model, x, readout):
    """The logits of rows ``x``; with the readout where one is given."""
    import contextlib

    import torch

    with torch.inference_mode(), readout.active() if readout else contextlib.nullcontext():
        return model(inputs_embeds=x).logits


def backward(model, x, readout):
    """The gradient of the first class's logits (summed over rows) to the rows."""
    import contextlib

    import torch

    x = x.clone().requires_grad_(True)
    with readout.active() if readout else contextlib.nullcontext():
        logits = model(inputs_embeds=x).logits
    return torch.autograd.grad(logits[:, 0].sum(), x)[0]


def paired(fns: list, repeats: int, device: str) -> list[list[float]]:
    """Each of ``fns`` timed round-robin (its run next to the others' in time), after a warm-up:
    ``repeats`` rounds, or as many as fit in about 2 s for fast ones (up to 300)."""
    import torch

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t

    first = [timed(fn) for fn in fns]  # warm-up
    rounds = max(repeats, min(300, int(2.0 / sum(first))))
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            times[k].append(timed(fn))
    return times


def main() -> None:
    import torch

    from interp_text.readout import Readout, last_layer

    args = C.parse_args(__doc__.splitlines()[0], peers="nothing (no peer runs this)", repeats=5)
    threads = C.set_threads(args.threads)
    C.quiet()
    print(f"bench_readout: {ROWS} rows, {threads} torch threads; machine: {C.machine()}")
    print(
        f"{'model':<12}{'tokens':>7}{'forward full':>14}{'readout':>9}{'ratio':>7}"
        f"{'fwd+bwd full':>14}{'readout':>9}{'ratio':>7}{'max |Δ logit|':>15}{'rounds':>8}"
    )
    for name, model, seq in models():
        model.eval().to(args.device)
        model.requires_grad_(False)
        readout = Readout(last_layer(model))
        hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
        x = torch.randn(ROWS, seq, hidden, generator=torch.Generator().manual_seed(0)).to(args.device)

        diff = float((forward(model, x, readout) - forward(model, x, None)).abs().max())
        fns = [lambda f=f, r=r, m=model, x=x: f(m, x, r) for f in (forward, backward) for r in (None, readout)]
        f_full, f_ro, b_full, b_ro = paired(fns, args.repeats, args.device)
        med = statistics.median
        print(
            f"{name:<12}{seq:>7}{med(f_full) * 1e3:>12.1f}ms{med(f_ro) * 1e3:>7.1f}ms{ratio(f_full, f_ro):>7.2f}"
            f"{med(b_full) * 1e3:>12.1f}ms{med(b_ro) * 1e3:>7.1f}ms{ratio(b_full, b_ro):>7.2f}{diff:>15.1e}"
            f"{len(f_full):>8}",
            flush=True,
        )


if __name__ == "__main__":
    main()
