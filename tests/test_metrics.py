"""Faithfulness metrics (Deletion, Insertion, rationale AP) and the method comparison."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from conftest import needs_compiler, tiny_bert
from test_perturbation import AdditiveConfig, AdditiveForSequenceClassification, contributions

from interp_text import Explanation, InterpTextError, Saliency, Target
from interp_text.comparison import ALL_METHODS, PERTURBATION_METHODS, compare, compare_default, format_table
from interp_text.metrics import (
    Deletion,
    Insertion,
    area_under_curve,
    evaluate_together,
    rationale_average_precision,
)
from interp_text.perturbation import KernelShap, Occlusion

TEXT = "the food was cold but the staff were lovely and the pasta was good"


@pytest.fixture(scope="module")
def additive(wp_tokenizer):
    # Small weights keep the probability off 0 and 1, so every step of a curve moves it.
    return AdditiveForSequenceClassification(AdditiveConfig(vocab_size=len(wp_tokenizer), scale=0.3))


def with_scores(expl, scores):
    return dataclasses.replace(expl, scores=np.asarray(scores, dtype=np.float64).reshape(expl.scores.shape))


# ---------------------------------------------------------------- deletion / insertion
def test_best_random_worst_in_that_order(additive, wp_tokenizer):
    best = Occlusion(additive, wp_tokenizer).explain(TEXT, targets=1)  # the exact contributions
    worst = with_scores(best, -best.scores)
    random = with_scores(best, np.random.default_rng(0).permutation(best.scores[0]))
    d = Deletion(additive, wp_tokenizer).evaluate([best, random, worst])
    i = Insertion(additive, wp_tokenizer).evaluate([best, random, worst])
    assert d[0] < d[1] < d[2]
    assert i[0] > i[1] > i[2]
    assert Deletion(additive, wp_tokenizer).evaluate(best) == d[0]


def test_curves_in_closed_form(additive, wp_tokenizer):
    # p_k = σ(L − Σ of the k largest contributions) for Deletion, σ(L − Σ of the n − k smallest) for Insertion.
    a = contributions(additive, wp_tokenizer, TEXT, wp_tokenizer.mask_token_id)
    expl = with_scores(Occlusion(additive, wp_tokenizer).explain(TEXT, targets=1), a)
    logit = expl.targets[0].score
    removed = np.concatenate([[0], np.cumsum(np.sort(a)[::-1])])  # (n + 1,)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    deletion = Deletion(additive, wp_tokenizer).curves(expl)  # (1, n + 1)
    np.testing.assert_allclose(deletion[0], sigmoid(logit - removed), rtol=1e-5)
    insertion = Insertion(additive, wp_tokenizer).curves(expl)
    np.testing.assert_allclose(insertion[0], sigmoid(logit - a.sum() + removed), rtol=1e-5)
    n = len(a)
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 1 (which torch < 2.4 needs) has trapz only
    np.testing.assert_allclose(area_under_curve(deletion)[0], trapezoid(deletion[0], dx=1 / n))
    assert Deletion(additive, wp_tokenizer).evaluate(expl) == pytest.approx(area_under_curve(deletion)[0])


def test_batched_equals_alone(bert, wp_tokenizer):
    texts = ["The food was cold but the staff were lovely.", "Not good.", "Not bad."]
    expls = Occlusion(bert, wp_tokenizer).explain(texts, targets=[0, "all", 1])
    for metric in (Deletion, Insertion):
        together = metric(bert, wp_tokenizer, batch_size=5).curves(expls)
        for e, c in zip(expls, together):
            assert c.shape == (len(e.targets), len(e.elements) + 1)
            np.testing.assert_allclose(c, metric(bert, wp_tokenizer).curves(e), rtol=1e-5)
            np.testing.assert_allclose(
                c[:, 0 if metric is Deletion else -1], [t.probability for t in e.targets], rtol=1e-5
            )


class Rows:
    """Counts the rows every forward of ``model`` runs."""

    def __init__(self, model):
        self.rows = 0
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        x = kwargs.get("inputs_embeds")
        self.rows += (x if x is not None else kwargs["input_ids"]).shape[0]


def test_metrics_evaluated_together_equal_each_alone_and_share_their_rows(bert, wp_tokenizer):
    texts = ["The food was cold but the staff were lovely.", "Not good.", "Not bad at all, really."]
    expls = Occlusion(bert, wp_tokenizer).explain(texts, targets=[0, "all", 1])
    expls += Saliency(bert, wp_tokenizer).explain(texts, targets=[0, "all", 1])
    d, i = Deletion(bert, wp_tokenizer, steps=4), Insertion(bert, wp_tokenizer)
    count = Rows(bert)
    alone = [d.evaluate(expls), i.evaluate(expls)]
    rows_alone, count.rows = count.rows, 0
    together = evaluate_together([d, i], expls)
    count.handle.remove()
    assert len(together[0]) == len(together[1]) == 6
    np.testing.assert_allclose(together, alone, rtol=1e-6)
    # Shared: each text's unmasked and fully masked rows (in both metrics, both methods), and more.
    assert count.rows <= rows_alone - 3 * 3
    (one,) = evaluate_together([i], expls[4])  # one explanation: a float per metric, as evaluate gives
    assert one == pytest.approx(alone[1][4], rel=1e-6) and isinstance(one, float)
    with pytest.raises(InterpTextError) as err:
        evaluate_together([d, Insertion(bert, wp_tokenizer, replacement="pad")], expls)
    assert str(err.value) == (
        "these metrics read the model differently (another model, tokenizer, replacement, batch size, device or "
        "task); evaluate them one by one."
    )


def test_generation_mean_over_output_elements(gpt2, bpe):
    expl = KernelShap(gpt2, bpe, n_samples=20).explain("The capital of France is", targets=" Paris is nice")
    curves = Deletion(gpt2, bpe).curves(expl)
    assert curves.shape == (3, 6)
    np.testing.assert_allclose(curves[:, 0], [t.probability for t in expl.targets], rtol=1e-4)
    assert Deletion(gpt2, bpe).evaluate(expl) == pytest.approx(area_under_curve(curves).mean())
    assert 0 < Insertion(gpt2, bpe).evaluate(expl) < 1


def test_metric_errors(bert, gpt2, bpe, wp_tokenizer):
    expl = Occlusion(bert, wp_tokenizer).explain("Not good.")
    with pytest.raises(InterpTextError, match="explanation 0 is of a classification model but this model is causal_lm"):
        Deletion(gpt2, bpe).evaluate(expl)
    with pytest.raises(InterpTextError, match="got no explanations"):
        Insertion(bert, wp_tokenizer).evaluate([])
    for wrong, name in ((None, "NoneType"), ("Not good.", "str"), (3, "int")):
        with pytest.raises(InterpTextError) as err:
            Deletion(bert, wp_tokenizer).evaluate(wrong)
        assert str(err.value) == (
            f"expected an Explanation or a list of them, got {name}; pass what explain() returned."
        )
    assert Deletion(bert, wp_tokenizer).evaluate(iter([expl])) == Deletion(bert, wp_tokenizer).evaluate([expl])
    with pytest.raises(InterpTextError, match="replacement='mask': the tokenizer has no mask token"):
        Deletion(gpt2, bpe, replacement="mask")
    own = "its own options are ['batch_size', 'device', 'progress', 'replacement', 'steps', 'task']"
    with pytest.raises(InterpTextError) as err:
        Insertion(bert, wp_tokenizer, n_samples=3)
    assert str(err.value) == f"Insertion got unknown option(s) ['n_samples']; {own}."
    with pytest.raises(InterpTextError) as err:  # an explainer's option: the explanation brings its own
        Deletion(bert, wp_tokenizer, granularity="sentence")
    assert str(err.value) == (
        f"Deletion got unknown option(s) ['granularity']; {own}. Each explanation is scored by the elements it "
        "was explained at: explain at the granularity you want scored."
    )


@pytest.mark.parametrize("metric", [Deletion, Insertion])
def test_an_explanation_of_another_model_is_refused(metric, bert, wp_tokenizer):
    """Words come from a regex, so another model's explanation has the same elements: its labels or
    its probability on the unmasked input give it away."""
    other = tiny_bert(wp_tokenizer, initializer_range=0.4)  # same vocabulary and classes, other weights
    text = "the food was not good but the staff were lovely"
    expl = Occlusion(other, wp_tokenizer).explain(text, targets=1)
    with pytest.raises(InterpTextError, match=r"explanation 0 explains class 1 as 'LABEL_1', which this model calls "):
        metric(bert, wp_tokenizer).evaluate(expl)
    relabelled = dataclasses.replace(expl, targets=[dataclasses.replace(expl.targets[0], label="neutral")])
    with pytest.raises(InterpTextError, match=r"gives target 'neutral' the probability .*: it was made with another"):
        metric(bert, wp_tokenizer).evaluate(relabelled)
    own = Occlusion(bert, wp_tokenizer).explain(text, targets=1)
    assert 0 <= metric(bert, wp_tokenizer).evaluate(own) <= 1


def test_an_explanation_whose_logits_or_classes_are_another_models_is_refused(bert, wp_tokenizer):
    """Two models can agree on the probabilities (two confident ones) and not on the logits; a class
    this model does not have is named as such."""
    expl = Occlusion(bert, wp_tokenizer).explain("The food was not good.", targets="all")
    assert Deletion(bert, wp_tokenizer).evaluate(expl) > 0  # its own
    other = copy.deepcopy(expl)
    other.targets[1].score += 1.0  # softmax-invariant: every logit moved by 1 gives the same probabilities
    with pytest.raises(InterpTextError) as err:
        Insertion(bert, wp_tokenizer).evaluate(other)
    assert str(err.value) == (
        f"explanation 0 gives target {expl.targets[1].label!r} the logit {other.targets[1].score:.4g}, but this model "
        f"gives its input {expl.targets[1].score:.4g}: it was made with another model (or settings); evaluate with "
        "the model that was explained."
    )
    softmax = Occlusion(bert, wp_tokenizer, inference_mode="softmax").explain("The food was not good.")
    assert Deletion(bert, wp_tokenizer).evaluate(softmax) > 0  # its score is a probability: checked as one
    two = tiny_bert(wp_tokenizer, num_labels=2)
    with pytest.raises(InterpTextError) as err:
        Deletion(two, wp_tokenizer).evaluate(expl)
    assert str(err.value) == (
        f"explanation 0 explains class 2 ({expl.targets[2].label!r}), and this model has 2 classes (0..1): it was "
        "made with another model; evaluate with the one explained."
    )


@pytest.mark.parametrize("metric", [Deletion, Insertion])
def test_another_generators_explanation_is_refused_at_small_probabilities(metric, gpt2, bpe):
    """A forced answer's probability is often far below 0.05, where any absolute tolerance lets
    another model's explanation pass: the probabilities are compared by their ratio there."""
    from transformers import GPT2LMHeadModel

    config = copy.deepcopy(gpt2.config)  # (a dataclass only from transformers 5 on)
    config.initializer_range = 0.1
    p_own = Occlusion(gpt2, bpe).explain("the food was", targets=" cold").targets[0].probability
    for seed in range(5, 25):  # the first other model whose probability is small and off by over e^0.3
        torch.manual_seed(seed)  # (seeded weights differ between transformers versions)
        other = GPT2LMHeadModel(config).eval()
        expl = Occlusion(other, bpe).explain("the food was", targets=" cold")
        p = expl.targets[0].probability
        if max(p, p_own) < 0.05 and abs(np.log(p / p_own)) > 0.3:
            break
    else:
        pytest.fail("no seed gave another model with a small, different probability")
    with pytest.raises(InterpTextError, match=r"gives target 'cold' the probability .*: it was made with another"):
        metric(gpt2, bpe).evaluate(expl)
    assert 0 <= metric(other, bpe).evaluate(expl) <= 1


