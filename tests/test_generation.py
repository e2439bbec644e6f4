"""Explaining causal and seq2seq LMs: each output token, one teacher-forced forward."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer

from interp_text import (
    GradientShap,
    Granularity,
    InferenceModes,
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
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def bos_tok():
    return bpe_tokenizer(bos=True)


@pytest.fixture(scope="module")
def llama(bos_tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(bos_tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=bos_tok.bos_token_id,
        eos_token_id=bos_tok.eos_token_id,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config).eval()


def causal_reference(model, tok, prompt, target, method, n=3, sigma=0.1, seed=0, mode="logits"):
    """Per output token, per sample: a full forward and a backward, then the statistic and the sum."""
    p_ids = tok(prompt)["input_ids"]
    o_ids = tok(target, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + o_ids])
    e = model.get_input_embeddings()(ids)[0].detach()
    gen = torch.Generator().manual_seed(seed)
    noises = [torch.randn(e.shape, generator=gen) * sigma for _ in range(n)] if method != "saliency" else [0]
    rows = []
    for t, tid in enumerate(o_ids):
        samples = []
        for d in noises:
            x = (e + d).clone().requires_grad_(True)
            logits = model(inputs_embeds=x[None]).logits[0, len(p_ids) - 1 + t]
            f = logits[tid] if mode == "logits" else logits.log_softmax(-1)[tid]
            (g,) = torch.autograd.grad(f, x)
            samples.append((g if method == "saliency" else g * x).detach().double())
        a = torch.stack(samples)
        stat = a.var(0) if method == "vargrad" else a.mean(0)
        rows.append(stat.norm(dim=-1) if method == "saliency" else stat.sum(-1))
    out = torch.stack(rows).numpy()
    P = len(p_ids)
    for t in range(len(o_ids)):
        out[t, P + t :] = np.nan
    return out


@pytest.mark.parametrize("which", ["gpt2", "llama"])
@pytest.mark.parametrize("method,cls", [("saliency", Saliency), ("smoothgrad", SmoothGrad), ("vargrad", VarGrad)])
@pytest.mark.parametrize("mode", ["logits", "log_softmax"])
def test_causal_matches_reference(which, method, cls, mode, gpt2, llama, bpe, bos_tok):
    model, tok = (gpt2, bpe) if which == "gpt2" else (llama, bos_tok)
    kw = {} if method == "saliency" else {"n_perturbations": 3, "noise_std": 0.1}
    expl = cls(model, tok, granularity=ALL, inference_mode=mode, batch_size=2, **kw).explain(PROMPT, targets=" Paris.")
    ref = causal_reference(model, tok, PROMPT, " Paris.", method, mode=mode)
    np.testing.assert_allclose(expl.scores, ref, rtol=1e-4, atol=1e-7, equal_nan=True)
    assert expl.task == "causal_lm"
    assert "".join(expl.output_elements) == expl.output_text.replace(" ", "") or expl.output_text.strip()
    o_ids = tok(" Paris.", add_special_tokens=False)["input_ids"]
    assert [t.token_ids for t in expl.targets] == [[i] for i in o_ids]


def test_bos_is_not_duplicated_and_probabilities(llama, bos_tok):
    expl = Saliency(llama, bos_tok, granularity=ALL).explain(PROMPT, targets=" Paris")
    assert expl.elements[0] == "<s>" and expl.elements.count("<s>") == 1
    ids = torch.tensor([bos_tok(PROMPT)["input_ids"] + bos_tok(" Paris", add_special_tokens=False)["input_ids"]])
    logp = llama(ids).logits[0].log_softmax(-1)
    P = len(bos_tok(PROMPT)["input_ids"])
    for t, target in enumerate(expl.targets):
        np.testing.assert_allclose(target.probability, logp[P - 1 + t, target.token_ids[0]].exp().item(), rtol=1e-5)


def test_softmax_mode_scores_probabilities(gpt2, bpe):
    expl = Saliency(gpt2, bpe, granularity=ALL, inference_mode=InferenceModes.SOFTMAX).explain(PROMPT, targets=" Paris")
    for t in expl.targets:
        np.testing.assert_allclose(t.score, t.probability, rtol=1e-6)


@pytest.mark.parametrize("cls", [InputXGradient, SquareGrad, IntegratedGradients, GradientShap])
def test_every_method_runs_on_generation_with_nan_mask(cls, gpt2, bpe):
    expl = cls(gpt2, bpe, granularity="token").explain(PROMPT, targets=" Paris is nice")
    n_in = len(expl.elements)
    for r in range(len(expl.targets)):
        assert np.all(np.isfinite(expl.scores[r, : n_in + r]))
        assert np.all(np.isnan(expl.scores[r, n_in + r :]))
    if cls is IntegratedGradients:
        assert expl.completeness_gap.shape == (len(expl.targets),)


def test_integrated_gradients_completeness_on_causal(gpt2, bpe):
    expl = IntegratedGradients(gpt2, bpe, n_interpolations=100).explain(PROMPT, targets=" Paris")
    scale = max(1.0, max(abs(t.score) for t in expl.targets))
    assert np.all(np.abs(expl.completeness_gap) < 2e-3 * scale)


def test_generate_then_explain_greedy(gpt2, bpe):
    expl = Saliency(gpt2, bpe, granularity="token").explain(PROMPT, max_new_tokens=4)
    ids = torch.tensor([bpe(PROMPT)["input_ids"]])
    greedy = gpt2.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False, pad_token_id=bpe.eos_token_id
    )[0, ids.shape[1] :].tolist()
    greedy = greedy[: greedy.index(bpe.eos_token_id)] if bpe.eos_token_id in greedy else greedy
    assert sum((t.token_ids for t in expl.targets), []) == greedy
    forced = Saliency(gpt2, bpe, granularity="token").explain(PROMPT, targets=greedy)
    np.testing.assert_allclose(expl.scores, forced.scores, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_batch_of_prompts_equals_alone(which, gpt2, llama, bpe, bos_tok):
    model, tok = (gpt2, bpe) if which == "gpt2" else (llama, bos_tok)
    prompts = [PROMPT, "The food was", "It is"]
    targets = [" Paris.", " cold but", " ok"]
    m = SmoothGrad(model, tok, n_perturbations=3, batch_size=4)
    together = m.explain(prompts, targets=targets)
    for p, t, e in zip(prompts, targets, together):
        np.testing.assert_allclose(e.scores, m.explain(p, targets=t).scores, rtol=1e-4, atol=1e-8, equal_nan=True)


def test_word_granularity_on_both_axes(gpt2, bpe):
    expl = Saliency(gpt2, bpe, granularity="word").explain(PROMPT, targets=" Paris is nice.")
    assert expl.elements == ["The", "capital", "of", "France", "is"]
    assert expl.output_elements == ["Paris", "is", "nice", "."]
    assert expl.columns == expl.elements + expl.output_elements
    assert all(expl.output_text[s:e] == el for el, (s, e) in zip(expl.output_elements, expl.output_spans))
    for r in range(4):
        assert np.all(np.isnan(expl.scores[r, 5 + r :])) and np.all(np.isfinite(expl.scores[r, : 5 + r]))


def test_seq2seq(t5, bpe):
    expl = SmoothGrad(t5, bpe, granularity=ALL, n_perturbations=2, noise_std=0.1).explain(PROMPT, targets=" Paris")
    o_ids = bpe(" Paris", add_special_tokens=False)["input_ids"]
    assert expl.task == "seq2seq" and expl.scores.shape == (len(o_ids), len(expl.elements))
    assert np.all(np.isfinite(expl.scores))
    # reference: teacher-forced decoder, per output token
    e = t5.get_input_embeddings()(torch.tensor([bpe(PROMPT)["input_ids"]]))[0].detach()
    gen = torch.Generator().manual_seed(0)
    noises = [torch.randn(e.shape, generator=gen) * 0.1 for _ in range(2)]
    dec = torch.tensor([[bpe.eos_token_id] + o_ids[:-1]])
    for t, tid in enumerate(o_ids):
        acc = 0
        for d in noises:
            x = (e + d).requires_grad_(True)
            f = t5(inputs_embeds=x[None], decoder_input_ids=dec).logits[0, t, tid]
            (g,) = torch.autograd.grad(f, x)
            acc = acc + (g * x).sum(-1).double() / 2
        np.testing.assert_allclose(expl.scores[t], acc.detach().numpy(), rtol=1e-4, atol=1e-7)
    # min_new_tokens: a random T5 may stop at once (transformers 4's seeded weights do).
    generated = Saliency(t5, bpe, granularity="token").explain(PROMPT, max_new_tokens=3, min_new_tokens=1)
    assert 1 <= len(sum((t.token_ids for t in generated.targets), [])) <= 3


def test_chat_template(gpt2, bpe):
    tok = copy.deepcopy(bpe)
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    messages = [{"role": "user", "content": "The capital of France?"}]
    expl = Saliency(gpt2, tok).explain(messages, targets=" Paris")
    assert expl.text == "user: The capital of France?\nassistant:"
    assert "France" in expl.elements
    with pytest.raises(InterpTextError, match="chat template"):
        Saliency(gpt2, bpe).explain(messages, targets=" Paris")


def test_tokenizer_without_pad_token_still_generates(llama, bos_tok):
    assert bos_tok.pad_token is None
    expl = Saliency(llama, bos_tok).explain([PROMPT, "The food was"], max_new_tokens=3)
    assert len(expl) == 2 and bos_tok.pad_token is None


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, t: Saliency(m, t).explain(PROMPT, targets=""), "tokenizes to nothing"),
        (lambda m, t: Saliency(m, t).explain(""), "text 0 is empty"),
        (lambda m, t: Saliency(m, t).explain("word " * 140, targets=" x"), "but the model accepts at most 128"),
        (
            lambda m, t: Saliency(m, t).explain(PROMPT, max_new_tokens=200),
            "max_new_tokens=200 leaves no room for a prompt: the 128 tokens the model accepts at most hold",
        ),
        (lambda m, t: Saliency(m, t).explain([PROMPT, PROMPT], targets=[" a"]), "got 1 targets for 2 prompts"),
        (
            lambda m, t: Saliency(m, t).explain([PROMPT, "The food"], num_beams=3, num_return_sequences=3),
            "num_return_sequences must be 1 .the options or a generation config set 3.: each prompt is explained",
        ),
        (
            lambda m, t: Occlusion(m, t).explain(PROMPT, targets=" Paris", max_new_token=3),
            r"explain\(\) options \['max_new_token'\] are for generation, but every target is given",
        ),
        (
            lambda m, t: Saliency(m, t).explain(PROMPT, return_dict_in_generate=True),
            "return_dict_in_generate=True: the explanation reads the generated ids only",
        ),
        (lambda m, t: Saliency(m, t).explain(PROMPT, max_new_tokens="3"), "max_new_tokens='3' must be an int."),
        (
            lambda m, t: Saliency(m, t).explain([PROMPT, "The food"], targets=[" Paris", {"a": 1}]),
            r"the target of prompt 1 \(\{'a': 1\}\) is not understood",
        ),
        (
            lambda m, t: Saliency(m, t).explain(PROMPT, targets=t.eos_token),
            r"the output of prompt 0 \('<\|endoftext\|>'\) has no word to explain .*granularity='all_tokens'",
        ),
    ],
)
def test_generation_errors(call, message, gpt2, bpe):
    with pytest.raises(InterpTextError, match=message):
        call(gpt2, bpe)


def test_model_without_inputs_embeds_is_refused(bpe):
    class NoEmbeds(torch.nn.Module):
        def forward(self, input_ids):
            return input_ids

        def get_input_embeddings(self):
            return None

    with pytest.raises(InterpTextError, match="does not take `inputs_embeds`"):
        Saliency(NoEmbeds(), bpe)


def test_vmapped_backward_equals_loop(gpt2, bpe):
    loop = VarGrad(gpt2, bpe, n_perturbations=3).explain([PROMPT, "It is"], targets=[" Paris is nice", " ok"])
    vmapped = VarGrad(gpt2, bpe, n_perturbations=3, targets_per_backward=3).explain(
        [PROMPT, "It is"], targets=[" Paris is nice", " ok"]
    )
    for a, b in zip(loop, vmapped):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-9, equal_nan=True)


def test_a_vmapped_backward_out_of_memory_falls_back_to_the_loop(gpt2, bpe, monkeypatch):
    prompts, targets = [PROMPT, "It is"], [" Paris is nice", " ok"]
    loop = VarGrad(gpt2, bpe, n_perturbations=3, targets_per_backward=1).explain(prompts, targets=targets)
    real_grad, calls = torch.autograd.grad, {"batched": 0, "plain": 0}

    def grad(*args, is_grads_batched=False, **kwargs):
        if is_grads_batched:
            calls["batched"] += 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        calls["plain"] += 1
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", grad)
    fallback = VarGrad(gpt2, bpe, n_perturbations=3, targets_per_backward=3).explain(prompts, targets=targets)
    assert calls["batched"] == 1  # tried once, then the loop for the rest of the call
    n_tokens = [len(bpe(t, add_special_tokens=False)["input_ids"]) for t in targets]
    assert calls["plain"] == sum(n_tokens) and max(n_tokens) > 3  # every output token by the loop
    for a, b in zip(loop, fallback):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-9, equal_nan=True)


def test_targets_per_backward_default_is_the_loop_on_cpu(gpt2, bpe):
    from interp_text.engine import CUDA_TARGETS_PER_BACKWARD

    assert Saliency(gpt2, bpe).settings.targets_per_backward is None  # chosen per device at run time
    assert CUDA_TARGETS_PER_BACKWARD == 8
    with pytest.raises(InterpTextError, match="targets_per_backward"):
        Saliency(gpt2, bpe, targets_per_backward=0)


def test_per_position_head_is_used_and_checked(gpt2, bpe):
    from transformers import GPT2LMHeadModel

    from interp_text.engine import Engine

    engine = Engine(gpt2, bpe, Saliency(gpt2, bpe).settings)
    engine.explain(PROMPT, targets=" Paris")
    assert engine.head  # GPT-2's logits are h · Wᵀ: the per-position split is used

    class SoftCapped(GPT2LMHeadModel):
        """Post-processes its logits, as soft-capping models do: the split must be refused."""

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = torch.tanh(out.logits / 0.5) * 0.5
            return out

    capped = SoftCapped(gpt2.config)
    capped.load_state_dict(gpt2.state_dict())
    capped.eval()
    engine = Engine(capped, bpe, Saliency(capped, bpe, granularity=ALL, inference_mode="log_softmax").settings)
    expl = engine.explain(PROMPT, targets=" Paris.")
    assert engine.head is False
    ref = causal_reference(capped, bpe, PROMPT, " Paris.", "saliency", mode="log_softmax")
    np.testing.assert_allclose(expl.scores, ref, rtol=1e-4, atol=1e-7, equal_nan=True)


def _post_processing_lm(kind: str, bpe):
    """A tiny causal LM that post-processes its logits as its family does, with a number chosen so
    that the post-processing changes the tiny model's logits (|logit| < 1) a lot."""
    from transformers import (
        CohereConfig,
        CohereForCausalLM,
        Gemma2Config,
        Gemma2ForCausalLM,
        GraniteConfig,
        GraniteForCausalLM,
    )

    torch.manual_seed(0)
    shared = dict(
        vocab_size=len(bpe),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_key_value_heads=1,
    )
    if kind == "gemma2":  # cap · tanh(z / cap)
        return Gemma2ForCausalLM(Gemma2Config(head_dim=16, final_logit_softcapping=0.05, **shared)).eval()
    if kind == "cohere":  # z · logit_scale
        return CohereForCausalLM(CohereConfig(logit_scale=7.0, **shared)).eval()
    return GraniteForCausalLM(GraniteConfig(logits_scaling=0.125, **shared)).eval()  # z / logits_scaling


