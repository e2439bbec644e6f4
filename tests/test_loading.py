"""An explainer takes a model and tokenizer, a pipeline, a bundled name, or a folder to load both from."""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_bert_checkpoint
from transformers import pipeline

from interp_text import Deletion, InterpTextError, Occlusion, Saliency, compare, load_default
from interp_text.loading import _failed, load

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
    want = pytest.approx(Deletion(model, tokenizer).evaluate(e))
    assert compare("sentiment", None, [text], ["occlusion"])[0]["deletion"] == want
    assert compare("sentiment", [text], methods=["occlusion"])[0]["deletion"] == want
    assert compare("sentiment", text, methods=["occlusion"])[0]["deletion"] == want
    assert compare("sentiment", texts=[text], methods=["occlusion"])[0]["deletion"] == want
    with pytest.raises(InterpTextError, match=r"compare\(\) needs texts"):
        compare(model, tokenizer)
    # The tokenizer by name too, as the model may be; "Sentiment" as any name is read.
    assert Occlusion(model, "Sentiment").explain(text) == Occlusion(model, tokenizer).explain(text)
    with pytest.raises(InterpTextError, match=r"'sentimen' is not a bundled model or a folder here; did you mean"):
        Occlusion(model, "sentimen")  # at once, not after the Hub's offline timeout


def test_a_loaded_model_is_placed_on_the_device_once(saved):
    model, _ = load(str(saved), device="cpu")
    assert model.device.type == "cpu" and not model.training
    with pytest.raises(InterpTextError, match="device='gpu' is not a device torch knows"):
        load(str(saved), device="gpu")


def test_task_picks_the_head_of_a_checkpoint_saved_without_one(tmp_path, bpe):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    config = GPT2Config(vocab_size=len(bpe), n_embd=16, n_layer=1, n_head=2, num_labels=2)
    base, lm = tmp_path / "base", tmp_path / "lm"
    for folder, cls in ((base, GPT2Model), (lm, GPT2LMHeadModel)):
        torch.manual_seed(0)
        cls(config).save_pretrained(folder)
        bpe.save_pretrained(folder)
    with pytest.raises(InterpTextError, match=r"is a GPT2Model checkpoint, with no classification or language-model"):
        load(str(base))
    assert type(load(str(base), task="classification")[0]).__name__ == "GPT2ForSequenceClassification"
    assert type(load(str(base), task="causal_lm")[0]).__name__ == "GPT2LMHeadModel"
    # A checkpoint saved with a head loads with it; another task would throw its trained head away.
    assert type(load(str(lm))[0]).__name__ == "GPT2LMHeadModel"
    assert type(load(str(lm), task="generation")[0]).__name__ == "GPT2LMHeadModel"
    with pytest.raises(InterpTextError, match=r"task='classification' does not fit .*saved as GPT2LMHeadModel"):
        Occlusion(str(lm), task="classification")


def test_a_masked_lm_checkpoint_is_not_taken_for_a_generator(tmp_path, wp_tokenizer):
    tiny_bert_checkpoint(tmp_path, wp_tokenizer, "BertForMaskedLM")
    with pytest.raises(InterpTextError, match=r"is a BertForMaskedLM checkpoint, with no classification"):
        Saliency(tmp_path)


def test_a_folder_without_its_tokenizer_is_refused(tmp_path, bert, wp_tokenizer):
    bert.save_pretrained(tmp_path)  # the weights only, as a Trainer without a tokenizer leaves them
    with pytest.raises(
        InterpTextError, match=r"holds no tokenizer \(none of tokenizer.json, .*tokenizer.save_pretrained"
    ):
        Saliency(tmp_path)
    got = Saliency(tmp_path, wp_tokenizer).explain(TEXT)  # given one, the folder's model is used with it
    assert got.model == str(tmp_path.resolve())
    got.model = None  # the same weights, built in memory: no name
    want = Saliency(bert, wp_tokenizer).explain(TEXT)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)  # float32 kernels may round the loaded copy apart
    assert [t.score for t in got.targets] == pytest.approx([t.score for t in want.targets], rel=1e-6)
    got.scores, got.targets = want.scores, want.targets
    assert got == want


