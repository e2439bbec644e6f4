"""An explainer takes a model and tokenizer, a pipeline, a bundled name, or a folder to load both from."""

import numpy as np
import pytest
import torch
from transformers import pipeline

from interp_text import Deletion, InterpTextError, Occlusion, Saliency, compare, load_default
from interp_text.loading import load

TEXT = "the food was cold but the staff were lovely"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, bert, wp_tokenizer):
    folder = tmp_path_factory.mktemp("bert")
    bert.save_pretrained(folder)
    wp_tokenizer.save_pretrained(folder)
    return folder


def test_a_folder_loads_the_model_and_its_tokenizer(saved, bert, wp_tokenizer):
    want = Saliency(bert, wp_tokenizer).explain(TEXT)
    for given in (saved, str(saved)):
        got = Saliency(given).explain(TEXT)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
        assert got.elements == want.elements
    # A tokenizer may be named the same way.
    assert Saliency(bert, str(saved)).explain(TEXT).elements == want.elements


def test_a_folder_of_a_generator_loads_its_lm_head(tmp_path, gpt2, bpe):
    gpt2.save_pretrained(tmp_path)
    bpe.save_pretrained(tmp_path)
    prompt, target = "The capital of France is", " Paris"
    got = Saliency(tmp_path).explain(prompt, targets=target)
    want = Saliency(gpt2, bpe).explain(prompt, targets=target)
    assert got.task == "causal_lm"
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, equal_nan=True)


def test_a_pipeline_gives_its_model_and_tokenizer(bert, wp_tokenizer):
    pipe = pipeline("text-classification", model=bert, tokenizer=wp_tokenizer)
    got = Occlusion(pipe).explain(TEXT, targets="all")
    want = Occlusion(bert, wp_tokenizer).explain(TEXT, targets="all")
    assert got == want


def test_bundled_names_everywhere():
    model, tokenizer = load_default("sentiment")
    text = "The food was not good."
    assert Occlusion("sentiment").explain(text) == Occlusion(model, tokenizer).explain(text)
    e = Occlusion(model, tokenizer).explain(text)
    assert Deletion("sentiment").evaluate(e) == Deletion(model, tokenizer).evaluate(e)
    rows = compare("sentiment", None, [text], ["occlusion"])
    assert rows[0]["deletion"] == pytest.approx(Deletion(model, tokenizer).evaluate(e))


def test_a_loaded_model_is_placed_on_the_device_once(saved):
    model, _ = load(str(saved), device="cpu")
    assert model.device.type == "cpu" and not model.training
    with pytest.raises(InterpTextError, match="device='gpu' is not a device torch knows"):
        load(str(saved), device="gpu")


def test_task_picks_the_head_of_a_base_checkpoint(tmp_path, bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_embd=16, n_layer=1, n_head=2, num_labels=2)).save_pretrained(
        tmp_path
    )
    bpe.save_pretrained(tmp_path)
    assert type(load(str(tmp_path))[0]).__name__ == "GPT2LMHeadModel"
    assert type(load(str(tmp_path), task="classification")[0]).__name__ == "GPT2ForSequenceClassification"


def test_what_cannot_be_loaded_is_named(bert):
    with pytest.raises(InterpTextError, match=r"no tokenizer for BertForSequenceClassification: pass it"):
        Saliency(bert)
    with pytest.raises(
        InterpTextError, match=r"cannot load 'no/such/folder': it is not a bundled model \(sentiment, facts\)"
    ):
        Occlusion("no/such/folder")