@pytest.mark.parametrize(
    "kind,way",
    [
        ("gemma2", dict(multiply=None, divide=None, cap=0.05)),
        ("cohere", dict(multiply=7.0, divide=None, cap=None)),
        ("granite", dict(multiply=None, divide=0.125, cap=None)),
    ],
)
@pytest.mark.parametrize("mode", ["logits", "log_softmax"])
def test_a_model_that_post_processes_its_logits_keeps_the_per_position_head(kind, way, mode, bpe):
    """Soft-capping (Gemma 2), scaling up (Cohere) or down (Granite): the map is read off the model
    and applied after the per-position head, which then gives the model's own gradients (the
    whole-logits path they used to take was 150 times slower on a 256k vocabulary)."""
    from interp_text.engine import Engine

    model = _post_processing_lm(kind, bpe)
    engine = Engine(model, bpe, Saliency(model, bpe, granularity=ALL, inference_mode=mode).settings)
    expl = engine.explain(PROMPT, targets=" Paris.")
    assert engine.head and {k: getattr(engine.head[2], k) for k in way} == way and engine.head[2].add is None
    ref = causal_reference(model, bpe, PROMPT, " Paris.", "saliency", mode=mode)
    np.testing.assert_allclose(expl.scores, ref, rtol=1e-5, atol=1e-9, equal_nan=True)