def test_what_cannot_be_loaded_is_named(bert, tmp_path, monkeypatch):
    with pytest.raises(InterpTextError, match=r"no tokenizer for BertForSequenceClassification: pass it"):
        Saliency(bert)
    with pytest.raises(
        InterpTextError, match=r"cannot load 'no/such/folder': there is no such folder \(from .*\), and it is not a"
    ):
        Occlusion("no/such/folder")  # not a Hub name either: refused without asking the Hub
    for path in ("./no-such-model", ".hidden/model"):  # a Hub name starts with a letter or digit
        with pytest.raises(InterpTextError, match="there is no such folder"):
            Occlusion(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InterpTextError) as err:
        Occlusion(str(tmp_path / "empty"))
    assert str(err.value) == (
        f"cannot load {str(tmp_path / 'empty')!r}: the folder holds no config.json; save the model there with "
        "model.save_pretrained(folder), or pass a bundled model's name or a Hub id."
    )
    assert "HF_HUB_OFFLINE" not in str(err.value)  # a folder: the Hub was not asked
    # A name the Hub was asked for: with no network its client waits, unless told it is offline.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hint = "; with no network, set HF_HUB_OFFLINE=1 to read only the local cache, at once"
    assert str(_failed("owner/model", OSError("no connection"))).endswith(f"(no connection){hint}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert str(_failed("owner/model", OSError("no connection"))).endswith("(no connection)")


def test_a_vision_language_model_loads_by_folder_as_it_was_saved(tmp_path, bpe):
    """No Auto class for causal LMs knows LLaVA: the class the checkpoint names loads it."""
    import transformers as T

    text = T.LlamaConfig(
        vocab_size=len(bpe),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
    )
    vision = T.CLIPVisionConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=28, patch_size=14
    )
    torch.manual_seed(0)
    model = T.LlavaForConditionalGeneration(
        T.LlavaConfig(text_config=text, vision_config=vision, image_token_index=len(bpe) - 1)
    ).eval()
    model.save_pretrained(tmp_path)
    bpe.save_pretrained(tmp_path)
    prompt, target = "The capital of France is", " Paris"
    got = Saliency(tmp_path).explain(prompt, targets=target)
    assert type(Saliency(tmp_path).model).__name__ == "LlavaForConditionalGeneration"
    assert got.task == "causal_lm"
    np.testing.assert_allclose(got.scores, Saliency(model, bpe).explain(prompt, targets=target).scores, rtol=1e-5)


def test_only_a_model_is_asked_for_its_tokenizer():
    with pytest.raises(InterpTextError, match="model must be a torch / Hugging Face model, got int"):
        Saliency(42)


def test_a_folder_of_a_class_of_ones_own_names_it_and_loads_with_a_task(tmp_path, bert, wp_tokenizer):
    from transformers import BertForSequenceClassification

    class MyClassifier(BertForSequenceClassification):
        pass

    mine = MyClassifier(bert.config).eval()
    mine.load_state_dict(bert.state_dict())
    mine.save_pretrained(tmp_path)
    wp_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(InterpTextError) as err:
        Saliency(str(tmp_path))
    assert str(err.value).startswith(
        f"{str(tmp_path)!r} was saved as MyClassifier, which transformers does not have (a class of your own?); "
    )
    got = Saliency(str(tmp_path), task="classification").explain("the food was cold")
    want = Saliency(bert, wp_tokenizer).explain("the food was cold")  # the saved head, not a new one
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)
    assert got.targets[0].score == pytest.approx(want.targets[0].score, abs=1e-6)


def test_the_cli_gives_task_to_a_checkpoint_saved_without_a_head(tmp_path, wp_tokenizer, capsys):
    from interp_text.cli import main

    tiny_bert_checkpoint(tmp_path, wp_tokenizer)
    assert main(["explain", "the food was cold", "--model", str(tmp_path), "--method", "occlusion"]) == 2
    err = capsys.readouterr().err
    assert "is a BertModel checkpoint, with no classification or language-model head to explain; pass --task " in err
    assert "pass --task classification or --task generation to load it with one" in err  # the command's own flags
    argv = [
        "explain",
        "the food was cold",
        "--model",
        str(tmp_path),
        "--method",
        "occlusion",
        "--task",
        "classification",
    ]
    assert main(argv) == 0
    assert "cold[" in capsys.readouterr().out


def test_an_explanation_names_the_model_it_was_made_with(saved, bert, wp_tokenizer, monkeypatch):
    assert Saliency(bert, wp_tokenizer).explain(TEXT).model is None  # built in memory: no name
    monkeypatch.chdir(saved.parent)
    relative = Occlusion(saved.name).explain(TEXT)  # a folder, named relative to here
    assert relative.model == str(saved.resolve())
    assert type(relative).from_dict(relative.to_dict()).model == str(saved.resolve())
    assert Occlusion(*load_default("sentiment")).explain(TEXT).model == "sentiment"


