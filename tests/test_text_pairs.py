"""Text pairs ({"text": a, "text_pair": b}) reach the model as tokenizer(a, b) gives them to it."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_bart_classifier, tiny_bert, wordpiece_tokenizer
from tokenizers import processors

from interp_text import (
    Deletion,
    Explanation,
    Granularity,
    InputXGradient,
    InterpTextError,
    KernelShap,
    Occlusion,
    Saliency,
)
from interp_text.cli import main as cli_main

PAIR = {"text": "the food was cold", "text_pair": "staff were lovely"}
OTHER = {"text": "not good", "text_pair": "the pasta was great and the service fast"}


def typed_tokenizer(with_types: bool = True):
    """A BERT tokenizer whose second text gets token type 1, as BERT's own does."""
    tok = wordpiece_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.model_input_names = ["input_ids", "token_type_ids", "attention_mask"] if with_types else ["input_ids"]
    return tok


@pytest.fixture(scope="module")
def tok():
    return typed_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_bert(tok, initializer_range=0.3)  # logits well away from 0, token types that matter


def reference_logits(model, tok, pair):
    with torch.no_grad():
        return model(**tok(pair["text"], pair["text_pair"], return_tensors="pt")).logits[0]


def test_the_explained_score_is_the_models_own_on_the_pair(model, tok):
    want = reference_logits(model, tok, PAIR)
    e = Occlusion(model, tok).explain(PAIR, targets="all")
    assert [t.score for t in e.targets] == pytest.approx(want.tolist(), abs=1e-6)
    # The token types matter to this model: read without them, the pair scores otherwise.
    with torch.no_grad():
        untyped = model(tok(PAIR["text"], PAIR["text_pair"], return_tensors="pt")["input_ids"]).logits[0]
    assert not torch.allclose(untyped, want, atol=1e-2)


def test_the_pair_is_one_text_with_the_second_on_its_own_line(model, tok):
    e = Saliency(model, tok).explain(PAIR)
    assert e.text == "the food was cold\nstaff were lovely"
    assert e.elements == ["the", "food", "was", "cold", "staff", "were", "lovely"]
    assert [e.text[a:b] for a, b in e.spans] == e.elements
    assert e.options["text_pair_start"] == len(PAIR["text"]) + 1
    # Sentences never run from one text into the other, even without a full stop.
    sentences = Saliency(model, tok, granularity=Granularity.SENTENCE).explain(PAIR)
    assert sentences.elements == ["the food was cold", "staff were lovely"]


def test_input_x_gradient_of_a_pair_matches_autograd_with_token_types(model, tok):
    e = InputXGradient(model, tok, granularity="all_tokens", token_reduction="sum").explain(PAIR, targets=[0, 2])
    enc = tok(PAIR["text"], PAIR["text_pair"], return_tensors="pt")
    x = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)
    want = []
    for c in (0, 2):
        logit = model(inputs_embeds=x, token_type_ids=enc["token_type_ids"]).logits[0, c]
        (g,) = torch.autograd.grad(logit, x)
        want.append((g * x).sum(-1)[0].detach().numpy())
    # The explainer runs the last layer at [CLS] only (interp_text.readout): the same function, summed
    # in another order, which moves a score by a few float32 steps of the largest one.
    np.testing.assert_allclose(e.scores, np.stack(want), rtol=1e-5, atol=1e-6)