def test_a_logit_map_the_config_numbers_do_not_give_is_refused(gpt2, bpe):
    """A model whose config names a scale it applies some other way (here added, not multiplied):
    no candidate map gives its logits, so the whole-logits path is kept, and its scores are right."""
    from transformers import GPT2LMHeadModel

    from interp_text.engine import Engine

    class Shifted(GPT2LMHeadModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits + self.config.logit_scale * out.logits.square()
            return out

    config = copy.deepcopy(gpt2.config)
    config.logit_scale = 3.0
    model = Shifted(config)
    model.load_state_dict(gpt2.state_dict())
    model.eval()
    engine = Engine(model, bpe, Saliency(model, bpe, granularity=ALL).settings)
    expl = engine.explain(PROMPT, targets=" Paris.")
    assert engine.head is False
    ref = causal_reference(model, bpe, PROMPT, " Paris.", "saliency")
    np.testing.assert_allclose(expl.scores, ref, rtol=1e-5, atol=1e-9, equal_nan=True)


def test_head_check_reads_only_each_rows_own_targets(gpt2, bpe):
    """Prompts of one total length with different output counts share a batch: the columns past a
    row's own outputs read other positions and must not fail the per-position head's check."""
    from interp_text.engine import Engine

    prompts = [PROMPT, "The food was cold and"]  # 11 and 9 tokens
    assert [len(bpe(p).input_ids) for p in prompts] == [11, 9]
    engine = Engine(gpt2, bpe, Saliency(gpt2, bpe, granularity=ALL).settings)
    together = engine.explain(prompts, targets=[[5, 6], [5, 6, 7, 8]])
    assert engine.head  # kept on
    for k, target in enumerate([[5, 6], [5, 6, 7, 8]]):
        alone = Saliency(gpt2, bpe, granularity=ALL).explain(prompts[k], targets=target)
        np.testing.assert_allclose(together[k].scores, alone.scores, rtol=1e-5, atol=1e-8, equal_nan=True)


def test_head_check_is_reused_and_redone_after_a_swap(gpt2, bpe):
    method = Saliency(gpt2, bpe, granularity=ALL)
    first = method.explain(PROMPT, targets=" Paris")
    assert method._head_check[1]
    again = method.explain(PROMPT, targets=" Paris")
    np.testing.assert_array_equal(first.scores, again.scores)
    original = gpt2.lm_head
    try:
        gpt2.lm_head = torch.nn.Linear(original.in_features, original.out_features, bias=False)
        gpt2.lm_head.weight = original.weight
        method.explain(PROMPT, targets=" Paris")
        assert method._head_check[0][1] == id(gpt2.lm_head)
    finally:
        gpt2.lm_head = original


def test_head_check_is_redone_when_the_models_logits_change(gpt2, bpe):
    """A hook that changes the logits (a temperature), added after the first call: the reused
    explainer's scores are a fresh one's, not the gradients of the logits before the hook."""
    method = Saliency(gpt2, bpe, granularity=ALL, inference_mode="log_softmax")
    method.explain(PROMPT, targets=" Paris")

    def temperature(module, args, out):
        out.logits = out.logits / 0.5
        return out

    handle = gpt2.register_forward_hook(temperature)
    try:
        reused = method.explain(PROMPT, targets=" Paris")
        fresh = Saliency(gpt2, bpe, granularity=ALL, inference_mode="log_softmax").explain(PROMPT, targets=" Paris")
        reference = causal_reference(gpt2, bpe, PROMPT, " Paris", "saliency", mode="log_softmax")
    finally:
        handle.remove()
    np.testing.assert_array_equal(reused.scores, fresh.scores)
    np.testing.assert_allclose(reused.scores, reference, rtol=1e-4, atol=1e-7, equal_nan=True)


def _whole_logits(model, tok, **options):
    """The scores of the whole-logits path: autograd through the model's own logits."""
    from interp_text.engine import Engine

    engine = Engine(model, tok, Saliency(model, tok, granularity=ALL, **options).settings)
    engine.head = False
    return engine.explain(PROMPT, targets=" Paris.").scores


@pytest.mark.parametrize("how", ["hook", "subclass"])
def test_a_head_that_does_more_than_its_weight_is_called_as_a_module(how, gpt2, bpe):
    """LOGITS reads a target's logit as W[y] · h, without the vocabulary: a hook on the LM head, or a
    Linear subclass with a forward of its own, is then skipped; such a head is called instead."""

    class Halved(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) / 2

    model = copy.deepcopy(gpt2)
    if how == "hook":
        model.lm_head.register_forward_hook(lambda module, args, out: out / 2)
    else:
        halved = Halved(model.lm_head.in_features, model.lm_head.out_features, bias=False)
        halved.weight = model.lm_head.weight
        model.lm_head = halved
    for mode in ("logits", "log_softmax"):
        got = Saliency(model, bpe, granularity=ALL, inference_mode=mode).explain(PROMPT, targets=" Paris.")
        np.testing.assert_allclose(got.scores, _whole_logits(model, bpe, inference_mode=mode), rtol=1e-5, atol=1e-9)
        plain = Saliency(gpt2, bpe, granularity=ALL, inference_mode=mode).explain(PROMPT, targets=" Paris.")
        assert not np.allclose(got.scores, plain.scores, equal_nan=True)  # the halving is seen


def test_head_check_is_redone_when_a_hook_is_swapped_or_the_models_own_scale_changes(gpt2, bpe):
    """One hook replaced by another (as many hooks as before), and Cohere's logit_scale changed on the
    model itself (the number it multiplies by; its config keeps the old one)."""
    from transformers import CohereConfig, CohereForCausalLM

    method = Saliency(gpt2, bpe, granularity=ALL, inference_mode="log_softmax")
    handle = gpt2.register_forward_hook(lambda module, args, out: out)
    method.explain(PROMPT, targets=" Paris.")
    handle.remove()

    def temperature(module, args, out):
        out.logits = out.logits / 4
        return out

    handle = gpt2.register_forward_hook(temperature)
    try:
        got = method.explain(PROMPT, targets=" Paris.").scores
        np.testing.assert_allclose(got, _whole_logits(gpt2, bpe, inference_mode="log_softmax"), rtol=1e-5, atol=1e-9)
    finally:
        handle.remove()

    torch.manual_seed(0)
    config = CohereConfig(
        vocab_size=len(bpe), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    cohere = CohereForCausalLM(config).eval()
    method = Saliency(cohere, bpe, granularity=ALL)
    method.explain(PROMPT, targets=" Paris.")
    cohere.logit_scale = 2.0
    got = method.explain(PROMPT, targets=" Paris.").scores
    np.testing.assert_allclose(got, _whole_logits(cohere, bpe), rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------- perturbation: the unmasked prefix
LONG_PROMPT = ("the food was cold but the staff were lovely and the pasta was good, " * 3).rstrip()  # 45 words


def _occlusion_and_tokens(model, tok, **kw):
    """An Occlusion explanation of LONG_PROMPT and the token positions its forwards ran."""
    from interp_text.perturbation import Occlusion

    explainer = Occlusion(model, tok, inference_mode="log_softmax", **kw)  # batch_size 64: one batch would fit all
    explainer.explain(LONG_PROMPT, targets=" and the staff")  # the first call checks the prefix cache once
    tokens = []
    hook = model.register_forward_pre_hook(
        lambda m, a, k: tokens.append(k["inputs_embeds"].shape[0] * k["inputs_embeds"].shape[1]), with_kwargs=True
    )
    try:
        expl = explainer.explain(LONG_PROMPT, targets=" and the staff")
    finally:
        hook.remove()
    return expl, sum(tokens)


@pytest.mark.parametrize("name,tok_name", [("gpt2", "bpe"), ("llama", "bos_tok")])  # learned / rotary positions
def test_causal_perturbation_reuses_the_unmasked_prefix(name, tok_name, request, monkeypatch):
    import interp_text.perturbation as P

    model, tok = request.getfixturevalue(name), request.getfixturevalue(tok_name)
    cached, cached_tokens = _occlusion_and_tokens(model, tok)
    monkeypatch.setattr(P, "PREFIX_MIN", 10**9)  # never worth it: the plain forwards
    plain, plain_tokens = _occlusion_and_tokens(model, tok)
    assert np.isfinite(plain.scores[:, :45]).all() and np.abs(plain.scores[:, :45]).max() > 1e-3
    np.testing.assert_allclose(cached.scores, plain.scores, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert cached_tokens < 0.8 * plain_tokens  # rows masked late skip their unmasked prefix


def test_a_model_whose_cache_cannot_be_indexed_keeps_the_plain_forward(gpt2, bpe, monkeypatch):
    from transformers import DynamicCache

    def broken(self, indices):
        raise AttributeError("no batch_select_indices here")

    plain, _ = _occlusion_and_tokens(gpt2, bpe)
    monkeypatch.setattr(DynamicCache, "batch_select_indices", broken)
    fallback, _ = _occlusion_and_tokens(gpt2, bpe)
    np.testing.assert_allclose(fallback.scores, plain.scores, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_prefix_rows_of_several_prompts_come_back_to_their_own_text(gpt2, bpe, monkeypatch):
    """Rows sorted by shared prefix across two prompts of one length are put back in each text's order."""
    import interp_text.perturbation as P
    from interp_text.perturbation import Occlusion

    prompts = [LONG_PROMPT, LONG_PROMPT.replace("lovely", "good")]
    assert len(bpe(prompts[0])["input_ids"]) == len(bpe(prompts[1])["input_ids"])  # one length group
    explainer = Occlusion(gpt2, bpe, batch_size=16)
    together = explainer.explain(prompts, targets=" and the staff")
    assert explainer._prefix_checked == {id(gpt2): True}  # the prefix path ran
    monkeypatch.setattr(P, "PREFIX_MIN", 10**9)  # the plain forwards, one prompt at a time
    for expl, prompt in zip(together, prompts):
        alone = Occlusion(gpt2, bpe, batch_size=16).explain(prompt, targets=" and the staff")
        np.testing.assert_allclose(expl.scores, alone.scores, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert not np.allclose(together[0].scores[:, :45], together[1].scores[:, :45])  # two different texts


def test_running_out_of_memory_in_the_prefix_path_halves_the_batch_and_keeps_the_path(gpt2, bpe):
    """Out of device memory while building the prefix cache says nothing of the cache: the call starts
    over at half the batch size (one warning), and the prefix path stays on for later calls."""
    from interp_text.perturbation import Occlusion

    reference = Occlusion(gpt2, bpe, batch_size=16).explain(LONG_PROMPT, targets=" and the staff")
    explainer = Occlusion(gpt2, bpe, batch_size=16)
    failed = []

    def once(module, args, kwargs):
        if kwargs.get("use_cache") and kwargs.get("past_key_values") is None and not failed:
            failed.append(1)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    handle = gpt2.register_forward_pre_hook(once, with_kwargs=True)
    try:
        with pytest.warns(UserWarning, match="batch_size=16 ran out of device memory; this call used batch_size=8"):
            got = explainer.explain(LONG_PROMPT, targets=" and the staff")
    finally:
        handle.remove()
    assert failed and explainer._prefix_checked == {id(gpt2): True}
    np.testing.assert_allclose(got.scores, reference.scores, rtol=1e-5, atol=1e-7, equal_nan=True)


def test_chat_template_special_tokens_are_never_words_nor_masked(llama, bos_tok):
    tok = copy.deepcopy(bos_tok)
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}assistant:"
    )
    messages = [{"role": "user", "content": "The capital of France?"}]
    words = Occlusion(llama, tok).explain(messages, targets=" Paris")
    assert words.text.startswith("<s>user:") and "<|endoftext|>" in words.text
    # The messages' contents are explained; the template's words ("user:", "assistant:") are read, not explained.
    assert words.elements == ["The", "capital", "of", "France", "?"]
    start = words.text.index("The capital")
    assert words.options["chat"] == [[start, start + len("The capital of France?")]]
    tokens = Occlusion(llama, tok, granularity="all_tokens").explain(messages, targets=" Paris")
    template = [j for j, (a, b) in enumerate(tokens.spans) if not start <= a < start + 22]
    assert "".join(tokens.elements[j] for j in template) == "<s>user: <|endoftext|>assistant:"  # as written
    assert np.isnan(tokens.scores[:, template]).all()  # never masked
    assert np.isfinite(np.delete(tokens.scores[:, : len(tokens.elements)], template, axis=1)).all()


def test_a_chat_templates_own_words_are_read_not_explained(gpt2, bpe):
    """A system prompt the template adds by itself is the template's, as role names are; a template
    that changes a content (here upper-cases it) leaves no content to find, so all its words are
    explained, as the text it wrote."""
    import pickle

    from interp_text.inputs import apply_chat_template

    tok = copy.deepcopy(bpe)
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}system: Answer well.\n{% endif %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    )
    messages = [{"role": "user", "content": "The capital of France?"}]
    expl = Saliency(gpt2, tok).explain(messages, targets=" Paris")
    assert expl.text.startswith("system: Answer well.\nuser: ")
    assert expl.elements == ["The", "capital", "of", "France", "?"]
    templated = apply_chat_template(tok, messages)
    assert pickle.loads(pickle.dumps(templated)).contents == templated.contents == ((27, 49),)
    # A content that repeats the template's words is found where the message put it, not in them.
    for content in ("user", "Answer well", "assistant"):
        repeated = apply_chat_template(tok, [{"role": "user", "content": content}])
        (span,) = repeated.contents
        assert span == (27, 27 + len(content)) and repeated[span[0] : span[1]] == content
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}assistant:"
    upper = Saliency(gpt2, tok).explain(messages, targets=" Paris")
    assert upper.options["chat"] is True
    assert upper.elements == ["user", ":", "THE", "CAPITAL", "OF", "FRANCE", "?", "assistant", ":"]


def test_an_end_of_text_token_in_the_output_is_no_part_of_a_word(gpt2, bpe):
    expl = Saliency(gpt2, bpe).explain(PROMPT, targets=" Paris." + bpe.eos_token)
    assert expl.output_elements == ["Paris", "."]
    assert all(bpe.eos_token not in e for e in expl.output_elements)


def test_sampling_is_seeded_and_leaves_the_global_generator_alone(gpt2, bpe):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    outputs = [
        Saliency(gpt2, bpe, seed=s).explain(PROMPT, do_sample=True, max_new_tokens=6).output_text for s in (0, 0, 1)
    ]
    assert outputs[0] == outputs[1] and outputs[0] != outputs[2]
    assert torch.equal(torch.get_rng_state(), state)


def test_a_sampled_output_records_the_seed_it_was_drawn_with(gpt2, bpe):
    """Saliency and Occlusion use no seed of their own: the output's record keeps it, so the draw can be
    made again; a greedy output and a forced one depend on none."""
    for method in (Saliency, Occlusion):
        sampled = method(gpt2, bpe, seed=5).explain(PROMPT, do_sample=True, max_new_tokens=4)
        assert sampled.options["generation"] == {"do_sample": True, "max_new_tokens": 4, "seed": 5}
        again = method(gpt2, bpe, seed=sampled.options["generation"]["seed"]).explain(
            PROMPT, do_sample=True, max_new_tokens=4
        )
        assert again.output_ids == sampled.output_ids
    greedy = Saliency(gpt2, bpe, seed=5).explain(PROMPT, max_new_tokens=4)
    assert greedy.options["generation"] == {"max_new_tokens": 4}
    forced = Saliency(gpt2, bpe, seed=5).explain([PROMPT, PROMPT], targets=[" Paris", None], do_sample=True)
    assert "generation" not in forced[0].options and forced[1].options["generation"]["seed"] == 5


def test_one_token_id_per_prompt(gpt2, bpe):
    ids = [bpe(w, add_special_tokens=False)["input_ids"][0] for w in ("Paris", "the")]  # no lone-space tokens
    by_int = Saliency(gpt2, bpe).explain([PROMPT, "The food"], targets=ids)
    by_list = Saliency(gpt2, bpe).explain([PROMPT, "The food"], targets=[[ids[0]], [ids[1]]])
    for a, b in zip(by_int, by_list):
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.output_text == b.output_text
    # A bare int is a one-token target too: for one prompt, and for every prompt of a list.
    alone = Saliency(gpt2, bpe).explain(PROMPT, targets=ids[0])
    np.testing.assert_array_equal(alone.scores, by_int[0].scores)
    both = Saliency(gpt2, bpe).explain([PROMPT, "The food"], targets=np.int64(ids[0]))
    assert [e.output_ids for e in both] == [[ids[0]], [ids[0]]]


def test_metrics_score_a_chat_explanation_on_the_input_that_was_explained(llama, bos_tok):
    from interp_text import Deletion, Insertion

    tok = copy.deepcopy(bos_tok)
    tok.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}A:"
    expl = Occlusion(llama, tok).explain([{"role": "user", "content": "The capital of France?"}], targets=" Paris")
    assert expl.options["chat"] == [[9, 31]] and expl.text.count("<s>") == 1
    assert expl.text[9:31] == "The capital of France?" and expl.elements == ["The", "capital", "of", "France", "?"]
    start = Deletion(llama, tok).curves(expl)[:, 0]  # nothing deleted yet: the explained input itself
    np.testing.assert_allclose(start, [t.probability for t in expl.targets], rtol=1e-5)
    end = Insertion(llama, tok).curves(expl)[:, -1]  # everything inserted back
    np.testing.assert_allclose(end, [t.probability for t in expl.targets], rtol=1e-5)


def test_metrics_use_the_explained_output_ids_not_a_retokenization(gpt2, bpe):
    from interp_text import Deletion, Explanation

    letters = [bpe.convert_tokens_to_ids(c) for c in "Paris"]  # unmerged: "Paris" tokenizes otherwise
    assert bpe("Paris", add_special_tokens=False)["input_ids"] != letters
    expl = Occlusion(gpt2, bpe).explain(PROMPT, targets=letters)
    assert expl.output_ids == letters and expl.output_elements == ["Paris"]
    start = Deletion(gpt2, bpe).curves(expl)[:, 0]
    np.testing.assert_allclose(start, [expl.targets[0].probability], rtol=1e-5)
    assert Explanation.from_dict(expl.to_dict()) == expl


def test_a_lone_space_token_belongs_to_the_word_it_precedes(gpt2, bpe):
    output = " Paris."
    ids = bpe(output, add_special_tokens=False)["input_ids"]
    assert bpe.convert_ids_to_tokens(ids)[0] == "\u0120"  # this tokenizer writes the space alone
    expl = Occlusion(gpt2, bpe, inference_mode="log_softmax").explain(PROMPT, targets=output)
    assert expl.output_elements == ["Paris", "."]
    assert expl.targets[0].token_ids == ids[:-1]  # the space token is the word's
    prompt_ids = bpe(PROMPT)["input_ids"]
    with torch.no_grad():
        logp = gpt2(torch.tensor([prompt_ids + ids])).logits[0].log_softmax(-1)
    n = len(prompt_ids)
    word = sum(logp[n - 1 + t, ids[t]].item() for t in range(len(ids) - 1))
    assert expl.targets[0].score == pytest.approx(word, rel=1e-5)
    assert math.prod(t.probability for t in expl.targets) == pytest.approx(
        math.exp(word + logp[n - 2 + len(ids), ids[-1]].item()), rel=1e-5
    )


def test_generation_runs_batch_size_prompts_at_a_time(gpt2, bpe):
    prompts = ["The capital of France is", "The capital of Paris is", "The capital of France is"]
    assert len({len(bpe(p)["input_ids"]) for p in prompts}) == 1  # one length: one group
    rows = []
    handle = gpt2.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(
            (args[0] if args else kwargs.get("input_ids", kwargs.get("inputs_embeds"))).shape[0]
        ),
        with_kwargs=True,
    )
    try:
        got = Saliency(gpt2, bpe, batch_size=2).explain(prompts, max_new_tokens=3)
    finally:
        handle.remove()
    assert max(rows) <= 2
    alone = [Saliency(gpt2, bpe).explain(p, max_new_tokens=3) for p in prompts]
    assert [e.output_ids for e in got] == [e.output_ids for e in alone]