def test_elements_of_another_tokenizer_are_shown_where_they_differ(bert, wp_tokenizer):
    from interp_text import load_default

    model, tok = load_default("sentiment")
    expl = Occlusion(model, tok, granularity="token").explain("the food was not good but the staff")
    with pytest.raises(
        InterpTextError,
        match=r"has elements \['b', 'u', 't', 'the', 'staff'\] from element 5 on, but this tokenizer gives "
        r"\['but', 'the', 'staff'\]",
    ):
        Deletion(bert, wp_tokenizer).evaluate(expl)


@pytest.mark.parametrize(
    "config",
    [
        {"num_labels": 1},
        {"num_labels": 1, "problem_type": "regression"},
        {"num_labels": 2, "problem_type": "regression"},
    ],
)
@pytest.mark.parametrize("metric", [Deletion, Insertion])
def test_regression_models_are_refused(wp_tokenizer, metric, config):
    # Softmax over a regression model's one output is 1 whatever the input: the curve would be flat at 1.
    model = tiny_bert(wp_tokenizer, **config)
    n, problem = config["num_labels"], config.get("problem_type")
    hint = (
        " If its one output is a binary classifier's logit, set model.config.problem_type = "
        "'multi_label_classification' so that it is read as a sigmoid probability."
        if n == 1
        else ""
    )
    message = (
        f"{metric.__name__} measures the probability of the explained class, and a regression model has none: "
        f"BertForSequenceClassification has config.num_labels={n} and config.problem_type={problem!r}, so its "
        f"outputs are scores, not class probabilities.{hint}"
    )
    with pytest.raises(InterpTextError) as err:
        metric(model, wp_tokenizer)
    assert str(err.value) == message


