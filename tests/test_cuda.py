"""On a CUDA GPU every explainer and metric gives the CPU's numbers, and hands the model back as it came.

Skipped without a GPU. Noise, masks and coalitions are drawn on the CPU generator per text, so a
run on the GPU sees exactly the CPU's samples: only float32 rounding may differ. Each device run
works on a deep copy of the fixture model, so a failure cannot leave a shared fixture on the GPU.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_bart_classifier, tiny_bert

from interp_text import (
    GradientShap,
    Granularity,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    SquareGrad,
    VarGrad,
)
from interp_text.metrics import Deletion, Insertion
from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEVICE = "cuda"
ALL = Granularity.ALL_TOKENS
TEXT = "The food was cold but the staff were lovely."
PROMPT = "The capital of France is"  # 11 BPE tokens
TARGET = " Paris is nice."  # 9 BPE tokens: several output tokens, several words
RTOL, ATOL = 1e-3, 1e-4  # ATOL is relative to the largest score of the CPU's explanation


@pytest.fixture(scope="module")
def sharp_bert(wp_tokenizer):
    """A tiny BERT with large weights (as in test_perturbation).

    The conftest ``bert`` (initializer range 0.02) gives scores of 1e-5 to 1e-10 (VarGrad), too
    small for a comparison at these tolerances to mean anything; this one's are O(0.01..1).
    """
    return tiny_bert(wp_tokenizer, initializer_range=0.4)


@pytest.fixture(scope="module")
def cases(sharp_bert, wp_tokenizer, gpt2, bpe):
    """model, tokenizer, text, targets: a classifier on every class, a causal LM with a forced output."""
    return {"bert": (sharp_bert, wp_tokenizer, TEXT, "all"), "gpt2": (gpt2, bpe, PROMPT, TARGET)}


@pytest.fixture(scope="module", autouse=True)
def full_float32_matmuls():
    """TF32 matmuls would round to ~1e-3 relative; the comparison is of float32 with float32."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


# ---------------------------------------------------------------- helpers
def fresh(model):
    """A deep copy in a state the model guard must restore: train mode, embeddings frozen, the rest trainable."""
    m = copy.deepcopy(model)
    m.train()
    m.requires_grad_(True)
    m.get_input_embeddings().requires_grad_(False)
    return m


def state(model):
    """What explaining must leave as it found it: devices, requires_grad flags, training modes."""
    devices = {p.device.type for p in model.parameters()} | {b.device.type for b in model.buffers()}
    return devices, [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]


def same_values(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


class DeviceSpy:
    """Records the device of every tensor any module's forward receives (pre-hooks; removed on exit)."""

    def __init__(self, model):
        self.model, self.devices = model, set()

    def __enter__(self):
        def hook(module, args, kwargs):
            for v in (*args, *kwargs.values()):
                if isinstance(v, torch.Tensor):
                    self.devices.add(v.device.type)

        self.handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in self.model.modules()]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def on_device(model, run):
    """``run(model)`` on a fresh copy of ``model``; checks the copy came back as it went and ran on DEVICE."""
    m = fresh(model)
    before = state(m)
    assert before[0] == {"cpu"}
    with DeviceSpy(m) as spy:
        result = run(m)
    assert spy.devices == {DEVICE}  # the forwards ran there (not silently on the CPU)
    assert state(m) == before  # back on the CPU, flags and modes restored
    assert same_values(m, model)
    return result


def assert_same(got, expected):
    """Same elements and targets; scores, target scores and gaps equal up to float32 rounding."""
    assert got.elements == expected.elements
    assert got.output_elements == expected.output_elements
    assert [(t.index, t.token_ids) for t in got.targets] == [(t.index, t.token_ids) for t in expected.targets]
    assert got.scores.shape == expected.scores.shape
    scale = float(np.nanmax(np.abs(expected.scores)))
    assert scale > 0  # all-zero scores would make the comparison empty
    np.testing.assert_allclose(got.scores, expected.scores, rtol=RTOL, atol=ATOL * scale, equal_nan=True)
    target_scale = max(1.0, max(abs(t.score) for t in expected.targets))
    np.testing.assert_allclose(
        [t.score for t in got.targets], [t.score for t in expected.targets], rtol=RTOL, atol=ATOL * target_scale
    )
    np.testing.assert_allclose(
        [t.probability for t in got.targets], [t.probability for t in expected.targets], rtol=RTOL, atol=1e-7
    )
    assert (got.completeness_gap is None) == (expected.completeness_gap is None)
    if expected.completeness_gap is not None:
        np.testing.assert_allclose(got.completeness_gap, expected.completeness_gap, atol=ATOL * target_scale)