def test_rows_of_one_length_with_different_prompt_lengths(gpt2, bpe):
    """11 + 4 and 10 + 5 tokens share a forward; each row's outputs start at its own prompt's end."""
    prompts, outputs = ["The capital of France is", "The food of France is"], [" Paris", " Paris is"]
    lengths = [
        len(bpe(p)["input_ids"]) + len(bpe(o, add_special_tokens=False)["input_ids"]) for p, o in zip(prompts, outputs)
    ]
    assert lengths[0] == lengths[1]
    for cls in (Occlusion, Saliency):
        together = cls(gpt2, bpe, inference_mode="log_softmax").explain(prompts, targets=outputs)
        for e, p, o in zip(together, prompts, outputs):
            alone = cls(gpt2, bpe, inference_mode="log_softmax").explain(p, targets=o)
            np.testing.assert_allclose(e.scores, alone.scores, rtol=1e-5, atol=1e-6, equal_nan=True)
            assert [t.score for t in e.targets] == pytest.approx([t.score for t in alone.targets], abs=1e-5)


def test_sampled_outputs_do_not_depend_on_batch_size(gpt2, bpe):
    """Sampling draws for a whole batch at each step: each sampled prompt generates alone, seeded, so
    batch_size, the other prompts and their order change nothing."""
    prompts = ["The food was", "The staff were", "The capital is", "The food was"]
    assert len({len(bpe(p)["input_ids"]) for p in prompts}) == 1  # one length group
    outputs = {
        size: [
            e.output_ids
            for e in Saliency(gpt2, bpe, batch_size=size, seed=3).explain(prompts, max_new_tokens=4, do_sample=True)
        ]
        for size in (2, 64)
    }
    assert outputs[2] == outputs[64]
    alone = [Saliency(gpt2, bpe, seed=3).explain(p, max_new_tokens=4, do_sample=True).output_ids for p in prompts]
    assert outputs[2] == alone
    reversed_order = Saliency(gpt2, bpe, seed=3).explain(prompts[::-1], max_new_tokens=4, do_sample=True)
    assert [e.output_ids for e in reversed_order] == alone[::-1]
    assert outputs[2][0] == outputs[2][3]  # the same prompt, the same seed: the same sample