def test_one_output_multi_label_classifier_is_a_sigmoid(wp_tokenizer):
    model = tiny_bert(wp_tokenizer, num_labels=1, problem_type="multi_label_classification")
    expl = Occlusion(model, wp_tokenizer).explain("Not good.")
    curve = Deletion(model, wp_tokenizer).curves(expl)  # (1, n + 1)
    assert curve.shape == (1, 4)
    np.testing.assert_allclose(curve[0, 0], 1 / (1 + np.exp(-expl.targets[0].score)), rtol=1e-5)
    assert abs(curve[0, 0] - 0.5) < 0.5  # a sigmoid, not a softmax over one logit (always 1)


# ---------------------------------------------------------------- rationale AP
def manual(scores, text="a bb ccc dd e"):
    spans, start = [], 0
    for word in text.split():
        start = text.index(word, start)
        spans.append((start, start + len(word)))
        start += len(word)
    return Explanation(
        text=text,
        elements=text.split(),
        spans=spans,
        scores=np.array([scores], dtype=float),
        targets=[Target("positive", 1)],
        method="manual",
    )


def test_rationale_average_precision():
    # Elements a bb ccc dd e; rationale: "bb" (2, 4) and a span inside "dd" (9, 10).
    rationale = [(2, 4), (9, 10)]
    assert rationale_average_precision(manual([0.1, 0.9, 0.2, 0.8, 0.3]), rationale) == 1.0
    # Ranking a, ccc, dd*, e, bb*: positives at ranks 3 and 5 -> (1/3 + 2/5) / 2.
    ap = rationale_average_precision(manual([0.9, 0.1, 0.8, 0.5, 0.3]), rationale)
    assert ap == pytest.approx((1 / 3 + 2 / 5) / 2)
    # Ties are broken against the explanation: a constant one ranks the positives last.
    assert rationale_average_precision(manual([0.0] * 5), rationale) == pytest.approx((1 / 4 + 2 / 5) / 2)
    # NaN ranks last; |score| on request; the row by label.
    assert rationale_average_precision(manual([0.5, np.nan, 0.1, 0.2, 0.3]), [(2, 4)]) == pytest.approx(1 / 5)
    assert rationale_average_precision(manual([0.1, -0.9, 0, -0.8, 0.2]), rationale, absolute=True) == 1.0
    assert rationale_average_precision(manual([0.1, 0.9, 0, 0.8, 0.2]), rationale, target="positive") == 1.0
    with pytest.raises(InterpTextError, match="no element of the text overlaps the rationale spans"):
        rationale_average_precision(manual([0.1] * 5), [(1, 2)])