# ---------------------------------------------------------------- gradient methods
NOISY = {"n_perturbations": 3, "noise_std": 0.1}
GRADIENT_CASES = [
    pytest.param(Saliency, {}, id="saliency"),
    pytest.param(InputXGradient, {}, id="inputxgradient"),
    pytest.param(SmoothGrad, NOISY, id="smoothgrad"),
    pytest.param(SmoothGrad, {**NOISY, "input_x_gradient": False}, id="smoothgrad-no-input"),
    pytest.param(SquareGrad, NOISY, id="squaregrad"),
    pytest.param(VarGrad, NOISY, id="vargrad"),
    pytest.param(IntegratedGradients, {"n_interpolations": 5}, id="ig"),
    # A token-id baseline is looked up on the device; a tensor baseline is moved there.
    pytest.param(IntegratedGradients, {"n_interpolations": 5, "baseline": 0}, id="ig-token-baseline"),
    pytest.param(
        IntegratedGradients, {"n_interpolations": 5, "baseline": torch.full((32,), 0.05)}, id="ig-tensor-baseline"
    ),
    pytest.param(GradientShap, NOISY, id="gradientshap"),
]


@pytest.mark.parametrize("which", ["bert", "gpt2"])
@pytest.mark.parametrize("cls,opts", GRADIENT_CASES)
def test_gradient_method_on_cuda_equals_cpu(cls, opts, which, cases):
    model, tok, text, targets = cases[which]
    kw = dict(granularity=ALL, batch_size=2, seed=3, **opts)  # batch 2: a text's samples span forwards
    expected = cls(model, tok, **kw).explain(text, targets=targets)
    got = on_device(model, lambda m: cls(m, tok, device=DEVICE, **kw).explain(text, targets=targets))
    assert_same(got, expected)


@pytest.mark.parametrize("mode", ["logits", "log_softmax"])
def test_vmapped_backward_equals_loop_on_cuda(mode, gpt2, bpe):
    # Both texts are 20 tokens long, so their rows share forwards; 9 and 6 targets, so the vmapped
    # chunks of 4 (targets 0-3, 4-7, then 8 by the plain backward) have rows with invalid targets.
    prompts = [PROMPT, "The food was cold but the staff were"]  # 11 and 14 tokens
    targets = [TARGET, " very good"]  # 9 and 6 tokens
    kw = dict(granularity=ALL, inference_mode=mode, batch_size=8, seed=3, **NOISY)
    expected = SmoothGrad(gpt2, bpe, **kw).explain(prompts, targets=targets)  # CPU, one backward per target

    def both(m):
        loop = SmoothGrad(m, bpe, device=DEVICE, targets_per_backward=1, **kw).explain(prompts, targets=targets)
        vmapped = SmoothGrad(m, bpe, device=DEVICE, targets_per_backward=4, **kw).explain(prompts, targets=targets)
        return loop, vmapped

    lengths = [
        (len(bpe(p)["input_ids"]), len(bpe(t, add_special_tokens=False)["input_ids"])) for p, t in zip(prompts, targets)
    ]
    assert lengths == [(11, 9), (14, 6)]
    assert [len(e.targets) for e in expected] == [9, 6]
    loop, vmapped = on_device(gpt2, both)
    for lo, vm, ref in zip(loop, vmapped, expected):
        assert_same(vm, lo)
        assert_same(vm, ref)


# ---------------------------------------------------------------- perturbation methods
PERTURBATION_CASES = [
    pytest.param(Occlusion, {}, id="occlusion"),
    pytest.param(Lime, {"n_samples": 20}, id="lime"),
    pytest.param(KernelShap, {"n_samples": 20}, id="kernelshap"),
    pytest.param(Sobol, {"n_samples": 4}, id="sobol"),
]


