"""Perturbation methods: closed forms on toy models, efficiency, batching, seeds, generation, errors."""

import copy
import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_bert
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from interp_text import Granularity, InterpTextError
from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol, distinct_inputs, unique_rows

ALL = Granularity.ALL_TOKENS
SHORT = "unloved pastas were cold"  # 4 words, 2 of them several tokens
LONG = "the food was cold but the staff were lovely and the pasta was good"  # 14 words


# ---------------------------------------------------------------- toy models
class AdditiveConfig(PretrainedConfig):
    model_type = "interp_text_additive"

    def __init__(self, vocab_size=128, hidden_size=5, only_position=None, scale=1.0, **kwargs):
        super().__init__(num_labels=2, **kwargs)
        self.vocab_size, self.hidden_size, self.only_position = vocab_size, hidden_size, only_position
        self.scale = scale


class AdditiveForSequenceClassification(PreTrainedModel):
    """logit_1 = c Σ_t w·e_t, logit_0 = 0; with ``only_position=k``, logit_1 = c w·e_k (one token only).

    Masking a token replaces its embedding, so element i contributes exactly c Σ_{t∈i} w·(e_t − r).
    c is ``scale`` (default 1).
    """

    config_class = AdditiveConfig

    def __init__(self, config):
        super().__init__(config)
        g = torch.Generator().manual_seed(3)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.embed.weight.data = torch.randn(config.vocab_size, config.hidden_size, generator=g)
        self.w = nn.Parameter(torch.randn(config.hidden_size, generator=g))

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, **kwargs):
        e = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (rows, seq, hidden)
        if self.config.only_position is not None:
            e = e[:, self.config.only_position : self.config.only_position + 1]
        logit = (e @ self.w).sum(1) * self.config.scale  # (rows,)
        return SequenceClassifierOutput(logits=torch.stack([torch.zeros_like(logit), logit], 1))


@pytest.fixture(scope="module")
def additive(wp_tokenizer):
    return AdditiveForSequenceClassification(AdditiveConfig(vocab_size=len(wp_tokenizer)))


@pytest.fixture(scope="module")
def sharp_bert(wp_tokenizer):
    """A tiny BERT with large weights, so masking a word moves its logits by O(1)."""
    return tiny_bert(wp_tokenizer, initializer_range=0.4)


def contributions(model, tok, text, replacement_id):
    """Σ_{t∈word} w·(e_t − r) per word, words from the tokenizer's own word ids (not interp_text's)."""
    enc = tok(text)
    e = model.embed.weight.detach().double()  # (vocab, hidden)
    w = model.w.detach().double()
    r = e[replacement_id] if replacement_id is not None else torch.zeros_like(w)
    per_token = (e[enc["input_ids"]] - r) @ w * model.config.scale  # (seq,)
    out = np.zeros(max(i for i in enc.word_ids() if i is not None) + 1)
    for t, word in enumerate(enc.word_ids()):
        if word is not None:
            out[word] += per_token[t].item()
    return out


# ---------------------------------------------------------------- closed forms
@pytest.mark.parametrize("text", [SHORT, LONG])
@pytest.mark.parametrize("replacement,rid", [(None, 4), ("zeros", None), ("pad", 0), (9, 9)])
def test_occlusion_and_kernelshap_recover_additive_contributions(text, replacement, rid, additive, wp_tokenizer):
    truth = contributions(additive, wp_tokenizer, text, rid)  # default replacement: [MASK], id 4
    occ = Occlusion(additive, wp_tokenizer, replacement=replacement).explain(text, targets=1)
    assert occ.elements == text.split()
    np.testing.assert_allclose(occ.scores[0], truth, rtol=1e-5, atol=1e-5)
    # SHORT: 2⁴ − 2 coalitions, all enumerated; LONG: 2¹⁴ − 2 > 60, sampled, still exact (additive).
    shap = KernelShap(additive, wp_tokenizer, replacement=replacement, n_samples=60).explain(text, targets=1)
    np.testing.assert_allclose(shap.scores[0], truth, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernelshap_at_its_fewest_samples_is_still_determined(seed, additive, wp_tokenizer):
    """Coalitions come in complementary pairs, one equation each: at n_samples = 2(n − 1) a repeated
    draw would leave the fit short of an equation (a minimum-norm answer with a zero gap); more pairs
    are drawn, and an additive model's contributions come out exact."""
    words = "the food was cold but staff were lovely not good bad great pasta movie".split()
    text = " ".join(words[(seed + 3 * k) % len(words)] for k in range(30))  # 30 words, 29 unknowns
    truth = contributions(additive, wp_tokenizer, text, 4)
    shap = KernelShap(additive, wp_tokenizer, n_samples=58, seed=seed).explain(text, targets=1)
    np.testing.assert_allclose(shap.scores[0], truth, rtol=1e-5, atol=1e-5)


def test_kernelshap_exact_shapley_values_of_an_interaction(wp_tokenizer):
    # f = (w·e_k)² depends on one token: its element gets f(x) − f(∅), every other element 0.
    class Square(AdditiveForSequenceClassification):
        def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
            out = super().forward(input_ids, inputs_embeds)
            return SequenceClassifierOutput(logits=out.logits**2)

    model = Square(AdditiveConfig(vocab_size=len(wp_tokenizer), only_position=2))
    expl = KernelShap(model, wp_tokenizer, replacement="zeros").explain(SHORT, targets=1)
    e2 = model.embed.weight[wp_tokenizer(SHORT)["input_ids"][2]] @ model.w
    np.testing.assert_allclose(expl.scores[0], [(e2**2).item(), 0, 0, 0], atol=1e-5)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, dict(atol=2e-5)), (torch.float64, dict(rtol=1e-11))])
