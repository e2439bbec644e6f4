"""Bad input is refused with an error naming the fix, before any forward, and the model is left alone."""

import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer, cpu_float16_works, tiny_bert

from interp_text import InterpTextError, Saliency, VarGrad
from interp_text.perturbation import KernelShap, Lime, Occlusion, Sobol


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_a_cuda_device_without_cuda_is_refused_when_built(device, bert, wp_tokenizer):
    with pytest.raises(InterpTextError, match=r"torch here has no CUDA device .*pass device='cpu'"):
        VarGrad(bert, wp_tokenizer, device=device)


def test_meta_and_unknown_devices_are_refused_and_the_model_is_untouched(bert, wp_tokenizer):
    before = bert.bert.embeddings.word_embeddings.weight.clone()
    with pytest.raises(InterpTextError, match="device='meta' holds no weights"):
        Occlusion(bert, wp_tokenizer, device="meta")
    with pytest.raises(InterpTextError, match="device='gpu' is not a device torch knows"):
        Saliency(bert, wp_tokenizer, device="gpu")
    for device in ("xla", "hpu"):  # torch knows their names; without their backends it failed at the first forward
        if device == "xla" or not hasattr(torch, "hpu"):
            with pytest.raises(InterpTextError, match=rf"device='{device}': torch here cannot compute on it \("):
                Occlusion(bert, wp_tokenizer, device=device)
    assert bert.device.type == "cpu"
    assert torch.equal(bert.bert.embeddings.word_embeddings.weight, before)


def test_a_token_the_model_has_no_embedding_for():
    own = bpe_tokenizer()
    model = tiny_bert(own)
    own.add_tokens(["zzzunseen"])  # added to the tokenizer, not to the model
    message = (
        r"text 1 has token id 300 \('zzzunseen'\) but the model's input embeddings have 300 rows \(ids 0..299\)\. "
        r"A token added to the tokenizer needs model.resize_token_embeddings\(len\(tokenizer\)\)"
    )
    warning = (
        "the tokenizer has 301 tokens but BertForSequenceClassification's input embeddings have 300 rows: is it this "
        "model's tokenizer? Texts with a token id of 300 or more are refused, and the others read whatever rows those "
        "ids name. A tokenizer with added tokens needs model.resize_token_embeddings(len(tokenizer))."
    )
    for cls in (Occlusion, Saliency):
        with pytest.warns(UserWarning) as said:  # said when the explainer is built, before any text
            explainer = cls(model, own)
        assert [str(w.message) for w in said] == [warning]
        with pytest.raises(InterpTextError, match=message):
            explainer.explain(["fine text", "a zzzunseen word"])


def test_another_models_larger_tokenizer_is_named():
    """The bundled classifier (450 rows) given the bundled GPT-2's tokenizer (794 tokens): a text whose
    ids all fall under 450 would run on the wrong embeddings with no error."""
    from interp_text import Deletion, load_default

    model, own = load_default("sentiment")
    _, other = load_default("facts")
    for build in (Saliency, Occlusion, Deletion):
        with pytest.warns(UserWarning, match=r"^the tokenizer has 794 tokens but BertForSequenceClassification's"):
            build(model, other)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            build(model, own)


@pytest.mark.parametrize(
    "target,message",
    [
        ([10**6], r"the output of prompt 0 has token id 1000000 but the model's input embeddings have \d+ rows"),
        ([-1], "the output of prompt 0 has token id -1; token ids are >= 0."),
    ],
)
def test_generation_target_ids_out_of_range(target, message, gpt2, bpe):
    for cls in (Occlusion, Saliency):
        with pytest.raises(InterpTextError, match=message):
            cls(gpt2, bpe).explain("The capital of France is", targets=target)