def test_occlusion_of_a_pair_by_hand(model, tok):
    e = Occlusion(model, tok, granularity="token", replacement="mask").explain(PAIR)
    enc = tok(PAIR["text"], PAIR["text_pair"], return_tensors="pt")
    ids, types = enc["input_ids"][0], enc["token_type_ids"]
    clean = reference_logits(model, tok, PAIR)[e.targets[0].index]
    want = []
    for i in range(1, len(ids) - 1):
        if ids[i] == tok.sep_token_id:
            continue
        masked = ids.clone()
        masked[i] = tok.mask_token_id
        with torch.no_grad():
            want.append(clean - model(masked[None], token_type_ids=types).logits[0, e.targets[0].index])
    np.testing.assert_allclose(e.scores[0], torch.stack(want).numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", [Saliency, KernelShap])
def test_pairs_batched_with_plain_texts_equal_each_alone(cls, model, tok):
    texts = [PAIR, "the food was cold staff were lovely", OTHER, PAIR]
    together = cls(model, tok, batch_size=3, seed=1).explain(texts)
    for text, got in zip(texts, together):
        alone = cls(model, tok, batch_size=3, seed=1).explain(text)
        np.testing.assert_allclose(got.scores, alone.scores, rtol=1e-5, atol=1e-7)
        assert got.text == alone.text
    # The same words read as one text are another input.
    assert not np.allclose(together[0].scores, together[1].scores, atol=1e-6)


def test_a_tokenizer_without_token_types_gives_none(tok):
    plain = typed_tokenizer(with_types=False)
    model = tiny_bert(plain, initializer_range=0.3)
    e = Occlusion(model, plain).explain(PAIR, targets="all")
    with torch.no_grad():
        ids = plain(PAIR["text"], PAIR["text_pair"], return_tensors="pt")["input_ids"]
        want = model(ids).logits[0]
    assert [t.score for t in e.targets] == pytest.approx(want.tolist(), abs=1e-6)


def test_metrics_read_a_saved_pair_as_a_pair(model, tok, tmp_path):
    e = Occlusion(model, tok).explain(PAIR)
    deletion = Deletion(model, tok)
    before = deletion.evaluate(e)
    loaded = Explanation.load(e.save(tmp_path / "pair.json"))
    assert loaded == e
    assert deletion.evaluate(loaded) == before
    # Read as one text, the same string is another input: its probability is not the explained one.
    flat = Explanation.from_dict({**e.to_dict(), "options": {}})
    with pytest.raises(InterpTextError, match=r"gives target 'LABEL_1' the probability .* but this model gives its"):
        deletion.evaluate(flat)


@pytest.mark.parametrize(
    "texts,message",
    [
        (
            {"text": "a", "pair": "b"},
            r"text 0 is a dict with keys \['pair', 'text'\] \('pair' is not read; 'text_pair' is missing\); a text pair is",
        ),
        (
            [PAIR, {"text": "a"}],
            r"text 1 is a dict with keys \['text'\] \('text_pair' is missing\); a text pair is written",
        ),
        ({"text": "good", "text_pair": "  "}, r'the "text_pair" of text 0 must be a non-empty string'),
        ({"text": 3, "text_pair": "b"}, r'the "text" of text 0 must be a non-empty string; got 3'),
    ],
)
def test_malformed_pairs_are_refused(texts, message, model, tok):
    with pytest.raises(InterpTextError, match=message):
        Saliency(model, tok).explain(texts)


def test_a_generator_refuses_a_pair(gpt2, bpe):
    with pytest.raises(InterpTextError, match="text 0 is a text pair; pairs are read by classifiers"):
        Occlusion(gpt2, bpe).explain(PAIR)


def test_the_tokenizer_is_left_as_it_was(model):
    tok = typed_tokenizer()
    tok.backend_tokenizer.enable_truncation(max_length=5)
    Saliency(model, tok).explain(PAIR)  # 11 tokens: explained whole
    assert tok.backend_tokenizer.truncation["max_length"] == 5


def test_cli_reads_text_pairs(tmp_path, capsys):
    assert cli_main(["explain", "the food was great", "--text-pair", "staff were rude", "--method", "occlusion"]) == 0
    out = capsys.readouterr().out
    assert "great[" in out and "\nstaff[" in out  # the second text on its own line
    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps({"text": "the food was great", "text_pair": "staff were rude"}) + "\n")
    result = tmp_path / "out.jsonl"
    assert cli_main(["explain", "--input", str(records), "--output", str(result), "--method", "occlusion"]) == 0
    line = json.loads(result.read_text())
    assert line["elements"] == ["the", "food", "was", "great", "staff", "were", "rude"]
    capsys.readouterr()
    assert cli_main(["explain", "--input", str(records), "--output", str(result), "--text-pair", "x"]) != 0
    assert "--text-pair goes with one text" in capsys.readouterr().err