def test_one_name_loads_one_model_while_it_is_held():
    """Metrics and explainers given one name share its model: evaluate_together takes them, and a
    large model is not held twice. Once nothing holds it, the name loads it again."""
    import gc

    import interp_text.loading as L
    from interp_text import Insertion, evaluate_together

    deletion, insertion = Deletion("sentiment"), Insertion("Sentiment")
    assert deletion.model is insertion.model and deletion.tokenizer is insertion.tokenizer
    e = Occlusion("sentiment").explain("The food was not good.")
    # Up to float32 rounding: the rows run in other batches, and a batch's size may change its sums.
    want = [deletion.evaluate(e), insertion.evaluate(e)]
    assert evaluate_together([deletion, insertion], e) == pytest.approx(want, rel=1e-6)
    assert Occlusion("sentiment", device="cpu").model is deletion.model  # where it loads anyway
    assert load("sentiment")[0] is deletion.model
    del deletion, insertion, e
    gc.collect()
    assert not [key for key in L._LOADED if key[0] == "sentiment"]  # nothing holds it: not kept


def test_a_misspelt_bundled_name_is_named_without_asking_the_hub():
    # Asked of the Hub, with no network, these took half a minute to fail with another message.
    for typo, meant in (("sentimen", "sentiment"), ("Sentimnet", "sentiment"), ("fact", "facts")):
        with pytest.raises(InterpTextError) as err:
            Saliency(typo)
        assert str(err.value) == (
            f"{typo!r} is not a bundled model or a folder here; did you mean {meant!r}? (A Hub model of that name: "
            "pass it as owner/name.)"
        )


def test_a_folder_saved_again_loads_again(tmp_path, bert, wp_tokenizer):
    """The shared load is of the folder's files as they are: a checkpoint saved over it is read anew,
    and a name given with a tokenizer first shares the model with the name alone."""
    bert.save_pretrained(tmp_path)
    wp_tokenizer.save_pretrained(tmp_path)
    first = Occlusion(str(tmp_path), wp_tokenizer)
    assert Occlusion(str(tmp_path)).model is first.model  # its own tokenizer loaded, the model shared
    changed = copy.deepcopy(bert)
    with torch.no_grad():
        changed.classifier.weight.add_(1.0)
    changed.save_pretrained(tmp_path)
    again = Occlusion(str(tmp_path))
    assert again.model is not first.model
    assert torch.equal(again.model.classifier.weight, changed.classifier.weight)


def test_a_bundled_name_with_its_own_task_shares_the_load():
    from interp_text import Insertion, evaluate_together

    deletion, insertion = Deletion("sentiment"), Insertion("sentiment", task="classification")
    assert deletion.model is insertion.model
    e = Occlusion("sentiment").explain("The food was not good.")
    assert evaluate_together(deletion, e) == [deletion.evaluate(e)]  # one metric: a list of one


@pytest.mark.parametrize(
    "versions, refused",
    [
        (("5.23.0", "2.4.1+cu121"), True),
        (("5.0.0", "2.5.1"), True),
        (("5.23.0", "2.6.0"), False),
        (("4.57.1", "2.1.2"), False),
    ],
)
def test_transformers_5_with_an_older_torch_is_refused_naming_both_ways_out(versions, refused, monkeypatch):
    """pip installs transformers 5 beside torch 2.4 (transformers asks for 2.6 in an extra only); its
    first model then fails with a traceback. Refused before loading, with the fix."""
    import transformers

    from interp_text.loading import check_versions

    monkeypatch.setattr(transformers, "__version__", versions[0])
    monkeypatch.setattr(torch, "__version__", versions[1])
    if not refused:
        check_versions()
        return
    message = (
        f"transformers {versions[0]} needs torch 2.6 or later, and torch {versions[1]} is installed: upgrade torch "
        '(pip install "torch>=2.6"), or keep this torch with transformers 4 (pip install "transformers>=4.45,<5").'
    )
    with pytest.raises(InterpTextError) as err:
        load_default("sentiment")
    assert str(err.value) == message
    with pytest.raises(InterpTextError) as err:
        load("some-org/some-model")
    assert str(err.value) == message


def test_training_the_bundled_models_writes_into_an_installed_package_only_when_asked(tmp_path, monkeypatch):
    from interp_text.bundled import train

    monkeypatch.setattr(train, "HERE", tmp_path / "site-packages" / "interp_text" / "bundled")
    with pytest.raises(SystemExit, match="the bundled models belong to the installed package; pass a folder"):
        train.main(["sentiment"])
    with pytest.raises(SystemExit, match=r"^usage: .* got 'both'$"):
        train.main(["both"])