def test_kernelshap_equals_brute_force_shapley_on_bert(dtype, tolerance, sharp_bert, wp_tokenizer):
    # φ_i = Σ_{S ∌ i} |S|! (n − |S| − 1)! / n! · (v(S ∪ {i}) − v(S)), v(S) = logits with only S's words kept.
    # In float64 nothing but the model's own rounding may separate the two (the kernel weights included).
    sharp_bert = copy.deepcopy(sharp_bert).to(dtype)
    text = "unloved pastas were cold"
    ids = wp_tokenizer(text)["input_ids"]
    word_of = wp_tokenizer(text).word_ids()
    n = 4

    def v(coalition):
        kept = [t if w is None or w in coalition else wp_tokenizer.mask_token_id for t, w in zip(ids, word_of)]
        with torch.no_grad():
            return sharp_bert(torch.tensor([kept])).logits[0].double().numpy()

    values = {s: v(s) for s in itertools.chain.from_iterable(itertools.combinations(range(n), k) for k in range(n + 1))}
    phi = np.zeros((3, n))
    for i in range(n):
        for s, value in values.items():
            if i not in s:
                weight = math.factorial(len(s)) * math.factorial(n - len(s) - 1) / math.factorial(n)
                phi[:, i] += weight * (values[tuple(sorted(s + (i,)))] - value)
    expl = KernelShap(sharp_bert, wp_tokenizer).explain(text, targets="all")
    assert np.abs(phi).max() > 0.1
    np.testing.assert_allclose(expl.scores, phi, **tolerance)


@pytest.mark.parametrize("mode", ["softmax", "log_softmax"])
def test_float64_models_keep_float64_probabilities(mode, sharp_bert, gpt2, bpe, wp_tokenizer):
    """Normalisers are summed in at least float32: a float64 model's stay float64."""
    model = copy.deepcopy(sharp_bert).double()
    text = "unloved pastas were cold"
    with torch.no_grad():
        logits = model(torch.tensor([wp_tokenizer(text)["input_ids"]])).logits[0]
    want = logits.log_softmax(-1) if mode == "log_softmax" else logits.softmax(-1)
    expl = Occlusion(model, wp_tokenizer, inference_mode=mode).explain(text, targets="all")
    np.testing.assert_allclose([t.score for t in expl.targets], want.numpy(), rtol=1e-13, atol=0)
    lm = copy.deepcopy(gpt2).double()
    prompt, answer = "The capital of France is", "Paris"  # no space token: every output token is in the element
    n_prompt = len(bpe(prompt)["input_ids"])
    ids = bpe(prompt)["input_ids"] + bpe(answer, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = lm(torch.tensor([ids])).logits[0].log_softmax(-1)
    want = sum(logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids)))
    with pytest.warns(UserWarning, match="joins the prompt's last word into 'isParis'"):  # as meant here
        got = Occlusion(lm, bpe, inference_mode="log_softmax", granularity="sentence").explain(prompt, targets=answer)
    assert abs(sum(t.score for t in got.targets) - want) < 1e-12


@pytest.mark.parametrize("n_samples", [300, 40])  # 8 words: 254 coalitions enumerated / 40 sampled
def test_kernelshap_efficiency_on_bert(n_samples, sharp_bert, wp_tokenizer):
    text = "the food was cold but staff were lovely"
    expl = KernelShap(sharp_bert, wp_tokenizer, n_samples=n_samples).explain(text, targets="all")
    ids = torch.tensor([wp_tokenizer(text)["input_ids"]])
    masked = ids.clone()
    masked[0, 1:-1] = wp_tokenizer.mask_token_id  # every word masked, [CLS] / [SEP] kept
    with torch.no_grad():
        delta = (sharp_bert(ids).logits - sharp_bert(masked).logits)[0].numpy()
    assert np.abs(delta).max() > 0.1  # a test that could fail
    np.testing.assert_allclose(expl.scores.sum(1), delta, atol=1e-5)
    np.testing.assert_allclose(expl.completeness_gap, 0, atol=1e-6)


@pytest.mark.parametrize("order", ["total", "first"])
@pytest.mark.parametrize("sampler", ["sobol", "random"])
def test_sobol_finds_the_only_element_that_matters(order, sampler, wp_tokenizer):
    model = AdditiveForSequenceClassification(
        AdditiveConfig(vocab_size=len(wp_tokenizer), only_position=6)
    )  # token 6: "pasta" of "pastas"
    n = 64 if sampler == "sobol" else 512  # quasi-random masks are balanced; random ones need more
    expl = Sobol(model, wp_tokenizer, order=order, sampler=sampler, n_samples=n).explain(SHORT, targets=1)
    assert expl.elements[1] == "pastas"
    assert abs(expl.scores[0, 1] - 1) < 0.15
    np.testing.assert_allclose(np.delete(expl.scores[0], 1), 0, atol=1e-6)