def test_a_sampled_output_does_not_depend_on_the_other_prompts(gpt2, bpe):
    alone = Saliency(gpt2, bpe, seed=0).explain("The food was cold but", max_new_tokens=3, do_sample=True)
    after = Saliency(gpt2, bpe, seed=0).explain(
        ["The capital of", "The food was cold but"], max_new_tokens=3, do_sample=True
    )
    assert after[1].output_ids == alone.output_ids


def test_a_generation_config_the_user_passes_is_followed(gpt2, bpe):
    from transformers import GenerationConfig

    e = Saliency(gpt2, bpe).explain(PROMPT, generation_config=GenerationConfig(max_new_tokens=2, do_sample=False))
    assert len(e.output_ids) <= 2


def test_sampling_that_runs_out_of_gpu_memory_names_the_fix(gpt2, bpe, monkeypatch):
    """A sampled prompt generates alone, so halving batch_size cannot help: an error says what can."""
    calls = []

    def generate(*args, input_ids, **kwargs):
        calls.append(input_ids.shape[0])
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gpt2, "generate", generate)
    with pytest.raises(InterpTextError, match=r"sampling a prompt of \d+ tokens ran out of GPU memory; lower max_new"):
        Saliency(gpt2, bpe, batch_size=2).explain(["The capital of"] * 3, max_new_tokens=2, do_sample=True)
    assert calls == [1]  # tried once, not halved again and again


