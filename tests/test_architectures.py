"""Other Hugging Face architectures, built tiny from their configs: batched equals alone, scores finite,
and the explained score is the model's own output on its token ids.

bert, gpt2, llama and t5 are covered throughout the suite; these add what differs between model
families: learned vs rotary vs relative vs ALiBi positions, scaled embeddings (BART, Gemma, Pegasus),
factorised or projected embeddings (ALBERT, ELECTRA, OPT), a parallel block (Phi, Falcon, GPT-NeoX),
grouped-query attention, sliding windows and soft-capping (Gemma 2), a class name that says nothing
(MarianMTModel), a vision-language class read as text (Gemma 3), a classifier that reads its ids (BART).
"""

import copy
import inspect
import math

import numpy as np
import pytest
import torch
import transformers
from conftest import SEQ2SEQ_SMALL, bpe_tokenizer, tiny_bart_classifier

from interp_text import InterpTextError, Saliency, VarGrad
from interp_text.perturbation import KernelShap, Occlusion


class _Available:
    """transformers' classes by name; None for one this version lacks (its tests skip)."""

    def __getattr__(self, name):
        return getattr(transformers, name, None)


T = _Available()

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CLASSIFIERS = {
    "roberta": (T.RobertaConfig, T.RobertaForSequenceClassification, dict(SMALL, max_position_embeddings=130)),
    "distilbert": (
        T.DistilBertConfig,
        T.DistilBertForSequenceClassification,
        dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    ),
    "albert": (T.AlbertConfig, T.AlbertForSequenceClassification, dict(SMALL, embedding_size=16)),
    "electra": (T.ElectraConfig, T.ElectraForSequenceClassification, dict(SMALL, embedding_size=16)),
    "deberta-v2": (T.DebertaV2Config, T.DebertaV2ForSequenceClassification, SMALL),
    "deberta": (T.DebertaConfig, T.DebertaForSequenceClassification, SMALL),
    "modernbert": (
        T.ModernBertConfig,
        T.ModernBertForSequenceClassification,
        dict(SMALL, global_attn_every_n_layers=1, local_attention=8),
    ),
    "mpnet": (T.MPNetConfig, T.MPNetForSequenceClassification, dict(SMALL, max_position_embeddings=130)),
    "qwen2-classifier": (T.Qwen2Config, T.Qwen2ForSequenceClassification, dict(SMALL, num_key_value_heads=1)),
    # Builds its global attention mask from its ids: given embeddings, it is given the mask.
    "longformer": (
        T.LongformerConfig,
        T.LongformerForSequenceClassification,
        dict(SMALL, attention_window=4, max_position_embeddings=130),
    ),
}
GQA = dict(SMALL, num_key_value_heads=1, head_dim=16)
GENERATORS = {
    "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(SMALL, num_key_value_heads=1)),
    "phi": (T.PhiConfig, T.PhiForCausalLM, SMALL),
    "gemma": (T.GemmaConfig, T.GemmaForCausalLM, dict(SMALL, num_key_value_heads=1, head_dim=16)),
    "bart": (T.BartConfig, T.BartForConditionalGeneration, SEQ2SEQ_SMALL),
}
# Checked against the model's own forward on token ids only.
MORE_GENERATORS = {
    "mistral": (T.MistralConfig, T.MistralForCausalLM, GQA),
    "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM, GQA),
    "gemma2": (T.Gemma2Config, T.Gemma2ForCausalLM, dict(GQA, sliding_window=4)),
    "gemma3": (T.Gemma3TextConfig, T.Gemma3ForCausalLM, GQA),
    "phi3": (T.Phi3Config, T.Phi3ForCausalLM, dict(SMALL, num_key_value_heads=1)),
    "opt": (
        T.OPTConfig,
        T.OPTForCausalLM,
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=16),
    ),
    "gpt-neox": (T.GPTNeoXConfig, T.GPTNeoXForCausalLM, SMALL),
    "falcon": (T.FalconConfig, T.FalconForCausalLM, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2)),
    "bloom": (T.BloomConfig, T.BloomForCausalLM, dict(hidden_size=32, n_layer=2, n_head=2)),
    "olmo2": (T.Olmo2Config, T.Olmo2ForCausalLM, SMALL),
    "pegasus": (T.PegasusConfig, T.PegasusForConditionalGeneration, SEQ2SEQ_SMALL),
    "marian": (T.MarianConfig, T.MarianMTModel, SEQ2SEQ_SMALL),
    # As released checkpoints (opus-mt, pegasus-xsum) set them: the encoder scales embeddings read from ids
    # by √d, and not inputs_embeds; FalconH1 multiplies them by its embedding_multiplier on the ids path only.
    "pegasus-scaled": (T.PegasusConfig, T.PegasusForConditionalGeneration, dict(SEQ2SEQ_SMALL, scale_embedding=True)),
    "marian-scaled": (T.MarianConfig, T.MarianMTModel, dict(SEQ2SEQ_SMALL, scale_embedding=True)),
    "falcon-h1": (
        getattr(T, "FalconH1Config", None),
        getattr(T, "FalconH1ForCausalLM", None),
        dict(
            GQA,
            mamba_d_ssm=64,
            mamba_n_heads=4,
            mamba_d_head=16,
            mamba_n_groups=1,
            mamba_d_state=8,
            mamba_chunk_size=8,
            embedding_multiplier=5.0,
        ),
    ),
    "mt5": (
        T.MT5Config,
        T.MT5ForConditionalGeneration,
        dict(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, decoder_start_token_id=2),
    ),
}
TEXTS = ["The food was cold but the staff were lovely.", "Not good.", "bad", "Not bad at all"]
PROMPTS = ["The capital of France is", "The food was cold but the staff were lovely and", "Not bad"]
OUTPUTS = [" Paris", " the pasta", " at all"]