def test_sobol_of_a_score_nothing_moves_is_zero(wp_tokenizer):
    model = AdditiveForSequenceClassification(
        AdditiveConfig(vocab_size=len(wp_tokenizer), only_position=0)
    )  # [CLS]: never masked
    expl = Sobol(model, wp_tokenizer, n_samples=8).explain(SHORT, targets=1)
    np.testing.assert_array_equal(expl.scores, 0)


def test_lime_ranks_like_the_true_contributions(additive, wp_tokenizer):
    truth = contributions(additive, wp_tokenizer, LONG, 4)
    lime = Lime(additive, wp_tokenizer, n_samples=300).explain(LONG, targets=1).scores[0]
    assert np.corrcoef(np.argsort(np.argsort(lime)), np.argsort(np.argsort(truth)))[0, 1] > 0.95
    # The model is linear in the mask, so without the ridge penalty the fit is exact.
    exact = Lime(additive, wp_tokenizer, n_samples=300, alpha=0, distance="hamming").explain(LONG, targets=1)
    np.testing.assert_allclose(exact.scores[0], truth, rtol=1e-4, atol=1e-4)


def test_all_tokens_never_masks_special_tokens(additive, wp_tokenizer):
    expl = Occlusion(additive, wp_tokenizer, granularity=ALL).explain(SHORT, targets=1)
    assert expl.elements[0] == "[CLS]" and expl.elements[-1] == "[SEP]"
    assert np.isnan(expl.scores[0, 0]) and np.isnan(expl.scores[0, -1])
    words = Occlusion(additive, wp_tokenizer).explain(SHORT, targets=1)
    # A word's tokens move together; additive, so the word's score is the sum of its tokens'.
    np.testing.assert_allclose(np.nansum(expl.scores[0]), words.scores[0].sum(), rtol=1e-5)


# ---------------------------------------------------------------- batching and seeds
TEXTS = ["The food was cold but the staff were lovely.", "Not good.", "bad", "Not bad."]
TARGETS = [0, "all", 2, 1]


@pytest.mark.parametrize(
    "cls,opts", [(Occlusion, {}), (KernelShap, {"n_samples": 20}), (Lime, {"n_samples": 16}), (Sobol, {"n_samples": 4})]
)
def test_batched_equals_alone_and_seeded(cls, opts, sharp_bert, wp_tokenizer):
    # batch_size=7 packs rows of "Not good." and "Not bad." (same length) into shared forwards.
    together = cls(sharp_bert, wp_tokenizer, batch_size=7, seed=5, **opts).explain(TEXTS, targets=TARGETS)
    alone = [cls(sharp_bert, wp_tokenizer, seed=5, **opts).explain(t, targets=c) for t, c in zip(TEXTS, TARGETS)]
    for expl, ref in zip(together, alone):
        assert expl.elements == ref.elements
        np.testing.assert_allclose(expl.scores, ref.scores, rtol=1e-4, atol=1e-5)
    if cls is not Occlusion:
        other = cls(sharp_bert, wp_tokenizer, seed=6, **opts).explain(TEXTS[0], targets=0).scores
        assert not np.allclose(other, alone[0].scores)