@pytest.mark.parametrize(
    "spans,message",
    [
        # A zero-length span inside "ccc" (5, 8) used to make "ccc" relevant.
        (
            [(6, 6)],
            "rationale_spans[0] = (6, 6) is empty; a span is (start, end) with start < end, end exclusive: "
            "(6, 7) covers the character at 6.",
        ),
        (
            [(2, 4), (8, 5)],
            "rationale_spans[1] = (8, 5) is reversed; a span is (start, end) with start < end: pass (5, 8).",
        ),
        (
            [(-5, 3)],
            "rationale_spans[0] = (-5, 3) starts before the text; a span is (start, end) character positions into "
            "the text, from 0.",
        ),
        ((2, 4), "rationale_spans = (2, 4) is one (start, end) pair; pass a list of (start, end) pairs: [(2, 4)]."),
        ([2, 4], "rationale_spans = [2, 4] is one (start, end) pair; pass a list of (start, end) pairs: [(2, 4)]."),
        (
            [(2, 4, 6)],
            "rationale_spans[0] = (2, 4, 6) is not a (start, end) pair of ints; pass a list of (start, end) "
            "character spans into the text.",
        ),
        (
            [(2.5, 4)],
            "rationale_spans[0] = (2.5, 4) is not a (start, end) pair of ints; pass a list of (start, end) "
            "character spans into the text.",
        ),
        (7, "rationale_spans = 7 is not a list; pass a list of (start, end) pairs."),
        ("2, 4", "rationale_spans = '2, 4' is not a list; pass a list of (start, end) pairs."),
    ],
)
def test_rationale_spans_are_checked(spans, message):
    with pytest.raises(InterpTextError) as err:
        rationale_average_precision(manual([0.1, 0.9, 0.2, 0.8, 0.3]), spans)
    assert str(err.value) == message


def test_rationale_spans_may_be_an_array():
    spans = np.array([[2, 4], [9, 10]])
    assert rationale_average_precision(manual([0.1, 0.9, 0.2, 0.8, 0.3]), spans) == 1.0


# ---------------------------------------------------------------- compare
def test_compare_and_table(bert, wp_tokenizer):
    texts = ["The food was not good.", "I loved the pasta."]
    rationales = [[(13, 21)], [(2, 7)]]
    rows = compare(
        bert,
        wp_tokenizer,
        texts,
        methods=["occlusion", "Saliency", KernelShap],
        rationales=rationales,
        method_options={"kernelshap": {"n_samples": 10}},
        seed=1,
    )
    assert [r["method"] for r in rows] == ["Occlusion", "Saliency", "KernelShap"]
    one = compare(bert, wp_tokenizer, texts, methods="occlusion", rationales=rationales)  # one name, not a list
    assert [r["method"] for r in one] == ["Occlusion"] and one[0]["deletion"] == pytest.approx(rows[0]["deletion"])
    with pytest.raises(InterpTextError) as err:  # a span of a space only: no element overlaps it, found late
        compare(bert, wp_tokenizer, texts, methods="occlusion", rationales=[[(13, 21)], [(7, 8)]])
    assert str(err.value).startswith(
        "rationales[1], for text 1 ('I loved the pasta.'): no element of the text overlaps the rationale spans [(7, 8)]"
    )
    for r in rows:
        assert 0 <= r["deletion"] <= 1 and 0 <= r["insertion"] <= 1 and 0 < r["rationale_ap"] <= 1
        assert r["seconds"] > 0 and r["n_texts"] == 2
    # Every method's curves are scored together: each row as its method's explanations alone give it.
    for r, method in zip(rows, [Occlusion(bert, wp_tokenizer), Saliency(bert, wp_tokenizer)]):
        expls = method.explain(texts)
        assert r["deletion"] == pytest.approx(np.mean(Deletion(bert, wp_tokenizer).evaluate(expls)), rel=1e-6)
        assert r["insertion"] == pytest.approx(np.mean(Insertion(bert, wp_tokenizer).evaluate(expls)), rel=1e-6)
    table = format_table(rows).splitlines()
    assert len(table) == 5 and "rationale AP" in table[0] and table[2].startswith("Occlusion")
    assert set(PERTURBATION_METHODS) == {"occlusion", "lime", "kernelshap", "sobol"}
    with pytest.raises(InterpTextError, match="method 'shapley' is not known"):
        compare(bert, wp_tokenizer, texts, methods=["shapley"])
    with pytest.raises(InterpTextError, match="got 1 rationales for 2 texts"):
        compare(bert, wp_tokenizer, texts, rationales=rationales[:1])


def test_compare_checks_names_and_spans_before_explaining(bert, wp_tokenizer, monkeypatch):
    def explain(*args, **kwargs):
        raise AssertionError("explained before the arguments were checked")

    monkeypatch.setattr(Occlusion, "explain", explain)
    texts = ["The food was not good.", "I loved the pasta."]
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, texts, methods=["occlusion", "shapley"])
    assert str(err.value) == f"method 'shapley' is not known; use a class or one of {sorted(ALL_METHODS)}."
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, texts, methods=["occlusion"], rationales=[[(13, 21)], (2, 7)])
    assert str(err.value) == (
        "rationales[1] = (2, 7) is one (start, end) pair; rationales takes one list of spans per text: "
        "rationales=[[(2, 7)], ...] (2 texts here)."
    )
    with pytest.raises(InterpTextError) as err:  # one text, its spans not in a list of their own
        compare(bert, wp_tokenizer, "The food was good.", methods=["occlusion"], rationales=[(13, 17)])
    assert str(err.value) == (
        "rationales[0] = (13, 17) is one (start, end) pair; rationales takes one list of spans per text: "
        "rationales=[[(13, 17)], ...] (1 text here)."
    )
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, texts, methods=["occlusion"], rationales=[[(13, 21)], [(7, 7)]])
    assert str(err.value).startswith("rationales[1][0] = (7, 7) is empty;")
    with pytest.raises(InterpTextError) as err:  # past the end of its text (18 characters)
        compare(bert, wp_tokenizer, texts, methods=["occlusion"], rationales=[[(13, 21)], [(12, 19)]])
    assert str(err.value) == (
        "rationales[1] has (12, 19), which ends past the end of text 1 (18 characters: 'I loved the pasta.'); "
        "pass (start, end) character spans into that text."
    )
    # Options for a method passed built, or not passed at all, would be ignored: refused instead.
    built = KernelShap(bert, wp_tokenizer)
    with pytest.raises(InterpTextError, match=r"method_options for \['kernelshap'\], which `methods` does not name"):
        compare(bert, wp_tokenizer, texts, methods=[built], method_options={"kernelshap": {"n_samples": 9}})
    # Every explainer is built before any runs: a bad option of the last fails before the first explains.
    with pytest.raises(InterpTextError, match=r"n_samples=0 must be an integer >= 1"):
        compare(
            bert,
            wp_tokenizer,
            texts,
            methods=["occlusion", "kernelshap"],
            method_options={"kernelshap": {"n_samples": 0}},
        )


