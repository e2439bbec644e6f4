"""The public API end to end on a tiny BERT: targets, batching, seeds, hygiene, errors, JSON."""

import copy
import json
import re
import warnings

import numpy as np
import pytest
import torch
from conftest import needs_compiler
from toy_models import ToyConfig, ToyForSequenceClassification

from interp_text import (
    Explanation,
    GradientShap,
    Granularity,
    GranularityAggregationStrategy,
    IntegratedGradients,
    InterpTextError,
    Occlusion,
    Saliency,
    SmoothGrad,
    VarGrad,
)

TEXTS = ["The food was cold but the staff were lovely.", "Not good.", "I loved the pasta, really!", "bad"]


def test_single_text_returns_one_explanation_with_word_spans(bert, wp_tokenizer):
    expl = VarGrad(bert, wp_tokenizer).explain(TEXTS[0])
    assert isinstance(expl, Explanation)
    assert expl.elements == ["The", "food", "was", "cold", "but", "the", "staff", "were", "lovely", "."]
    assert all(TEXTS[0][s:e] == el for el, (s, e) in zip(expl.elements, expl.spans))
    assert expl.scores.shape == (1, 10)
    assert torch.equal(expl.attributions, torch.from_numpy(expl.scores))
    logits = bert(**wp_tokenizer(TEXTS[0], return_tensors="pt")).logits[0]
    assert expl.predicted == int(logits.argmax())
    assert expl.targets[0].index == expl.predicted
    assert expl.targets[0].label == bert.config.id2label[expl.predicted]
    np.testing.assert_allclose(expl.targets[0].probability, logits.softmax(-1).max().item(), rtol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batched_equals_alone(batch_size, bert, wp_tokenizer):
    method = VarGrad(bert, wp_tokenizer, n_perturbations=5, batch_size=batch_size, seed=3)
    together = method.explain(TEXTS, targets=[0, 1, 2, "positive"])
    for text, expl, t in zip(TEXTS, together, [0, 1, 2, 2]):
        alone = VarGrad(bert, wp_tokenizer, n_perturbations=5, batch_size=64, seed=3).explain(text, targets=t)
        np.testing.assert_allclose(expl.scores, alone.scores, rtol=1e-4, atol=1e-9)
        assert expl.elements == alone.elements


def test_seed_determinism(bert, wp_tokenizer):
    a = SmoothGrad(bert, wp_tokenizer, seed=1).explain(TEXTS[0]).scores
    b = SmoothGrad(bert, wp_tokenizer, seed=1).explain(TEXTS[0]).scores
    c = SmoothGrad(bert, wp_tokenizer, seed=2).explain(TEXTS[0]).scores
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_targets_forms(bert, wp_tokenizer):
    m = Saliency(bert, wp_tokenizer)
    assert [t.index for t in m.explain(TEXTS[0], targets="all").targets] == [0, 1, 2]
    assert [t.index for t in m.explain(TEXTS[0], targets=[2, 0]).targets] == [2, 0]
    assert [t.label for t in m.explain(TEXTS[0], targets="neutral").targets] == ["neutral"]
    several = m.explain(TEXTS[:2], targets=[[0, 1], 2])
    assert [len(e.targets) for e in several] == [2, 1]
    # One text's entry, nested as a list of texts' would be, is that text's targets.
    assert [t.index for t in m.explain(TEXTS[0], targets=[[2, 0]]).targets] == [2, 0]
    assert [t.index for t in m.explain(TEXTS[0], targets=["all"]).targets] == [0, 1, 2]
    assert m.explain(TEXTS[0], targets=[None]).targets == m.explain(TEXTS[0]).targets  # its predicted class
    assert [t.index for t in m.explain([TEXTS[0]], targets=[[2, 0]])[0].targets] == [2, 0]
    both = m.explain(TEXTS[0], targets="all")
    one = m.explain(TEXTS[0], targets=1)
    np.testing.assert_allclose(both.row("neutral"), one.scores[0], rtol=1e-5)


@pytest.mark.parametrize("strategy", list(GranularityAggregationStrategy))
def test_word_scores_pool_token_scores(strategy, bert, wp_tokenizer):
    text = "unloved pastas"
    tokens = InputXGradient_scores(bert, wp_tokenizer, text, Granularity.ALL_TOKENS, strategy)
    words = InputXGradient_scores(bert, wp_tokenizer, text, Granularity.WORD, strategy)
    ids = wp_tokenizer(text)["input_ids"]
    n_first = len(wp_tokenizer("unloved", add_special_tokens=False)["input_ids"])
    pieces = [tokens[1 : 1 + n_first], tokens[1 + n_first : len(ids) - 1]]
    fn = {
        "mean": np.mean,
        "max": np.max,
        "min": np.min,
        "sum": np.sum,
        "signed_max": lambda v: v[np.argmax(np.abs(v))],
    }[strategy.value]
    np.testing.assert_allclose(words, [fn(p) for p in pieces], rtol=1e-6)


def InputXGradient_scores(model, tok, text, gran, strategy):
    from interp_text import InputXGradient

    return (
        InputXGradient(model, tok, granularity=gran, granularity_aggregation_strategy=strategy)
        .explain(text, targets=0)
        .scores[0]
    )


def test_sentence_granularity(bert, wp_tokenizer):
    text = "The food was cold. The staff were lovely!"
    expl = Saliency(bert, wp_tokenizer, granularity="sentence", granularity_aggregation_strategy="sum").explain(text)
    assert expl.elements == ["The food was cold.", "The staff were lovely!"]
    tokens = Saliency(bert, wp_tokenizer, granularity="token").explain(text, targets=expl.targets[0].index)
    np.testing.assert_allclose(expl.scores[0].sum(), tokens.scores[0].sum(), rtol=1e-6)


def test_model_and_tokenizer_unchanged(wp_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(wp_tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    )
    model.train()
    model.bert.encoder.requires_grad_(False)
    before = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    vocab = dict(wp_tokenizer.get_vocab())
    specials = dict(wp_tokenizer.special_tokens_map)
    for cls in (VarGrad, IntegratedGradients):
        cls(model, wp_tokenizer, n_perturbations=2).explain(TEXTS) if cls is VarGrad else cls(
            model, wp_tokenizer
        ).explain(TEXTS[0])
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert wp_tokenizer.get_vocab() == vocab and dict(wp_tokenizer.special_tokens_map) == specials
    # ...and an error half-way leaves it the same too.
    with pytest.raises(InterpTextError):
        VarGrad(model, wp_tokenizer).explain([TEXTS[0], ""])
    assert model.training and [p.requires_grad for p in model.parameters()] == flags


def test_calls_from_several_threads_leave_the_model_as_it_was(wp_tokenizer):
    """A web app explains with one model from several worker threads. Interleaved, a call restored
    train mode in the middle of another (dropout: other scores) and the last one out restored the
    flags it found switched off (the model kept no gradients). Calls on one model take turns."""
    import threading

    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(wp_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = BertForSequenceClassification(config).train()  # dropout 0.1 while training
    want = Saliency(model, wp_tokenizer).explain(TEXTS[0]).scores
    got, failed = [], []

    def work():
        try:
            explainer = Saliency(model, wp_tokenizer)
            got.extend(explainer.explain(TEXTS[0]).scores for _ in range(15))
        except Exception as err:  # noqa: BLE001 - reported below, not lost in the thread
            failed.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and len(got) == 45
    assert max(float(np.abs(g - want).max()) for g in got) == 0.0
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_a_compiled_model_and_the_model_inside_it_take_turns(bert, wp_tokenizer):
    """A gradient method runs torch.compile's inner module, a perturbation method the wrapper: both
    change the same modules, so they share one turn."""
    import threading

    from interp_text.model_guard import explaining

    compiled = torch.compile(bert, backend="eager")
    done = threading.Event()
    other = threading.Thread(target=lambda: (Saliency(bert, wp_tokenizer).explain(TEXTS[0]), done.set()))
    with explaining(compiled):
        other.start()
        assert not done.wait(0.5)  # waits for the compiled model's call to end
    other.join()
    assert done.is_set()


def test_a_call_reads_the_model_as_the_user_left_it_not_as_another_call_lent_it(bpe):
    """A GPT-2 classifier loaded without a pad id is lent one for a call. A second thread's call,
    started meanwhile, reads the model's own pad id (None) once its turn comes: the text's trailing
    end-of-text token stays an element, as in a call on its own."""
    import threading

    from transformers import GPT2Config, GPT2ForSequenceClassification

    from interp_text.model_guard import explaining

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(bpe), n_embd=16, n_layer=1, n_head=2, n_positions=64, num_labels=2)
    model = GPT2ForSequenceClassification(config).eval()
    assert model.config.pad_token_id is None
    text = "the food was cold<|endoftext|>"
    alone = Occlusion(model, bpe).explain(text)
    got = {}
    with explaining(model, pad_id=bpe.eos_token_id):  # another call's turn: the pad id is lent
        other = threading.Thread(target=lambda: got.setdefault("e", Occlusion(model, bpe).explain(text)))
        other.start()
        other.join(0.5)  # it waits for the turn
    other.join()
    assert alone.elements[-1] == "<|endoftext|>"
    assert got["e"].elements == alone.elements
    np.testing.assert_array_equal(got["e"].scores, alone.scores)


def test_a_model_built_under_inference_mode(wp_tokenizer, bpe):
    """Its weights are inference tensors: gradient methods are refused, naming the fix, with the model
    left as it came; perturbation methods work (the guard's LM-head flag skips such a weight)."""
    from conftest import tiny_bert
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.inference_mode():
        model = tiny_bert(wp_tokenizer)
        torch.manual_seed(0)
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_layer=1, n_embd=16, n_head=2, n_positions=64))
    model.train()
    with pytest.raises(InterpTextError) as err:
        Saliency(model, wp_tokenizer).explain(TEXTS[0])
    assert str(err.value).startswith(
        "BertForSequenceClassification's weights are inference tensors (the model was built or loaded under "
        "torch.inference_mode()), which autograd cannot differentiate through"
    )
    assert model.training and all(p.requires_grad for p in model.parameters())
    lm.requires_grad_(False)
    got = Occlusion(lm, bpe).explain("the food was cold", targets=" and the")
    plain = GPT2LMHeadModel(lm.config)  # the same weights as ordinary tensors
    plain.load_state_dict({k: v.clone() for k, v in lm.state_dict().items()})
    assert got == Occlusion(plain.eval(), bpe).explain("the food was cold", targets=" and the")
    assert not any(p.requires_grad for p in lm.parameters())