def _same(together, alone):
    for a, b in zip(together, alone):
        assert np.isfinite(a.scores[~np.isnan(b.scores)]).all()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize(
    "cls,opts", [(Occlusion, {}), (KernelShap, {"n_samples": 20}), (VarGrad, {"n_perturbations": 4})]
)
def test_classifier_family(name, cls, opts, wp_tokenizer):
    config, model_class, kw = CLASSIFIERS[name]
    if config is None or model_class is None:
        pytest.skip(f"{name}: not in transformers {transformers.__version__}")
    torch.manual_seed(0)
    model = model_class(config(vocab_size=len(wp_tokenizer), num_labels=3, pad_token_id=0, **kw)).eval()
    together = cls(model, wp_tokenizer, batch_size=7, seed=1, **opts).explain(TEXTS, targets="all")
    _same(together, [cls(model, wp_tokenizer, seed=1, **opts).explain(t, targets="all") for t in TEXTS])


@pytest.fixture(scope="module")
def padded_bpe():
    return bpe_tokenizer(with_pad=True)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("cls,opts", [(Occlusion, {}), (Saliency, {})])
def test_generator_family(name, cls, opts, padded_bpe):
    config, model_class, kw = GENERATORS[name]
    if config is None or model_class is None:
        pytest.skip(f"{name}: not in transformers {transformers.__version__}")
    torch.manual_seed(0)
    model = model_class(config(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, **kw)).eval()
    together = cls(model, padded_bpe, batch_size=5, seed=1, **opts).explain(PROMPTS, targets=OUTPUTS)
    alone = [cls(model, padded_bpe, seed=1, **opts).explain(p, targets=t) for p, t in zip(PROMPTS, OUTPUTS)]
    _same(together, alone)