class RowCounter:
    """Counts the rows of every forward the model runs (a forward pre-hook; removed on exit)."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def __enter__(self):
        def hook(module, args, kwargs):
            x = kwargs.get("inputs_embeds")
            self.rows += (x if x is not None else args[0]).shape[0]

        self.handle = self.model.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("n", [1, 5, 62, 63, 100])  # up to 62 elements a row packs into one int64
def test_unique_rows(n):
    m = torch.rand(300, n, generator=torch.Generator().manual_seed(n)) < 0.5
    m[::3] = m[0]  # duplicates
    u, inverse = unique_rows(m)
    assert torch.equal(u[inverse], m)
    assert u.shape[0] == len({tuple(r.tolist()) for r in m}) == len({tuple(r.tolist()) for r in u})


@pytest.mark.parametrize(
    "cls,opts", [(Sobol, {"n_samples": 16}), (Lime, {"n_samples": 60}), (KernelShap, {"n_samples": 40})]
)
def test_each_distinct_mask_is_scored_once_and_the_result_is_unchanged(cls, opts, sharp_bert, wp_tokenizer):
    text = "the food was cold but staff were lovely"  # 8 words
    explainer = cls(sharp_bert, wp_tokenizer, seed=3, **opts)
    explainer.explain("the food")  # an explainer's first call checks its readout on a few more rows
    with RowCounter(sharp_bert) as counter:
        expl = explainer.explain(text, targets="all")
    # Reference: every sampled mask scored alone, in order, duplicates included.
    masks = explainer.masks(8, torch.Generator().manual_seed(3))  # (samples, 8)
    ids = torch.tensor(wp_tokenizer(text)["input_ids"])
    word_of = [w for w in wp_tokenizer(text).word_ids()]
    with torch.no_grad():
        e = sharp_bert.get_input_embeddings()(ids)  # (seq, hidden)
        r = sharp_bert.get_input_embeddings().weight[wp_tokenizer.mask_token_id]
        rows = []
        for z in masks:
            x = torch.stack([e[t] if w is None or z[w] else r for t, w in enumerate(word_of)])
            rows.append(sharp_bert(inputs_embeds=x[None]).logits[0].double())
        clean = sharp_bert(inputs_embeds=e[None]).logits[0].double()
    phi, _ = explainer.estimate(masks, torch.stack(rows), clean)
    np.testing.assert_allclose(expl.scores, phi.numpy(), rtol=1e-4, atol=1e-5)
    distinct = {tuple(z.tolist()) for z in masks} - {(True,) * 8}
    assert len(distinct) < masks.shape[0]  # the test needs duplicates to mean anything
    assert counter.rows == 1 + len(distinct)  # the clean pass, then each distinct partial mask once


def test_model_and_tokenizer_leave_unchanged(sharp_bert, wp_tokenizer):
    sharp_bert.train()
    vocab, weight = len(wp_tokenizer), sharp_bert.get_input_embeddings().weight.detach().clone()
    Lime(sharp_bert, wp_tokenizer, n_samples=10).explain(TEXTS[1])
    assert sharp_bert.training and len(wp_tokenizer) == vocab
    assert torch.equal(sharp_bert.get_input_embeddings().weight, weight)
    assert all(p.requires_grad for p in sharp_bert.parameters())
    sharp_bert.eval()


# ---------------------------------------------------------------- generation
PROMPT = "The capital of France is"


@pytest.mark.parametrize(
    "cls,opts", [(Occlusion, {}), (KernelShap, {"n_samples": 20}), (Lime, {"n_samples": 20}), (Sobol, {"n_samples": 4})]
)
def test_causal_lm_explains_the_prompt_with_nan_outputs(cls, opts, gpt2, bpe):
    expl = cls(gpt2, bpe, **opts).explain([PROMPT, "The food"], targets=[" Paris is nice", " was"])[0]
    assert expl.task == "causal_lm" and expl.elements == ["The", "capital", "of", "France", "is"]
    assert expl.scores.shape == (3, 8)
    assert np.all(np.isfinite(expl.scores[:, :5])) and np.all(np.isnan(expl.scores[:, 5:]))


def test_causal_occlusion_matches_teacher_forced_by_hand(gpt2, bpe):
    expl = Occlusion(gpt2, bpe, granularity="token", inference_mode="log_softmax").explain(PROMPT, targets=" Paris")
    p_ids = bpe(PROMPT)["input_ids"]
    o_ids = bpe(" Paris", add_special_tokens=False)["input_ids"]
    e = gpt2.get_input_embeddings()(torch.tensor(p_ids + o_ids)).detach()  # (seq, hidden)
    P = len(p_ids)

    def f(x):  # log p(output token t | prompt, outputs before t), per t
        logp = gpt2(inputs_embeds=x[None]).logits[0].log_softmax(-1)
        return torch.stack([logp[P - 1 + t, tid] for t, tid in enumerate(o_ids)]).detach()

    ref = []
    for i in range(P):  # the BPE tokenizer has no mask or pad token: zeros replace
        x = e.clone()
        x[i] = 0
        ref.append(f(e) - f(x))
    np.testing.assert_allclose(expl.scores[:, :P], torch.stack(ref, 1).numpy(), rtol=1e-4, atol=1e-6)
    assert np.all(np.isnan(expl.scores[:, P:]))


def test_seq2seq_runs(t5, bpe):
    expl = KernelShap(t5, bpe, n_samples=20).explain(PROMPT, targets=" Paris")
    assert expl.task == "seq2seq" and expl.scores.shape == (len(expl.targets), 5)
    np.testing.assert_allclose(expl.completeness_gap, 0, atol=1e-6)


def test_seq2seq_occlusion_matches_teacher_forced_by_hand(t5, bpe):
    """Two prompts of one length share forwards, each with its own decoder inputs and targets."""
    prompts, targets = [PROMPT, "The capital of Italy is"], [" the food", " the staff"]
    assert len(bpe(prompts[0])["input_ids"]) == len(bpe(prompts[1])["input_ids"])
    assert [len(bpe(t, add_special_tokens=False)["input_ids"]) for t in targets] == [4, 4]
    expls = Occlusion(t5, bpe, granularity="token", inference_mode="log_softmax").explain(prompts, targets=targets)
    start = t5.config.decoder_start_token_id
    for expl, prompt, target in zip(expls, prompts, targets):
        p_ids = bpe(prompt)["input_ids"]
        o_ids = bpe(target, add_special_tokens=False)["input_ids"]
        e = t5.get_input_embeddings()(torch.tensor(p_ids)).detach()  # (seq, hidden)
        dec = torch.tensor([[start] + o_ids[:-1]])  # teacher forcing

        def f(x, dec=dec, o_ids=o_ids):  # log p(output token t | prompt, outputs before t), per t
            logp = t5(inputs_embeds=x[None], decoder_input_ids=dec).logits[0].log_softmax(-1)
            return torch.stack([logp[t, tid] for t, tid in enumerate(o_ids)]).detach()

        ref = []
        for i in range(len(p_ids)):  # no mask or pad token of its own: zeros replace
            x = e.clone()
            x[i] = 0
            ref.append(f(e) - f(x))
        np.testing.assert_allclose(expl.scores, torch.stack(ref, 1).numpy(), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make,message",
    [
        (lambda m, t: Occlusion(m, t, n_samples=3), r"unknown option\(s\) \['n_samples'\]; it has no options"),
        (
            lambda m, t: Lime(m, t, n_sample=3),
            r"unknown option\(s\) \['n_sample'\] \(did you mean 'n_samples'\?\); its own options are",
        ),
        (lambda m, t: Lime(m, t, granularty="word"), r"\['granularty'\] \(did you mean 'granularity'\?\)"),
        (lambda m, t: Sobol(m, t, order="second"), "order='second' is not valid; use 'total' or 'first'"),
        (lambda m, t: Sobol(m, t, sampler="halton"), "sampler='halton' is not valid"),
        (lambda m, t: Sobol(m, t, n_samples=1), "n_samples=1 must be an integer >= 2"),
        (lambda m, t: Lime(m, t, distance="l2"), "distance='l2' is not valid; use 'cosine' or 'hamming'"),
        (lambda m, t: Lime(m, t, kernel_width=0), "kernel_width=0 must be a number > 0"),
        (lambda m, t: KernelShap(m, t, n_samples=0), "n_samples=0 must be an integer >= 1"),
        (lambda m, t: KernelShap(m, t, n_samples=5, n_perturbations=5), "not both"),
        (lambda m, t: Occlusion(m, t, replacement="[NOPE]"), r"replacement='\[NOPE\]' is not valid; use one of"),
        (lambda m, t: Occlusion(m, t, replacement=10_000), "replacement=10000 is not a token id"),
        (lambda m, t: Occlusion(m, t, granularity="paragraph"), "granularity='paragraph' is not valid"),
    ],
)
def test_bad_options(make, message, additive, wp_tokenizer):
    with pytest.raises(InterpTextError, match=message):
        make(additive, wp_tokenizer)


def test_a_special_token_as_written_replaces_masked_elements(additive, wp_tokenizer):
    as_written = Occlusion(additive, wp_tokenizer, replacement="[CLS]")
    assert as_written.replacement_id == wp_tokenizer.cls_token_id
    assert as_written.explain("the food").scores.tolist() == (
        Occlusion(additive, wp_tokenizer, replacement="cls").explain("the food").scores.tolist()
    )


def test_replacement_the_tokenizer_lacks(gpt2, bpe):
    with pytest.raises(InterpTextError, match="replacement='mask': the tokenizer has no mask token"):
        Occlusion(gpt2, bpe, replacement="mask")
    # A word is not a special token's name: its id is what masks with it.
    word = bpe.get_vocab()["the"]
    with pytest.raises(InterpTextError) as err:
        Occlusion(gpt2, bpe, replacement="the")
    assert str(err.value).startswith(
        f"replacement='the': the tokenizer has no the token ('the' is a token of the vocabulary, not a special "
        f"token's name: to mask with it, pass its id, replacement={word}); use one of"
    )
    assert Occlusion(gpt2, bpe, replacement=word).replacement_id == word


def test_interpreto_name_for_the_sample_count(additive, wp_tokenizer):
    assert KernelShap(additive, wp_tokenizer, n_perturbations=17).n_samples == 17
    assert Lime(additive, wp_tokenizer, n_perturbations=17).settings.options["n_samples"] == 17


def test_a_special_token_the_model_has_no_embedding_for(gpt2, bpe):
    """A mask token added to the tokenizer without resizing the model: passed over by default, refused by name."""
    import copy

    tok = copy.deepcopy(bpe)
    tok.add_special_tokens({"mask_token": "<mask>"})
    assert tok.mask_token_id >= gpt2.get_input_embeddings().weight.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a special token added without resizing comes from no text: no warning
        auto = Occlusion(gpt2, tok)
    assert auto.replacement_id is None  # no pad token either: zeros
    text = "the food was cold"
    np.testing.assert_allclose(
        auto.explain(text, targets=" and").scores,
        Occlusion(gpt2, bpe, replacement="zeros").explain(text, targets=" and").scores,
        rtol=1e-6,
        equal_nan=True,
    )
    with pytest.raises(InterpTextError, match=r"replacement='mask': the mask token's id \d+ has no embedding"):
        Occlusion(gpt2, tok, replacement="mask")


@pytest.mark.parametrize("limit", [1, 40])
def test_rows_built_part_by_part_give_the_same_scores(limit, sharp_bert, wp_tokenizer, monkeypatch):
    """Over SEND_ELEMENTS token ids, a length group is built and sent in parts, a text's rows cut over
    several (limit 1: one row each; 40: three rows of the 12-token text, eight of the 5-token ones): same numbers."""
    import interp_text.perturbation as P

    explainer = Lime(sharp_bert, wp_tokenizer, n_samples=16, batch_size=5, seed=1)
    together = explainer.explain(TEXTS, targets=TARGETS)
    monkeypatch.setattr(P, "SEND_ELEMENTS", limit)
    with RowCounter(sharp_bert) as counter:
        largest = []
        handle = sharp_bert.register_forward_pre_hook(
            lambda m, a, k: largest.append(k["inputs_embeds"].shape[0] * k["inputs_embeds"].shape[1]), with_kwargs=True
        )
        try:
            in_parts = explainer.explain(TEXTS, targets=TARGETS)
        finally:
            handle.remove()
    assert max(largest) <= max(limit, 14)  # no forward holds more than one part (or one row)
    assert counter.rows > 0
    for a, b in zip(together, in_parts):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


def test_perturbation_keeps_no_text_embeddings(additive, wp_tokenizer):
    """Rows are embedded from token ids per forward: no (seq, hidden) copy of every text is held."""
    from interp_text.perturbation import PerturbationEngine

    ex = Occlusion(additive, wp_tokenizer)
    engine = PerturbationEngine(additive, wp_tokenizer, ex.settings, ex.replacement_id, ex)
    items = engine._prepare(["good food", "bad"], None, False, torch.device("cpu"), {})
    assert [it.embeds for it in items] == [None, None]


def test_a_text_with_many_masked_inputs_gets_one_warning_at_the_users_call(bert, wp_tokenizer, monkeypatch):
    import interp_text.perturbation as perturbation

    monkeypatch.setattr(perturbation, "LARGE_ROWS", 50)
    texts = ["the food was cold", "the food was cold but the staff were lovely"]  # 4 and 9 words
    with pytest.warns(
        UserWarning, match=r"Sobol scores \d+ masked inputs of text 1 \(9 word elements, 11 tokens"
    ) as record:
        Sobol(bert, wp_tokenizer, n_samples=16).explain(texts)  # text 1: 99 distinct rows, text 0: 16
    assert len(record) == 1 and record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Occlusion(bert, wp_tokenizer).explain(texts)  # 10 rows: nothing to say


def test_lime_weighs_samples_with_limes_text_kernel(additive, wp_tokenizer):
    """w(z) = √exp(−d²/width²): refit by hand on the explainer's own masks and scores."""
    import interp_text.perturbation as P

    lime = Lime(additive, wp_tokenizer, n_samples=40, seed=1)
    seen = {}
    estimate = P.Lime.estimate

    def spy(self, masks, scores, clean):
        seen.update(masks=masks, scores=scores)
        return estimate(self, masks, scores, clean)

    P.Lime.estimate = spy
    try:
        got = lime.explain(LONG, targets=1).scores[0]
    finally:
        P.Lime.estimate = estimate
    z, y = seen["masks"].double(), seen["scores"][:, 0]
    d = 1 - (z.sum(1) / z.shape[1]).sqrt()
    w = torch.sqrt(torch.exp(-(d**2) / 0.25**2))
    x = torch.cat([torch.ones(len(z), 1, dtype=torch.float64), z], 1)
    penalty = torch.eye(x.shape[1], dtype=torch.float64)
    penalty[0, 0] = 0  # the intercept is not penalised
    beta = torch.linalg.solve(x.T @ (w[:, None] * x) + penalty, x.T @ (w * y))
    np.testing.assert_allclose(got, beta[1:].numpy(), rtol=1e-6, atol=1e-8)