def test_numpy_targets_are_plain_ints(bert, wp_tokenizer, gpt2, bpe):
    ex = Occlusion(bert, wp_tokenizer)
    texts = ["the food was cold", "lovely staff"]
    assert ex.explain(texts[0], targets=np.int64(2)).targets[0].index == 2
    by_np = ex.explain(texts, targets=np.array([1, 2]))
    assert [e.targets[0].index for e in by_np] == [1, 2]
    ids = bpe(" Paris", add_special_tokens=False)["input_ids"]
    a = Saliency(gpt2, bpe).explain("The capital of France is", targets=np.array(ids))
    b = Saliency(gpt2, bpe).explain("The capital of France is", targets=ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_task_must_fit_the_model(bert, wp_tokenizer, gpt2, bpe, t5):
    with pytest.raises(
        InterpTextError,
        match=r"task='classification' does not fit T5ForConditionalGeneration, a seq2seq model; leave task unset",
    ):
        Saliency(t5, bpe, task="classification")
    with pytest.raises(InterpTextError, match="task='causal_lm' does not fit T5ForConditionalGeneration"):
        Occlusion(t5, bpe, task="causal_lm")
    with pytest.raises(InterpTextError, match="task='seq2seq' does not fit BertForSequenceClassification"):
        Saliency(bert, wp_tokenizer, task="seq2seq")
    assert Saliency(t5, bpe, task="generation").settings.task == "seq2seq"
    assert Occlusion(gpt2, bpe, task="generation").settings.task == "causal_lm"
    with pytest.raises(InterpTextError, match="task='generation' does not fit BertForSequenceClassification"):
        Saliency(bert, wp_tokenizer, task="generation")


def test_kernelshap_refuses_fewer_coalition_pairs_than_unknowns(bert, wp_tokenizer):
    text = "the food was cold but the staff were lovely and kind"  # 11 words: 10 unknowns, 10 pairs needed
    with pytest.raises(
        InterpTextError,
        match=r"text 1 has 11 elements, and n_samples=17 coalitions \(in complementary pairs, one equation each\) "
        r"cannot determine 11 Shapley values; pass n_samples >= 20",
    ):
        KernelShap(bert, wp_tokenizer, n_samples=17).explain(["cold food", text])
    # Enough to enumerate every coalition of a short text: exact, whatever n_samples is.
    assert KernelShap(bert, wp_tokenizer, n_samples=2).explain("cold food").scores.shape == (1, 2)
    assert KernelShap(bert, wp_tokenizer, n_samples=20).explain(text).scores.shape == (1, 11)


def test_any_special_token_can_replace_masked_elements(bert, wp_tokenizer):
    text = "the food was cold"
    by_name = Occlusion(bert, wp_tokenizer, replacement="unk").explain(text)
    by_id = Occlusion(bert, wp_tokenizer, replacement=wp_tokenizer.unk_token_id).explain(text)
    np.testing.assert_array_equal(by_name.scores, by_id.scores)
    assert not np.array_equal(by_name.scores, Occlusion(bert, wp_tokenizer).explain(text).scores)  # [MASK]
    with pytest.raises(InterpTextError, match="replacement='eos': the tokenizer has no eos token"):
        Occlusion(bert, wp_tokenizer, replacement="eos")


def test_token_reduction_takes_any_case(bert, wp_tokenizer):
    a = Saliency(bert, wp_tokenizer, token_reduction="L2").explain("the food was cold")
    b = Saliency(bert, wp_tokenizer, token_reduction="l2").explain("the food was cold")
    np.testing.assert_array_equal(a.scores, b.scores)


def test_a_chat_message_without_content_is_refused(gpt2, bpe):
    with pytest.raises(InterpTextError, match=r"message 1 of conversation 0 has no text"):
        Saliency(gpt2, bpe).explain([{"role": "user", "content": "hi"}, {"role": "assistant"}], targets=" ok")
    # A message without its role is named as such (the list was read as texts, and a pair's keys asked for).
    with pytest.raises(InterpTextError, match=r'message 1 of conversation 0 has no "role": a chat message is'):
        Saliency(gpt2, bpe).explain([{"role": "user", "content": "hi"}, {"content": "ok"}], targets=" ok")
    with pytest.raises(InterpTextError, match=r'text 1 is a list of dicts, but none has a "role": a chat message is'):
        Saliency(gpt2, bpe).explain([[{"role": "user", "content": "hi"}], [{"content": "ok"}]], targets=[" a", " b"])
    with pytest.raises(InterpTextError, match=r"message 0 of conversation 0 holds '\\ud800' at character 2, a lone"):
        Saliency(gpt2, bpe).explain([{"role": "user", "content": "hi\ud800"}], targets=" ok")


def test_the_seed_is_kept_where_it_changes_the_result(bert, wp_tokenizer):
    assert VarGrad(bert, wp_tokenizer, seed=7).explain("cold food").options["seed"] == 7
    assert KernelShap(bert, wp_tokenizer, seed=7).explain("cold food").options["seed"] == 7
    assert "seed" not in Saliency(bert, wp_tokenizer, seed=7).explain("cold food").options
    assert "seed" not in Occlusion(bert, wp_tokenizer, seed=7).explain("cold food").options


def test_saving_creates_missing_folders(tmp_path, bert, wp_tokenizer):
    e = Saliency(bert, wp_tokenizer).explain("cold food")
    assert e.save_html(tmp_path / "a" / "b" / "e.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert e.save(tmp_path / "c" / "e.json").exists()


def test_the_bundled_models_load_without_a_progress_bar(capfd):
    from interp_text.bundled import load_default

    load_default("sentiment")
    assert "Loading weights" not in capfd.readouterr().err


def test_class_names_match_in_any_case(bert, wp_tokenizer):
    ex = Occlusion(bert, wp_tokenizer)
    names = list(bert.config.id2label.values())
    assert ex.explain("cold food", targets=names[1].upper()).targets[0].index == 1
    with pytest.raises(InterpTextError, match="target 'nope' is not a class name; the classes are"):
        ex.explain("cold food", targets="nope")


def _runs_out_above(limit, real):
    """``real``, raising CUDA's out-of-memory error for a forward of more than ``limit`` rows."""

    def forward(model, x, *args, **kwargs):
        if x.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError(f"{x.shape[0]} rows do not fit")
        return real(model, x, *args, **kwargs)

    return forward


@pytest.mark.parametrize("cls,opts", [(Occlusion, {}), (KernelShap, {"n_samples": 30}), (VarGrad, {})])
def test_out_of_memory_halves_the_batch_and_says_so(cls, opts, bert, wp_tokenizer, monkeypatch):
    import interp_text.engine as engine

    texts = ["the food was cold but the staff were lovely", "not good", "bad"]
    expected = cls(bert, wp_tokenizer, batch_size=6, **opts).explain(texts)
    monkeypatch.setattr(engine, "classification_logits", _runs_out_above(6, engine.classification_logits))
    explainer = cls(bert, wp_tokenizer, batch_size=50, **opts)
    with pytest.warns(UserWarning, match="batch_size=50 ran out of device memory; this call used batch_size=6. "):
        got = explainer.explain(texts)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    assert explainer.settings.batch_size == 50
    with pytest.raises(torch.cuda.OutOfMemoryError):  # one row that does not fit is the device's limit
        monkeypatch.setattr(engine, "classification_logits", _runs_out_above(0, engine.classification_logits))
        Occlusion(bert, wp_tokenizer, batch_size=4).explain("cold")


def test_a_regression_model_has_no_probability(wp_tokenizer):
    model = tiny_bert(wp_tokenizer, num_labels=1)
    with pytest.raises(
        InterpTextError, match="inference_mode='softmax': BertForSequenceClassification is a regression model"
    ):
        Saliency(model, wp_tokenizer, inference_mode="softmax")
    expl = Occlusion(model, wp_tokenizer).explain("the food was cold")
    with torch.no_grad():
        value = model(**wp_tokenizer("the food was cold", return_tensors="pt")).logits[0, 0].item()
    assert np.isnan(expl.targets[0].probability)
    assert expl.targets[0].score == pytest.approx(value, rel=1e-6)
    shown = expl.to_terminal(color=False)  # a value, not a class: nothing is "predicted"
    assert f"f(x) = {value:.4g} (logits)" in shown and "predicted" not in shown


def test_kernelshap_default_grows_with_long_texts(wp_tokenizer):
    tok = copy.deepcopy(wp_tokenizer)
    tok.model_max_length = 256
    bert = tiny_bert(tok, max_position_embeddings=256)
    long_text = " ".join(["cold food and lovely staff"] * 42)  # 210 words: more than the default 200
    explainer = KernelShap(bert, tok, batch_size=512)
    assert explainer.masks(210, torch.Generator().manual_seed(0)).shape == (1 + 420, 210)  # v(∅) + 2n
    expl = explainer.explain(long_text)
    assert expl.scores.shape == (1, 210)
    assert abs(expl.completeness_gap[0]) < 1e-5  # efficiency holds
    with pytest.raises(InterpTextError, match="text 0 has 210 elements, and n_samples=200 coalitions"):
        KernelShap(bert, tok, n_samples=200).explain(long_text)


def test_metrics_out_of_memory_halve_the_batch_too(bert, wp_tokenizer, monkeypatch):
    import interp_text.engine as engine
    from interp_text import Deletion

    expls = Occlusion(bert, wp_tokenizer).explain(["the food was cold but the staff were lovely", "not good"])
    expected = Deletion(bert, wp_tokenizer, batch_size=6).curves(expls)
    monkeypatch.setattr(engine, "classification_logits", _runs_out_above(6, engine.classification_logits))
    with pytest.warns(UserWarning, match="batch_size=64 ran out of device memory; this call used batch_size=4"):
        got = Deletion(bert, wp_tokenizer).curves(expls)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_model_spread_over_devices_is_not_moved(wp_tokenizer):
    model = tiny_bert(wp_tokenizer)
    model.hf_device_map = {"bert.embeddings": "cpu", "bert.encoder": 0, "classifier": 0}  # as device_map writes it
    with pytest.raises(
        InterpTextError, match=r"spread over the devices \['0', 'cpu'\] \(device_map\).*leave device unset"
    ):
        Occlusion(model, wp_tokenizer, device="cpu").explain("the food was cold")
    assert Occlusion(model, wp_tokenizer).explain("the food was cold").scores.shape == (1, 4)


def test_a_model_with_no_input_gradient_gets_a_gradient_free_method_named(bert, wp_tokenizer):
    """A quantized model's int8 layers (or a forward run without grad) pass no gradient back to the
    embeddings: a gradient method says to use a perturbation method, which still explains it."""
    layer = bert.bert.encoder.layer[0]
    hook = layer.register_forward_hook(
        lambda m, args, out: (
            tuple(o.detach() if torch.is_tensor(o) else o for o in out) if isinstance(out, tuple) else out.detach()
        )
    )
    try:
        message = (
            r"BertForSequenceClassification's output has no gradient with respect to its input embeddings \(autograd: "
            r".*\); its layers pass none back, as a quantized model's int8 layers do\. Explain it with a perturbation "
            r"method \(Occlusion, Lime, KernelShap, Sobol\), which needs no gradient\."
        )
        with pytest.raises(InterpTextError, match=message):
            Saliency(bert, wp_tokenizer).explain("the food was cold")
        assert np.isfinite(Occlusion(bert, wp_tokenizer).explain("the food was cold").scores).all()
    finally:
        hook.remove()
    with torch.no_grad():
        logits = bert(input_ids=torch.tensor([[2, 5, 3]])).logits
    frozen = copy.deepcopy(bert)
    frozen.forward = torch.no_grad()(frozen.forward)  # nothing in the forward requires grad
    with pytest.raises(InterpTextError, match="has no gradient with respect to its input embeddings"):
        VarGrad(frozen, wp_tokenizer, n_perturbations=2).explain("the food was cold")
    assert torch.equal(frozen(input_ids=torch.tensor([[2, 5, 3]])).logits, logits)


@pytest.mark.skipif(not cpu_float16_works(), reason="float16 models run on the CPU from torch 2.3 on")
@pytest.mark.parametrize("cls", [Saliency, VarGrad, Occlusion, Lime, KernelShap, Sobol])
def test_an_output_that_overflows_float16_is_refused_with_the_fix(cls, wp_tokenizer, gpt2, bpe):
    """Its scores would be all NaN (Sobol: all zeros, as if no word mattered; KernelShap: a torch assert)."""
    model = tiny_bert(wp_tokenizer)
    with torch.no_grad():
        model.classifier.bias.fill_(1e5)  # logits past 65504: inf in float16
    model = model.half()
    with pytest.raises(InterpTextError) as err:
        cls(model, wp_tokenizer).explain(["the food was good", "the staff were lovely and kind"])
    assert str(err.value) == (
        "text 0: the model's output on the unchanged text is not finite (inf for target 0), so nothing can be "
        "attributed to its words; a float16 model's activations overflow past 65504, the largest float16: load it "
        "in bfloat16 or float32 (model.to(torch.bfloat16) or model.float())."
    )
    lm = copy.deepcopy(gpt2)
    with torch.no_grad():
        lm.transformer.ln_f.bias.fill_(float("nan"))
    with pytest.raises(
        InterpTextError, match=r"^text 0: .* not finite \(nan for target 0\).*check the model's weights"
    ):
        cls(lm, bpe).explain("The capital of France is", targets=" Paris")


def test_a_length_limit_set_by_the_tokenizer_is_named_as_the_tokenizers(bert, wp_tokenizer):
    """The tokenizer's model_max_length may be below what the model's positions take: the message
    said the model accepted at most that, and never named the setting to raise."""
    tok = copy.deepcopy(wp_tokenizer)
    tok.model_max_length = 8
    text = "the food was cold but the staff were lovely and kind"
    with pytest.raises(InterpTextError) as err:
        Saliency(bert, tok).explain(text)
    n, positions = len(tok(text)["input_ids"]), bert.config.max_position_embeddings
    assert str(err.value) == (
        f"text 0 has {n} tokens but the tokenizer accepts at most 8 (its model_max_length; the model's positions "
        f"take {positions}: raise tokenizer.model_max_length to explain longer texts); shorten the text, or build the "
        "explainer with truncation=True to explain the start of the text that fits."
    )
    tok.model_max_length = 10**9  # no limit of its own (transformers' "very large" default): the model's
    assert Saliency(bert, tok).explain(text).elements[0] == "the"


def test_an_output_past_the_tokenizers_length_limit_names_it(gpt2, bpe):
    tok = copy.deepcopy(bpe)
    tok.model_max_length = 14
    prompt = "The capital of France is"
    n, positions = len(tok(prompt)["input_ids"]), gpt2.config.n_positions
    with pytest.raises(InterpTextError) as err:
        Saliency(gpt2, tok).explain(prompt, max_new_tokens=8)
    assert str(err.value) == (
        f"text 0 has {n} tokens and max_new_tokens=8 would pass the 14 tokens the tokenizer accepts at most (its "
        f"model_max_length; the model's positions take {positions}: raise tokenizer.model_max_length to explain "
        "longer texts); lower max_new_tokens or shorten the prompt."
    )
