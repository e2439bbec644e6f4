"""Other Hugging Face architectures, built tiny from their configs: batched equals alone, scores finite.

bert, gpt2, llama and t5 are covered throughout the suite; these add what differs between model
families: learned vs rotary vs relative positions, scaled embeddings (BART, Gemma), factorised
embeddings (ALBERT, ELECTRA), a parallel block (Phi), grouped-query attention.
"""

import numpy as np
import pytest
import torch
import transformers as T
from conftest import bpe_tokenizer

from interp_text import Saliency, VarGrad
from interp_text.perturbation import KernelShap, Occlusion

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
}
GENERATORS = {
    "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(SMALL, num_key_value_heads=1)),
    "phi": (T.PhiConfig, T.PhiForCausalLM, SMALL),
    "gemma": (T.GemmaConfig, T.GemmaForCausalLM, dict(SMALL, num_key_value_heads=1, head_dim=16)),
    "bart": (
        T.BartConfig,
        T.BartForConditionalGeneration,
        dict(
            d_model=32,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            decoder_start_token_id=2,
        ),
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