def test_lime_of_a_single_element_is_the_difference_it_makes(sharp_bert, wp_tokenizer):
    text = "The food was not good at all."
    lime = Lime(sharp_bert, wp_tokenizer, granularity="sentence").explain(text, targets=0)
    occ = Occlusion(sharp_bert, wp_tokenizer, granularity="sentence").explain(text, targets=0)
    np.testing.assert_allclose(lime.scores, occ.scores, rtol=1e-6)


@pytest.mark.parametrize("n", [150, 300])
def test_kernelshap_adds_only_the_pairs_it_is_short_of(n, additive, wp_tokenizer):
    """The default draws 2n coalitions (n pairs) for n > 100 elements; repeats leave a few equations
    short, and the top-up adds about that many pairs, not n more."""
    shap = KernelShap(additive, wp_tokenizer)
    for seed in range(3):
        masks = shap.masks(n, torch.Generator().manual_seed(seed))  # v(∅), then the pairs
        pairs = (masks.shape[0] - 1) // 2
        design = masks[1 : 1 + pairs, :-1].double() - masks[1 : 1 + pairs, -1:].double()
        assert torch.linalg.matrix_rank(design) == n - 1
        assert n <= pairs <= n + 30


def test_kernelshap_records_the_coalitions_a_long_text_took(additive, wp_tokenizer):
    # The default is 200, or 2n above 100 elements: the record says what a text took where it grew,
    # which, passed back, gives the same scores (200 would be refused for 120 elements).
    tok = copy.deepcopy(wp_tokenizer)
    tok.model_max_length = 512  # the additive model has no length limit
    short, long = "the food was good", " ".join(["the food was not good"] * 24)
    default = KernelShap(additive, tok).explain([short, long])
    assert [e.options["n_samples"] for e in default] == [200, 200]
    assert [e.options.get("coalitions") for e in default] == [None, 240]
    again = KernelShap(additive, tok, n_samples=240).explain(long)
    assert "coalitions" not in again.options and again.scores.tolist() == default[1].scores.tolist()


