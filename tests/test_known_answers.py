"""On the bundled models the deciding words are known: explanations must find them."""

import numpy as np
import pytest

from interp_text import Saliency, VarGrad, load_default, rationale_average_precision
from interp_text.data import facts_examples, sentiment_examples

METHODS = [(Saliency, {}), (VarGrad, {"n_perturbations": 20})]


def top_hits(expl, rationale) -> bool:
    """Whether the highest-scored prompt element overlaps a deciding word."""
    row = expl.scores[0][: len(expl.elements)]
    s, e = expl.spans[int(np.nanargmax(row))]
    return any(s < re and rs < e for rs, re in rationale)


@pytest.fixture(scope="module")
def sentiment():
    return load_default("sentiment")


@pytest.fixture(scope="module")
def facts():
    return load_default("facts")


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
