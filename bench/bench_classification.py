"""Benchmark: VarGrad on a BERT-base-size classifier, interp_text vs the plain-PyTorch floor vs interpreto.

Work measured (the same for every contender): VarGrad, n_perturbations=50, batch_size=64,
noise_std=0.1, input_x_gradient=True, WORD granularity, MEAN aggregation, LOGITS, the predicted
class, on 4 texts of 8 to 40 words, with ``BertForSequenceClassification(BertConfig())``
(12 layers, hidden 768, vocabulary 30522 = the offline WordPiece tokenizer's; seeded random
weights).

- interp_text: ``VarGrad(model, tok, n_perturbations=50, batch_size=64, noise_std=0.1).explain(texts)``.
- floor: only the forward+backward passes interp_text's maths needs: each text's unperturbed row
  (it gives the predicted class) and its 50 noisy rows, packed into batches of at most 64 rows
  exactly as interp_text packs them (rows grouped by length, each length cut into chunks of at
  most 64), one forward with ``inputs_embeds`` and one ``autograd.grad`` of the predicted-class
  logit summed over the noisy rows per batch. The noisy rows are drawn before the clock starts;
  parameters do not require grad.
- interpreto (if installed, run in the peer interpreter: ``$BENCH_PEER_PYTHON``, else
  ``.venv-bench/bin/python``, else this one): ``interpreto.VarGrad`` with the same options.

Run: ``python bench/bench_classification.py`` (``--repeats N``, ``--threads N`` (default 1: steady
on a shared machine), ``--no-peers``). Prints each contender's wall and CPU time (median of the
repeats after one warm-up on the shortest text) and the ratios
interp_text/floor (target <= 1.15) and interpreto/interp_text (target >= 2).
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

N_PERTURBATIONS = 50
BATCH_SIZE = 64
NOISE_STD = 0.1
WORD_COUNTS = [8, 12, 20, 40]
SEED = 0


def load(workdir: str):
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(os.path.join(workdir, "model")).to(C.DEVICE)
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
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok)))  # BERT-base size
    model.save_pretrained(os.path.join(workdir, "model"))
    tok.save_pretrained(os.path.join(workdir, "model"))
    Path(workdir, "texts.json").write_text(json.dumps(C.make_texts(WORD_COUNTS)))


# --------------------------------------------------------------------------- floor
def floor_batches(model, tok, texts):
    """The rows interp_text runs, packed as it packs them.

    Same packing as interp_text's engine: texts grouped by token count (first-seen order), each
    text's unperturbed row then its samples, contiguous, each length group cut into chunks of at
    most BATCH_SIZE rows. Same noise too (one CPU generator per text seeded with SEED, N(0, NOISE_STD²)
    per sample). Returns ``(x, text of each row, sample row or not)`` per pass.
    """
    import torch

    emb = model.get_input_embeddings()
    embeds = []
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"].to(C.DEVICE)
            embeds.append(emb(ids)[0].cpu())  # noise is drawn on the CPU, as interp_text draws it
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(embeds):
        groups.setdefault(e.shape[0], []).append(i)
    gens = {i: torch.Generator().manual_seed(SEED) for i in range(len(embeds))}
    batches = []
    for g in groups.values():
        units = [(i, p) for i in g for p in range(-1, N_PERTURBATIONS)]  # -1: the unperturbed row
        for start in range(0, len(units), BATCH_SIZE):
            run = units[start : start + BATCH_SIZE]
            rows = []
            for i, p in run:
                e = embeds[i]
                rows.append(e if p < 0 else e + torch.randn(e.shape, generator=gens[i]) * NOISE_STD)
            x = torch.stack(rows).to(C.DEVICE)  # (rows, seq, hidden)
            batches.append((x, [i for i, _ in run], [p >= 0 for _, p in run]))
    return batches


def floor_run(model, batches, readout=None) -> None:
    """Only the passes: forward with inputs_embeds; the prediction from each text's unperturbed
    row; autograd.grad of the predicted class's logit summed over the sample rows. ``readout``: the
    last layer at [CLS] only, as interp_text runs it (``interp_text.readout``; see bench_readout.py
    for what it saves)."""
    import contextlib

    import torch

    predicted: dict[int, int] = {}
    with torch.enable_grad(), readout.active() if readout else contextlib.nullcontext():
        for x, texts, sample in batches:
            x = x.detach().requires_grad_(True)
            logits = model(inputs_embeds=x).logits  # (rows, classes)
            for r, (i, s) in enumerate(zip(texts, sample)):
                if not s:
                    predicted[i] = int(logits[r].argmax())
            keep = torch.tensor(sample, device=x.device)
            targets = torch.tensor([predicted[i] for i in texts], device=x.device)
            f = torch.where(keep, logits.gather(1, targets[:, None])[:, 0], 0).sum()
            (g,) = torch.autograd.grad(f, x)


# --------------------------------------------------------------------------- peers (worker mode)
def worker_interpreto(workdir: str, repeats: int) -> dict:
    import torch
    from interpreto import Granularity, VarGrad
    from interpreto.commons.granularity import GranularityAggregationStrategy

    model, tok, texts = load(workdir)
    explainer = VarGrad(
        model,
        tok,
        batch_size=BATCH_SIZE,
        n_perturbations=N_PERTURBATIONS,
        noise_std=NOISE_STD,
        granularity=Granularity.WORD,
        granularity_aggregation_strategy=GranularityAggregationStrategy.MEAN,
        input_x_gradient=True,
        device=torch.device(C.DEVICE),
    )
    shortest = min(texts, key=len)
    res = C.timed(lambda: explainer.explain(texts), repeats=repeats, warmup=lambda: explainer.explain([shortest]))
    return {**res, "versions": C.versions("interpreto", "torch", "transformers")}


WORKERS = {"interpreto": worker_interpreto}


# --------------------------------------------------------------------------- main
def main() -> None:
    args = C.parse_args(__doc__.splitlines()[0], peers="interpreto")
    if args.worker:
        return C.worker_entry(WORKERS, args)

    threads = C.set_threads(args.threads)
    C.quiet()
    from interp_text import VarGrad

    print(
        f"bench_classification: VarGrad n_perturbations={N_PERTURBATIONS} batch_size={BATCH_SIZE} WORD, "
        f"BertForSequenceClassification(BertConfig()) random init, {threads} torch threads"
    )
    print(f"machine: {C.machine()}; load average at start {C.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench_cls_") as workdir:
        t0 = time.perf_counter()
        prepare(workdir)
        model, tok, texts = load(workdir)
        lens = [len(tok(t)["input_ids"]) for t in texts]
        print(f"texts: {len(texts)}, words {WORD_COUNTS}, tokens {lens}; setup {time.perf_counter() - t0:.1f} s")

        explainer = VarGrad(
            model, tok, n_perturbations=N_PERTURBATIONS, batch_size=BATCH_SIZE, noise_std=NOISE_STD, seed=SEED
        )
        batches = floor_batches(model, tok, texts)
        print(f"floor: {len(batches)} forward+backward passes, rows {[int(x.shape[0]) for x, _, _ in batches]}")

        shortest = min(texts, key=len)
        floor_warm = floor_batches(model, tok, [shortest])
        explainer.explain([shortest])  # its first call checks its readout: the floor runs what it runs
        readout = C.readout_of(model, explainer)
        print(f"last layer at [CLS] only (interp_text.readout): {'yes' if readout else 'no'}, in the floor too")
        model.requires_grad_(False)  # the floor takes no parameter gradients (interp_text restores flags itself)
        res = C.interleaved(
            {"floor": lambda: floor_run(model, batches, readout), "interp_text": lambda: explainer.explain(texts)},
            repeats=args.repeats,
            # One warm-up call each, on the shortest text only (it is the threads and allocator
            # that need warming, not the whole workload).
            warmups={
                "floor": lambda: floor_run(model, floor_warm, readout),
                "interp_text": lambda: explainer.explain([shortest]),
            },
        )

        peer = {"error": "skipped (--no-peers)"}
        if not args.no_peers:
            print(f"interpreto: running in {C.peer_python()} ...", flush=True)
            peer = C.run_worker(__file__, "interpreto", workdir, threads)

    print(f"load average at end {C.load_average()}")
    rows = {"floor": res["floor"], "interp_text": res["interp_text"], "interpreto": peer}
    C.print_table(rows)
    ours, floor = res["interp_text"], res["floor"]
    print()
    C.print_ratio("interp_text / floor", ours, floor, target=("<=", 1.15))
    if "time" in peer:
        C.print_ratio("interpreto / interp_text", peer, ours, target=(">=", 2.0))
    v = C.versions("torch", "transformers", "tokenizers")
    print(
        f"versions: {', '.join(f'{k} {x}' for k, x in v.items())}"
        + (f"; peer: {', '.join(f'{k} {x}' for k, x in peer['versions'].items())}" if "versions" in peer else "")
    )


if __name__ == "__main__":
    main()