def test_compare_names_the_method_that_fails_and_tells_instances_apart(bert, wp_tokenizer):
    texts = ["the food was not good but the staff were lovely and kind"]  # 12 words
    with pytest.raises(InterpTextError, match=r"^KernelShap, in the comparison: text 0 has 12 elements"):
        compare(bert, wp_tokenizer, texts, methods=["occlusion", KernelShap(bert, wp_tokenizer, n_samples=4)])
    rows = compare(bert, wp_tokenizer, texts, methods=[Occlusion(bert, wp_tokenizer), Occlusion(bert, wp_tokenizer)])
    assert [r["method"] for r in rows] == ["Occlusion (1)", "Occlusion (2)"]
    assert rows[0]["deletion"] == rows[1]["deletion"]
    # An explainer built on other weights is refused before anything runs.
    other = tiny_bert(wp_tokenizer, num_hidden_layers=1)
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, texts, methods=[Occlusion(bert, wp_tokenizer), Occlusion(other, wp_tokenizer)])
    assert str(err.value) == (
        "methods[1] (Occlusion) was built on another model than the one compared; build it on this model, or pass "
        "its name and let compare() build it."
    )

    class Wrong(Occlusion):  # explanations that record other probabilities than the model gives
        def explain(self, texts, targets=None, **kwargs):
            out = super().explain(texts, targets, **kwargs)
            for e in out:
                e.targets[0].probability = 0.999
            return out

    with pytest.raises(InterpTextError) as err:  # the metrics' error names the method and its own text index
        compare(bert, wp_tokenizer, texts * 2, methods=[Occlusion(bert, wp_tokenizer), Wrong(bert, wp_tokenizer)])
    assert str(err.value).startswith(
        "Wrong's explanations, scored in the comparison: explanation 0 gives target 'positive' the probability 0.999"
    )


def test_compare_default_on_the_bundled_model():
    from interp_text import bundled

    if not (bundled.default_path("sentiment") / "model.safetensors").exists():
        pytest.skip("the bundled sentiment model is not built")
    rows = compare_default(n_texts=3, methods=["occlusion", "saliency"])
    assert [r["method"] for r in rows] == ["Occlusion", "Saliency"] and rows[0]["n_texts"] == 3
    for r in rows:
        assert 0 <= r["deletion"] <= 1 and 0 <= r["insertion"] <= 1 and 0 < r["rationale_ap"] <= 1
    # The facts prompts: Occlusion of the answer's first word ranks the prompt's deciding words first.
    from interp_text.data import facts_examples

    ex = facts_examples(4, split="test")
    lm, tok = bundled.load_default("facts")
    expls = Occlusion(lm, tok).explain([e["prompt"] for e in ex], targets=[e["answer"] for e in ex])
    want = np.mean([rationale_average_precision(e, x["rationale"]) for e, x in zip(expls, ex)])
    (row,) = compare_default(n_texts=4, methods=["occlusion"], data="facts")
    assert row["rationale_ap"] == pytest.approx(want) and row["rationale_ap"] > 0.5
    with pytest.raises(InterpTextError, match=r"^data='news' is not a bundled data set; pass 'sentiment' or 'facts'.$"):
        compare_default(data="news")


