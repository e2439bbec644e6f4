"""Each method's numbers: closed forms on toy models, and hand-written autograd references."""

import re
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_bert
from toy_models import ToyConfig, ToyForSequenceClassification

from interp_text import (
    GradientShap,
    Granularity,
    InputXGradient,
    IntegratedGradients,
    InterpTextError,
    Occlusion,
    Saliency,
    SmoothGrad,
    SquareGrad,
    VarGrad,
)

ALL = Granularity.ALL_TOKENS
TEXT = "the food was cold but the staff were lovely"


@pytest.fixture(scope="module")
def linear():
    return ToyForSequenceClassification(ToyConfig(kind="linear"))


@pytest.fixture(scope="module")
def quadratic():
    return ToyForSequenceClassification(ToyConfig(kind="quadratic"))


def embeds(model, tok, text):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.get_input_embeddings()(ids)[0].double()  # (seq, hidden)


def test_linear_saliency_smoothgrad_vargrad(linear, wp_tokenizer):
    w = linear.w.detach().double()[1]  # (hidden,)
    e = embeds(linear, wp_tokenizer, TEXT)
    n = e.shape[0]
    sal = Saliency(linear, wp_tokenizer, granularity=ALL).explain(TEXT, targets=1).scores[0]
    np.testing.assert_allclose(sal, np.full(n, w.norm().item()), rtol=1e-6)
    # The gradient is constant, so smoothing changes nothing and its variance is zero.
    sg = (
        SmoothGrad(
            linear,
            wp_tokenizer,
            granularity=ALL,
            input_x_gradient=False,
            token_reduction="sum",
            n_perturbations=7,
            noise_std=0.5,
        )
        .explain(TEXT, targets=1)
        .scores[0]
    )
    np.testing.assert_allclose(sg, np.full(n, w.sum().item()), rtol=1e-6)
    vg = (
        VarGrad(linear, wp_tokenizer, granularity=ALL, input_x_gradient=False, n_perturbations=7, noise_std=0.5)
        .explain(TEXT, targets=1)
        .scores[0]
    )
    np.testing.assert_allclose(vg, 0.0, atol=1e-10)
    ixg = InputXGradient(linear, wp_tokenizer, granularity=ALL).explain(TEXT, targets=1).scores[0]
    np.testing.assert_allclose(ixg, (e * w).sum(-1).numpy(), rtol=1e-5)


def test_linear_vargrad_times_input_is_w2_sigma2(linear, wp_tokenizer):
    # a_p = w ⊙ (e + δ_p)  =>  var_p a_p = w² σ² in expectation.
    w = linear.w.detach().double()[0]
    sigma = 0.3
    vg = (
        VarGrad(linear, wp_tokenizer, granularity=ALL, n_perturbations=3000, noise_std=sigma, batch_size=1000)
        .explain(TEXT, targets=0)
        .scores[0]
    )
    np.testing.assert_allclose(vg, (w**2).sum().item() * sigma**2, rtol=0.06)


def test_quadratic_vargrad_and_squaregrad(quadratic, wp_tokenizer):
    # f = Σ q ⊙ e²: ∇f = 2 q ⊙ (e + δ)  =>  var = 4 q² σ²;  mean of squares = 4 q² (e² + σ²).
    q = quadratic.w.detach().double()[1]
    e = embeds(quadratic, wp_tokenizer, TEXT)
    sigma = 0.2
    kw = dict(granularity=ALL, input_x_gradient=False, n_perturbations=4000, noise_std=sigma, batch_size=2000)
    vg = VarGrad(quadratic, wp_tokenizer, **kw).explain(TEXT, targets=1).scores[0]
    np.testing.assert_allclose(vg, (4 * q**2 * sigma**2).sum().item(), rtol=0.06)
    sq = SquareGrad(quadratic, wp_tokenizer, **kw).explain(TEXT, targets=1).scores[0]
    np.testing.assert_allclose(sq, (4 * q**2 * (e**2 + sigma**2)).sum(-1).numpy(), rtol=0.06)