@pytest.mark.parametrize("cls,opts", [(Occlusion, {}), (Lime, {"n_samples": 30}), (Sobol, {"n_samples": 4})])
def test_texts_that_share_a_masked_input_run_it_once(cls, opts, sharp_bert, wp_tokenizer):
    """Two texts that differ in their last word only: any mask hiding that word is one input for both."""
    texts = ["the food was cold", "the food was good"]
    ids = [wp_tokenizer(t)["input_ids"] for t in texts]
    assert len(ids[0]) == len(ids[1]) == 6 and ids[0][:4] == ids[1][:4]  # one token per word, one length
    explainer = cls(sharp_bert, wp_tokenizer, seed=2, **opts)
    explainer.explain("the food")  # an explainer's first call checks its readout on a few more rows
    with RowCounter(sharp_bert) as together:
        both = explainer.explain(texts, targets="all")
    alone, counts = [], []
    for t in texts:
        with RowCounter(sharp_bert) as counter:
            alone.append(explainer.explain(t, targets="all"))
        counts.append(counter.rows)
    masks = explainer.masks(4, torch.Generator().manual_seed(2))
    shared = {tuple(z.tolist()) for z in masks if not z[3]}  # last word masked: the same ids in both texts
    assert len(shared) > 0
    assert together.rows == counts[0] + counts[1] - len(shared)
    for expl, ref in zip(both, alone):
        np.testing.assert_allclose(expl.scores, ref.scores, rtol=1e-4, atol=1e-5)
    assert not np.allclose(both[0].scores, both[1].scores)