def test_compare_default_gives_integrated_gradients_enough_steps_for_the_bundled_models(monkeypatch):
    """At its default 10 steps IntegratedGradients leaves 16-18% of some facts answers unexplained and
    warns: the bundled comparison, a first command to run, took 50 and printed no warning."""
    import warnings

    from interp_text.comparison import BUNDLED_IG_STEPS

    assert BUNDLED_IG_STEPS == 50
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_default(n_texts=20, methods=["integratedgradients"], data="facts")
    with pytest.warns(UserWarning, match=r"10 steps are too few for this model's path"):  # the user's choice stands
        compare_default(
            n_texts=20,
            methods="IntegratedGradients",
            data="facts",
            method_options={"IntegratedGradients": {"n_interpolations": 10}},
        )
    # Which count each call runs with: the steps the explainer was built with.
    from interp_text import IntegratedGradients

    built = []
    real_init = IntegratedGradients.__init__

    def record(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        built.append(self.n_interpolations)

    calls = [
        (dict(methods=["integratedgradients"], n_interpolations=20), 20),  # given to every method: it stands
        (dict(methods={"IntegratedGradients"}, method_options={"integratedgradients": {"baseline": "pad"}}), 50),
        (dict(methods=(m for m in ["Integrated_Gradients"])), 50),
        (dict(methods=[IntegratedGradients], method_options={IntegratedGradients: {"n_interpolations": 30}}), 30),
    ]
    monkeypatch.setattr(IntegratedGradients, "__init__", record)
    for kwargs, steps in calls:
        built.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compare_default(n_texts=2, data="facts", **kwargs)
        assert set(built) == {steps}, (kwargs, built)


def test_compare_generates_each_output_once_for_every_method(gpt2, bpe, monkeypatch):
    from interp_text import Saliency

    prompts = ["The capital of France is", "The food was"]
    expected = [e.output_ids for e in Saliency(gpt2, bpe).explain(prompts, max_new_tokens=3)]
    seen = []
    for cls in (Occlusion, Saliency):
        explain = cls.explain

        def spy(self, texts, targets=None, _explain=explain, **kwargs):
            seen.append((targets, kwargs))
            return _explain(self, texts, targets, **kwargs)

        monkeypatch.setattr(cls, "explain", spy)
    rows = compare(gpt2, bpe, prompts, ["occlusion", "saliency"], generate_kwargs={"max_new_tokens": 3})
    assert [r["method"] for r in rows] == ["Occlusion", "Saliency"]
    # Generated before timing, the same for both; each method warmed up on the first prompt, untimed.
    assert seen == [([expected[0]], {}), (expected, {})] * 2
    # Prompts of one length generate together, batch_size at a time, as the explainers generate them.
    same_length = ["The food was", "The staff were", "The pasta is"]
    assert len({len(bpe(p)["input_ids"]) for p in same_length}) == 1
    calls, generate = [], gpt2.generate
    monkeypatch.setattr(gpt2, "generate", lambda **kw: (calls.append(kw["input_ids"].shape[0]), generate(**kw))[1])
    seen.clear()
    compare(gpt2, bpe, same_length, ["occlusion"], batch_size=2, generate_kwargs={"max_new_tokens": 3})
    assert calls == [2, 1]
    monkeypatch.undo()
    assert seen[1][0] == [e.output_ids for e in Saliency(gpt2, bpe).explain(same_length, max_new_tokens=3)]
    with pytest.raises(InterpTextError, match="generate_kwargs are for generating outputs"):
        compare(gpt2, bpe, prompts, ["occlusion"], targets=[" a", " b"], generate_kwargs={"max_new_tokens": 3})


def test_each_distinct_mask_runs_once_across_a_texts_curves(gpt2, bpe, monkeypatch):
    """Every output's Deletion curve starts with the whole prompt and ends with none of it: those
    rows, and any step where two rankings agree, run once; the curves are those of each alone."""
    from interp_text.perturbation import PerturbationEngine

    e = Occlusion(gpt2, bpe).explain("The capital of France is", targets=" Paris is nice")
    n, outputs = len(e.elements), len(e.targets)
    assert outputs >= 3
    scored = []
    score_rows = PerturbationEngine.score_rows
    monkeypatch.setattr(
        PerturbationEngine,
        "score_rows",
        lambda self, items, masks, device, read=None: (
            scored.append(sum(m.shape[0] for m in masks.values())),
            score_rows(self, items, masks, device, read),
        )[1],
    )
    curves = Deletion(gpt2, bpe).curves(e)
    # Every mask run as it comes, for reference:
    monkeypatch.setattr("interp_text.metrics.unique_rows", lambda m: (m, torch.arange(m.shape[0])))
    every = Deletion(gpt2, bpe).curves(e)
    assert scored[1] == outputs * (n + 1)
    assert scored[0] <= scored[1] - 2 * (outputs - 1)  # the shared first and last points at least
    np.testing.assert_allclose(curves, every, rtol=1e-6)


def test_steps_read_the_curve_at_fewer_points(bert, wp_tokenizer):
    e = Occlusion(bert, wp_tokenizer).explain("the food was cold but the staff were lovely", targets="all")
    n = len(e.elements)  # 9
    full = Deletion(bert, wp_tokenizer).curves(e)
    assert full.shape == (3, n + 1)
    coarse = Deletion(bert, wp_tokenizer, steps=3)
    k = coarse.points(n)
    assert k.tolist() == [0, 3, 6, 9]
    np.testing.assert_allclose(coarse.curves(e), full[:, k], rtol=1e-6)
    x = k / n
    want = (((full[:, k][:, 1:] + full[:, k][:, :-1]) / 2) * np.diff(x)).sum(-1).mean()
    assert coarse.evaluate(e) == pytest.approx(want, rel=1e-6)
    # steps at or above the number of elements: every point, the same area as without steps.
    assert Insertion(bert, wp_tokenizer, steps=50).evaluate(e) == pytest.approx(
        Insertion(bert, wp_tokenizer).evaluate(e)
    )
    with pytest.raises(InterpTextError, match="steps=0"):
        Deletion(bert, wp_tokenizer, steps=0)


def test_an_explanation_made_in_bfloat16_is_scored_by_the_same_weights_in_float32():
    import copy

    from interp_text import Saliency, load_default

    model, tok = load_default("facts")
    half = copy.deepcopy(model).to(torch.bfloat16)
    expl = Saliency(half, tok).explain("The capital of France is", max_new_tokens=2)
    assert 0 <= Deletion(model, tok).evaluate(expl) <= 1


def test_compare_checks_every_option_before_generating(gpt2, bpe, monkeypatch):
    calls = []
    monkeypatch.setattr(gpt2, "generate", lambda *a, **k: calls.append(1))
    with pytest.raises(InterpTextError, match=r"method_options for \['lime'\], which `methods` does not name"):
        compare(gpt2, bpe, ["The capital of"], methods=["occlusion"], method_options={"lime": {"n_samples": 9}})
    with pytest.raises(InterpTextError, match=r"n_samples=0 must be an integer >= 1"):
        compare(gpt2, bpe, ["The capital of"], methods=["kernelshap"], method_options={"kernelshap": {"n_samples": 0}})
    with pytest.raises(InterpTextError) as err:  # generate()'s options, as explain() would take them
        compare(gpt2, bpe, ["The capital of"], methods=["saliency"], max_new_tokens=2)
    assert str(err.value) == (
        "compare() got ['max_new_tokens'] as options of the methods; generate()'s options go in "
        "generate_kwargs={'max_new_tokens': ...}."
    )
    assert calls == []


def test_compare_and_metrics_leave_the_tokenizer_as_it_was(gpt2, bpe, bert, wp_tokenizer):
    """Calling a tokenizer switches its backend's truncation and padding off (or to its own) for good:
    neither the comparison's warm-up nor a metric reading an old explanation's output may do it."""
    import copy

    for model, tokenizer, text in ((bert, wp_tokenizer, "The food was not good."), (gpt2, bpe, "The capital of")):
        tok = copy.deepcopy(tokenizer)
        tok.backend_tokenizer.enable_truncation(max_length=50)
        tok.backend_tokenizer.enable_padding(length=20, pad_id=0, pad_token=tok.convert_ids_to_tokens(0))
        settings = (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding)
        targets = None if model is bert else [" the food"]
        compare(model, tok, [text], methods=["saliency"], targets=targets)
        assert (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding) == settings
        expl = Saliency(model, tok).explain(text, targets=None if model is bert else " the food")
        old = Explanation.from_dict({**expl.to_dict(), "output_ids": None})  # saved before output ids were kept
        Deletion(model, tok).evaluate(old)
        assert (tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding) == settings


def test_rationale_spans_past_the_text_and_dicts_are_refused(bert, wp_tokenizer):
    expl = Occlusion(bert, wp_tokenizer).explain("Not good.")
    with pytest.raises(InterpTextError) as err:
        rationale_average_precision(expl, [(4, 400)])
    assert str(err.value) == (
        "the rationale span (4, 400) ends past the end of the text (9 characters); pass (start, end) character "
        "spans into explanation.text."
    )
    with pytest.raises(InterpTextError, match="expected an Explanation or a list of them, got dict"):
        Deletion(bert, wp_tokenizer).evaluate(expl.to_dict())
    with pytest.raises(InterpTextError, match=r"DataParallel is not a Hugging Face model .* pass the model it wraps"):
        compare(torch.nn.DataParallel(bert), wp_tokenizer, ["Not good."], methods="occlusion")


def test_compare_names_what_it_got_wrong_in_methods_and_options(bert, wp_tokenizer):
    texts = ["The food was not good.", "I loved the pasta."]
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, texts, methods=[])
    assert str(err.value) == (
        f"compare() got an empty list of methods; name at least one (from {sorted(ALL_METHODS)}), or leave methods "
        "unset for ['occlusion', 'lime', 'kernelshap', 'sobol']."
    )
    rows = compare(bert, wp_tokenizer, texts[:1], methods=None, method_options={"lime": {"n_samples": 8}})
    assert [r["method"] for r in rows] == ["Occlusion", "Lime", "KernelShap", "Sobol"]
    with pytest.raises(InterpTextError) as err:  # an option of some methods, given to every one
        compare(bert, wp_tokenizer, texts, methods=["occlusion", "lime"], n_samples=50)
    assert str(err.value).startswith("Occlusion got unknown option(s) ['n_samples']") and str(err.value).endswith(
        "compare() gives its keyword options (['n_samples']) to every method: give a method's own options to it "
        "alone, method_options={'<method name>': {...}}."
    )
    with pytest.raises(InterpTextError) as err:  # generate()'s, which no method takes, to a classifier
        compare(bert, wp_tokenizer, texts, methods=["saliency"], max_new_tokens=2, do_sample=True)
    assert str(err.value) == (
        "compare() got ['do_sample', 'max_new_tokens'], generate() options, but this model is a classifier, which "
        "generates nothing: drop them."
    )


