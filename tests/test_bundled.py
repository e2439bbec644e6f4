"""Bundled toy models and the synthetic data behind them."""

import re

import pytest
import torch

from interp_text.bundled import default_path, load_default
from interp_text.data import (
    NEGATION_WORDS,
    SENTIMENT_WORDS,
    all_facts,
    facts_examples,
    neutral_reviews,
    sentiment_examples,
)

# --- loading ---------------------------------------------------------------


def test_bundled_folders_are_inside_the_package():
    for name in ("sentiment", "facts"):
        path = default_path(name)
        assert path.is_dir()
        assert (path / "model.safetensors").is_file()
        assert (path / "tokenizer.json").is_file()


def test_unknown_name_raises_with_allowed_names():
    with pytest.raises(ValueError, match=r"'sentiment'.*'facts'"):
        load_default("gpt2")
    with pytest.raises(ValueError, match="unknown bundled model"):
        default_path("nope")
    from interp_text import InterpTextError

    with pytest.raises(InterpTextError) as err:  # a ValueError that names the one meant
        load_default("sentimen")
    assert (
        str(err.value)
        == "unknown bundled model 'sentimen' (did you mean 'sentiment'?); choose one of 'sentiment', 'facts'."
    )


def test_models_load_in_eval_mode(sentiment, facts):
    for model, tokenizer in (sentiment, facts):
        assert not model.training
        assert tokenizer.pad_token_id is not None
    assert sentiment[0].config.id2label == {0: "negative", 1: "positive"}


# --- sentiment model -------------------------------------------------------


@torch.no_grad()
def test_sentiment_accuracy(sentiment):
    model, tokenizer = sentiment
    examples = sentiment_examples(200, seed=0, split="test")
    enc = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt")
    pred = model(**enc).logits.argmax(-1).tolist()
    accuracy = sum(p == e["label"] for p, e in zip(pred, examples)) / len(examples)
    assert accuracy >= 0.95


@torch.no_grad()
def test_sentiment_negation_flips(sentiment):
    model, tokenizer = sentiment
    texts = ["The food was good.", "The food was not good.", "The food was bad.", "The food was not bad."]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    assert model(**enc).logits.argmax(-1).tolist() == [1, 0, 0, 1]


@torch.no_grad()
def test_sentiment_is_undecided_once_its_deciding_words_are_masked(sentiment):
    # Perturbation methods and Deletion/Insertion replace words by [MASK]: with the evidence gone
    # the model must read 0.5, not a class (an earlier model read "positive" at 0.99 here, so
    # Deletion scored about 0.99 on every positive review whatever the explanation's ranking).
    model, tokenizer = sentiment
    examples = sentiment_examples(100, seed=0, split="test")
    enc = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt", return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    deciding = torch.tensor(
        [
            [any(a < t and s < b for s, t in e["rationale"]) and a < b for a, b in row.tolist()]
            for e, row in zip(examples, offsets)
        ]
    )
    words = offsets[..., 1] > offsets[..., 0]
    p_positive = {
        name: model(
            input_ids=ids.masked_fill(where, tokenizer.mask_token_id), attention_mask=enc["attention_mask"]
        ).logits.softmax(-1)[:, 1]
        for name, where in [("deciding words", deciding), ("every word", words), ("nothing", torch.zeros_like(words))]
    }
    assert p_positive["deciding words"].sub(0.5).abs().max() < 0.1
    assert p_positive["every word"].sub(0.5).abs().max() < 0.05
    # The filler still matters little: masking everything else keeps the class.
    kept = model(
        input_ids=ids.masked_fill(words & ~deciding, tokenizer.mask_token_id), attention_mask=enc["attention_mask"]
    )
    labels = torch.tensor([e["label"] for e in examples])
    assert (kept.logits.argmax(-1) == labels).float().mean() >= 0.95
    assert (p_positive["nothing"].round() == labels).all()


@torch.no_grad()
def test_sentiment_reads_reviews_without_a_sentiment_word_as_undecided(sentiment):
    model, tokenizer = sentiment
    texts = neutral_reviews(100, seed=1)
    p_positive = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)[:, 1]
    assert p_positive.sub(0.5).abs().median() < 0.05
    assert p_positive.sub(0.5).abs().max() < 0.25


def test_neutral_reviews_hold_no_sentiment_word_and_are_deterministic():
    texts = neutral_reviews(300, seed=2)
    assert len(set(texts)) == 300 and texts == neutral_reviews(300, seed=2) != neutral_reviews(300, seed=3)
    for text in texts:
        words = set(re.findall(r"\w+", text.lower()))
        assert not words & (set(SENTIMENT_WORDS) | set(NEGATION_WORDS)), text


def test_sentiment_tokenizer_offsets_and_subwords(sentiment):
    _, tokenizer = sentiment
    text = "The staff were not friendly at all."
    enc = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    pieces = [text[s:e] for (s, e), t in zip(enc["offset_mapping"], tokens) if t not in ("[CLS]", "[SEP]")]
    assert "".join(pieces) == text.replace(" ", "")
    # Some deciding words must split into several pieces so subword handling is exercised.
    split = [w for w in SENTIMENT_WORDS if len(tokenizer.tokenize(w)) > 1]
    assert len(split) >= 3