@pytest.mark.parametrize(
    "config,model_class",
    [(T.GPT2Config, T.GPT2ForSequenceClassification), (T.LlamaConfig, T.LlamaForSequenceClassification)],
)
def test_last_token_classifier_without_a_pad_id(config, model_class, bpe, caplog):
    """Such a classifier refuses batches when config.pad_token_id is None (as loaded, usually); rows are
    never padded, so it is set for the call, restored after, and the result is the model's own."""
    torch.manual_seed(0)
    kw = dict(n_embd=32, n_layer=2, n_head=2) if config is T.GPT2Config else dict(SMALL, num_key_value_heads=1)
    model = model_class(config(vocab_size=len(bpe), num_labels=3, pad_token_id=None, **kw)).eval()
    assert model.config.pad_token_id is None
    for cls, opts in [(Occlusion, {}), (VarGrad, {"n_perturbations": 4}), (Saliency, {})]:
        together = cls(model, bpe, batch_size=7, seed=1, **opts).explain(TEXTS, targets="all")
        _same(together, [cls(model, bpe, seed=1, **opts).explain(t, targets="all") for t in TEXTS])
    assert model.config.pad_token_id is None
    assert "padding tokens in `inputs_embeds`" not in caplog.text
    # Occlusion's row 0 is the text itself: its probabilities are the model's, read at the last token.
    ids = bpe(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=ids).logits.softmax(-1)[0]
    got = [t.probability for t in Occlusion(model, bpe).explain(TEXTS[0], targets="all").targets]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_scores_are_the_models_own(name, wp_tokenizer):
    config, model_class, kw = CLASSIFIERS[name]
    if config is None or model_class is None:
        pytest.skip(f"{name}: not in transformers {transformers.__version__}")
    torch.manual_seed(0)
    model = model_class(config(vocab_size=len(wp_tokenizer), num_labels=3, pad_token_id=0, **kw)).eval()
    text = TEXTS[0]
    got = Occlusion(model, wp_tokenizer).explain(text, targets="all")
    with torch.no_grad():
        want = model(**wp_tokenizer(text, return_tensors="pt")).logits[0]
    np.testing.assert_allclose([t.score for t in got.targets], want.numpy(), rtol=1e-5, atol=1e-6)
    # The gradient path reads the same f: Saliency at token granularity, the L2 norm of ∂f/∂e by hand.
    sal = Saliency(model, wp_tokenizer, granularity="all_tokens").explain(text, targets=1)
    e = model.get_input_embeddings()(wp_tokenizer(text, return_tensors="pt")["input_ids"]).detach().requires_grad_()
    kwargs = {"global_attention_mask": torch.eye(1, e.shape[1], dtype=torch.long)} if name == "longformer" else {}
    # A copy: DeBERTa before transformers 4.49 adds to its input embeddings in place.
    (grad,) = torch.autograd.grad(model(inputs_embeds=e.clone(), **kwargs).logits[0, 1], e)
    np.testing.assert_allclose(sal.scores[0], grad[0].norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", {**GENERATORS, **MORE_GENERATORS})
def test_generator_scores_are_the_models_own(name, padded_bpe):
    """Each output token's log-probability, explained from embeddings, is the model's on token ids;
    the task is told from the model alone (MarianMTModel's name says nothing of it)."""
    config, model_class, kw = {**GENERATORS, **MORE_GENERATORS}[name]
    if config is None or model_class is None:
        pytest.skip(f"{name}: not in transformers {transformers.__version__}")
    torch.manual_seed(0)
    model = model_class(config(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, **kw)).eval()
    prompt, output = PROMPTS[1], " the pasta was"
    got = Occlusion(model, padded_bpe, granularity="all_tokens", inference_mode="log_softmax").explain(
        prompt, targets=output
    )
    p = padded_bpe(prompt)["input_ids"]
    o = padded_bpe(output, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            decoder = torch.tensor([[model.config.decoder_start_token_id, *o[:-1]]])
            logp = model(input_ids=torch.tensor([p]), decoder_input_ids=decoder).logits.log_softmax(-1)[0]
            want = [logp[k, t] for k, t in enumerate(o)]
        else:
            logp = model(input_ids=torch.tensor([p + o])).logits.log_softmax(-1)[0]
            want = [logp[len(p) - 1 + k, t] for k, t in enumerate(o)]
    assert got.task == ("seq2seq" if model.config.is_encoder_decoder else "causal_lm")
    np.testing.assert_allclose([t.score for t in got.targets], torch.stack(want).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [*GENERATORS, *MORE_GENERATORS, "t5", "ctrl"])
def test_generator_gradients_are_the_models_own(name, padded_bpe):
    """Saliency of each output token's log-probability, against autograd through the model's own
    whole logits (that path is checked against hand-written references in test_generation). The
    per-position LM head runs wherever the head is linear: what the model does between its decoder
    and head (T5 scales the states) and after it (BART's final_logits_bias, here made non-zero;
    Gemma 2's soft-cap) is the model's own."""
    from interp_text.engine import Engine

    if name == "t5":
        config, model_class, kw = T.T5Config, T.T5ForConditionalGeneration, dict(d_model=32, d_kv=16, d_ff=64)
        kw = dict(kw, num_layers=2, num_heads=2, decoder_start_token_id=padded_bpe.pad_token_id)
    elif name == "ctrl":  # scales its inputs_embeds in place
        config, model_class, kw = T.CTRLConfig, T.CTRLLMHeadModel, dict(n_embd=32, n_layer=2, n_head=2, dff=64)
    else:
        config, model_class, kw = {**GENERATORS, **MORE_GENERATORS}[name]
    if config is None or model_class is None:
        pytest.skip(f"{name}: not in transformers {transformers.__version__}")
    torch.manual_seed(0)
    model = model_class(config(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, **kw)).eval()
    bias = getattr(model, "final_logits_bias", None)
    if bias is not None:
        bias.copy_(torch.randn(bias.shape))
    prompt, output = PROMPTS[1], " the pasta was"
    settings = Saliency(model, padded_bpe, granularity="all_tokens", inference_mode="log_softmax").settings
    split = Engine(model, padded_bpe, settings)
    got = split.explain(prompt, targets=output)
    assert split.head, f"{name}: the whole-logits path ran"
    whole = Engine(model, padded_bpe, settings)
    whole.head = False  # autograd through the model's own logits at every scored position
    np.testing.assert_allclose(got.scores, whole.explain(prompt, targets=output).scores, rtol=1e-5, atol=1e-8)


def test_a_vision_language_model_is_explained_as_the_text_model_it_is(padded_bpe):
    if T.Gemma3ForConditionalGeneration is None:
        pytest.skip(f"Gemma 3: not in transformers {transformers.__version__}")
    text = T.Gemma3TextConfig(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, **GQA)
    vision = T.SiglipVisionConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=28, patch_size=14
    )
    torch.manual_seed(0)
    model = T.Gemma3ForConditionalGeneration(
        T.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    ).eval()
    prompt, output = PROMPTS[0], OUTPUTS[0]
    got = Saliency(model, padded_bpe, inference_mode="log_softmax").explain(prompt, targets=output)
    p = padded_bpe(prompt)["input_ids"]
    o = padded_bpe(output, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([p + o])).logits.log_softmax(-1)[0]
    assert got.task == "causal_lm"
    assert got.targets[0].score == pytest.approx(sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(o)), abs=1e-5)