def test_every_change_of_the_guard_is_undone_when_one_undo_fails(bert, monkeypatch):
    """The undos run one after another: one that raises does not keep the others from running."""
    import interp_text.model_guard as guard

    bert.train()
    bert.config.return_dict = False
    flags = [p.requires_grad for p in bert.parameters()]
    monkeypatch.setattr(guard, "_restore_flags", lambda flags: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        with guard.explaining(bert, backward=True):
            assert not bert.training and bert.config.return_dict is True
    monkeypatch.undo()
    assert bert.training and bert.config.return_dict is False  # restored after the failed undo
    guard._restore_flags(list(zip(bert.parameters(), flags)))
    bert.eval()
    bert.config.return_dict = True


def test_users_own_subclass_works(wp_tokenizer):
    model = ToyForSequenceClassification(ToyConfig(vocab_size=len(wp_tokenizer)))
    expl = Saliency(model, wp_tokenizer).explain("good food")
    assert expl.elements == ["good", "food"]


@needs_compiler
def test_a_compiled_model_is_told_by_the_model_it_compiled(bert, wp_tokenizer):
    compiled = torch.compile(bert, backend="eager")  # no code generation: quick on any machine
    text = "the food was cold"
    got = Occlusion(compiled, wp_tokenizer).explain(text, targets="all")
    assert got.task == "classification"
    want = Occlusion(bert, wp_tokenizer).explain(text, targets="all")
    # The compiled model runs its full last layer, the plain one at [CLS] only (interp_text.readout):
    # the same numbers to float32 rounding.
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-7)
    assert [t.score for t in got.targets] == pytest.approx([t.score for t in want.targets], rel=1e-5)
    got.scores, got.targets = want.scores, want.targets
    assert got == want


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, t: VarGrad(m, t).explain(""), "text 0 is empty"),
        (lambda m, t: VarGrad(m, t).explain(["ok", "   "]), "text 1 is empty"),
        (lambda m, t: Occlusion(m, t).explain(["ok", "\u200b \u200b"]), "text 1 is empty"),  # zero-width spaces
        (lambda m, t: VarGrad(m, t).explain(42), "takes a string"),
        (lambda m, t: VarGrad(m, t).explain(["ok", 3]), "text 1 is a int"),
        (
            lambda m, t: VarGrad(m, t).explain(["ok", ["hi"]]),
            r"text 1 is a list but not chat messages; a text is a string, a text pair \{'text': ..., 'text_pair': "
            r"...\}, or chat messages \[\{'role': ..., 'content': ...\}, ...\]\.",
        ),
        (lambda m, t: VarGrad(m, t).explain([]), "empty list"),
        (lambda m, t: VarGrad(m, t).explain("ok", targets=3), r"target 3 is out of range: the model has 3 classes"),
        (lambda m, t: VarGrad(m, t).explain("ok", targets="happy"), "not a class name"),
        (lambda m, t: VarGrad(m, t).explain(["a", "b"], targets=[0, 1, 2]), "got 3 targets for 2 texts"),
        (
            lambda m, t: VarGrad(m, t).explain(["a"], targets=[0, 1]),
            re.escape(
                "got 2 targets for 1 texts; pass one target (or list of targets) per text ([0, 1] as classes of "
                "the one text: [[0, 1]])."
            ),
        ),
        (lambda m, t: VarGrad(m, t, n_perturbations=1), "VarGrad needs n_perturbations >= 2"),
        (lambda m, t: VarGrad(m, t, n_samples=3), r"unknown option\(s\) \['n_samples'\]"),
        (lambda m, t: VarGrad(m, t, granularity="paragraph"), "granularity='paragraph' is not valid"),
        (lambda m, t: VarGrad(m, t, batch_size=0), "batch_size=0 must be an integer >= 1"),
        (lambda m, t: VarGrad(m, t, token_reduction="max"), "token_reduction='max' is not valid"),
        (lambda m, t: VarGrad(m, t, token_reduction=""), "token_reduction='' is not valid"),  # not the default
        (lambda m, t: VarGrad(m, t, token_reduction=False), "token_reduction=False is not valid"),
        (
            lambda m, t: Occlusion(torch.nn.DataParallel(m), t),
            r"DataParallel is not a Hugging Face model \(it has no get_input_embeddings\(\)\): pass the model it "
            r"wraps \(model.module, a BertForSequenceClassification\)\.",
        ),
        (
            lambda m, t: VarGrad(torch.nn.Sequential(m), t),
            r"Sequential is not a Hugging Face model \(it has no get_input_embeddings\(\)\): pass the Hugging Face "
            r"model itself",
        ),
        (lambda m, t: VarGrad(m, t, inference_mode="probs"), "inference_mode='probs' is not valid"),
        (
            lambda m, t: VarGrad(m, t).explain("good " * 80),
            "text 0 has 82 tokens but the model accepts at most 64; shorten the text",
        ),
        (lambda m, t: VarGrad(m, t).explain("ok", max_new_tokens=3), "unknown explain"),
        (lambda m, t: VarGrad(m, t, task="regression"), "task='regression' is not valid"),
        # Baselines are checked when the explainer is built, as every other option.
        (lambda m, t: IntegratedGradients(m, t, baseline=torch.zeros(5)), r"baseline tensor has shape \(5,\); pass"),
        (lambda m, t: IntegratedGradients(m, t, baseline=torch.zeros(2, 3, 32)), r"shape \(2, 3, 32\); pass"),
        (
            lambda m, t: IntegratedGradients(m, t, baseline=10**6),
            r"baseline token id 1000000 has no embedding in this model \(0\.\.\d+;",
        ),
        (lambda m, t: IntegratedGradients(m, t, baseline="foo"), "baseline='foo': the tokenizer has no foo token"),
        (lambda m, t: GradientShap(m, t, baseline=[0.5]), r"baseline=\[0.5\] is not understood"),
        (
            lambda m, t: IntegratedGradients(m, t, baseline=torch.zeros(3, 32)).explain("good food"),
            r"baseline tensor has shape \(3, 32\) but text 0 is \(4, 32\) \(seq, hidden\)",
        ),
    ],
)
def test_errors_name_the_fix(call, message, bert, wp_tokenizer):
    with pytest.raises(InterpTextError, match=message):
        call(bert, wp_tokenizer)


