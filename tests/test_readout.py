"""The readout: a BERT-style classifier's last layer run at the position it reads only."""

import copy

import numpy as np
import pytest
import torch
import transformers
from conftest import cpu_float16_works, tiny_bert

from interp_text import Deletion, Occlusion
from interp_text.readout import Readout, last_layer

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, num_labels=3)
TEXTS = ["the food was cold but the staff were lovely", "a fine film , truly"]


def family(name: str, vocab: int, attention: str):
    """A seeded tiny classifier of a BERT-style family, with large weights (logits of O(1))."""
    sizes = dict(SMALL, hidden_dim=64) if name == "DistilBert" else SMALL  # its feed-forward width's name
    config = getattr(transformers, f"{name}Config")(
        vocab_size=vocab, max_position_embeddings=70, initializer_range=0.3, **sizes
    )
    torch.manual_seed(0)
    try:
        model = getattr(transformers, f"{name}ForSequenceClassification")._from_config(
            config, attn_implementation=attention
        )
    except ValueError as err:  # transformers 4.45's ELECTRA has no sdpa
        pytest.skip(str(err)[:80])
    return model.eval()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "name", ["Bert", "Roberta", "XLMRoberta", "Electra", "Camembert", "Ernie", "Data2VecText", "DistilBert"]
)
def test_readout_gives_the_full_forward_and_runs_one_position(name, attention, wp_tokenizer):
    model = family(name, len(wp_tokenizer), attention)
    found = last_layer(model)
    assert found is not None
    layer = found[0]
    feed_forward = layer.intermediate.dense if name != "DistilBert" else layer.ffn.lin1
    batch = wp_tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert not bool(batch["attention_mask"].all())  # the second text is padded: the mask reaches the readout
    with torch.no_grad():
        full = model(**batch).logits  # (2, 3)
        seen = []
        hook = feed_forward.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
        try:
            with Readout(found).active():
                pruned = model(**batch).logits
        finally:
            hook.remove()
        plain = model(**batch).logits
    assert full.abs().max() > 0.5  # logits that a wrong readout would move
    torch.testing.assert_close(pruned, full, rtol=1e-5, atol=1e-5)
    assert seen == [(2, 1, 64)]  # the feed-forward block ran at one position of each row
    assert torch.equal(plain, full)  # and the model is as it was: no hook left
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_other_layers_get_no_readout(wp_tokenizer, gpt2):
    # Built like BERT but swapping its attention for long inputs (BigBird), or approximating it.
    for name in ("BigBird", "Nystromformer"):
        config = getattr(transformers, f"{name}Config")(vocab_size=len(wp_tokenizer), **SMALL)
        assert last_layer(getattr(transformers, f"{name}ForSequenceClassification")(config).eval()) is None
    bert = tiny_bert(wp_tokenizer)
    assert last_layer(bert) is not None
    assert last_layer(gpt2) is None  # not an encoder of BERT's shape
    assert last_layer(tiny_bert(wp_tokenizer, position_embedding_type="relative_key")) is None
    bert.train()
    assert last_layer(bert) is None  # dropout: the two paths would differ
    bert.eval()
    for hook in (bert.bert.encoder.register_forward_hook, bert.bert.encoder.layer[-1].register_full_backward_hook):
        handle = hook(lambda *a: None)
        try:
            assert last_layer(bert) is None  # a hook below the top module would see one position
        finally:
            handle.remove()
    handle = bert.register_forward_hook(lambda *a: None)
    try:
        assert last_layer(bert) is not None  # the top module's hooks see inputs and logits, as before
    finally:
        handle.remove()
    # A compiled model would trace its graph again each time the hooks come and go.
    assert last_layer(torch.compile(bert, backend="eager")) is None
    bert.compile(backend="eager")
    assert last_layer(bert) is None