@pytest.mark.parametrize("granularity", [Granularity.TOKEN, Granularity.WORD, Granularity.SENTENCE])
def test_the_spaces_that_end_a_first_text_stay_in_it(granularity):
    """Byte-level BPE keeps a premise's trailing space and line break as tokens; they belong to the
    premise, never to the hypothesis's first word across the separators."""
    from conftest import bpe_tokenizer

    from interp_text.granularity import group_tokens
    from interp_text.inputs import TextPair, tokenize_pairs

    tok = bpe_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A <|endoftext|>",
        pair="<s> $A <|endoftext|> <|endoftext|> $B <|endoftext|>",
        special_tokens=[("<s>", tok.bos_token_id), ("<|endoftext|>", tok.eos_token_id)],
    )
    pair = TextPair("the food was cold \n", "staff were lovely")
    ids, offsets, special, strings, _ = tokenize_pairs(tok, [pair])[0]
    assert any(not special[i] and not pair[a:b].strip() for i, (a, b) in enumerate(offsets))  # a space token
    elements, spans, mapping = group_tokens(pair, offsets, special, granularity, strings)
    for (a, _), m, flag in zip(offsets, mapping, special):
        if not flag:
            assert (a >= pair.second_start) == (spans[m][0] >= pair.second_start)

    model = tiny_bert(tok, initializer_range=0.3)
    e = Occlusion(model, tok, replacement="bos").explain({"text": pair.first, "text_pair": pair.second})
    start = pair.second_start
    staff = [i for i, (a, b) in enumerate(offsets) if start <= a < start + len("staff") and not special[i]]
    assert "".join(strings[i] for i in staff).lstrip("Ġ") == "staff"  # its own tokens, no space before it
    masked = torch.tensor(ids)
    masked[staff] = tok.bos_token_id
    c = e.targets[0].index
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0, c] - model(masked[None]).logits[0, c]
    assert e.scores[0, e.elements.index("staff")] == pytest.approx(want.item(), abs=1e-5)


def test_zero_shot_labels_are_explained_as_the_pipeline_scores_them(wp_tokenizer):
    """The zero-shot pipeline's score of a label is the softmax, over labels, of each (text, hypothesis)
    pair's entailment logit: the explained f(x) of those pairs."""
    from transformers import pipeline

    names = {0: "contradiction", 1: "neutral", 2: "entailment"}
    model = tiny_bart_classifier(wp_tokenizer, id2label=names, label2id={v: k for k, v in names.items()})
    pipe = pipeline("zero-shot-classification", model=model, tokenizer=wp_tokenizer)
    text, labels = "the food was cold but the staff were lovely", ["food", "service", "movie"]
    want = pipe(text, candidate_labels=labels)
    pairs = [{"text": text, "text_pair": f"This example is {label}."} for label in labels]
    logits = torch.tensor([e.targets[0].score for e in Occlusion(pipe).explain(pairs, targets="entailment")])
    got = dict(zip(labels, logits.softmax(0).tolist()))
    assert [got[label] for label in want["labels"]] == pytest.approx(want["scores"], abs=1e-5)


def test_a_wrapped_or_compiled_model_still_gets_the_token_types(model, tok):
    """A PEFT model's forward takes token_type_ids by **kwargs, a compiled one's by *args, **kwargs:
    the question is asked of the model they run."""

    class PeftLikeForSequenceClassification(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def get_base_model(self):
            return self.inner

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs)

    want = reference_logits(model, tok, PAIR)
    compiled = [torch.compile(model, backend="eager")] if hasattr(torch.compiler, "is_compiling") else []
    for wrapped in (PeftLikeForSequenceClassification(model), *compiled):  # compiling needs torch 2.3
        e = Occlusion(wrapped, tok).explain(PAIR, targets="all")
        assert [t.score for t in e.targets] == pytest.approx(want.tolist(), abs=1e-6)