@pytest.mark.parametrize("collide", [False, True])
def test_distinct_inputs_in_order_of_appearance(collide, monkeypatch):
    rows = np.random.default_rng(1).integers(0, 5, (200, 3))  # 125 possible rows
    if collide:  # every row hashes alike: the exact unique must take over
        monkeypatch.setattr("interp_text.perturbation._row_weights", lambda width: np.zeros(width, dtype=np.int64))
    first, inverse = distinct_inputs(rows)
    seen = list(dict.fromkeys(tuple(r) for r in rows.tolist()))
    assert [tuple(r) for r in rows[first].tolist()] == seen  # each distinct row at its first occurrence
    assert np.array_equal(rows[first][inverse], rows)


@pytest.mark.parametrize("n,samples", [(40, 200), (300, 50)])  # more samples than elements, and fewer
def test_lime_ridge_solve_equals_the_normal_equations(n, samples, additive, wp_tokenizer):
    explainer = Lime(additive, wp_tokenizer, n_samples=samples, alpha=0.5)
    masks = explainer.masks(n, torch.Generator().manual_seed(0))
    scores = torch.randn(masks.shape[0], 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got, _ = explainer.estimate(masks, scores, scores[0])
    # By hand: weighted centring, then (Zᵀ W Z + α I) β = Zᵀ W y.
    z = masks.double()
    d = 1 - (z.sum(1) / n).sqrt()
    w = torch.exp(-(d**2) / 0.25**2).sqrt()[:, None]
    zc, yc = z - (w * z).sum(0) / w.sum(), scores - (w * scores).sum(0) / w.sum()
    want = torch.linalg.solve(zc.T @ (w * zc) + 0.5 * torch.eye(n, dtype=torch.float64), zc.T @ (w * yc))
    torch.testing.assert_close(got, want.T, rtol=1e-9, atol=1e-12)


def test_a_long_text_warns_by_token_positions_and_metrics_warn_too(bert, wp_tokenizer, monkeypatch):
    import interp_text.perturbation as perturbation
    from interp_text import Deletion

    monkeypatch.setattr(perturbation, "LARGE_POSITIONS", 100)
    text = "the food was cold but the staff were lovely"  # 9 words, 11 tokens: Occlusion's 10 rows, 110 positions
    with pytest.warns(UserWarning) as record:
        expl = Occlusion(bert, wp_tokenizer).explain(text)
    assert [str(r.message) for r in record] == [
        "Occlusion scores 10 masked inputs of text 0 (9 word elements, 11 tokens: 110 token positions), each a row "
        "through the model; a coarser granularity (granularity='sentence') cut that."
    ]
    with pytest.warns(
        UserWarning, match=r"^Deletion scores 10 masked inputs of text 0 .*; fewer curve points \(steps=20\)"
    ):
        Deletion(bert, wp_tokenizer).evaluate(expl)
    monkeypatch.setattr(perturbation, "LARGE_POSITIONS", 110)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Occlusion(bert, wp_tokenizer).explain(text)  # at the limit: nothing to say


def test_the_large_call_warning_tests_each_limit_on_its_own_text(bert, wp_tokenizer, monkeypatch):
    """Text 0 passes the row limit with fewer token positions than text 1, which passes neither limit."""
    import interp_text.perturbation as perturbation

    many_rows = "a b c d e f g h i j k l m n"  # 14 one-token words: Occlusion's 15 rows of 16 tokens
    long_words = "unloved pastas were cold " * 3  # 12 words, 38 tokens: 13 rows, more positions
    assert 13 * len(wp_tokenizer(long_words)["input_ids"]) > 15 * 16
    monkeypatch.setattr(perturbation, "LARGE_ROWS", 14)
    with pytest.warns(UserWarning, match=r"^Occlusion scores 15 masked inputs of text 0 \(14 word elements, 16 tokens"):
        Occlusion(bert, wp_tokenizer).explain([many_rows, long_words])


@pytest.mark.parametrize("aggregation", ["mean", "max", "signed_max"])
def test_kernelshap_gap_keeps_efficiency_whatever_pools_an_output_word(aggregation, gpt2, bpe):
    """An output word's row sums to its f(x) − f(all masked) (its tokens' summed, as Target.score)
    plus its gap, whatever pools its tokens' rows."""
    summed = KernelShap(gpt2, bpe, n_samples=20).explain(PROMPT, targets=" Paris lovely")
    pooled = KernelShap(gpt2, bpe, n_samples=20, granularity_aggregation_strategy=aggregation).explain(
        PROMPT, targets=" Paris lovely"
    )
    assert max(len(t.token_ids) for t in pooled.targets) > 1  # a word of several tokens
    np.testing.assert_allclose(summed.completeness_gap, 0, atol=1e-6)
    delta = np.nansum(summed.scores, 1)  # efficiency: each word's f(x) − f(all masked)
    np.testing.assert_allclose(np.nansum(pooled.scores, 1) - pooled.completeness_gap, delta, rtol=1e-6, atol=1e-6)
    assert np.abs(pooled.completeness_gap).max() > 1e-3  # pooling other than SUM moves the row off it


def test_a_classifiers_rows_keep_their_texts_classes_only(wp_tokenizer, monkeypatch):
    """With many classes, every row's every class in float64 took GiB for thousands of texts: score_rows
    keeps each text's own classes (its prediction when none is asked), and Occlusion's numbers are
    f(x) − f(x with the element masked) for exactly those."""
    from conftest import tiny_bert

    from interp_text.perturbation import PerturbationEngine

    model = tiny_bert(wp_tokenizer, num_labels=40)
    with torch.no_grad():
        model.classifier.weight.mul_(1000)  # differences well above float32 rounding
    texts = ["the food was cold", "not good at all", "lovely staff and kind"]
    widths = []
    score_rows = PerturbationEngine.score_rows

    def spy(self, items, masks, device):
        f, log_p = score_rows(self, items, masks, device)
        widths.extend(f[it.index].shape[1] for it in items)
        return f, log_p

    monkeypatch.setattr(PerturbationEngine, "score_rows", spy)
    got = Occlusion(model, wp_tokenizer).explain(texts, targets=[None, [3, 1, 3], "all"])
    assert widths == [1, 3, 40]
    emb = model.get_input_embeddings()
    with torch.no_grad():
        for e, text in zip(got, texts):
            enc = wp_tokenizer(text, return_offsets_mapping=True)
            ids = torch.tensor(enc["input_ids"])
            clean = model(ids[None]).logits[0]
            assert e.predicted == int(clean.argmax())
            for j, (a, b) in enumerate(e.spans):
                masked = ids.clone()  # every token of word j
                masked[[k for k, (s, t) in enumerate(enc["offset_mapping"]) if t > s and a <= s and t <= b]] = (
                    wp_tokenizer.mask_token_id
                )
                f = model(inputs_embeds=emb(masked)[None]).logits[0]
                want = [float(clean[t.index] - f[t.index]) for t in e.targets]
                np.testing.assert_allclose(e.scores[:, j], want, rtol=1e-4, atol=1e-5)


def test_sobol_estimates_each_output_words_own_score(gpt2, bpe):
    """Sobol's indices are variance ratios: the sum of an output word's tokens' indices is not the
    index of the word's score (Target.score, their summed score), and passes 1. Each row is the
    word's own index, as written out here from the method's masks."""
    target = " Paris lovely"
    sobol = Sobol(gpt2, bpe, n_samples=8)
    expl = sobol.explain(PROMPT, targets=target)
    assert [len(t.token_ids) for t in expl.targets] == [4, 2]
    enc = bpe(PROMPT, return_offsets_mapping=True)
    p_ids, o_ids = enc["input_ids"], [i for t in expl.targets for i in t.token_ids]
    word_of = [next(k for k, (_, end) in enumerate(expl.spans) if end > a) for a, _ in enc["offset_mapping"]]
    e = gpt2.get_input_embeddings()(torch.tensor(p_ids + o_ids)).detach()
    P, n = len(p_ids), len(expl.elements)
    masks = sobol.masks(n, torch.Generator().manual_seed(0))  # the method's own, seeded as each text's

    def f(keep):  # each output word's summed logit, with its masked prompt words zeroed (no mask token)
        x = e.clone()
        x[:P][~keep[word_of]] = 0
        with torch.no_grad():
            logits = gpt2(inputs_embeds=x[None]).logits[0].double()
        per_token = torch.stack([logits[P - 1 + t, tid] for t, tid in enumerate(o_ids)])
        return torch.stack([per_token[:4].sum(), per_token[4:].sum()])

    y = torch.stack([f(m) for m in masks])  # (N (n + 2), words)
    big_n = 8
    fa, fb, fab = y[:big_n], y[big_n : 2 * big_n], y[2 * big_n :].reshape(n, big_n, -1)
    want = (((fa - fab) ** 2).mean(1) / 2 / torch.cat([fa, fb]).var(0)).T  # (words, n): Jansen's total order
    np.testing.assert_allclose(expl.scores[:, :n], want.numpy(), rtol=1e-4, atol=1e-6)
    assert np.nanmax(expl.scores) <= 1.5  # the summed tokens' indices reached 3.9 on such a word