class MeanPooled(transformers.BertForSequenceClassification):
    """A BERT classifier that reads the mean of its last layer over every position, not the first."""

    def forward(self, inputs_embeds=None, input_ids=None, token_type_ids=None, **kwargs):
        h = self.bert(inputs_embeds=inputs_embeds, input_ids=input_ids, token_type_ids=token_type_ids).last_hidden_state
        return transformers.modeling_outputs.SequenceClassifierOutput(logits=self.classifier(h.mean(1)))


def reference_occlusion(model, tokenizer, text: str) -> np.ndarray:
    """Occlusion by hand, with the model's full forward: (classes, words) f(x) - f(x with the word masked)."""
    enc = tokenizer(text)
    ids, words = torch.tensor(enc["input_ids"]), enc.word_ids()
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        e = embeddings(ids)  # (seq, hidden)
        mask = embeddings.weight[tokenizer.mask_token_id]
        clean = model(inputs_embeds=e[None]).logits[0]  # (classes,)
        out = []
        for w in range(max(x for x in words if x is not None) + 1):
            x = torch.stack([mask if words[t] == w else e[t] for t in range(len(ids))])
            out.append(clean - model(inputs_embeds=x[None]).logits[0])
    return torch.stack(out, 1).double().numpy()


@pytest.mark.parametrize("cls", [transformers.BertForSequenceClassification, MeanPooled])
def test_explainers_use_the_readout_only_where_it_gives_the_models_logits(cls, wp_tokenizer):
    config = transformers.BertConfig(vocab_size=len(wp_tokenizer), initializer_range=0.4, **SMALL)
    torch.manual_seed(0)
    model = cls(config).eval()
    explainer = Occlusion(model, wp_tokenizer)
    for _ in range(2):  # the checking call and a later one give the same numbers
        for text in TEXTS:
            expl = explainer.explain(text, targets="all")
            np.testing.assert_allclose(expl.scores, reference_occlusion(model, wp_tokenizer, text), atol=2e-5)
    assert explainer._readout_check[1] is (cls is not MeanPooled)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_hooked_model_runs_whole_and_its_hook_sees_every_position(wp_tokenizer):
    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    shapes = []
    handle = model.bert.encoder.layer[-1].register_forward_hook(lambda m, a, out: shapes.append(out[0].shape[-2]))
    try:
        expl = Occlusion(model, wp_tokenizer).explain(TEXTS[0], targets="all")
    finally:
        handle.remove()
    seq = len(wp_tokenizer(TEXTS[0])["input_ids"])
    assert shapes and set(shapes) == {seq}
    np.testing.assert_allclose(expl.scores, reference_occlusion(model, wp_tokenizer, TEXTS[0]), atol=2e-5)


def test_a_metric_with_the_readout_scores_as_the_full_forward(wp_tokenizer):
    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    expl = Occlusion(model, wp_tokenizer).explain(TEXTS[0])
    deletion = Deletion(model, wp_tokenizer)
    first, again = deletion.evaluate(expl), deletion.evaluate(expl)
    assert deletion._readout_check[1] is True
    assert first == again  # the checking call gives what later calls give
    # The same curve with the full forward: the readout refused through the memo.
    whole = Deletion(model, wp_tokenizer)
    whole._readout_check = (deletion._readout_check[0], False)
    assert whole.evaluate(expl) == pytest.approx(first, abs=1e-6)


@pytest.mark.parametrize("cls", [transformers.BertForSequenceClassification, MeanPooled])
def test_gradients_through_the_readout_are_the_models(cls, wp_tokenizer):
    from interp_text import InputXGradient

    config = transformers.BertConfig(vocab_size=len(wp_tokenizer), initializer_range=0.4, **SMALL)
    torch.manual_seed(0)
    model = cls(config).eval()
    explainer = InputXGradient(model, wp_tokenizer, granularity="all_tokens", token_reduction="sum")
    for _ in range(2):  # the checking call and a later one
        got = explainer.explain(TEXTS[0], targets="all")
        ids = torch.tensor([wp_tokenizer(TEXTS[0])["input_ids"]])
        x = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # (1, seq, hidden)
        want = []
        for c in range(3):
            (g,) = torch.autograd.grad(model(inputs_embeds=x).logits[0, c], x)
            want.append((g * x).sum(-1)[0].detach().numpy())
        np.testing.assert_allclose(got.scores, np.stack(want), rtol=1e-4, atol=1e-5)  # scores of O(1)
    assert explainer._readout_check[1] is (cls is not MeanPooled)