@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_integrated_gradients_exact_on_polynomials(kind, linear, quadratic, wp_tokenizer):
    # The midpoint rule integrates a linear path-gradient exactly: IG = w ⊙ e (linear), q ⊙ e² (quadratic).
    model = linear if kind == "linear" else quadratic
    w = model.w.detach().double()[0]
    e = embeds(model, wp_tokenizer, TEXT)
    expl = IntegratedGradients(model, wp_tokenizer, granularity=ALL, n_interpolations=3).explain(TEXT, targets=0)
    expected = (w * e).sum(-1) if kind == "linear" else (w * e * e).sum(-1)
    np.testing.assert_allclose(expl.scores[0], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert abs(expl.completeness_gap[0]) < 1e-4
    np.testing.assert_allclose(expl.scores[0].sum(), expl.targets[0].score, rtol=1e-5)


def test_integrated_gradients_completeness_on_bert(bert, wp_tokenizer):
    expl = IntegratedGradients(bert, wp_tokenizer, n_interpolations=200).explain(TEXT, targets="all")
    assert expl.completeness_gap.shape == (3,)
    assert np.all(np.abs(expl.completeness_gap) < 2e-3 * max(1.0, np.abs([t.score for t in expl.targets]).max()))


# ---------------------------------------------------------------- hand-written references
def reference(model, tok, text, cls, method, n=5, sigma=0.1, seed=0, ixg=True, reduction="sum"):
    """Per-sample loops, one forward and backward each, no batching: the definitions as written."""
    ids = tok(text, return_tensors="pt")["input_ids"]
    e = model.get_input_embeddings()(ids)[0].detach()  # (seq, hidden)
    b = torch.zeros_like(e)
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for p in range(n):
        if method == "ig":
            x, mult = b + (p + 0.5) / n * (e - b), e - b
        elif method == "shap":
            alpha = float(torch.rand((), generator=gen))
            d = torch.randn(e.shape, generator=gen) * sigma
            x, mult = b + alpha * (e + d - b), e - b
        elif method in ("saliency", "ixg"):
            x, mult = e.clone(), (e if method == "ixg" else None)
        else:
            x = e + torch.randn(e.shape, generator=gen) * sigma
            mult = x.clone() if ixg else None
        x = x.clone().requires_grad_(True)
        f = model(inputs_embeds=x[None]).logits[0, cls]
        (g,) = torch.autograd.grad(f, x)
        samples.append((g * mult if mult is not None else g).double())
    a = torch.stack(samples)  # (n, seq, hidden)
    if method == "vargrad":
        stat = a.var(0)
    elif method == "squaregrad":
        stat = (a**2).mean(0)
    else:
        stat = a.mean(0)
    return {"sum": stat.sum(-1), "l2": stat.norm(dim=-1), "abs_mean": stat.abs().mean(-1)}[reduction].numpy()


CASES = [
    (Saliency, "saliency", {}, "l2"),
    (InputXGradient, "ixg", {}, "sum"),
    (SmoothGrad, "smoothgrad", {"n_perturbations": 5, "noise_std": 0.1}, "sum"),
    (VarGrad, "vargrad", {"n_perturbations": 5, "noise_std": 0.1}, "sum"),
    (SquareGrad, "squaregrad", {"n_perturbations": 5, "noise_std": 0.1}, "abs_mean"),
    (IntegratedGradients, "ig", {"n_interpolations": 5}, "sum"),
    (GradientShap, "shap", {"n_perturbations": 5, "noise_std": 0.1}, "sum"),
]


@pytest.mark.parametrize("cls,name,opts,reduction", CASES)
def test_matches_hand_written_reference(cls, name, opts, reduction, bert, wp_tokenizer):
    expl = cls(bert, wp_tokenizer, granularity=ALL, token_reduction=reduction, batch_size=3, seed=7, **opts).explain(
        TEXT, targets=2
    )
    ref = reference(
        bert,
        wp_tokenizer,
        TEXT,
        2,
        name,
        n=opts.get("n_perturbations", opts.get("n_interpolations", 1)),
        seed=7,
        reduction=reduction,
    )
    np.testing.assert_allclose(expl.scores[0], ref, rtol=1e-4, atol=1e-7)


def test_smoothgrad_without_input_defaults_to_l2(bert, wp_tokenizer):
    expl = SmoothGrad(
        bert, wp_tokenizer, granularity=ALL, input_x_gradient=False, n_perturbations=3, noise_std=0.1
    ).explain(TEXT)
    ref = reference(bert, wp_tokenizer, TEXT, expl.targets[0].index, "smoothgrad", n=3, ixg=False, reduction="l2")
    assert expl.token_reduction == "l2"
    np.testing.assert_allclose(expl.scores[0], ref, rtol=1e-4, atol=1e-7)


def test_default_noise_is_half_the_embedding_spread(bert, wp_tokenizer):
    spread = bert.get_input_embeddings().weight.std().item()
    for cls in (SmoothGrad, VarGrad, SquareGrad, GradientShap):
        assert cls(bert, wp_tokenizer).noise_std == pytest.approx(0.5 * spread)
        assert cls(bert, wp_tokenizer, noise_std=0.1).noise_std == 0.1


def test_a_classifier_runs_no_forward_besides_the_gradient_batches(bert, wp_tokenizer):
    # The unperturbed row (prediction, f(x)) and the baseline row lead each text's gradient rows.
    texts = ["the food was cold", "the staff were lovely and the pasta was good"]
    assert len(wp_tokenizer(texts[0])["input_ids"]) != len(wp_tokenizer(texts[1])["input_ids"])
    ig = IntegratedGradients(bert, wp_tokenizer, n_interpolations=4, granularity=ALL)
    ig.explain("good")  # its first call checks its readout on a few more rows
    rows = []
    hook = bert.register_forward_pre_hook(lambda m, a, k: rows.append(k["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        expls = ig.explain(texts)
    finally:
        hook.remove()
    assert rows == [1 + 1 + 4, 1 + 1 + 4]  # one forward per length: unperturbed + baseline + 4 path points
    for text, expl in zip(texts, expls):
        with torch.no_grad():
            logits = bert(**wp_tokenizer(text, return_tensors="pt")).logits[0].double()
            base = bert(inputs_embeds=torch.zeros(1, len(wp_tokenizer(text)["input_ids"]), 32)).logits[0].double()
        c = int(logits.argmax())
        assert expl.predicted == c and expl.targets[0].index == c
        assert expl.targets[0].score == pytest.approx(float(logits[c]), rel=1e-5)
        assert expl.targets[0].probability == pytest.approx(float(logits.softmax(-1)[c]), rel=1e-5)
        # completeness_gap = Σ scores − (f(x) − f(baseline)): f(baseline) came from its batch row
        total = float(np.nansum(expl.scores[0]))
        assert expl.completeness_gap[0] == pytest.approx(total - float(logits[c] - base[c]), abs=1e-5)


def test_rows_of_one_length_fill_batches_and_never_mix_lengths():
    from interp_text.engine import packed

    class Text:
        def __init__(self, n):
            self.n = n

        def group_key(self, task):
            return (self.n,)

    a, b, c = Text(3), Text(3), Text(7)
    units = [(a, p) for p in range(40)] + [(b, p) for p in range(40)] + [(c, p) for p in range(10)]
    batches = list(packed(units, 32, "classification"))
    assert [len(x) for x in batches] == [32, 32, 16, 10]  # ceil(80 / 32) + ceil(10 / 32) forwards
    assert all(len({it.n for it, _ in x}) == 1 for x in batches)
    assert [u for x in batches for u in x] == units  # every row once, in order


def test_a_token_cap_counts_a_seq2seq_decoder_too():
    from interp_text.engine import packed
    from interp_text.tasks import Item

    text = Item(0, "t", torch.zeros(10, dtype=torch.long), [], [], [], output_ids=[5] * 20)  # 10 + 20 positions
    units = [(text, p) for p in range(10)]
    assert [len(x) for x in packed(units, 64, "seq2seq", max_tokens=90)] == [3, 3, 3, 1]
    assert [len(x) for x in packed(units, 64, "causal_lm", max_tokens=90)] == [9, 1]  # prompt + output in input_ids


def test_a_multi_label_classifier_scores_each_class_by_its_sigmoid(wp_tokenizer):
    # problem_type multi_label_classification: classes are independent sigmoids, not one softmax.
    from interp_text.perturbation import Occlusion

    model = tiny_bert(wp_tokenizer, initializer_range=0.4, problem_type="multi_label_classification")
    ids = wp_tokenizer(TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    sigmoid = torch.sigmoid(logits)
    assert abs(float(sigmoid.sum()) - 1) > 0.1  # a softmax would make them sum to 1

    sal = Saliency(model, wp_tokenizer, inference_mode="softmax", granularity=ALL).explain(TEXT, targets="all")
    for k, target in enumerate(sal.targets):
        assert target.probability == pytest.approx(float(sigmoid[k]), rel=1e-5)
        assert target.score == pytest.approx(float(sigmoid[k]), rel=1e-5)
    e = model.get_input_embeddings()(ids)[0].detach().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.sigmoid(model(inputs_embeds=e[None]).logits[0, 1]), e)
    np.testing.assert_allclose(sal.scores[1], g.norm(dim=-1).detach().numpy(), rtol=1e-4, atol=1e-8)

    occ = Occlusion(model, wp_tokenizer, inference_mode="log_softmax").explain(TEXT, targets=1)
    assert occ.targets[0].score == pytest.approx(float(torch.nn.functional.logsigmoid(logits[1])), rel=1e-5)
    assert occ.targets[0].probability == pytest.approx(float(sigmoid[1]), rel=1e-5)


def test_each_texts_statistic_is_reduced_as_soon_as_its_samples_are_in(bert, wp_tokenizer, monkeypatch):
    """Only one text's (targets, seq, hidden) statistic lives at a time: it is reduced to token scores
    right after its last sample's batch, not after every text's."""
    from interp_text.engine import Engine

    events = []
    run_rows, reduce = Engine._backward_rows, Engine._reduce_statistic
    monkeypatch.setattr(
        Engine, "_backward_rows", lambda self, rows, *a: (events.append("rows"), run_rows(self, rows, *a))[1]
    )
    monkeypatch.setattr(
        Engine, "_reduce_statistic", lambda self, it, st: (events.append(f"reduce {it.index}"), reduce(self, it, st))[1]
    )
    texts = ["the food was cold", "not good at all", "the staff"]
    got = VarGrad(bert, wp_tokenizer, n_perturbations=3, batch_size=4).explain(texts)
    assert events.index("reduce 0") < len(events) - 3  # text 0 long before the last batch
    assert sorted(e for e in events if e.startswith("reduce")) == ["reduce 0", "reduce 1", "reduce 2"]
    monkeypatch.undo()
    for g, t in zip(got, texts):
        np.testing.assert_allclose(
            g.scores, VarGrad(bert, wp_tokenizer, n_perturbations=3).explain(t).scores, rtol=1e-6
        )


def test_a_cpu_backward_holds_a_bounded_number_of_tokens(bert, wp_tokenizer, monkeypatch):
    """batch_size counts rows; on a CPU a forward + backward also holds at most CPU_TOKENS_PER_BACKWARD
    token positions (long texts took GiB per row batch), with the same numbers."""
    import interp_text.engine as engine

    text = "the food was cold but the staff were lovely"  # 11 tokens
    want = VarGrad(bert, wp_tokenizer, n_perturbations=6).explain(text)
    monkeypatch.setattr(engine, "CPU_TOKENS_PER_BACKWARD", 25)  # two rows of 11 tokens
    vargrad = VarGrad(bert, wp_tokenizer, n_perturbations=6)
    vargrad.explain("good")  # its first call checks its readout on a few more rows
    rows = []
    handle = bert.register_forward_pre_hook(lambda m, a, k: rows.append(k["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        got = vargrad.explain(text)
    finally:
        handle.remove()
    assert rows == [2, 2, 2, 1]  # the unperturbed row and 6 samples, two at a time
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)


@pytest.mark.parametrize("baseline", [None, "pad", 7])
def test_a_baseline_of_one_repeated_row_holds_no_copy_of_the_text(baseline, bert, wp_tokenizer):
    """IntegratedGradients over many long texts: the baseline is a view of one row, not (seq, hidden) each."""
    from interp_text.engine import Engine

    ex = IntegratedGradients(bert, wp_tokenizer, baseline=baseline)
    engine = Engine(bert, wp_tokenizer, ex.settings)
    with engine.guarded():
        (it,) = engine._prepare(["the food was cold but the staff were lovely"], None, False, torch.device("cpu"), {})
        assert it.embeds is None  # made batch by batch, when its rows run
        engine._embed([it])
    hidden = it.embeds.shape[1]
    assert it.baseline.shape == it.embeds.shape
    assert it.baseline.untyped_storage().nbytes() <= hidden * it.baseline.element_size()


@pytest.mark.parametrize("cls,rows_per_text", [(Saliency, 1), (InputXGradient, 1), (VarGrad, 5)])
def test_a_classifier_takes_one_row_per_sample_and_its_unperturbed_input_once(cls, rows_per_text, bert, wp_tokenizer):
    """Saliency's and InputXGradient's one sample is the input itself: its prediction and f(x) come
    from that row, not from a second copy of it; a noisy method adds the unperturbed row."""
    texts = ["the food was cold", "not good at all", "lovely staff"]
    explainer = cls(bert, wp_tokenizer, **({"n_perturbations": 4} if cls is VarGrad else {}))
    explainer.explain("good")  # its first call checks its readout on a few more rows
    rows = []
    handle = bert.register_forward_pre_hook(
        lambda m, a, kw: rows.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        got = explainer.explain(texts)
    finally:
        handle.remove()
    assert sum(rows) == rows_per_text * len(texts)
    with torch.no_grad():
        for e, text in zip(got, texts):
            logits = bert(**wp_tokenizer(text, return_tensors="pt")).logits[0]
            assert e.predicted == int(logits.argmax())
            assert e.targets[0].score == pytest.approx(float(logits.max()), rel=1e-5)


@pytest.mark.parametrize(
    "cls,kw", [(IntegratedGradients, {"n_interpolations": 1}), (GradientShap, {"n_perturbations": 1})]
)
def test_the_completeness_gap_of_one_sample_is_the_same_whatever_the_display_reduction(cls, kw, bert, wp_tokenizer):
    """One sample is reduced as it comes only where the signed total survives: with l2 or abs_mean the
    gap still needs every signed (position, hidden) value."""
    gaps = [
        cls(bert, wp_tokenizer, token_reduction=how, **kw)
        .explain("the staff were not friendly", targets="all")
        .completeness_gap
        for how in ("sum", "l2", "abs_mean")
    ]
    np.testing.assert_allclose(gaps[1], gaps[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gaps[2], gaps[0], rtol=1e-9, atol=1e-12)


def test_an_unknown_option_names_the_shared_ones_and_the_likely_meant(bert, wp_tokenizer):
    """A misspelt shared option was told "it has no options of its own", as if granularity were not one."""
    with pytest.raises(InterpTextError) as err:
        Saliency(bert, wp_tokenizer, granularty="word")
    assert str(err.value) == (
        "Saliency got unknown option(s) ['granularty'] (did you mean 'granularity'?); it has no options of its own "
        "(besides batch_size, granularity, granularity_aggregation_strategy, device, inference_mode, token_reduction, "
        "task, seed, targets_per_backward, progress, truncation)."
    )
    with pytest.raises(InterpTextError, match=r"\['n_perturbation'\] \(did you mean 'n_perturbations'\?\); its own"):
        VarGrad(bert, wp_tokenizer, n_perturbation=3)
    # explain()'s arguments, given to the constructor, are sent where they go.
    with pytest.raises(InterpTextError) as err:
        Occlusion(bert, wp_tokenizer, targets="positive", max_new_tokens=3)
    assert str(err.value).endswith(
        "progress, truncation, mask_outputs). The call takes targets: explainer.explain(text, targets=...). This model is a classifier, which "
        "generates nothing: drop max_new_tokens."
    )


def test_generate_options_given_to_a_generators_constructor_are_sent_to_the_call(gpt2, bpe):
    with pytest.raises(InterpTextError) as err:
        Saliency(gpt2, bpe, max_new_tokens=3)
    assert str(err.value).endswith(
        "progress, truncation). The call takes generate()'s options: explainer.explain(prompt, max_new_tokens=...)."
    )


def test_baseline_spellings(gpt2, bpe, bert, wp_tokenizer):
    """A number fills every entry (0.0 is zeros, as captum reads it); a special token as the tokenizer
    writes it is that token; an int is a token id, and 0 warns when its row is not zeros."""
    text, target = "The capital of France is", " Paris"
    zeros = IntegratedGradients(gpt2, bpe).explain(text, targets=target).scores
    np.testing.assert_array_equal(
        IntegratedGradients(gpt2, bpe, baseline=0.0).explain(text, targets=target).scores, zeros
    )
    half = IntegratedGradients(gpt2, bpe, baseline=torch.full((gpt2.config.n_embd,), 0.5))
    np.testing.assert_allclose(
        IntegratedGradients(gpt2, bpe, baseline=0.5).explain(text, targets=target).scores,
        half.explain(text, targets=target).scores,
    )
    by_name = IntegratedGradients(bert, wp_tokenizer, baseline="mask").explain("the food was good")
    as_written = IntegratedGradients(bert, wp_tokenizer, baseline="[MASK]").explain("the food was good")
    np.testing.assert_array_equal(as_written.scores, by_name.scores)
    with pytest.warns(
        UserWarning, match=r"baseline=0 is token id 0 \('<\|endoftext\|>'\), whose embedding is not zeros"
    ):
        token0 = IntegratedGradients(gpt2, bpe, baseline=0)
    assert not np.allclose(token0.explain(text, targets=target).scores, zeros, equal_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        IntegratedGradients(gpt2, bpe, baseline="<|endoftext|>")  # the same token, meant: no warning
    as_numpy = IntegratedGradients(gpt2, bpe, baseline=np.float32(0.5)).explain(text, targets=target).scores
    np.testing.assert_allclose(as_numpy, half.explain(text, targets=target).scores)
    for bad, message in (
        (torch.tensor(0), "baseline tensor has shape ()"),  # an id in a tensor: not a number to fill with
        (float("nan"), "baseline=nan is not a finite number"),
        (torch.tensor(float("inf")), "baseline=inf is not a finite number"),
    ):
        with pytest.raises(InterpTextError, match=re.escape(message)):
            IntegratedGradients(gpt2, bpe, baseline=bad)
