"""On the bundled models the deciding words are known: explanations must find them."""

import numpy as np
import pytest
import torch
from conftest import cpu_float16_works

from interp_text import Saliency, VarGrad, rationale_average_precision
from interp_text.data import facts_examples, sentiment_examples

METHODS = [(Saliency, {}), (VarGrad, {"n_perturbations": 20})]


def top_hits(expl, rationale) -> bool:
    """Whether the highest-scored prompt element overlaps a deciding word."""
    row = expl.scores[0][: len(expl.elements)]
    s, e = expl.spans[int(np.nanargmax(row))]
    return any(s < re and rs < e for rs, re in rationale)


@pytest.mark.parametrize("cls,kw", METHODS)
def test_clear_review_puts_the_deciding_words_first(cls, kw, sentiment):
    expl = cls(*sentiment, **kw).explain("The food was not good.")
    assert expl.targets[0].label == "negative"
    assert {w for w, _ in expl.top(2)} == {"not", "good"}


@pytest.mark.parametrize("cls,kw", METHODS)
def test_sentiment_rationales_found(cls, kw, sentiment):
    examples = sentiment_examples(30, seed=0, split="test")
    explanations = cls(*sentiment, **kw).explain([x["text"] for x in examples], targets=[x["label"] for x in examples])
    hits = [top_hits(e, x["rationale"]) for e, x in zip(explanations, examples)]
    assert np.mean(hits) >= 0.9


@pytest.mark.parametrize("cls,kw", METHODS)
def test_clear_fact_points_at_the_country(cls, kw, facts):
    expl = cls(*facts, inference_mode="log_softmax", **kw).explain("The capital of France is", targets=" Paris")
    assert expl.top(1)[0][0] == "France"


@pytest.mark.parametrize("cls,kw", METHODS)
def test_facts_rationales_ranked_above_chance(cls, kw, facts):
    examples = facts_examples(30, seed=0, split="test")
    explanations = cls(*facts, inference_mode="log_softmax", **kw).explain(
        [x["prompt"] for x in examples], targets=[x["answer"] for x in examples]
    )
    ap = np.mean([rationale_average_precision(e, x["rationale"]) for e, x in zip(explanations, examples)])
    rng = np.random.default_rng(0)
    chance = []
    for e, x in zip(explanations, examples):
        for _ in range(20):
            e.scores = rng.random(e.scores.shape)
            chance.append(rationale_average_precision(e, x["rationale"]))
    assert ap >= 0.65 and ap > np.mean(chance) + 0.1


@pytest.mark.parametrize("mode", ["log_softmax", "softmax"])
def test_a_confident_tokens_gradient_keeps_float32_precision(mode, facts):
    """The output " Paris." follows "The capital of France is" with p = 0.9992: the gradient of its log-probability
    is the small difference of the target's and the normaliser's. Taken at the logits (one-hot − p)
    it is as precise as plain float32 autograd; the two taken apart in hidden space lost a digit."""
    import copy

    import torch

    model, tok = facts
    prompt = "The capital of France is"
    expl = Saliency(model, tok, granularity="all_tokens", inference_mode=mode, token_reduction="l2").explain(
        prompt, max_new_tokens=2
    )
    assert expl.targets[-1].probability > 0.999
    ids, out = tok(prompt)["input_ids"], expl.output_ids
    wide = copy.deepcopy(model).double()  # the reference, in float64
    x = wide.get_input_embeddings()(torch.tensor(ids + out)).detach().requires_grad_(True)
    lp = wide(inputs_embeds=x[None]).logits[0, len(ids) - 1 : len(ids) - 1 + len(out)].log_softmax(-1)
    for j, y in enumerate(out):
        f = lp[j, y] if mode == "log_softmax" else lp[j, y].exp()
        (g,) = torch.autograd.grad(f, x, retain_graph=True)
        ref = g.norm(dim=-1).numpy()[: len(ids) + j]
        got = expl.scores[j, : len(ids) + j]
        assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1.5e-3  # 6e-3 apart, 4e-4 together


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("mode", ["softmax", "log_softmax"])
def test_a_half_precision_model_reads_its_target_in_float32(dtype, mode, sentiment, facts):
    """The gradient of a confident target's probability is a difference of numbers near 1 (one-hot − p):
    read from half-precision logits it was 50% to 160% off the same weights' exact gradient; from
    logits cast to float32 first, within a few percent (all that half-precision activations allow)."""
    import copy

    if dtype == "float16" and not cpu_float16_works():
        pytest.skip("this torch has no float16 CPU kernels (torch 2.3 has)")

    import torch

    for (model, tok), text, target in (
        (sentiment, "The food was not good.", 0),
        (facts, "The capital of France is", " Paris."),
    ):
        half = copy.deepcopy(model).to(getattr(torch, dtype))
        wide = copy.deepcopy(half).double()  # the same rounded weights, exactly
        a, b = (
            Saliency(m, tok, inference_mode=mode, granularity="all_tokens").explain(text, targets=target)
            for m in (half, wide)
        )
        assert min(t.probability for t in b.targets) > 0.97
        for row_a, row_b in zip(a.scores, b.scores):
            err = np.nanmax(np.abs(row_a - row_b)) / np.nanmax(np.abs(row_b))
            assert err < 0.1, err


@pytest.mark.parametrize("start", [None, 2.0**30])
def test_a_float16_backward_does_not_underflow_to_zero(start, sentiment, facts, monkeypatch):
    """A confident classifier's probability has gradients of 1e-6 and less: in an unscaled float16
    backward whole words came out exactly 0 and others 15x off. Each word within 3% of the same
    weights in float64; a starting scale that overflows falls back to one that fits, to the same numbers."""
    import copy

    import interp_text.engine as engine

    if not cpu_float16_works():
        pytest.skip("this torch has no float16 CPU kernels (torch 2.3 has)")
    if start is not None:
        monkeypatch.setattr(engine, "FLOAT16_GRAD_SCALE", start)
    model, tok = sentiment
    half = copy.deepcopy(model).half()
    with torch.no_grad():  # a more confident classifier (the bundled one's logits doubled): gradients of 1e-6 and less
        half.classifier.weight.mul_(2)
        half.classifier.bias.mul_(2)
    wide = copy.deepcopy(half).double()  # the same rounded weights, exactly
    texts = ["The staff were not friendly.", "I loved the soup and the view."]
    a, b = (Saliency(m, tok, inference_mode="softmax").explain(texts) for m in (half, wide))
    for x, y in zip(a, b):
        assert np.all(np.abs(x.scores - y.scores) <= 0.03 * np.abs(y.scores)), (x.scores, y.scores)
    lm, bpe = facts
    half = copy.deepcopy(lm).half()
    wide = copy.deepcopy(half).double()
    prompts, targets = ["The capital of France is", "The capital of Italy is"], [" Paris.", " Rome."]
    a, b = (
        VarGrad(m, bpe, inference_mode="softmax", n_perturbations=3, targets_per_backward=2).explain(
            prompts, targets=targets
        )
        for m in (half, wide)
    )
    for x, y in zip(a, b):
        err = np.nanmax(np.abs(x.scores - y.scores) / np.abs(y.scores))
        assert err < 0.05, err
    assert engine.FLOAT16_GRAD_SCALE == (start or 2.0**12)  # read, never changed