# --- facts model -----------------------------------------------------------


@torch.no_grad()
def test_facts_greedy_accuracy(facts):
    model, tokenizer = facts
    examples = facts_examples(len(all_facts()), seed=0, split="test")
    assert tokenizer.padding_side == "left"  # batched generation continues each prompt
    enc = tokenizer([e["prompt"] for e in examples], padding=True, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    preds = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    accuracy = sum(p.startswith(e["answer"]) for p, e in zip(preds, examples)) / len(examples)
    assert accuracy >= 0.9


def test_facts_generation_config(facts):
    model, tokenizer = facts
    config = model.generation_config
    assert config.pad_token_id == tokenizer.pad_token_id
    assert config.eos_token_id == tokenizer.eos_token_id
    enc = tokenizer("The capital of France is", return_offsets_mapping=True)
    assert enc["offset_mapping"][-1] == (len("The capital of France "), len("The capital of France is"))


# --- data generators -------------------------------------------------------


def test_generators_are_deterministic():
    assert sentiment_examples(50, seed=3) == sentiment_examples(50, seed=3)
    assert sentiment_examples(50, seed=3) != sentiment_examples(50, seed=4)
    assert facts_examples(50, seed=3) == facts_examples(50, seed=3)
    assert facts_examples(50, seed=3) != facts_examples(50, seed=4)


def test_sentiment_train_test_disjoint():
    train = {e["text"] for e in sentiment_examples(3000, split="train")}
    test = {e["text"] for e in sentiment_examples(500, split="test")}
    assert len(train) == 3000 and len(test) == 500
    assert not train & test


def test_sentiment_rationale_decides_label():
    examples = sentiment_examples(500, seed=1, split="train")
    labels = {e["label"] for e in examples}
    assert labels == {0, 1}
    for e in examples:
        text = e["text"]
        words = [text[s:t] for s, t in e["rationale"]]
        for s, t in e["rationale"]:
            # Spans cover whole words.
            assert re.fullmatch(r"\w+", text[s:t])
            assert s == 0 or not text[s - 1].isalnum()
            assert t == len(text) or not text[t].isalnum()
        sentiment_words = [w for w in words if w.lower() in SENTIMENT_WORDS]
        negations = [w for w in words if w in NEGATION_WORDS]
        assert len(sentiment_words) == 1 and len(negations) + 1 == len(words)
        polarity = SENTIMENT_WORDS[sentiment_words[0].lower()]
        assert e["label"] == (1 - polarity if negations else polarity), text


def test_facts_rationale_and_answers():
    # bare prompt -> (answer, deciding words)
    facts = {t.replace("{x}", x): (" " + a, {x, k}) for t, x, k, a in all_facts()}
    test = facts_examples(len(facts), seed=0, split="test")
    assert {e["prompt"] for e in test} == set(facts)  # the test split asks every fact once
    for e in facts_examples(3 * len(facts), seed=0, split="train") + test:
        assert e["text"] == e["prompt"] + e["answer"] + "."
        # Train prompts may carry a neutral prefix sentence before the fact.
        (bare,) = [p for p in facts if e["prompt"].endswith(p)]
        answer, deciding = facts[bare]
        assert e["answer"] == answer
        assert {e["prompt"][s:t] for s, t in e["rationale"]} == deciding


def test_integrated_gradients_warns_when_its_steps_leave_a_large_completeness_gap(facts):
    """10 steps leave 18% of f(x) - f(baseline) on the bundled GPT-2's path; 50 leave 0.03%."""
    import warnings

    from interp_text import IntegratedGradients

    model, tok = facts
    with pytest.warns(UserWarning) as caught:
        few = IntegratedGradients(model, tok).explain("The capital of France is", targets=" Paris")
    gap = float(few.completeness_gap[0])
    (message,) = [str(w.message) for w in caught if "completeness gap" in str(w.message)]
    assert message.startswith(
        f"IntegratedGradients: the completeness gap of text 0's target 'Paris' is {gap:+.3g}, 18% of f(x) - "
        "f(baseline) = 16.6: 10 steps are too few for this model's path; raise n_interpolations (e.g. 50)"
    )
    # The rows it names are the explanation's: output words, whose gap is their tokens' summed.
    with pytest.warns(UserWarning) as caught:
        words = IntegratedGradients(model, tok, n_interpolations=3).explain(
            ["The capital of France is", "The official language of Japan is"], targets=[" Paris.", " Japanese."]
        )
    (message,) = [str(w.message) for w in caught if "completeness gap" in str(w.message)]
    named = re.match(r"IntegratedGradients: the completeness gap of text (\d)'s target '(\w+|\.)' is (\S+),", message)
    text, label, value = int(named[1]), named[2], float(named[3])
    row = words[text].target_labels.index(label)
    assert value == float(f"{words[text].completeness_gap[row]:+.3g}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        many = IntegratedGradients(model, tok, n_interpolations=50).explain(
            "The capital of France is", targets=" Paris"
        )
    assert abs(float(many.completeness_gap[0])) < 0.01