def test_slow_tokenizer_is_refused(bert, wp_tokenizer):
    class Slow:
        is_fast = False

        def __call__(self, *a, **k):
            raise AssertionError

        def convert_ids_to_tokens(self, ids):
            raise AssertionError

    with pytest.raises(InterpTextError, match="slow tokenizer"):
        Saliency(bert, Slow()).explain("ok")


def test_a_tokenizer_method_is_refused_naming_the_tokenizer(bert, wp_tokenizer):
    with pytest.raises(
        InterpTextError,
        match=r"^tokenizer must be a Hugging Face tokenizer, got method \(the tokenizer's encode: pass the "
        r"tokenizer itself\)\.$",
    ):
        Saliency(bert, wp_tokenizer.encode)


def test_another_models_smaller_tokenizer_warns(bpe, wp_tokenizer):
    """A tokenizer naming a fraction of the embedding rows is another model's: its ids read the wrong
    words. A vocabulary rounded up by a few rows (as Qwen 2's, GPT-J's) is not warned about."""
    from transformers import BertConfig, BertForSequenceClassification

    def bert(rows):
        config = BertConfig(vocab_size=rows, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
        return BertForSequenceClassification(config).eval()

    with pytest.warns(UserWarning, match=rf"the tokenizer has {len(wp_tokenizer)} tokens but BertForSequence"):
        Saliency(bert(len(wp_tokenizer) + 300), wp_tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Saliency(bert(len(wp_tokenizer) + 64 - len(wp_tokenizer) % 64), wp_tokenizer)
        Saliency(bert(len(wp_tokenizer) + 127), wp_tokenizer)  # a small vocabulary padded (characters, amino acids)


def test_unknown_model_kind_asks_for_task(wp_tokenizer):
    """A class of the user's own (not a transformers base model, which is refused outright)."""
    from transformers import BertConfig, BertModel

    class MyEncoder(BertModel):
        pass

    model = MyEncoder(
        BertConfig(
            vocab_size=len(wp_tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    )
    with pytest.raises(InterpTextError, match="cannot tell what MyEncoder predicts; pass task="):
        Saliency(model, wp_tokenizer)


def test_save_and_load_round_trip(tmp_path, bert, wp_tokenizer):
    expl = IntegratedGradients(bert, wp_tokenizer).explain(TEXTS[2], targets="all")
    path = expl.save(tmp_path / "e.json")
    back = Explanation.load(path)
    np.testing.assert_array_equal(back.scores, expl.scores)
    assert back.elements == expl.elements and back.spans == expl.spans
    assert back.targets == expl.targets
    np.testing.assert_array_equal(back.completeness_gap, expl.completeness_gap)
    assert back.to_dict() == expl.to_dict()


def test_infinite_scores_are_written_as_strict_json_and_read_back(tmp_path, bert, wp_tokenizer):
    expl = Saliency(bert, wp_tokenizer).explain(TEXTS[1])
    expl.scores[0, :2] = [np.inf, -np.inf]
    expl.targets[0].score = -np.inf  # a log-probability of 0
    data = json.loads(expl.to_json(), parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert data["scores"][0][:2] == ["inf", "-inf"] and data["targets"][0]["score"] == "-inf"
    back = Explanation.load(expl.save(tmp_path / "e.json"))
    np.testing.assert_array_equal(back.scores, expl.scores)
    assert back.targets[0].score == -np.inf


def test_baselines(bert, wp_tokenizer):
    e = IntegratedGradients(bert, wp_tokenizer, baseline="pad", n_interpolations=50).explain(TEXTS[1])
    assert abs(e.completeness_gap[0]) < 0.05 * max(1.0, abs(e.targets[0].score))
    with pytest.raises(InterpTextError, match="the tokenizer has no bos token"):
        IntegratedGradients(bert, wp_tokenizer, baseline="bos").explain(TEXTS[1])


@pytest.mark.parametrize("tok_name", ["wp_tokenizer", "bpe"])
def test_tokenize_all_equals_the_tokenizer_call(tok_name, request):
    """The backend shortcut gives exactly what tokenizer(...) gives: ids, offsets, specials, strings."""
    from interp_text.inputs import tokenize_all

    tok = request.getfixturevalue(tok_name)
    texts = ["The food was cold, wasn't it?", "héllo wörld 🙂 unknownword", "a\n\nb  c"]
    enc = tok(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
    want = [
        (list(ids), [tuple(o) for o in offsets], [bool(v) for v in special], tok.convert_ids_to_tokens(list(ids)))
        for ids, special, offsets in zip(enc["input_ids"], enc["special_tokens_mask"], enc["offset_mapping"])
    ]
    assert tokenize_all(tok, texts) == want


def test_tokenize_all_follows_split_special_tokens(wp_tokenizer):
    """A tokenizer set to split special tokens in text reads "[SEP]" as characters, as its own call does."""
    import copy

    from interp_text.inputs import tokenize_all

    tok = copy.deepcopy(wp_tokenizer)
    tok.split_special_tokens = True
    text = "good [SEP] food"
    ((ids, _, _, _),) = tokenize_all(tok, [text])
    assert ids == tok(text)["input_ids"]
    assert ids.count(tok.sep_token_id) == 1  # only the one the tokenizer adds at the end
    ((plain, _, _, _),) = tokenize_all(wp_tokenizer, [text])
    assert plain.count(wp_tokenizer.sep_token_id) == 2


def test_tokenize_all_never_truncates_and_leaves_the_tokenizer_as_it_was(wp_tokenizer):
    """A backend set to truncate or pad (as a tokenizer.json may be) is read whole, and stays set."""
    import copy

    from interp_text.inputs import tokenize_all

    tok = copy.deepcopy(wp_tokenizer)
    tok.backend_tokenizer.enable_truncation(max_length=4)
    tok.backend_tokenizer.enable_padding(length=32, pad_id=0, pad_token="[PAD]")
    truncation, padding = tok.backend_tokenizer.truncation, tok.backend_tokenizer.padding
    text = "the food was cold and the staff were lovely"
    ((ids, _, _, _),) = tokenize_all(tok, [text])
    assert ids == wp_tokenizer(text)["input_ids"] and len(ids) > 4
    assert tok.backend_tokenizer.truncation == truncation and tok.backend_tokenizer.padding == padding


def test_send_on_cpu_is_a_plain_conversion():
    from interp_text.tasks import send

    src = torch.arange(6, dtype=torch.float32)
    assert send(src, "cpu") is src  # nothing to copy
    assert send(src, "cpu", torch.float64).dtype == torch.float64


# ----------------------------------------------------------------- reading a result
def test_top_by_signed_score_or_by_magnitude():
    from hand_made import classification

    expl = classification("the service was not good", [[0, 0, 0, 0, 0], [0.1, -0.2, np.nan, -6.0, 1.5]])
    assert expl.top(2, target="pos") == [("good", 1.5), ("the", 0.1)]
    assert expl.top(3, target="pos", absolute=True) == [("not", -6.0), ("good", 1.5), ("service", -0.2)]
    assert len(expl.top(9, target="pos", absolute=True)) == 4  # the NaN column is never listed
    with pytest.raises(InterpTextError, match=r"^absolute must be True or False, got 'yes'\.$"):
        expl.top(2, absolute="yes")


@pytest.mark.parametrize("k", [-1, 2.5, True, "3"])
def test_top_refuses_a_k_that_is_not_a_count(k, bert, wp_tokenizer):
    expl = Saliency(bert, wp_tokenizer).explain(TEXTS[1])
    with pytest.raises(InterpTextError) as err:
        expl.top(k)
    assert str(err.value) == (
        f"k must be a whole number >= 0 (how many columns to list), got {k!r}; "
        "for the lowest scores, sort row(target) instead."
    )
    assert expl.top(0) == [] and len(expl.top(np.int64(2))) == 2


@pytest.mark.parametrize(
    "call,label,rows",
    [
        (lambda e: e.row("Paris"), "Paris", [0, 2]),
        (lambda e: e.top(2, target="Paris"), "Paris", [0, 2]),
        (lambda e: e.to_html(target="."), ".", [1, 3]),
    ],
)
def test_a_label_shared_by_several_rows_must_be_chosen_by_row_number(call, label, rows, gpt2, bpe):
    expl = Saliency(gpt2, bpe).explain("The capital of France is", targets=" Paris. Paris.")
    assert expl.target_labels == ["Paris", ".", "Paris", "."]
    with pytest.raises(InterpTextError) as err:
        call(expl)
    assert str(err.value) == (
        f"target {label!r} is ambiguous: rows {rows} have this label; pass the row number instead (target={rows[0]})."
    )
    np.testing.assert_array_equal(expl.row(rows[1]), expl.scores[rows[1]])


def test_a_row_is_found_by_the_forced_text_as_written(gpt2, bpe):
    expl = Saliency(gpt2, bpe).explain("The capital of France is", targets=" Paris.")
    assert expl.target_labels == ["Paris", "."]  # the label is the word, without the space it was forced with
    np.testing.assert_array_equal(expl.row(" Paris"), expl.scores[0])
    with pytest.raises(InterpTextError, match=r"target ' Rome' is not explained here; explained: \['Paris', '\.'\]"):
        expl.row(" Rome")


def test_equality_compares_every_field_by_value(tmp_path, bert, wp_tokenizer, gpt2, bpe):
    classified = IntegratedGradients(bert, wp_tokenizer).explain(TEXTS[0], targets="all")  # completeness gaps
    generated = Saliency(gpt2, bpe).explain("The capital of France is", targets=" Paris.")  # NaN scores and f(x)
    assert np.isnan(generated.scores).any()
    for expl in (classified, generated):
        assert expl == Explanation.load(expl.save(tmp_path / "e.json"))
        assert expl == copy.deepcopy(expl)
        assert expl != classified if expl is generated else expl != generated
    nan_score = copy.deepcopy(generated)
    nan_score.targets[0].score = float("nan")
    assert nan_score == copy.deepcopy(nan_score)  # NaN equals NaN, also in targets
    changed = copy.deepcopy(classified)
    changed.scores[0, 0] = np.nextafter(changed.scores[0, 0], np.inf)
    assert changed != classified  # exact equality
    moved = copy.deepcopy(generated)
    j = int(np.flatnonzero(~np.isnan(moved.scores[0]))[0])
    moved.scores[0, j] = np.nan
    assert moved != generated
    no_gap = copy.deepcopy(classified)
    no_gap.completeness_gap = None
    assert no_gap != classified and classified != no_gap
    other = copy.deepcopy(classified)
    other.options = {**other.options, "n_interpolations": 11}
    assert other != classified
    assert classified != classified.to_dict()
    with pytest.raises(TypeError, match="unhashable"):
        hash(classified)


def test_from_dict_reads_a_cli_record(tmp_path):
    from interp_text.cli import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"text": "The food was good.", "id": "a"}\n', encoding="utf-8")
    assert main(["explain", "--input", str(inp), "--output", str(out), "--method", "saliency"]) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["id"] == "a"
    expl = Explanation.from_dict(record)
    assert expl.text == "The food was good." and expl.method == "Saliency"
    assert expl.to_dict() == {k: v for k, v in record.items() if k != "id"}


def test_a_loaded_cli_file_keeps_each_lines_id(tmp_path):
    from interp_text.cli import main
    from interp_text.render import ExplanationList

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('{"text": "The food was good.", "id": "a"}\n{"text": "The food was bad."}\n', encoding="utf-8")
    assert main(["explain", "--input", str(inp), "--output", str(out), "--method", "saliency"]) == 0
    loaded = ExplanationList.load(out)
    assert loaded.ids == ["a", 1]  # the second line had no id: its index, counted from 0
    assert dict(zip(loaded.ids, loaded))["a"].text == "The food was good."
    loaded.save(tmp_path / "plain.jsonl")  # save writes no ids
    assert ExplanationList.load(tmp_path / "plain.jsonl").ids == [None, None]


def test_from_dict_names_an_unknown_or_missing_key(bert, wp_tokenizer):
    data = Saliency(bert, wp_tokenizer).explain(TEXTS[1]).to_dict()
    with pytest.raises(InterpTextError) as err:
        Explanation.from_dict({**data, "ids": 0, "colour": "red"})
    assert str(err.value) == (
        "cannot read an explanation from a dict with unknown key(s) ['colour', 'ids']; "
        "it takes the keys of Explanation.to_dict() (and 'id', which is ignored)."
    )
    del data["scores"]
    with pytest.raises(InterpTextError) as err:
        Explanation.from_dict(data)
    assert str(err.value) == (
        "cannot read an explanation from a dict without key(s) ['scores']; write it with Explanation.to_dict()."
    )


def test_a_dict_in_or_out_is_a_copy_not_the_explanations_own(bert, wp_tokenizer):
    # A metric reads options back (text_pair_start): editing an export must not change the explanation.
    expl = Saliency(bert, wp_tokenizer).explain({"text": "the food", "text_pair": "was good"})
    data = expl.to_dict()
    data["options"].clear()
    data["elements"].append("x")
    assert expl.options == {"text_pair_start": 9} and expl.elements == ["the", "food", "was", "good"]
    again = Explanation.from_dict(expl.to_dict())
    data = expl.to_dict()
    rebuilt = Explanation.from_dict(data)
    data["options"]["x"] = 1
    data["targets"][0]["token_ids"].append(5)
    assert rebuilt == again


def test_explanations_of_one_call_share_no_options(gpt2, bpe):
    a, b = Saliency(gpt2, bpe).explain(["The capital of", "The cat"], max_new_tokens=2)
    a.options["generation"]["max_new_tokens"] = 5
    assert b.options["generation"] == {"max_new_tokens": 2}


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: [d], "an explanation is read from a dict (a JSON object), not a list; write it with"),
        (
            lambda d: d | {"targets": [{"label": "a", "index": 0}]},
            "an explanation's target {'label': 'a', 'index': 0} has no token_ids, probability, score; each target is",
        ),
        (lambda d: d | {"spans": d["spans"][:-1]}, "an explanation has one span per element: 4 elements here, but 3"),
    ],
)
def test_a_dict_that_is_no_explanation_is_refused_with_what_it_lacks(edit, message, bert, wp_tokenizer):
    data = Saliency(bert, wp_tokenizer).explain("the food was good").to_dict()
    with pytest.raises(InterpTextError, match=re.escape(message)):
        Explanation.from_dict(edit(data))


def test_progress_draws_a_bar_of_rows_on_stderr_only_when_asked(bert, wp_tokenizer, capsys):
    from interp_text import Sobol

    texts = ["the food was cold", "not good at all"]
    VarGrad(bert, wp_tokenizer, n_perturbations=4).explain(texts)
    assert capsys.readouterr().err == ""
    VarGrad(bert, wp_tokenizer, n_perturbations=4, progress=True, batch_size=3).explain(texts)
    err = capsys.readouterr().err
    assert err.startswith("\rVarGrad: [") and err.endswith("\n")
    assert "10/10 rows" in err  # per text its unperturbed row and 4 samples
    assert err.startswith("\rVarGrad: [..............................] 0/10 rows, 0.0s")  # drawn before any row runs
    Sobol(bert, wp_tokenizer, n_samples=4, progress=True).explain(texts)
    assert "Sobol: [" in capsys.readouterr().err
    with pytest.raises(InterpTextError, match="progress='yes' must be True or False"):
        Occlusion(bert, wp_tokenizer, progress="yes")


def test_a_bar_that_an_error_stops_ends_its_line(bert, wp_tokenizer, capsys, monkeypatch):
    from interp_text.engine import Engine

    calls = []
    run_rows = Engine._backward_rows

    def failing(self, rows, *args):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("stopped")
        return run_rows(self, rows, *args)

    monkeypatch.setattr(Engine, "_backward_rows", failing)
    with pytest.raises(RuntimeError, match="stopped"):
        VarGrad(bert, wp_tokenizer, n_perturbations=4, progress=True, batch_size=2).explain("the food was cold")
    assert capsys.readouterr().err.endswith("\n")  # the traceback starts on a line of its own


@pytest.mark.parametrize(
    "cls,key,value",
    [
        (VarGrad, "granularity", "token"),
        (IntegratedGradients, "n_interpolations", 4),
        (Occlusion, "replacement", "pad"),
    ],
)
def test_an_explainer_option_given_to_explain_names_the_constructor(cls, key, value, bert, wp_tokenizer, gpt2, bpe):
    for model, tok in ((bert, wp_tokenizer), (gpt2, bpe)):  # a generator would pass it on to generate()
        with pytest.raises(InterpTextError) as err:
            cls(model, tok).explain("the food was cold", **{key: value})
        assert str(err.value) == (
            f"{key}= is an option of {cls.__name__} itself, not of explain(): pass it when you build the explainer, "
            f"{cls.__name__}(model, tokenizer, {key}=...)."
        )


def test_target_without_its_s_is_named(bert, wp_tokenizer, gpt2, bpe):
    """captum's target=: a classifier would call it an unknown option, a generator pass it to generate()."""
    from interp_text import compare

    for model, tok in ((bert, wp_tokenizer), (gpt2, bpe)):
        for cls in (Saliency, Occlusion):
            with pytest.raises(InterpTextError) as err:
                cls(model, tok).explain("the food was cold", target=1)
            assert str(err.value) == ("explain() takes targets= (with an s), not target=: explain(text, targets=...).")
    with pytest.raises(InterpTextError) as err:
        compare(bert, wp_tokenizer, ["the food was cold"], methods=["occlusion"], target=1)
    assert str(err.value) == "compare() takes targets= (with an s), not target=, as explain() does."


def test_the_readme_imports_are_public():
    import interp_text
    from interp_text.comparison import compare_default

    assert interp_text.compare_default is compare_default and "compare_default" in interp_text.__all__


def test_a_tensor_baseline_is_kept_in_the_options_as_its_shape(bert, wp_tokenizer):
    hidden = bert.config.hidden_size
    expl = IntegratedGradients(bert, wp_tokenizer, baseline=torch.zeros(hidden)).explain("the food was cold")
    assert expl.options == {"n_interpolations": 10, "baseline": f"tensor of shape ({hidden},)"}
    assert json.loads(expl.to_json())["options"]["baseline"] == f"tensor of shape ({hidden},)"


def test_scores_of_the_wrong_shape_are_refused_by_name(bert, wp_tokenizer):
    data = Saliency(bert, wp_tokenizer).explain(TEXTS[1]).to_dict()
    n = len(data["elements"])
    with pytest.raises(InterpTextError) as err:
        Explanation.from_dict({**data, "scores": [row[:-1] for row in data["scores"]]})
    assert str(err.value) == (
        f"an explanation's scores are one row per target and one column per element: 1 x {n} here, but they are "
        f"1 x {n - 1}."
    )
    with pytest.raises(InterpTextError, match=r"^an explanation's score rows have \[1, 2\] columns"):
        Explanation.from_dict({**data, "scores": [[0.0], [0.0, 1.0]]})


def test_an_option_set_after_construction_makes_the_explainer_again(bert, wp_tokenizer):
    """Settings are computed from the options once: setting one afterwards remakes the explainer with
    it (IntegratedGradients with n_interpolations changed alone ran 10 points over a fifth of the
    path), recorded in the explanation's options; a refused value leaves the explainer as it was."""
    from interp_text import Deletion, Lime

    ig = IntegratedGradients(bert, wp_tokenizer)
    ig.n_interpolations = 50
    got = ig.explain(TEXTS[0])
    fresh = IntegratedGradients(bert, wp_tokenizer, n_interpolations=50).explain(TEXTS[0])
    np.testing.assert_array_equal(got.scores, fresh.scores)
    assert got.options["n_interpolations"] == 50
    ig.batch_size = 7  # a shared option too
    assert ig.settings.batch_size == 7 and ig.n_interpolations == 50
    np.testing.assert_allclose(ig.explain(TEXTS[0]).scores, fresh.scores, rtol=1e-6, atol=1e-9)
    with pytest.raises(InterpTextError, match="n_interpolations"):
        ig.n_interpolations = 0
    assert ig.n_interpolations == 50 and ig.settings.n_samples == 50

    lime = Lime(bert, wp_tokenizer, n_samples=20)
    lime.n_samples = 30
    assert lime.explain(TEXTS[1]).options["n_samples"] == 30
    deletion = Deletion(bert, wp_tokenizer)
    deletion.steps = 2
    assert deletion.points(10).tolist() == [0, 5, 10]
    # Another name would be kept and never read: refused, with the option another library's name means.
    with pytest.raises(InterpTextError, match=r"^IntegratedGradients got unknown option\(s\) \['n_steps'\] \(did you "):
        ig.n_steps = 5
    with pytest.raises(InterpTextError, match=r"\['n_interpolation'\] \(did you mean 'n_interpolations'\?\)"):
        ig.n_interpolation = 5  # a misspelt option
    assert ig.n_interpolations == 50 and "n_steps" not in vars(ig) and "n_interpolation" not in vars(ig)
    ig.note, ig._last = "mine", None  # any other name is the user's own
    assert ig.note == "mine" and ig._last is None
    smooth = SmoothGrad(bert, wp_tokenizer, n_perturbations=4)
    with pytest.raises(InterpTextError, match=r"\['n_samples'\] \(did you mean 'n_perturbations'\?\)"):
        smooth.n_samples = 3  # Lime's name, and an attribute n_perturbations sets: refused, not ignored
    assert smooth.n_samples == 4 and smooth.settings.n_samples == 4


def test_options_read_back_and_show_in_the_repr(bert, wp_tokenizer):
    ig = IntegratedGradients(bert, wp_tokenizer, n_interpolations=20, granularity="sentence")
    assert (ig.granularity, ig.batch_size, ig.n_interpolations, ig.seed) == ("sentence", 64, 20, 0)
    assert repr(ig) == (
        "IntegratedGradients(BertForSequenceClassification, n_interpolations=20, baseline='zeros', "
        "granularity='sentence')"
    )
    ig.granularity = "word"  # the default again: not shown
    assert repr(ig) == "IntegratedGradients(BertForSequenceClassification, n_interpolations=20, baseline='zeros')"
    from interp_text import Deletion

    assert repr(Deletion(bert, wp_tokenizer, steps=4)) == "Deletion(BertForSequenceClassification, steps=4)"
    assert repr(Occlusion(bert, wp_tokenizer, batch_size=8)) == "Occlusion(BertForSequenceClassification, batch_size=8)"
    with pytest.raises(AttributeError, match="'Occlusion' object has no attribute 'n_samples'"):
        _ = Occlusion(bert, wp_tokenizer).n_samples


def test_a_subclass_with_its_own_init_sets_its_attributes_as_usual(bert, wp_tokenizer):
    """Its constructor's arguments are not the base's: it is not made again (which would run its
    __init__ again, and again)."""

    class Wider(SmoothGrad):
        def __init__(self, model, tokenizer, width):
            super().__init__(model, tokenizer, n_perturbations=2)
            self.noise_std = width

    wider = Wider(bert, wp_tokenizer, 0.3)
    assert wider.noise_std == 0.3 and wider.settings.n_samples == 2
    wider.n_perturbations = 3  # as any attribute
    assert wider.settings.n_samples == 2


def test_public_names_are_what_they_name_whatever_was_imported_first():
    """Importing a submodule sets the package's attribute of its name: a module named like a public
    function (interp_text/compare.py beside compare()) made `from interp_text import compare` the
    module after `from interp_text.compare import format_table`."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, types, interp_text\n"
        "for m in pkgutil.walk_packages(interp_text.__path__, 'interp_text.'):\n"
        "    if not m.name.endswith(('train', '__main__')):\n"
        "        importlib.import_module(m.name)\n"
        "bad = [n for n in interp_text.__all__ if isinstance(getattr(interp_text, n), types.ModuleType)]\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