@pytest.mark.parametrize("which", ["bert", "gpt2"])
@pytest.mark.parametrize("cls,opts", PERTURBATION_CASES)
def test_perturbation_method_on_cuda_equals_cpu(cls, opts, which, cases):
    model, tok, text, targets = cases[which]
    kw = dict(batch_size=7, seed=3, **opts)  # batch 7: a text's masks span forwards
    expected = cls(model, tok, **kw).explain(text, targets=targets)
    got = on_device(model, lambda m: cls(m, tok, device=DEVICE, **kw).explain(text, targets=targets))
    assert_same(got, expected)


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize("which", ["bert", "gpt2"])
@pytest.mark.parametrize("metric", [Deletion, Insertion])
def test_curves_on_cuda_equal_cpu(metric, which, cases):
    model, tok, text, targets = cases[which]
    expl = Occlusion(model, tok).explain(text, targets=targets)
    expected = metric(model, tok).curves(expl)
    got = on_device(model, lambda m: metric(m, tok, device=DEVICE).curves(expl))
    assert expected.shape == (len(expl.targets), len(expl.elements) + 1)
    assert np.all(np.ptp(expected, axis=1) > 0)  # the curves move: the comparison is not of constants
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-7)


# ---------------------------------------------------------------- a model that lives on the GPU
@pytest.mark.parametrize("which", ["bert", "gpt2"])
@pytest.mark.parametrize(
    "cls,opts",
    [
        pytest.param(SmoothGrad, {"granularity": ALL, **NOISY}, id="smoothgrad"),
        pytest.param(IntegratedGradients, {"granularity": ALL, "n_interpolations": 5, "baseline": 0}, id="ig"),
        pytest.param(KernelShap, {"n_samples": 20}, id="kernelshap"),
    ],
)
def test_model_on_cuda_is_explained_there_and_stays(cls, opts, which, cases):
    model, tok, text, targets = cases[which]
    expected = cls(model, tok, seed=3, **opts).explain(text, targets=targets)
    m = fresh(model).to(DEVICE)
    before = state(m)
    assert before[0] == {DEVICE}
    with DeviceSpy(m) as spy:
        got = cls(m, tok, seed=3, **opts).explain(text, targets=targets)  # device=None: the model's own
    assert spy.devices == {DEVICE}
    assert state(m) == before  # still on the GPU, flags and modes restored
    assert same_values(m, model)
    assert_same(got, expected)


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_send_copies_pinned_and_leaves_the_source(dtype):
    from interp_text.tasks import send

    src = torch.randn(5, 7)
    before = src.clone()
    out = send(src, DEVICE, dtype)
    assert out.device.type == "cuda" and out.dtype == (dtype or torch.float32)
    torch.testing.assert_close(out.cpu(), before.to(dtype or torch.float32))
    torch.testing.assert_close(src, before)  # the caller's tensor is neither moved nor pinned in place
    assert not src.is_pinned()


def test_text_pairs_send_their_token_types_to_the_gpu():
    from test_text_pairs import OTHER, PAIR, typed_tokenizer

    tok = typed_tokenizer()
    model = tiny_bert(tok, initializer_range=0.4)
    texts = [PAIR, "the food was cold", OTHER]
    for cls, opts in [(Saliency, {}), (KernelShap, {"n_samples": 30})]:
        expected = cls(model, tok, seed=1, **opts).explain(texts, targets="all")
        got = on_device(
            model,
            lambda m, cls=cls, opts=opts: cls(m, tok, device=DEVICE, seed=1, **opts).explain(texts, targets="all"),
        )
        for g, e in zip(got, expected):
            assert_same(g, e)


def test_a_classifier_that_reads_ids_gets_them_on_the_gpu(wp_tokenizer):
    model = tiny_bart_classifier(wp_tokenizer)
    expected = Occlusion(model, wp_tokenizer).explain([TEXT, "not good"], targets="all")
    got = on_device(
        model, lambda m: Occlusion(m, wp_tokenizer, device=DEVICE).explain([TEXT, "not good"], targets="all")
    )
    for g, e in zip(got, expected):
        assert_same(g, e)