@pytest.mark.parametrize("name", ["Roberta", "DistilBert"])
def test_other_families_explain_with_the_readout(name, wp_tokenizer):
    model = family(name, len(wp_tokenizer), "sdpa")
    explainer = Occlusion(model, wp_tokenizer)
    expl = explainer.explain(TEXTS[0], targets="all")
    np.testing.assert_allclose(expl.scores, reference_occlusion(model, wp_tokenizer, TEXTS[0]), atol=2e-5)
    assert explainer._readout_check[1] is True


class MeanPooler(torch.nn.Module):
    """A BERT pooler that reads the mean of every position (BertPooler reads the first)."""

    def __init__(self, pooler):
        super().__init__()
        self.dense, self.activation = pooler.dense, pooler.activation

    def forward(self, hidden):
        return self.activation(self.dense(hidden.mean(1)))


def test_a_swapped_module_is_checked_again(wp_tokenizer):
    """The verdict is kept for the model as it was checked: a pooler swapped in place for one that
    reads every position gets the full forward on the same explainer."""
    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    explainer = Occlusion(model, wp_tokenizer)
    explainer.explain(TEXTS[0])
    assert explainer._readout_check[1] is True
    model.bert.pooler = MeanPooler(model.bert.pooler)
    got = explainer.explain(TEXTS[0], targets="all")
    np.testing.assert_allclose(got.scores, reference_occlusion(model, wp_tokenizer, TEXTS[0]), atol=2e-5)
    assert explainer._readout_check[1] is False


def test_another_threads_forward_of_the_same_model_runs_whole(wp_tokenizer):
    import threading

    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    batch = wp_tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**batch).logits
    got = []
    readout = Readout(last_layer(model))
    with torch.no_grad(), readout.active():  # this thread's forwards would run the readout
        worker = threading.Thread(target=lambda: got.append(model(**batch).logits))
        worker.start()
        worker.join()
    assert torch.equal(got[0], want)


@pytest.mark.skipif(not cpu_float16_works(), reason="float16 on the CPU needs torch 2.3")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_passes_the_check_within_its_rounding(dtype, wp_tokenizer):
    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    reference = reference_occlusion(model, wp_tokenizer, TEXTS[0])  # float32, full forward
    half = copy.deepcopy(model).to(dtype)
    explainer = Occlusion(half, wp_tokenizer)
    got = explainer.explain(TEXTS[0], targets="all")
    assert explainer._readout_check[1] is True
    # Within the dtype's own rounding of the float32 model's scores (of O(1)).
    np.testing.assert_allclose(got.scores, reference, atol=0.05 if dtype == torch.float16 else 0.2)


def test_an_error_while_checking_leaves_no_verdict(wp_tokenizer, monkeypatch):
    """A one-off error in the checking forward is no verdict on the readout: the call runs whole and
    the next call checks again."""
    import interp_text.readout as readout

    model = tiny_bert(wp_tokenizer, initializer_range=0.4)
    explainer = Occlusion(model, wp_tokenizer)
    real = readout.Readout._attend
    failures = [RuntimeError("a one-off failure")]

    def attend(self, *args):
        if failures:
            raise failures.pop()
        return real(self, *args)

    monkeypatch.setattr(readout.Readout, "_attend", attend)
    first = explainer.explain(TEXTS[0], targets="all")
    assert getattr(explainer, "_readout_check", None) is None
    np.testing.assert_allclose(first.scores, reference_occlusion(model, wp_tokenizer, TEXTS[0]), atol=2e-5)
    explainer.explain(TEXTS[0])
    assert explainer._readout_check[1] is True
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