@needs_compiler
def test_compare_takes_array_targets_and_compiled_models_explainers(bert, wp_tokenizer):
    texts = ["The food was not good.", "I loved the pasta.", "Cold soup."]
    as_list = compare(bert, wp_tokenizer, texts, methods=["occlusion"], targets=[0, 1, 1])
    for targets in (np.array([0, 1, 1]), torch.tensor([0, 1, 1])):
        rows = compare(bert, wp_tokenizer, texts, methods=["occlusion"], targets=targets)
        assert rows[0]["deletion"] == as_list[0]["deletion"]
    compiled = torch.compile(bert, backend="eager")
    rows = compare(compiled, wp_tokenizer, texts, methods=[Saliency(compiled, wp_tokenizer)])
    assert rows[0]["method"] == "Saliency" and 0 <= rows[0]["deletion"] <= 1


def test_evaluate_together_and_compare_name_their_misuse(bert, wp_tokenizer):
    expls = Occlusion(bert, wp_tokenizer).explain(["Not good.", "Good."])
    for metrics in ([], [Occlusion(bert, wp_tokenizer)]):
        with pytest.raises(InterpTextError, match=r"^evaluate_together takes a list of Deletion and Insertion metrics"):
            evaluate_together(metrics, expls)
    # One device named, the other the model's own (the same): they share their rows.
    d, i = evaluate_together([Deletion(bert, wp_tokenizer, device="cpu"), Insertion(bert, wp_tokenizer)], expls)
    assert d == Deletion(bert, wp_tokenizer).evaluate(expls) and len(i) == 2
    with pytest.raises(InterpTextError) as err:  # the refused option is a method's own: no hint about shared ones
        compare(bert, wp_tokenizer, ["Good."], methods=["occlusion"], seed=1, method_options={"occlusion": {"x": 5}})
    assert "compare() gives its keyword options" not in str(err.value)
    with pytest.raises(InterpTextError) as err:
        compare_default(n_texts=2, methods=[])
    assert str(err.value).endswith("or leave methods unset for every one.")


