"""Train the two bundled models from the synthetic data in ``interp_text.data``.

Usage::

    python -m interp_text.bundled.train [sentiment|facts|all]

Deterministic on CPU (fixed seeds, 2 threads, deterministic algorithms, a
tie-free tokenizer learner): a rerun gives byte-identical files. On two idle
cores the sentiment model trains in about a minute, the facts model in a few
(about six on a busy machine). The results are written next to
this file, in ``sentiment/`` and ``facts/``.
"""

import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from interp_text.data import all_facts, facts_examples, neutral_reviews, sentiment_examples

HERE = Path(__file__).parent
SEED = 0
MAX_LENGTH = 64

# Small on purpose: some words must split into several WordPiece pieces
# ("delicious" -> "d ##el ##ic ##i ##ou ##s") so subword handling gets exercised.
SENTIMENT_VOCAB = 450
FACTS_VOCAB = 800  # 256 bytes + eos + 52 space-letter + learned merges: every answer word is one token
EOS = "<|endoftext|>"


def _setup(seed: int = SEED) -> None:
    """Make a training run reproducible on CPU."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


# --- tokenizers ------------------------------------------------------------
# The vocabularies are learned here in plain Python rather than with the
# `tokenizers` trainers: those break ties by hash order, so two runs on the
# same texts give different vocabularies (and different models).


def _word_counts(tok: Tokenizer, texts: list[str]) -> Counter:
    """Count the pre-tokenized words of ``texts`` as ``tok`` would see them."""
    counts = Counter()
    for text in texts:
        if tok.normalizer is not None:
            text = tok.normalizer.normalize_str(text)
        counts.update(word for word, _ in tok.pre_tokenizer.pre_tokenize_str(text))
    return counts


def _learn_bpe(counts: Counter, base: list[str], vocab_size: int, prefix: str = "", first_merges=()):
    """Byte-pair merges over ``counts`` until ``vocab_size``; ties break by the pair itself.

    Symbols after the first in a word carry ``prefix`` ("##" for WordPiece).
    ``first_merges`` are applied before any learned one.
    Returns ``(vocab dict, merges list)``, both in a deterministic order.
    """
    words = {w: [c if i == 0 else prefix + c for i, c in enumerate(w)] for w in counts}
    vocab = list(base)
    for symbols in words.values():
        vocab += [s for s in symbols if s not in vocab]
    merges = []
    first_merges = list(first_merges)
    while len(vocab) < vocab_size:
        pairs = Counter()
        for word, symbols in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += counts[word]
        if first_merges:
            a, b = first_merges.pop(0)
        elif pairs:
            a, b = min(pairs, key=lambda pair: (-pairs[pair], pair))
        else:
            break
        merged = a + b[len(prefix) :]
        merges.append((a, b))
        if merged not in vocab:
            vocab.append(merged)
        for word, symbols in words.items():
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == [a, b]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[word] = out
    return {token: i for i, token in enumerate(vocab)}, merges


def build_sentiment_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A lower-casing BERT-style WordPiece tokenizer learned from ``texts``."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts = _word_counts(tok, texts)
    chars = sorted({c for word in counts for c in word})
    base = specials + chars + ["##" + c for c in chars]
    # Like the `tokenizers` WordPiece trainer: BPE merges, kept as a WordPiece vocab.
    vocab, _ = _learn_bpe(counts, base, SENTIMENT_VOCAB, prefix="##")
    tok.model = models.WordPiece(vocab, unk_token="[UNK]")
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
    )


def build_facts_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A GPT-2 style byte-level BPE tokenizer learned from ``texts``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # All 256 byte symbols are in the vocab, so any input text encodes.
    base = [EOS] + sorted(pre_tokenizers.ByteLevel.alphabet())
    # Space + letter first, as in GPT-2: otherwise a word like " Warsaw" can end
    # up as "Ġ" + "Warsaw", and the answer's first token is a bare space.
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    first = [("Ġ", c) for c in letters]
    vocab, merges = _learn_bpe(_word_counts(tok, texts), base, FACTS_VOCAB, first_merges=first)
    tok.model = models.BPE(vocab, merges)
    tok.add_special_tokens([EOS])
    tok.decoder = decoders.ByteLevel()
    # trim_offsets keeps the leading-space byte out of offset spans, as GPT-2 does.
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
        # Left padding so batched greedy generation continues each prompt.
        padding_side="left",
        model_max_length=MAX_LENGTH,
    )


# --- evaluation ------------------------------------------------------------


@torch.no_grad()
def sentiment_accuracy(model, tokenizer, examples: list[dict], batch_size: int = 128) -> float:
    """Fraction of ``examples`` whose argmax label is right."""
    model.eval()
    correct = 0
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        enc = tokenizer([e["text"] for e in batch], padding=True, return_tensors="pt")
        pred = model(**enc).logits.argmax(-1)
        correct += sum(int(p) == e["label"] for p, e in zip(pred, batch))
    return correct / len(examples)


@torch.no_grad()
def facts_predictions(model, tokenizer, prompts: list[str], max_new_tokens: int = 6) -> list[str]:
    """Greedy continuations of ``prompts`` (decoded, special tokens dropped)."""
    model.eval()
    enc = tokenizer(prompts, padding=True, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[:, enc["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def facts_accuracy(model, tokenizer, examples: list[dict]) -> float:
    """Fraction of ``examples`` whose greedy continuation starts with the answer."""
    preds = facts_predictions(model, tokenizer, [e["prompt"] for e in examples])
    return sum(p.startswith(e["answer"]) for p, e in zip(preds, examples)) / len(examples)


# --- training --------------------------------------------------------------


def _batches(n: int, batch_size: int, rng: random.Random):
    """Shuffled index batches for one epoch."""
    order = list(range(n))
    rng.shuffle(order)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def _warmup_linear(optimizer, warmup: int, total: int):
    """Linear warm-up then linear decay to zero.

    A fixed number of warm-up steps, not a fraction of training: post-LN BERT
    stalls on the "negation -> negative" shortcut when the peak rate comes
    too early.
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def portable_tokenizer_config(path: Path) -> None:
    """Make a saved tokenizer load the same under transformers 4 and 5: transformers 5 names its class
    ``TokenizersBackend``, which 4 lacks, and transformers 4 would also return token type ids, which
    the GPT-2 adds to its input (the models never saw any)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_input_names"] = ["input_ids", "attention_mask"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _save(model, tokenizer, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    # Batched calls leave padding switched on in the backend; don't ship that state.
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.save_pretrained(out_dir)
    portable_tokenizer_config(out_dir / "tokenizer_config.json")
    # safetensors writes 0600 files; shipped package data must be world-readable.
    for path in out_dir.iterdir():
        path.chmod(0o644)


def train_sentiment(
    out_dir: Path = HERE / "sentiment",
    epochs: int = 4,
    n_train: int = 10000,
    n_neutral: int = 2000,
    lr: float = 2e-3,
    seed: int = SEED,
) -> float:
    """Train the tiny BERT sentiment classifier; return its test accuracy.

    Besides the labelled reviews it sees reviews with no sentiment word and, for half the reviews,
    a view with some words replaced by [MASK] (see ``_mask_some_words``), so that an input whose
    deciding words are masked, as perturbation methods and the Deletion and Insertion metrics
    make, is read as undecided (0.5) rather than as a class.
    """
    _setup(seed)
    start = time.time()
    train = sentiment_examples(n_train, seed=SEED, split="train")
    test = sentiment_examples(1000, seed=SEED, split="test")
    tokenizer = build_sentiment_tokenizer([e["text"] for e in train])

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
        problem_type="single_label_classification",
    )
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    examples = train + [{"text": text, "label": 0.5, "rationale": []} for text in neutral_reviews(n_neutral, seed=SEED)]
    views = random.Random(seed)

    def loss_of(idx):
        batch = [examples[i] for i in idx]
        enc = tokenizer([e["text"] for e in batch], padding=True, return_tensors="pt", return_offsets_mapping=True)
        ids, p_positive = enc["input_ids"], []
        for row, e in enumerate(batch):
            p_positive.append(_mask_some_words(ids[row], enc, row, e, tokenizer.mask_token_id, views))
        target = torch.tensor(p_positive)
        logits = model(input_ids=ids, attention_mask=enc["attention_mask"]).logits
        return torch.nn.functional.cross_entropy(logits, torch.stack([1 - target, target], 1))

    acc = _fit(
        model, optimizer, 400, len(examples), epochs, seed, loss_of, lambda: sentiment_accuracy(model, tokenizer, test),
        "sentiment", "test acc",
    )  # fmt: skip
    model.eval()
    _save(model, tokenizer, out_dir)
    print(f"sentiment: test accuracy {acc:.4f} on {len(test)}, {time.time() - start:.0f}s, saved to {out_dir}")
    return acc


def _mask_some_words(ids: torch.Tensor, enc, row: int, example: dict, mask_id: int, rng: random.Random) -> float:
    """Replace some words of one encoded review by [MASK] in place; return its p(positive) target.

    Half the reviews are left whole. A quarter lose some filler words and keep their label; a
    quarter lose one or more of their deciding words (and some filler) and become 0.5, since the
    evidence is gone. Reviews without a sentiment word are 0.5 whatever is masked.
    """
    label = float(example["label"])
    draw = rng.random()
    if draw < 0.5:
        return label
    words, offsets = enc.word_ids(row), enc["offset_mapping"][row].tolist()
    deciding = {w for w, (a, b) in zip(words, offsets) if w is not None and _inside(a, b, example["rationale"])}
    filler = sorted({w for w in words if w is not None} - deciding)
    rate = rng.random()
    masked = {w for w in filler if rng.random() < rate}
    if draw >= 0.75 and deciding:
        masked |= {w for w in sorted(deciding) if rng.random() < 0.5} or {rng.choice(sorted(deciding))}
        label = 0.5
    for position, w in enumerate(words):
        if w in masked:
            ids[position] = mask_id
    return label


def _inside(start: int, end: int, spans) -> bool:
    return any(start < b and a < end for a, b in spans)


def _fit(model, optimizer, warmup: int, n_train: int, epochs: int, seed: int, loss_of, evaluate, name, metric) -> float:
    """Shuffled batches of 32, linear warm-up then decay; returns the last epoch's ``evaluate()``."""
    scheduler = _warmup_linear(optimizer, warmup=warmup, total=epochs * ((n_train + 31) // 32))
    rng = random.Random(seed)
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in _batches(n_train, 32, rng):
            loss = loss_of(idx)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
        acc = evaluate()
        print(f"{name} epoch {epoch + 1}: loss {total / n_train:.4f}  {metric} {acc:.4f}", flush=True)
    return acc


def train_facts(out_dir: Path = HERE / "facts", epochs: int = 8, seed: int = SEED) -> float:
    """Train the tiny GPT-2 to memorise the facts corpus; return greedy accuracy."""
    _setup(seed)
    start = time.time()
    n_facts = len(all_facts())
    train = facts_examples(30 * n_facts, seed=SEED, split="train")
    test = facts_examples(n_facts, seed=SEED, split="test")  # every fact once, bare
    tokenizer = build_facts_tokenizer([e["text"] for e in train])
    eos = tokenizer.eos_token_id

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=MAX_LENGTH,
        n_embd=96,
        n_layer=3,
        n_head=4,
        # No dropout: the goal is to memorise a fixed corpus.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        do_sample=False,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    def loss_of(idx):
        # Train on the full sentence plus eos, so generation stops after the answer.
        texts = [train[i]["text"] + EOS for i in idx]
        # Right padding for training; the saved tokenizer keeps left padding.
        enc = tokenizer(texts, padding=True, padding_side="right", return_tensors="pt")
        return model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss

    acc = _fit(
        model, optimizer, 200, len(train), epochs, seed, loss_of, lambda: facts_accuracy(model, tokenizer, test),
        "facts", "greedy acc",
    )  # fmt: skip
    model.eval()
    _save(model, tokenizer, out_dir)
    print(f"facts: greedy accuracy {acc:.4f} on {len(test)} facts, {time.time() - start:.0f}s, saved to {out_dir}")
    return acc


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m interp_text.bundled.train [sentiment|facts|all] [OUT_DIR]"
    which = argv[0] if argv else "all"
    if which not in ("sentiment", "facts", "all") or len(argv) > 2:
        raise SystemExit(f"{usage}, got {' '.join(argv)!r}")
    if len(argv) == 2:
        out = Path(argv[1])
    elif (HERE.parent.parent / "pyproject.toml").exists():  # a source checkout: its bundled models are remade
        out = HERE
    else:  # an installed package: its files are not ours to overwrite
        raise SystemExit(f"{usage}: the bundled models belong to the installed package; pass a folder to write to.")
    if which in ("sentiment", "all"):
        train_sentiment(out / "sentiment")
    if which in ("facts", "all"):
        train_facts(out / "facts")


if __name__ == "__main__":
    main()