def test_a_wrapped_classifier_is_explained_without_the_models_padding_warning(bpe, caplog):
    """A wrapper (as a PEFT model is) around a last-token classifier: its rows are never padded, so
    the classifier's warning about padding in inputs_embeds is held back there too."""

    class UnseenLlamaForSequenceClassification(T.LlamaForSequenceClassification):
        pass  # a class name of its own: the model warns once per name

    class WrapperForSequenceClassification(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def get_input_embeddings(self):
            return self.inner.get_input_embeddings()

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    torch.manual_seed(0)
    config = T.LlamaConfig(vocab_size=len(bpe), num_labels=2, pad_token_id=0, **dict(SMALL, num_key_value_heads=1))
    model = WrapperForSequenceClassification(UnseenLlamaForSequenceClassification(config).eval())
    got = Occlusion(model, bpe).explain(TEXTS[0], targets="all")
    with torch.no_grad():
        want = model(input_ids=bpe(TEXTS[0], return_tensors="pt")["input_ids"]).logits[0]
    np.testing.assert_allclose([t.score for t in got.targets], want.numpy(), rtol=1e-5, atol=1e-6)
    assert "padding tokens in `inputs_embeds`" not in caplog.text


@pytest.fixture(scope="module")
def bart_classifier(wp_tokenizer):
    return tiny_bart_classifier(wp_tokenizer)


def test_a_classifier_that_reads_its_ids_is_explained_by_perturbation(bart_classifier, wp_tokenizer):
    model, tok = bart_classifier, wp_tokenizer
    pair = {"text": "the food was cold", "text_pair": "staff were lovely"}
    texts = [TEXTS[0], pair, "not good"]
    for cls, opts in [(Occlusion, {}), (KernelShap, {"n_samples": 20})]:
        together = cls(model, tok, batch_size=5, seed=1, **opts).explain(texts, targets="all")
        _same(together, [cls(model, tok, seed=1, **opts).explain(t, targets="all") for t in texts])
    e = Occlusion(model, tok, granularity="token").explain(TEXTS[0])
    ids = tok(TEXTS[0], return_tensors="pt")["input_ids"]
    c = e.targets[0].index
    masked = ids.clone()
    masked[0, 2] = tok.mask_token_id  # the second word
    with torch.no_grad():
        want = model(ids).logits[0, c] - model(masked).logits[0, c]
    assert e.targets[0].score == pytest.approx(model(ids).logits[0, c].item(), abs=1e-5)
    assert e.scores[0, 1] == pytest.approx(want.item(), abs=1e-5)
    message = r"BartForSequenceClassification does not take inputs_embeds \(it reads its token ids\)"
    with pytest.raises(InterpTextError, match=message + ".*explain it with a perturbation method"):
        Saliency(model, tok).explain(TEXTS[0])
    with pytest.raises(InterpTextError, match=message):
        Occlusion(model, tok, replacement="zeros").explain(TEXTS[0])


def test_an_end_of_sentence_token_typed_in_the_text_of_an_id_reading_classifier_is_named(bart_classifier, wp_tokenizer):
    """BART's classifier needs as many </s> in every row; masking one typed in the text removes one."""
    assert bart_classifier.config.eos_token_id == wp_tokenizer.sep_token_id
    with pytest.raises(
        InterpTextError,
        match=r"BartForSequenceClassification reads its output at the end-of-sentence tokens \(id 3\) of its ids, "
        r"and needs as many in every row; masking changed their number: either the replacement token is that token "
        r".*or the text holds it typed in it \(remove it from the text\)",
    ):
        Occlusion(bart_classifier, wp_tokenizer).explain({"text": "the food [SEP] cold", "text_pair": "good"})


def test_an_id_reading_classifiers_end_token_as_replacement_or_missing_is_named(bart_classifier, wp_tokenizer):
    reads = r"BartForSequenceClassification reads its output at the end-of-sentence tokens \(id 3\) of its ids, "
    with pytest.raises(
        InterpTextError, match=reads + r"and needs as many .* pass replacement='unk', 'mask' or another"
    ):
        Occlusion(bart_classifier, wp_tokenizer, replacement="sep").explain("the food was cold")
    bare = copy.deepcopy(wp_tokenizer)  # writes no [CLS] ... [SEP] around a text
    bare.backend_tokenizer.post_processor = None
    with pytest.raises(InterpTextError, match=reads + "and the tokenizer wrote none in this text: use the tokenizer"):
        Occlusion(bart_classifier, bare).explain("the food was cold")


def test_another_not_implemented_error_is_the_models_own(wp_tokenizer):
    """Only a refusal of input embeddings switches a classifier to token ids; any other
    NotImplementedError (an op a device lacks) reaches the user as it is."""
    from toy_models import ToyConfig, ToyForSequenceClassification

    class Unsupported(ToyForSequenceClassification):
        def forward(self, **kwargs):
            raise NotImplementedError("aten::embedding_dense_backward is not implemented for this device")

    model = Unsupported(ToyConfig(vocab_size=len(wp_tokenizer)))
    for _ in range(2):  # and the model is not taken for one that reads ids afterwards
        with pytest.raises(NotImplementedError, match="aten::embedding_dense_backward"):
            Occlusion(model, wp_tokenizer).explain("the food")
        with pytest.raises(NotImplementedError, match="aten::embedding_dense_backward"):
            Saliency(model, wp_tokenizer).explain("the food")


def test_a_masked_lm_is_never_taken_for_a_generator(wp_tokenizer):
    """transformers before 4.50 answered can_generate() True for BertForMaskedLM; it reads both ways."""

    class OldStyleBertForMaskedLM(T.BertForMaskedLM):
        @classmethod
        def can_generate(cls):
            return True

    model = OldStyleBertForMaskedLM(T.BertConfig(vocab_size=len(wp_tokenizer), **SMALL)).eval()
    with pytest.raises(InterpTextError, match="cannot tell what OldStyleBertForMaskedLM predicts"):
        Saliency(model, wp_tokenizer)


def test_longformer_with_its_pad_token_in_the_text(wp_tokenizer):
    """The pad check's forwards give Longformer its global attention mask too."""
    torch.manual_seed(0)
    config, model_class, kw = CLASSIFIERS["longformer"]
    model = model_class(config(vocab_size=len(wp_tokenizer), num_labels=3, pad_token_id=0, **kw)).eval()
    text = "the food [PAD] was cold"
    with torch.no_grad():
        want = model(**wp_tokenizer(text, return_tensors="pt")).logits[0]
    for cls in (Occlusion, Saliency):
        got = cls(model, wp_tokenizer).explain(text, targets="all")
        # On ids the pad token takes no position of its own (RoBERTa's tables); the pad check keeps
        # readings within its tolerance, 1e-4 here.
        np.testing.assert_allclose([t.score for t in got.targets], want.numpy(), rtol=0, atol=1e-4)


def test_the_default_noise_is_on_the_scale_of_what_the_model_reads(padded_bpe):
    """Marian with scale_embedding reads its embedding rows times √d: the default σ is half the
    spread of those, as for a model whose embedding layer scales them itself."""
    from interp_text import VarGrad
    from interp_text.methods import _std

    torch.manual_seed(0)
    kw = dict(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, **SEQ2SEQ_SMALL)
    plain = T.MarianMTModel(T.MarianConfig(**kw)).eval()
    scaled = T.MarianMTModel(T.MarianConfig(**kw, scale_embedding=True)).eval()
    scaled.load_state_dict(plain.state_dict())
    with torch.no_grad():
        spread = _std(plain.get_input_embeddings().weight)
    assert VarGrad(plain, padded_bpe).noise_std == pytest.approx(0.5 * spread)
    assert VarGrad(scaled, padded_bpe).noise_std == pytest.approx(0.5 * spread * math.sqrt(plain.config.d_model))
    # Found before any text, from a text of its own, tokenized without touching the tokenizer's settings.
    tok = copy.deepcopy(padded_bpe)
    tok.backend_tokenizer.enable_truncation(max_length=7)
    set_to = tok.backend_tokenizer.truncation
    fresh = T.MarianMTModel(T.MarianConfig(**kw, scale_embedding=True)).eval()
    VarGrad(fresh, tok)
    assert tok.backend_tokenizer.truncation == set_to


def test_modules_a_model_makes_during_the_call_come_back_in_its_mode(wp_tokenizer):
    """BigBird swaps full-attention modules in for block-sparse ones on short texts, inside the call,
    where the model is in eval mode: a model the user left in train mode has them in train mode too."""
    torch.manual_seed(0)
    config = T.BigBirdConfig(
        vocab_size=len(wp_tokenizer), attention_type="block_sparse", block_size=2, num_random_blocks=1, **SMALL
    )
    model = T.BigBirdForSequenceClassification(config).train()
    for cls in (Saliency, Occlusion):
        cls(model, wp_tokenizer).explain("The food was cold but the staff were lovely.")
        assert [name for name, m in model.named_modules() if not m.training] == []


def test_reformer_is_sent_to_the_perturbation_methods(wp_tokenizer):
    config = T.ReformerConfig(
        vocab_size=len(wp_tokenizer),
        hidden_size=32,
        num_attention_heads=2,
        attention_head_size=16,
        attn_layers=["local", "local"],
        local_attn_chunk_length=4,
        axial_pos_shape=[8, 8],
        axial_pos_embds_dim=[16, 16],
        max_position_embeddings=64,
        feed_forward_size=64,
        is_decoder=False,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = T.ReformerForSequenceClassification(config).eval()
    with pytest.raises(InterpTextError) as err:
        Saliency(model, wp_tokenizer)
    assert str(err.value).startswith("ReformerForSequenceClassification's reversible layers compute their backward")
    assert np.isfinite(Occlusion(model, wp_tokenizer).explain("The food was cold.").scores).all()


def test_a_scaled_classifier_that_reads_its_ids_is_explained_by_perturbation(wp_tokenizer):
    """MVP's classifier holds an embed_scale and refuses inputs_embeds: the scale check leaves it to
    read its ids (its own scores), and the gradient methods name the perturbation ones."""
    torch.manual_seed(0)
    config = T.MvpConfig(
        vocab_size=len(wp_tokenizer),
        num_labels=3,
        pad_token_id=0,
        eos_token_id=wp_tokenizer.sep_token_id,
        scale_embedding=True,
        init_std=0.3,
        **SEQ2SEQ_SMALL,
    )
    model = T.MvpForSequenceClassification(config).eval()
    text = "the food was cold"
    with torch.no_grad():
        own = model(**wp_tokenizer(text, return_tensors="pt")).logits[0]
    got = Occlusion(model, wp_tokenizer).explain(text, targets="all")
    np.testing.assert_allclose([t.score for t in got.targets], own.numpy(), rtol=1e-5, atol=1e-5)
    for cls in (Saliency, VarGrad):
        with pytest.raises(InterpTextError, match="does not take inputs_embeds"):
            cls(model, wp_tokenizer).explain(text)


def test_equal_infinite_logits_agree_in_the_scale_check(padded_bpe):
    """A wrapper that masks a token's logit to -inf: -inf - -inf is NaN, which must not hide the factor."""

    class NeverPad(T.MarianMTModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits[..., self.config.pad_token_id] = float("-inf")
            return out

    torch.manual_seed(0)
    kw = dict(vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, scale_embedding=True, init_std=0.3)
    model = NeverPad(T.MarianConfig(**kw, **SEQ2SEQ_SMALL)).eval()
    prompt, output = "The food was cold", " the pasta"
    got = Occlusion(model, padded_bpe, inference_mode="log_softmax", granularity="all_tokens").explain(
        prompt, targets=output
    )
    p, o = padded_bpe(prompt)["input_ids"], padded_bpe(output, add_special_tokens=False)["input_ids"]
    decoder = torch.tensor([[model.config.decoder_start_token_id, *o[:-1]]])
    with torch.no_grad():
        logp = model(input_ids=torch.tensor([p]), decoder_input_ids=decoder).logits.log_softmax(-1)[0]
    np.testing.assert_allclose([t.score for t in got.targets], [float(logp[k, t]) for k, t in enumerate(o)], rtol=1e-5)


def test_a_decoder_that_sees_later_outputs_is_refused(padded_bpe):
    """FSMT builds its decoder's causal mask from input ids only: given embeddings, an output
    position sees the outputs after it, and every teacher-forced score would be another function's.
    Refused by every method, on every call, not only the first."""
    torch.manual_seed(0)
    config = T.FSMTConfig(
        src_vocab_size=len(padded_bpe),
        tgt_vocab_size=len(padded_bpe),
        langs=["en", "de"],
        pad_token_id=padded_bpe.pad_token_id,
        eos_token_id=padded_bpe.eos_token_id,
        **dict(SEQ2SEQ_SMALL, decoder_start_token_id=padded_bpe.eos_token_id),
    )
    models = [T.FSMTForConditionalGeneration(config).eval() for _ in range(2)]
    # In bfloat16, with small weights, rows that differ in a later input only moved by 0.06, within a loose
    # tolerance; a decoder of one input, what generate() reads at the first position, by 0.45.
    models[1] = models[1].to(torch.bfloat16)
    models[0].apply(lambda m: m.weight.data.mul_(5) if isinstance(m, torch.nn.Linear) else None)
    # transformers 4's FSMT requires input_ids: refused for that, when the explainer is built.
    required = inspect.signature(models[0].forward).parameters["input_ids"].default is inspect.Parameter.empty
    for cls, model in ((Saliency, models[0]), (Occlusion, models[0]), (Saliency, models[0]), (Saliency, models[1])):
        with pytest.raises(InterpTextError) as err:
            cls(model, padded_bpe).explain("The capital of France is", targets=" Paris and Rome")
        assert str(err.value).startswith(
            "FSMTForConditionalGeneration.forward requires input_ids, so it cannot be given embeddings alone"
            if required
            else "FSMTForConditionalGeneration's decoder lets each output position see the output tokens after it"
        )


def test_an_end_of_sentence_given_as_several_ids_is_no_obstacle(padded_bpe):
    """The decoder check avoids the pad, start and end ids: an end given as a list (as generation
    configs allow) failed with "unhashable type: 'list'" on every encoder-decoder."""
    torch.manual_seed(0)
    eos = padded_bpe.eos_token_id
    kw = dict(SEQ2SEQ_SMALL, vocab_size=len(padded_bpe), pad_token_id=padded_bpe.pad_token_id, eos_token_id=[eos, 1])
    model = T.BartForConditionalGeneration(T.BartConfig(**kw)).eval()
    got = Occlusion(model, padded_bpe).explain("The capital of France is", targets=" Paris")
    assert np.isfinite(got.scores).all()