def test_compare_reads_one_text_as_explain_does(bert, wp_tokenizer, gpt2, bpe):
    """One text's targets may be several classes of it, and a conversation is one text: compare
    turned both into a list first, and then refused the classes or crashed on the conversation."""
    text = "The staff were not friendly."
    (row,) = compare(bert, wp_tokenizer, text, methods=["occlusion"], targets=[0, 1])
    both = Occlusion(bert, wp_tokenizer).explain(text, [0, 1])
    assert [t.index for t in both.targets] == [0, 1] and row["n_texts"] == 1
    assert row["deletion"] == pytest.approx(Deletion(bert, wp_tokenizer).evaluate(both))
    tok = copy.deepcopy(bpe)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    conversation = [{"role": "user", "content": "The capital of France?"}, {"role": "user", "content": "Say it."}]
    (row,) = compare(gpt2, tok, conversation, methods=["occlusion"], targets=" Paris")
    alone = Occlusion(gpt2, tok).explain(conversation, targets=" Paris")
    assert row["n_texts"] == 1 and row["insertion"] == pytest.approx(Insertion(gpt2, tok).evaluate(alone))


@pytest.mark.parametrize(
    "methods,message",
    [
        (["saliency", 42], r"methods\[1\] is 42 \(int\), not an explanation method"),
        (42, r"methods=42: pass a list of method names, classes or explainers"),
        ([Deletion], r"method the class Deletion is not an explanation method"),
    ],
)
def test_compare_refuses_what_is_no_method_before_anything_runs(methods, message, bert, wp_tokenizer, monkeypatch):
    ran = []
    monkeypatch.setattr(Saliency, "explain", lambda *a, **k: ran.append(1))
    with pytest.raises(InterpTextError, match=message):
        compare(bert, wp_tokenizer, ["The food was good."], methods=methods)
    assert ran == []


def test_compare_default_counts_texts_it_has():
    with pytest.raises(InterpTextError, match=r"^n_texts=0 must be an integer >= 1\.$"):
        compare_default(n_texts=0)
    with pytest.raises(
        InterpTextError, match=r"the facts test split has 137 distinct texts; pass n_texts=137 or fewer"
    ):
        compare_default(n_texts=500, data="facts")


def test_rationale_precision_ranks_text_only(bert, wp_tokenizer):
    """Under ALL_TOKENS a gradient method scores [CLS] and [SEP] too; they are no text, so no rationale, and
    the metrics never mask them: they are left out of the ranking (scored first, they cost it)."""
    text = "the food was cold but the staff were lovely"
    e = Saliency(bert, wp_tokenizer, granularity="all_tokens").explain(text)
    special = [k for k, (s, t) in enumerate(e.spans) if s == t]
    assert len(special) == 2
    rationale = [(text.index("cold"), text.index("cold") + 4)]
    want = rationale_average_precision(e, rationale)
    loud = dataclasses.replace(e, scores=e.scores.copy())
    loud.scores[:, special] = 1e9
    assert rationale_average_precision(loud, rationale) == want
    words = Saliency(bert, wp_tokenizer).explain(text)  # the same tokens, one word each
    assert rationale_average_precision(words, rationale) == want


def test_compare_draws_each_methods_bar_once_then_the_scorings(bert, wp_tokenizer, capsys):
    """The untimed first call on the first text drew a bar of its own, under the same name; the metrics
    drew none, and their scoring was the longest part of a comparison on a real-size model."""
    compare(bert, wp_tokenizer, ["The food was good.", "Cold soup."], methods=["occlusion"], progress=True)
    lines = capsys.readouterr().err.split("\n")
    assert len(lines) == 3 and lines[2] == ""
    assert "Occlusion: [" in lines[0] and "Deletion+Insertion: [" in lines[1]


def test_metrics_draw_a_bar_of_their_distinct_masked_inputs_when_asked(bert, wp_tokenizer, capsys):
    texts = ["the food was cold", "not good at all"]  # 4 words each
    explanations = Occlusion(bert, wp_tokenizer).explain(texts)
    Deletion(bert, wp_tokenizer).evaluate(explanations)
    assert capsys.readouterr().err == ""
    Deletion(bert, wp_tokenizer, progress=True).evaluate(explanations)
    err = capsys.readouterr().err
    assert err.startswith("\rDeletion: [..............................] 0/10 rows") and err.endswith("\n")
    assert "10/10 rows" in err  # 5 points a text
    together = [Deletion(bert, wp_tokenizer, progress=True), Insertion(bert, wp_tokenizer, progress=True)]
    evaluate_together(together, explanations)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Deletion+Insertion: [" in err
    assert "16/16 rows" in err  # 5 + 5 a text, nothing and everything masked shared
    with pytest.raises(InterpTextError, match="progress='yes' must be True or False"):
        Insertion(bert, wp_tokenizer, progress="yes")


def test_compare_takes_texts_from_a_generator(bert, wp_tokenizer):
    texts = ["The food was good.", "Cold soup."]
    (got,) = compare(bert, wp_tokenizer, (t for t in texts), methods=["occlusion"])
    (want,) = compare(bert, wp_tokenizer, texts, methods=["occlusion"])
    assert got["n_texts"] == 2 and got["deletion"] == want["deletion"]