@pytest.mark.parametrize("prefix", [True, False])
def test_prompts_that_share_a_masked_input_and_target_run_it_once(prefix, gpt2, bpe, monkeypatch):
    """Masking the one word two prompts differ in gives one input; with another target it is two."""
    import interp_text.perturbation as P
    from interp_text.perturbation import Occlusion

    if not prefix:
        monkeypatch.setattr(P, "PREFIX_MIN", 10**9)
    prompts = [LONG_PROMPT, LONG_PROMPT.replace("lovely", "good", 1)]
    assert len(bpe(prompts[0])["input_ids"]) == len(bpe(prompts[1])["input_ids"])  # one length group
    explainer = Occlusion(gpt2, bpe, batch_size=16)
    counted = []

    def hook(module, args, kwargs):
        if not (kwargs.get("use_cache") and kwargs.get("past_key_values") is None):
            counted.append(kwargs["inputs_embeds"].shape[0])

    def rows(targets):
        """The explanations and the rows scored (not counting the prefix passes, which score nothing)."""
        counted.clear()
        return explainer.explain(prompts, targets=targets), sum(counted)

    # Hooked first: the checks of the prefix path and of the LM head (redone when hooks change) run once.
    handle = gpt2.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        explainer.explain(prompts[0], targets=" and the staff")
        same, shared_rows = rows([" and the staff"] * 2)
        _, apart_rows = rows([" and the staff", " and the food"])  # one length group, another target
    finally:
        handle.remove()
    assert getattr(explainer, "_prefix_checked", None) == ({id(gpt2): True} if prefix else None)
    assert shared_rows == apart_rows - 1 == 2 * 46 - 1  # each prompt: the clean row and 45 masked words
    for expl, prompt in zip(same, prompts):
        alone = Occlusion(gpt2, bpe, batch_size=16).explain(prompt, targets=" and the staff")
        np.testing.assert_allclose(expl.scores, alone.scores, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_an_unknown_token_in_the_output_is_an_element_with_its_row(wp_tokenizer):
    """[UNK] stands for text the vocabulary lacks: explained like any output token, not dropped as a control token."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(wp_tokenizer), n_embd=32, n_layer=1, n_head=2)).eval()
    target = "cold \u2603 food"  # the snowman is no word of this vocabulary
    ids = wp_tokenizer(target, add_special_tokens=False)["input_ids"]
    assert wp_tokenizer.unk_token_id in ids
    e = Saliency(model, wp_tokenizer).explain("the food was", targets=target)
    assert e.output_elements == ["cold", "[UNK]", "food"]
    assert [i for t in e.targets for i in t.token_ids] == ids  # every output token in one row


@pytest.mark.parametrize("mode", ["log_softmax", "softmax"])
def test_each_targets_backward_crosses_the_lm_head_at_its_own_position_only(mode, gpt2, bpe):
    """With a normaliser, target t's logit and normaliser come from its own position's vocabulary
    logits. Stacked with the other positions', a backward from t would send zeros through every
    position's LM head (the time of one backward per target per position)."""
    grads = []

    def keep(module, args, out):
        if out.requires_grad:
            out.register_hook(lambda g: grads.append(bool(g.abs().sum() > 0)))

    handle = gpt2.lm_head.register_forward_hook(keep)
    try:
        expl = Saliency(gpt2, bpe, inference_mode=mode, granularity="all_tokens").explain(PROMPT, targets=[5, 6, 7, 8])
    finally:
        handle.remove()
    assert len(expl.targets) == 4
    assert grads == [True] * 4  # one backward through the head per target, each at its own position


def test_an_output_of_pad_tokens_only_is_named_as_such(gpt2, bpe):
    """Pad tokens are dropped from a generated output; one made of nothing else is not 'stopped at once'."""
    from transformers import LogitsProcessor, LogitsProcessorList

    tok = copy.deepcopy(bpe)
    tok.pad_token = tok.convert_ids_to_tokens(5)  # a pad token that is no end-of-sequence token

    class OnlyPad(LogitsProcessor):
        def __call__(self, ids, scores):
            return torch.where(torch.arange(scores.shape[1]) == 5, 0.0, -float("inf")).expand_as(scores)

    message = (
        "the output for prompt 0 is only pad tokens (id 5), which are dropped: the model generated nothing else. "
        "Pass the output to explain as targets=, or suppress_tokens=[5] in the generation options."
    )
    with pytest.raises(InterpTextError) as err:
        Saliency(gpt2, tok).explain(PROMPT, max_new_tokens=3, logits_processor=LogitsProcessorList([OnlyPad()]))
    assert str(err.value) == message


def test_a_metric_checks_the_prefix_path_once_not_every_call(gpt2, bpe):
    """Deletion on a long prompt takes the prefix path: checked against the plain forward in its first
    call only, as an explainer is."""
    from interp_text import Deletion, Insertion, evaluate_together
    from interp_text.perturbation import Occlusion

    expl = Occlusion(gpt2, bpe, batch_size=16).explain(LONG_PROMPT, targets=" and the staff")
    # Ranked last word first: Deletion's rows keep a long prefix of the prompt.
    expl = dataclasses.replace(expl, scores=np.broadcast_to(np.arange(expl.scores.shape[1]), expl.scores.shape).copy())
    deletion, counted = Deletion(gpt2, bpe, batch_size=16, steps=10), []
    handle = gpt2.register_forward_pre_hook(
        lambda m, a, kw: counted.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        first = deletion.evaluate(expl)
        rows_first, counted[:] = sum(counted), []
        second = deletion.evaluate(expl)
        rows_second = sum(counted)
    finally:
        handle.remove()
    assert deletion._prefix_checked == {id(gpt2): True}
    assert second == first and rows_second < rows_first  # the check's plain forward ran in the first call only
    insertion = Insertion(gpt2, bpe, batch_size=16, steps=10)
    d, i = evaluate_together([deletion, insertion], [expl])
    assert insertion._prefix_checked == {id(gpt2): True} and d == [pytest.approx(first, rel=1e-6)]


@pytest.mark.parametrize("batch_size", [64, 2])
def test_a_targets_whole_statistic_is_let_go_once_its_samples_are_in(batch_size, gpt2, bpe, monkeypatch):
    """VarGrad keeps a (seq, hidden) float64 mean and M2 per target while its samples come in. Once a
    target has them all it is reduced to (seq,) at once: with every sample in one batch, one whole
    statistic is alive at a time, not one per output token (11 GiB for 400 tokens of a 7B model)."""
    import weakref

    from interp_text.statistics import Streaming

    alive, most = weakref.WeakSet(), [0]
    update = Streaming.update

    def tracked(self, x):
        update(self, x)
        alive.add(self)
        most[0] = max(most[0], len(alive))

    monkeypatch.setattr(Streaming, "update", tracked)
    got = VarGrad(gpt2, bpe, n_perturbations=4, batch_size=batch_size).explain(
        "The food was cold and", targets=" the staff were lovely"
    )
    n_out = len(got.output_ids)
    assert n_out >= 4
    # All 4 samples in one batch: one at a time. Two per batch: every target waits for its second half.
    assert most[0] == (1 if batch_size == 64 else n_out)
    monkeypatch.setattr(Streaming, "update", update)
    want = VarGrad(gpt2, bpe, n_perturbations=4, batch_size=batch_size).explain(
        "The food was cold and", targets=" the staff were lovely"
    )
    np.testing.assert_array_equal(got.scores, want.scores)


@pytest.mark.parametrize("cls", [Saliency, IntegratedGradients, SmoothGrad, VarGrad])
def test_gradients_reduced_as_they_come_equal_the_reduced_statistic(cls, gpt2, bpe, monkeypatch):
    """A mean of signed sums (or one sample) is reduced over the hidden dimension per sample, so each
    target holds (seq,) instead of (seq, hidden); the scores are those of the whole statistic."""
    from interp_text.engine import Engine
    from interp_text.statistics import Streaming

    shapes = []
    update = Streaming.update
    monkeypatch.setattr(Streaming, "update", lambda self, x: (shapes.append(x.dim()), update(self, x))[1])
    kw = {} if cls is Saliency else ({"n_interpolations": 4} if cls is IntegratedGradients else {"n_perturbations": 3})
    early = cls(gpt2, bpe, **kw).explain("The food was cold and", targets=" the staff were")
    assert set(shapes) == ({3} if cls is VarGrad else {2})  # VarGrad needs the whole (seq, hidden) variance
    monkeypatch.setattr(Engine, "_reduces_early", lambda self: False)
    whole = cls(gpt2, bpe, **kw).explain("The food was cold and", targets=" the staff were")
    np.testing.assert_allclose(early.scores, whole.scores, rtol=1e-9, atol=1e-12, equal_nan=True)
    if early.completeness_gap is not None:
        np.testing.assert_allclose(early.completeness_gap, whole.completeness_gap, rtol=1e-9, atol=1e-12)


def test_a_forced_word_missing_its_space_is_named():
    """GPT-2's tokenizer writes " Paris" as one token and "Paris" as "P" + "aris": forcing "Paris"
    after "... is" explains a token the model all but never gives there."""
    import warnings

    from interp_text import load_default

    model, tok = load_default("facts")
    prompt = "The capital of France is"
    with pytest.warns(UserWarning) as said:
        e = Saliency(model, tok).explain([prompt, prompt], targets=["Paris", "Paris"])
    assert len(said) == 1  # once per call
    assert str(said[0].message) == (
        "the forced target of prompt 0 ('Paris') starts with a token of probability 5.6e-07, and the same word after "
        "a space with one of 9.7e-01: a forced text is tokenized as written, and this tokenizer writes the space "
        "before a word into the word's token. To force the word after the prompt, pass ' Paris'."
    )
    assert e[0].targets[0].probability < 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Meant as written, or unlikely either way (after an opening quote or bracket no space belongs,
        # and " Paris" is no likelier there than "P"): no warning.
        for target, text in ((" Paris", prompt), (",", prompt), ("Paris", prompt + ' "')):
            Occlusion(model, tok).explain(text, targets=target)
        Occlusion(model, tok).explain(prompt + " (", targets="Berlin")


def test_a_forced_word_glued_to_the_prompts_last_word_is_named_on_any_model():
    """An untrained (or unsure) model gives " Paris" no more probability than "P", so the probability
    check stays silent; "is" + "Paris" reads as one word "isParis" whatever the model, and interpreto
    adds the space to every target itself: a port would explain another token without a word."""
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel

    from interp_text import load_default

    _, tok = load_default("facts")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=16, n_positions=64)
    config.bos_token_id = config.eos_token_id = tok.eos_token_id
    model = GPT2LMHeadModel(config).eval()
    prompt = "The capital of France is"
    with pytest.warns(UserWarning) as said:
        Saliency(model, tok).explain(prompt, targets="Paris.")
    assert [str(w.message) for w in said] == [
        "the forced target of prompt 0 ('Paris.') joins the prompt's last word into 'isParis.': a forced text is "
        "tokenized as written, and this tokenizer writes the space before a word into the word's token. To force "
        "the word after the prompt, pass ' Paris.'."
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target, text in ((" Paris", prompt), (".", prompt), ("Paris", prompt + ' "'), ("é", prompt)):
            Saliency(model, tok).explain(text, targets=target)
        # A prompt that ends mid-word on purpose: its continuation is lower case or digits.
        for text, target in (("The capital of Fra", "nce is Paris."), ("In 20", "24"), ("x = num", "bers[0]")):
            Saliency(model, tok).explain(text, targets=target)


def test_a_prompt_ending_with_a_space_token_is_named():
    """GPT-2's tokenizer makes a trailing space a token of its own ("Ġ"), which the model all but
    never reads before a word: the bundled GPT-2 then answers "." where it answers " Paris"."""
    import warnings

    from interp_text import load_default

    model, tok = load_default("facts")
    prompt = "The capital of France is"
    with pytest.warns(UserWarning) as said:
        e = Saliency(model, tok).explain([prompt + " ", prompt + "  "], max_new_tokens=2)
    assert [str(w.message) for w in said] == [
        "prompt 0 ends with a space, which this tokenizer makes a token of its own: the model reads a lone space "
        "token, which it rarely sees before a word, after the prompt. Drop the trailing space (pass text.rstrip()): "
        "the next word's token brings its own."
    ]
    assert e[0].output_text == "."
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Saliency(model, tok).explain(prompt, max_new_tokens=2).output_text == " Paris."
        Saliency(model, tok).explain(prompt + "\n", max_new_tokens=2)  # a line break is a prompt's own


def test_a_bfloat16_model_keeps_the_prefix_path(bpe, monkeypatch):
    """Its check allows a few bfloat16 rounding steps: the two paths' logits differ by about one
    there (0.006 on a logit of 1.5 here), which a float32 tolerance read as a broken cache (the
    plain forwards then, 1.6x slower)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import interp_text.perturbation as P
    from interp_text.perturbation import Occlusion

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(bpe), n_embd=256, n_layer=4, n_head=4, n_positions=256)
    model = GPT2LMHeadModel(config).eval().to(torch.bfloat16)
    prompt = " ".join(["The food was cold but the staff were lovely and the pasta was good."] * 3) + " The capital is"
    explainer = Occlusion(model, bpe, batch_size=32)
    fast = explainer.explain(prompt, targets=" Paris")
    assert explainer._prefix_checked == {id(model): True}
    monkeypatch.setattr(P, "PREFIX_MIN", 10**9)  # the plain forwards
    plain = Occlusion(model, bpe, batch_size=32).explain(prompt, targets=" Paris")
    exact = Occlusion(model.float(), bpe, batch_size=32).explain(prompt, targets=" Paris")  # the same weights
    # Occlusion's scores are differences of logits near 1.5, whose bfloat16 step is 0.008: both paths
    # are that far from float32's, and the cached one no farther than the plain one.
    ulp = 2.0**-7 * 2
    fast_err, plain_err = (np.nanmax(np.abs(e.scores - exact.scores)) for e in (fast, plain))
    assert fast_err <= 2 * ulp and plain_err <= 2 * ulp, (fast_err, plain_err)


def test_a_generators_forwards_hold_a_bounded_amount_of_logits(gpt2, bpe, monkeypatch):
    """Rows × scored positions × vocabulary float32 logits per forward: 64 rows of a 198-token output
    over GPT-2's 50 257 tokens held 5.3 GiB. Capped, the rows per forward shrink; the numbers do not."""
    import interp_text.perturbation as P
    from interp_text.perturbation import KernelShap

    prompt, target = "The capital of France is", " Paris, a big city."
    mode = "log_softmax"  # every row's normaliser is read: the whole logits (LOGITS makes them for few rows)
    whole = KernelShap(gpt2, bpe, n_samples=40, inference_mode=mode).explain(prompt, targets=target)
    positions = len(bpe(target)["input_ids"]) + 1  # the prompt's last position predicts the first target token
    vocab = gpt2.get_input_embeddings().weight.shape[0]
    monkeypatch.setattr(P, "LOGITS_BYTES", 4 * vocab * positions * 3)  # three rows
    rows = []
    handle = gpt2.register_forward_pre_hook(lambda m, a, k: rows.append(k["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        capped = KernelShap(gpt2, bpe, n_samples=40, inference_mode=mode).explain(prompt, targets=target)
    finally:
        handle.remove()
    assert max(rows) == 3 and len(rows) > 10
    np.testing.assert_allclose(capped.scores, whole.scores, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("which", ["gpt2", "t5", "bart"])
def test_masked_rows_in_logits_skip_the_vocabulary(which, gpt2, t5, bpe, monkeypatch):
    """A perturbation explainer in LOGITS reads each masked row's target logits only: they come as
    W[y] · h from the states the LM head reads, and the head runs (over the vocabulary) on the
    unperturbed rows alone, whose log-probabilities are read. The numbers are the whole logits'."""
    import interp_text.perturbation as P
    from interp_text.perturbation import KernelShap, Occlusion

    if which == "bart":
        from transformers import BartConfig, BartForConditionalGeneration

        torch.manual_seed(0)
        config = BartConfig(
            vocab_size=len(bpe), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, forced_eos_token_id=None,
        )  # fmt: skip
        model = BartForConditionalGeneration(config).eval()
        with torch.no_grad():
            model.final_logits_bias.normal_()
    else:
        model = {"gpt2": gpt2, "t5": t5}[which]
    prompts, target = [LONG_PROMPT, "The capital of France is"], " Paris, a big city."
    original = P.head_targets
    makers = (
        lambda: Occlusion(model, bpe, batch_size=16),
        lambda: KernelShap(model, bpe, n_samples=100, batch_size=16),
    )
    for make in makers:
        method, normalised = make(), []

        def spy(*args, seen=normalised, **kwargs):
            seen.append(args[5].any(1).cpu())  # (rows,) the rows whose normaliser is made
            return original(*args, **kwargs)

        monkeypatch.setattr(P, "head_targets", spy)
        got = method.explain(prompts, targets=target)
        monkeypatch.undo()
        assert method._head_check[1]  # the split was checked and kept
        normalised = torch.cat(normalised)
        # At most one unperturbed row per text (a causal prefix path's first batch is checked on whole logits).
        assert 1 <= int(normalised.sum()) <= 2 and normalised.numel() > 20
        monkeypatch.setattr(P.PerturbationEngine, "_split", lambda self, items, device, reading=False: None)
        whole = make().explain(prompts, targets=target)
        monkeypatch.undo()
        for a, b in zip(got, whole):
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6, equal_nan=True)
            assert [t.probability for t in a.targets] == pytest.approx([t.probability for t in b.targets], rel=1e-6)


def test_a_metric_reads_each_masked_inputs_normaliser_at_its_own_outputs_only(gpt2, bpe, monkeypatch):
    """Deletion of a generation explanation: a curve reads its output element's tokens, so a masked
    input made for one curve gets the vocabulary's normaliser at those positions only (it was made at
    every output position: time grew as the output's length squared). The curves are the whole
    logits' ones."""
    import interp_text.perturbation as P
    from interp_text import Deletion, Insertion

    explained = Saliency(gpt2, bpe).explain([PROMPT, "The food was cold"], targets=[" Paris, a big city.", " but nice"])
    rng = np.random.default_rng(0)  # each output element its own ranking: few masks shared between curves
    expl = [
        dataclasses.replace(e, scores=np.argsort(rng.random(e.scores.shape), axis=1).astype(float)) for e in explained
    ]
    original, made = P.head_targets, []

    def spy(*args, **kwargs):
        made.append((int(args[5].sum()), args[5].numel()))  # normalisers made, of (rows × targets)
        return original(*args, **kwargs)

    monkeypatch.setattr(P, "head_targets", spy)
    got = [Deletion(gpt2, bpe).curves(expl), Insertion(gpt2, bpe, steps=3).curves(expl)]
    monkeypatch.undo()
    done, cells = map(sum, zip(*made))
    assert made and done < cells / 2  # (short outputs: a curve of a 1-token element reads 1 of 7)
    monkeypatch.setattr(P.PerturbationEngine, "_split", lambda self, items, device, reading=False: None)
    whole = [Deletion(gpt2, bpe).curves(expl), Insertion(gpt2, bpe, steps=3).curves(expl)]
    for a, b in zip(got, whole):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)


def test_a_model_that_reads_its_heads_weight_itself_keeps_the_whole_logits(gpt2, bpe, monkeypatch):
    """Its logits are h · Wᵀ, but its forward never calls the head as a module: the check's probe
    (which swaps the head's input) sees nothing change, so the split is refused and the masked rows
    take the whole logits (were it accepted, head_targets would find no state to read, and fall back)."""
    from transformers import GPT2LMHeadModel

    import interp_text.perturbation as P
    from interp_text.perturbation import Occlusion

    class Direct(GPT2LMHeadModel):
        def forward(self, inputs_embeds=None, logits_to_keep=0, **kwargs):
            h = self.transformer(inputs_embeds=inputs_embeds, **kwargs).last_hidden_state
            return CausalLMOutputWithPast(logits=torch.nn.functional.linear(h, self.lm_head.weight))

    from transformers.modeling_outputs import CausalLMOutputWithPast

    model = Direct(gpt2.config)
    model.load_state_dict(gpt2.state_dict())
    model.eval()
    explainer = Occlusion(model, bpe)
    got = [explainer.explain(PROMPT, targets=" Paris, a big city.") for _ in range(2)]
    assert explainer._head_check[1] is False
    monkeypatch.setattr(P.PerturbationEngine, "_split", lambda self, items, device, reading=False: None)
    whole = Occlusion(model, bpe).explain(PROMPT, targets=" Paris, a big city.")
    for e in got:
        np.testing.assert_allclose(e.scores, whole.scores, rtol=1e-6, atol=1e-8)


def test_a_head_never_reached_falls_back_to_the_whole_logits(gpt2, bpe, monkeypatch):
    """Should a forward not reach its LM head (head_targets raises HeadNotReached), the call goes on
    with the whole logits, and the explainer keeps them for later calls."""
    import interp_text.perturbation as P
    from interp_text.perturbation import Occlusion
    from interp_text.tasks import HeadNotReached

    reference = Occlusion(gpt2, bpe).explain(PROMPT, targets=" Paris, a big city.")
    explainer = Occlusion(gpt2, bpe)

    def unreached(*args, **kwargs):
        raise HeadNotReached

    monkeypatch.setattr(P, "head_targets", unreached)
    got = explainer.explain(PROMPT, targets=" Paris, a big city.")
    assert explainer._head_check[1] is False
    np.testing.assert_allclose(got.scores, reference.scores, rtol=1e-5, atol=1e-7)


def test_a_character_tokenizer_makes_every_space_a_token_and_is_not_warned_about():
    """A trailing space is an ordinary token to a character-level model: no warning there."""
    import string
    import warnings

    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(string.ascii_letters + " .,")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Saliency(model, tok).explain("the cat ", targets="sat").elements == ["the", "cat"]
