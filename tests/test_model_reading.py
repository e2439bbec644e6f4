"""The explained f(x) is what the model reads: pad-pooled classifiers, decoder starts, scaled
embeddings, byte-fallback outputs, position offsets; and inputs no model can read are refused."""

import copy
import math

import numpy as np
import pytest
import torch
import transformers
from conftest import SEQ2SEQ_SMALL, bpe_tokenizer, tiny_bert
from packaging.version import Version
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from interp_text import IntegratedGradients, InterpTextError, Lime, Occlusion, Saliency, SmoothGrad, VarGrad
from interp_text.inputs import decoded_offsets, max_input_length
from interp_text.methods import default_noise_std


@pytest.fixture(scope="module")
def pad_pooled():
    """A GPT-2 classifier whose pad token is its end-of-text token: on ids it reads the last token
    that is not the pad token."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = bpe_tokenizer(with_pad=True)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128, num_labels=2, pad_token_id=0
    )
    return GPT2ForSequenceClassification(config).eval(), tok


@pytest.mark.parametrize("method", [Occlusion, Saliency])
@pytest.mark.parametrize("text", ["The food was cold<|endoftext|>", "The food was cold<|endoftext|><|endoftext|>"])
def test_a_trailing_pad_token_is_read_as_the_model_reads_its_ids(method, text, pad_pooled):
    model, tok = pad_pooled
    with torch.no_grad():
        own = model(**tok(text, return_tensors="pt")).logits[0]
        last = model(inputs_embeds=model.get_input_embeddings()(tok(text, return_tensors="pt")["input_ids"])).logits[0]
    assert not torch.allclose(own, last, atol=1e-3)  # the two readings differ on this text
    e = method(model, tok).explain(text, targets="all")
    assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=1e-5)
    assert e.elements == ["The", "food", "was", "cold"]


def test_a_dropped_pad_token_lends_no_characters_to_the_last_word(pad_pooled):
    model, tok = pad_pooled
    e = Occlusion(model, tok).explain("Not good at all!<|endoftext|>", targets="all")
    assert e.elements == ["Not", "good", "at", "all", "!"]  # not "!<|": punctuation would run into its text
    with torch.no_grad():
        own = model(**tok("Not good at all!<|endoftext|>", return_tensors="pt")).logits[0]
    assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=1e-5)


@pytest.mark.parametrize("method", [Occlusion, Saliency])
def test_without_a_pad_id_a_trailing_end_of_text_token_is_read(method, pad_pooled):
    """With config.pad_token_id None (GPT-2 as loaded) the model reads the last token, the end-of-text
    one included: nothing is dropped, though the call lends the model a pad id while it runs."""
    model, tok = pad_pooled
    model = copy.deepcopy(model)
    model.config.pad_token_id = None
    text = "Not good at all!<|endoftext|>"
    with torch.no_grad():
        own = model(**tok(text, return_tensors="pt")).logits[0]
        without = model(**tok("Not good at all!", return_tensors="pt")).logits[0]
    assert not torch.allclose(own, without, atol=1e-3)  # the last token counts
    e = method(model, tok).explain(text, targets="all")
    assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=1e-5)
    assert model.config.pad_token_id is None


def test_texts_whose_pad_tokens_trail_share_one_check(pad_pooled):
    model, tok = pad_pooled
    texts = ["The food was cold<|endoftext|>", "The staff<|endoftext|>", "cold food<|endoftext|><|endoftext|>"]
    on_ids = []
    handle = model.register_forward_pre_hook(
        lambda m, a, k: on_ids.append(1) if k.get("input_ids") is not None else None, with_kwargs=True
    )
    try:
        got = Saliency(model, tok).explain(texts, targets="all")
    finally:
        handle.remove()
    assert len(on_ids) == 1  # the first text's check decides for the others
    for text, e in zip(texts, got):
        with torch.no_grad():
            own = model(**tok(text, return_tensors="pt")).logits[0]
        assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=1e-5)


@pytest.mark.skipif(
    Version(transformers.__version__) < Version("4.48"),
    reason="before transformers 4.48 this model reads the position before the first pad token: refused (next test)",
)
def test_a_pad_token_inside_the_text_keeps_its_element(pad_pooled):
    model, tok = pad_pooled
    text = "The food<|endoftext|> was cold"
    with torch.no_grad():
        own = model(**tok(text, return_tensors="pt")).logits[0]
    e = Occlusion(model, tok).explain(text, targets="all")
    assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=1e-5)
    assert e.elements == ["The", "food", "<|endoftext|>", "was", "cold"]


def test_a_pad_token_read_otherwise_is_refused(pad_pooled, monkeypatch):
    """A model that reads pad tokens in a way no trimming reproduces (as transformers before 4.48
    did: the position before the first pad token) is refused, not explained at another position."""
    model, tok = pad_pooled
    forward = type(model).forward

    def first_pad_reader(self, input_ids=None, inputs_embeds=None, **kwargs):
        out = forward(self, input_ids=input_ids, inputs_embeds=inputs_embeds, **kwargs)
        if input_ids is not None:  # the logits of another position: what an older release read
            out.logits = out.logits + 1.0
        return out

    monkeypatch.setattr(type(model), "forward", first_pad_reader)
    with pytest.raises(InterpTextError, match=r"text 0 holds the pad token \('<\|endoftext\|>', id 0\).*drop that"):
        Occlusion(model, tok).explain("The food<|endoftext|> was cold")


def test_a_bert_text_without_the_pad_token_takes_no_extra_forward(wp_tokenizer):
    model = tiny_bert(wp_tokenizer)
    calls = []
    handle = model.register_forward_pre_hook(lambda m, a, k: calls.append(k.get("input_ids")), with_kwargs=True)
    try:
        Saliency(model, wp_tokenizer).explain("the food was cold")
    finally:
        handle.remove()
    assert all(c is None for c in calls)  # embeddings only: no check forward on ids


def test_seq2seq_reads_the_decoder_start_generation_began_with(bpe):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(**SEQ2SEQ_SMALL, vocab_size=len(bpe))).eval()
    prompt = "The capital of France is"
    e = Saliency(model, bpe, inference_mode="log_softmax").explain(prompt, max_new_tokens=4, decoder_start_token_id=5)
    enc = bpe(prompt, return_tensors="pt")
    out = e.output_ids
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=torch.tensor([[5] + out[:-1]])).logits[0]
    own = sum(float(logits[t].log_softmax(-1)[y]) for t, y in enumerate(out))
    assert math.fsum(t.score for t in e.targets) == pytest.approx(own, abs=1e-4)


def test_seq2seq_forced_targets_start_as_generate_would(bpe):
    """With a generation config whose start differs from the model config's, generate() starts
    from the generation config's: so does teacher forcing."""
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(**SEQ2SEQ_SMALL, vocab_size=len(bpe))).eval()
    model.generation_config.decoder_start_token_id = 7
    prompt, target = "The capital of France is", " Paris"
    out = bpe(target, add_special_tokens=False)["input_ids"]
    e = Saliency(model, bpe, inference_mode="log_softmax").explain(prompt, targets=target)
    with torch.no_grad():
        logits = model(**bpe(prompt, return_tensors="pt"), decoder_input_ids=torch.tensor([[7] + out[:-1]])).logits[0]
    own = sum(float(logits[t].log_softmax(-1)[y]) for t, y in enumerate(out))
    assert math.fsum(t.score for t in e.targets) == pytest.approx(own, abs=1e-4)


def test_default_noise_follows_an_embedding_layer_that_scales_its_rows(bpe):
    from transformers import BartConfig, BartForConditionalGeneration

    plain = BartForConditionalGeneration(BartConfig(**{**SEQ2SEQ_SMALL, "d_model": 64}, vocab_size=len(bpe)))
    scaled = BartForConditionalGeneration(
        BartConfig(**{**SEQ2SEQ_SMALL, "d_model": 64}, vocab_size=len(bpe), scale_embedding=True)
    )
    scaled.load_state_dict(plain.state_dict())
    spread = float(plain.get_input_embeddings().weight.detach().std())
    assert default_noise_std(plain) == pytest.approx(0.5 * spread, rel=1e-5)
    assert default_noise_std(scaled) == pytest.approx(0.5 * spread * 8.0, rel=1e-4)  # √64


def llama2_style_tokenizer() -> PreTrainedTokenizerFast:
    """SentencePiece-style BPE with byte fallback, as Llama 2 and Mistral ship: a character outside
    the vocabulary is its UTF-8 bytes, one token each."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "▁Hi": 4, **{f"<0x{i:02X}>": 5 + i for i in range(256)}}
    tk = Tokenizer(models.BPE(vocab, [], unk_token="<unk>", byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace("▁", prepend_scheme="first")
    tk.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.mark.parametrize(
    ("target", "pieces", "words"),
    [
        (" 😀", ["😀"], ["😀"]),
        (" 你好 ok", ["你", "好", " ", "o", "k"], ["你好", "ok"]),
        (" €5 😀", ["€", "5", " ", "😀"], ["€", "5", "😀"]),
    ],
)
def test_byte_fallback_outputs_map_each_character_to_its_bytes(target, pieces, words):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = llama2_style_tokenizer()
    ids = tok(target, add_special_tokens=False)["input_ids"]
    text, spans, _ = decoded_offsets(tok, ids)
    assert all(0 <= s <= e <= len(text) for s, e in spans)
    assert [text[s:e] for s, e in spans if e > s] == pieces  # a byte token covers nothing until its character ends
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    lm = LlamaForCausalLM(config).eval()
    by_token = Saliency(lm, tok, granularity="token").explain("Hi", targets=target)
    assert by_token.output_elements == pieces
    assert Saliency(lm, tok).explain("Hi", targets=target).output_elements == words


@pytest.mark.parametrize("style", ["byte_fallback", "byte_level"])
def test_bytes_of_a_character_never_completed_are_their_own_text(style):
    """An output that stops inside a character (then a special token, or another character): its
    bytes are the "\ufffd" of the decoded text, not part of the next token's span."""
    from conftest import bpe_tokenizer

    tok = llama2_style_tokenizer() if style == "byte_fallback" else bpe_tokenizer()
    emoji = tok("😀", add_special_tokens=False)["input_ids"]
    cut = next(k for k in range(1, len(emoji)) if tok.decode(emoji[:k]).endswith("\ufffd"))
    partial, eos, ok = emoji[:cut], tok.eos_token_id, tok(" ok", add_special_tokens=False)["input_ids"]
    e_acute = [t for t in tok("é", add_special_tokens=False)["input_ids"] if tok.decode([t]).strip()]  # its bytes
    cases = [
        (partial + [eos], [tok.eos_token]),
        (partial + ok + [eos], [" ok", tok.eos_token]),
        # A new character of several bytes (a byte-fallback decoder writes "\ufffd" for each of them
        # after an unfinished one; byte-level BPE writes "é").
        (partial + e_acute + [eos], ["é" if style == "byte_level" else "\ufffd\ufffd", tok.eos_token]),
    ]
    for ids, after in cases:
        text, spans, special = decoded_offsets(tok, ids)
        covered = {text[s:e] for s, e in spans[:cut]} - {""}  # (Llama's first "▁" decodes to nothing)
        assert len(covered) == 1 and set(covered.pop()) == {"\ufffd"}  # the bytes share their "\ufffd"
        assert all(s >= max(e for _, e in spans[:cut]) for s, _ in spans[cut:])  # no later token shares them
        rest = [text[s:e] for s, e in spans[cut:]]
        assert "".join(dict.fromkeys(rest)) == "".join(after) and rest[-1] == tok.eos_token and special[-1]


def test_a_position_table_that_skips_its_pad_positions_limits_the_length():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=300,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=34,
        pad_token_id=0,
    )
    model = RobertaForSequenceClassification(config).eval()
    tok = bpe_tokenizer()
    tok.model_max_length = 10**30  # a tokenizer saved without a limit
    assert max_input_length(model, tok) == 33  # 34 positions, counted from pad id + 1
    with pytest.raises(InterpTextError, match="at most 33"):
        Saliency(model, tok, task="classification").explain(" ".join(["food"] * 40))


@pytest.mark.parametrize("text", ["\x00", "\x00\u200b"])  # "\u200b" alone is empty text (test_api)
def test_a_text_the_tokenizer_empties_is_refused(text, bert, wp_tokenizer):
    for method in (Saliency, Occlusion):
        with pytest.raises(InterpTextError, match=r"text 0 .* has no token to explain: the tokenizer drops"):
            method(bert, wp_tokenizer).explain(text)


def test_a_lone_surrogate_is_refused_by_name(bert, wp_tokenizer):
    with pytest.raises(InterpTextError, match=r"text 1 holds '\\ud800' at character 5, a lone surrogate"):
        Saliency(bert, wp_tokenizer).explain(["good food", "good \ud800 food"])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_refused_when_built(value, bert, wp_tokenizer):
    message = r"must be a finite number >= 0"
    with pytest.raises(InterpTextError, match=f"noise_std={value!r} {message}"):
        SmoothGrad(bert, wp_tokenizer, noise_std=value)
    with pytest.raises(InterpTextError, match=message):
        Lime(bert, wp_tokenizer, alpha=value)
    with pytest.raises(InterpTextError, match=message):
        Lime(bert, wp_tokenizer, kernel_width=value)


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1])
def test_a_seed_out_of_range_is_refused_when_built(seed, bert, wp_tokenizer):
    with pytest.raises(InterpTextError, match=rf"seed={seed} is out of range; use an int between 0 and 2\*\*64 - 1"):
        VarGrad(bert, wp_tokenizer, seed=seed)
    assert VarGrad(bert, wp_tokenizer, seed=2**64 - 1, n_perturbations=2).explain("the food").scores.shape == (1, 2)


@pytest.mark.parametrize("seed", [-1, np.int64(-1)])
def test_a_negative_seed_is_refused_not_wrapped_around(seed, bert, wp_tokenizer):
    # torch would read -1 as 2**64 - 1: two spellings of one seed, neither of them what the user meant.
    with pytest.raises(InterpTextError, match=r"seed=(np.int64\()?-1\)? is out of range; use an int between 0 and"):
        Occlusion(bert, wp_tokenizer, seed=seed)


def test_numpy_numbers_are_taken_as_the_python_numbers_they_hold(bert, wp_tokenizer):
    text = "the food was not good"
    pad = wp_tokenizer.pad_token_id
    plain = dict(n_samples=8, batch_size=4, seed=3, kernel_width=0.5, replacement=pad)
    as_numpy = dict(
        n_samples=np.int64(8), batch_size=np.int32(4), seed=np.uint64(3), kernel_width=np.float32(0.5),
        replacement=np.int64(pad),
    )  # fmt: skip
    want, got = (Lime(bert, wp_tokenizer, **options).explain(text) for options in (plain, as_numpy))
    assert got.scores.tolist() == want.scores.tolist()
    assert got.options == want.options and all(type(v) is type(want.options[k]) for k, v in got.options.items())

    want = IntegratedGradients(bert, wp_tokenizer, n_interpolations=4, baseline=pad).explain(text)
    got = IntegratedGradients(bert, wp_tokenizer, n_interpolations=np.int64(4), baseline=np.int64(pad)).explain(text)
    assert got.scores.tolist() == want.scores.tolist()
    assert got.to_json() == want.to_json()  # the options as Python numbers: JSON writes them
    with pytest.raises(InterpTextError, match="VarGrad needs n_perturbations >= 2 to take a variance; got 1"):
        VarGrad(bert, wp_tokenizer, n_perturbations=np.int64(1))
    with pytest.raises(InterpTextError, match=r"n_samples=True must be an integer >= 2"):
        Lime(bert, wp_tokenizer, n_samples=True)


def test_numpy_generation_options_are_recorded_as_numbers(gpt2, bpe):
    want, got = (Saliency(gpt2, bpe).explain("the cat", max_new_tokens=n) for n in (2, np.int64(2)))
    assert got.options["generation"] == want.options["generation"] == {"max_new_tokens": 2}


@pytest.mark.parametrize("method", [Saliency, VarGrad, Occlusion])
def test_gradient_methods_run_inside_inference_mode(method, bert, wp_tokenizer):
    outside = method(bert, wp_tokenizer).explain("the food was not good")
    with torch.inference_mode():
        inside = method(bert, wp_tokenizer).explain("the food was not good")
    assert inside.scores.tolist() == outside.scores.tolist()
    assert not any(p.is_inference() for p in bert.parameters())


def test_metrics_read_a_seq2seq_explanation_from_the_start_it_was_generated_with(bpe):
    from transformers import BartConfig, BartForConditionalGeneration

    from interp_text import Deletion, Explanation

    torch.manual_seed(0)
    model = BartForConditionalGeneration(BartConfig(**SEQ2SEQ_SMALL, vocab_size=len(bpe))).eval()
    e = Occlusion(model, bpe).explain("The capital of France is", max_new_tokens=3, decoder_start_token_id=5)
    assert e.options["decoder_start_token_id"] == 5
    for explained in (e, Explanation.from_dict(e.to_dict())):
        curve = Deletion(model, bpe).curves(explained)  # point 0: nothing masked, the explained output
        assert curve[:, 0] == pytest.approx([t.probability for t in e.targets], rel=1e-5)


@pytest.mark.parametrize(
    ("cls_name", "kind"),
    [
        ("BertModel", "a base model without a head"),
        ("BertForMaskedLM", "a masked LM"),
        ("BertForTokenClassification", "a token classifier"),
    ],
)
@pytest.mark.parametrize("task", [None, "classification", "causal_lm"])
def test_a_transformers_model_without_an_explainable_head_is_refused(cls_name, kind, task, wp_tokenizer):
    import transformers

    config = transformers.BertConfig(
        vocab_size=len(wp_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    model = getattr(transformers, cls_name)(config).eval()
    with pytest.raises(InterpTextError, match=rf"{cls_name} is {kind}: it scores no class .* whatever task= says"):
        Saliency(model, wp_tokenizer, task=task)


@pytest.mark.parametrize("targets", ["all", " all ".strip(), ["all"]])
def test_all_targets_of_a_generator_is_refused(targets, gpt2, bpe):
    with pytest.raises(InterpTextError, match=r"'all' means every class of a classifier, but this model generates"):
        Saliency(gpt2, bpe).explain(
            ["The capital of France is"] * (len(targets) if isinstance(targets, list) else 1), targets=targets
        )
    forced = Saliency(gpt2, bpe).explain("The capital of France is", targets=" all")  # the word itself, on purpose
    assert forced.output_text == " all"


def test_the_default_output_length_shrinks_to_what_the_model_takes(gpt2, bpe):
    prompt = "food" + " food" * 59
    assert len(bpe(prompt)["input_ids"]) == 120  # of the 128 the model takes: 20 new ones would not fit
    e = Saliency(gpt2, bpe).explain(prompt)
    assert 1 <= len(e.output_ids) <= 8
    with pytest.raises(InterpTextError, match="max_new_tokens=20 would pass the 128 tokens"):
        Saliency(gpt2, bpe).explain(prompt, max_new_tokens=20)  # asked for: refused, not shortened


def test_loading_json_lines_names_the_way_to_read_them(tmp_path, bert, wp_tokenizer):
    import json

    from interp_text import Explanation, ExplanationList

    es = Saliency(bert, wp_tokenizer).explain(["the food", "not good"])
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps({**e.to_dict(), "id": i}) + "\n" for i, e in enumerate(es)))
    with pytest.raises(InterpTextError, match=r"holds several JSON values .*interp_text.ExplanationList.load\(path\)"):
        Explanation.load(path)
    assert ExplanationList.load(path) == es  # the command line's ids dropped
    assert ExplanationList.load(es.save(tmp_path / "sub" / "list.jsonl")) == es
    assert isinstance(ExplanationList.load(path), ExplanationList)
    (tmp_path / "mixed.jsonl").write_text(json.dumps(es[0].to_dict()) + "\n[1, 2]\n")
    with pytest.raises(InterpTextError, match=r"mixed.jsonl:2 is not an explanation \(a JSON object\)"):
        ExplanationList.load(tmp_path / "mixed.jsonl")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InterpTextError, match="is not an explanation saved by Explanation.save"):
        Explanation.load(tmp_path / "bad.json")


def test_a_row_out_of_range_points_to_labels(bert, wp_tokenizer):
    e = Saliency(bert, wp_tokenizer).explain("the food", targets="positive")
    with pytest.raises(InterpTextError, match=r"rows are the explained targets in order \(\['positive'\]\), not class"):
        e.row(2)


def test_a_half_precision_pad_pooled_classifier_still_drops_trailing_pads():
    """Rounding in bfloat16 (about 1e-3 between the trimmed and the full forward) is no other reading."""
    import random

    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = bpe_tokenizer(with_pad=True)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok), n_embd=256, n_layer=4, n_head=4, num_labels=3, pad_token_id=0, eos_token_id=0
    )
    model = GPT2ForSequenceClassification(config).eval().to(torch.bfloat16)
    words = "the food was cold but staff were lovely not good bad great pasta".split()
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(12)) + "<|endoftext|>" * 3 for _ in range(12)]
    for text in texts:  # each alone: each gets its own check
        e = Occlusion(model, tok).explain(text, targets="all")
        with torch.no_grad():
            own = model(**tok(text, return_tensors="pt")).logits[0].float()
        assert [t.score for t in e.targets] == pytest.approx(own.tolist(), abs=0.05)


def test_a_model_with_an_lm_head_under_another_name_is_not_refused(bpe):
    from transformers import OpenAIGPTConfig, OpenAIGPTDoubleHeadsModel

    model = OpenAIGPTDoubleHeadsModel(OpenAIGPTConfig(vocab_size=len(bpe), n_embd=32, n_layer=1, n_head=2)).eval()
    e = Saliency(model, bpe, task="causal_lm").explain("The capital of France is", targets=" Paris")
    assert e.output_text == " Paris"


def test_a_prompt_that_fills_the_model_has_no_room_for_an_output(gpt2, bpe):
    prompt = "food" + " food" * 63
    assert len(bpe(prompt)["input_ids"]) == 128
    with pytest.raises(
        InterpTextError, match=r"text 0 has 128 tokens, as many as the model accepts at most: there is no"
    ):
        Saliency(gpt2, bpe).explain(prompt)


def test_list_files_keep_texts_with_unicode_line_separators(tmp_path, bert, wp_tokenizer):
    from interp_text import ExplanationList

    es = Saliency(bert, wp_tokenizer).explain(["the food\u2028was cold", "good\u2029staff\x85here"])
    assert ExplanationList.load(es.save(tmp_path / "l.jsonl")) == es


def test_compare_of_no_texts_is_refused(bert, wp_tokenizer):
    from interp_text import compare

    with pytest.raises(InterpTextError, match=r"compare\(\) got an empty list of texts"):
        compare(bert, wp_tokenizer, [])


def test_only_the_lower_case_all_is_refused_and_a_long_prompt_is_told_to_shorten(gpt2, bpe):
    with pytest.warns(UserWarning, match="into 'isAll'"):
        assert Saliency(gpt2, bpe).explain("The capital of France is", targets="All").output_text == "All"
    with pytest.raises(
        InterpTextError,
        match=r"has 240 tokens but the model accepts at most 128; shorten the prompt, or build the explainer with "
        r"truncation=True to explain the end of the prompt that fits\.$",
    ):
        Saliency(gpt2, bpe).explain(" ".join(["food"] * 120))


@pytest.mark.parametrize("method", [Saliency, Occlusion])
def test_a_half_precision_model_s_probability_is_its_logits_softmax(method):
    """The normaliser is kept in float32: only the model's own rounding of its logits remains."""
    import copy

    from interp_text import load_default

    model, tok = load_default("facts")
    half = copy.deepcopy(model).to(torch.bfloat16)
    e = method(half, tok).explain("The capital of France is", targets=" Paris")
    ids = tok("The capital of France is Paris", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = half(ids).logits[0].float()
    assert e.targets[0].probability == pytest.approx(float(logits[-2].softmax(-1)[ids[0, -1]]), rel=1e-4)


def test_files_saved_with_a_utf8_bom_read_back(tmp_path, bert, wp_tokenizer):
    """Windows editors (Notepad) write a byte-order mark first; it is no part of the JSON."""
    from interp_text import Explanation, ExplanationList

    es = Saliency(bert, wp_tokenizer).explain(["the food", "not good"])
    path = es.save(tmp_path / "l.jsonl")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert ExplanationList.load(path) == es
    one = es[0].save(tmp_path / "e.json")
    one.write_bytes(b"\xef\xbb\xbf" + one.read_bytes())
    assert Explanation.load(one) == es[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_default_noise_reads_the_embedding_matrix_a_chunk_at_a_time(dtype, monkeypatch):
    """The spread of a bf16 matrix read in chunks of rows is the float64 spread of the whole."""
    import interp_text.methods as M

    weight = (torch.randn(1000, 48, generator=torch.Generator().manual_seed(0)) * 0.3 + 0.05).to(dtype)
    whole = float(weight.double().std())
    monkeypatch.setattr(M, "STD_CHUNK_ELEMENTS", 48 * 7)  # 7 rows at a time: 143 chunks, the last one short
    assert M._std(weight) == pytest.approx(whole, rel=1e-12)
    assert M._std(weight[:1]) == pytest.approx(float(weight[:1].double().std()), rel=1e-12)


def test_a_config_with_return_dict_false_gives_the_same_scores(bert, wp_tokenizer, gpt2, bpe):
    """Such a model's forwards return tuples (a GPT-2's own head then fails on its base's): the call
    reads named outputs, and the config is given back as it was."""
    from interp_text import Deletion

    for model, tok, args in ((bert, wp_tokenizer, ("the food was not good",)), (gpt2, bpe, ("the food", " was"))):
        tuples = copy.deepcopy(model)
        tuples.config.return_dict = False
        for method in (Saliency, Occlusion):
            want, got = (method(m, tok).explain(*args) for m in (model, tuples))
            torch.testing.assert_close(
                torch.tensor(got.scores), torch.tensor(want.scores), rtol=1e-6, atol=1e-9, equal_nan=True
            )
        assert Deletion(tuples, tok).evaluate(got) == pytest.approx(Deletion(model, tok).evaluate(got))
        assert tuples.config.return_dict is False


def test_a_compiled_model_gives_gradients_for_every_target():
    """A torch.compile'd graph frees what its backward needs after one backward (donated buffers),
    and a gradient method takes one per target: the module it compiled runs instead."""
    from interp_text import IntegratedGradients, load_default

    model, tok = load_default("sentiment")
    compiled = torch.compile(model, backend="aot_eager")
    Saliency(compiled, tok).explain("The food was not good.", targets="all")  # one row: IG's 50 recompile it
    want = IntegratedGradients(model, tok).explain("The food was not good.", targets="all")
    got = IntegratedGradients(compiled, tok).explain("The food was not good.", targets="all")
    assert len(got.targets) == 2
    torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(want.scores), rtol=0, atol=0)


def test_a_model_compiled_in_place_gives_gradients_for_every_target():
    """model.compile() has no wrapper to unwrap: its uncompiled forward runs for a gradient method's call."""
    from interp_text import IntegratedGradients, load_default

    model, tok = load_default("sentiment")
    want = IntegratedGradients(model, tok).explain("The food was not good.", targets="all")
    model.compile(backend="aot_eager")
    try:
        Saliency(model, tok).explain("The food was not good.", targets="all")
        got = IntegratedGradients(model, tok).explain("The food was not good.", targets="all")
        assert model._compiled_call_impl is not None  # compiled still, after the calls
    finally:
        model._compiled_call_impl = None
    torch.testing.assert_close(torch.tensor(got.scores), torch.tensor(want.scores), rtol=0, atol=0)


def test_the_lm_head_weight_requires_grad_in_forward_only_calls_and_never_in_gradient_ones(gpt2, bpe):
    """torch's CPU linear is several times slower on the LM head's sliced (non-contiguous) input when
    its weight does not require grad: forward-only calls switch it on, gradient methods keep every
    parameter off (no parameter gradients); both give the user's flags back."""
    seen = []
    hook = gpt2.lm_head.register_forward_pre_hook(lambda m, args: seen.append(m.weight.requires_grad))
    frozen = gpt2.transformer.h[0].mlp.c_fc.weight
    try:
        for user_flag in (True, False):
            gpt2.requires_grad_(user_flag)
            seen.clear()
            Occlusion(gpt2, bpe).explain("The capital of France is", targets=" Paris")
            assert seen and all(seen)
            assert all(p.requires_grad == user_flag for p in gpt2.parameters())
            seen.clear()
            Saliency(gpt2, bpe).explain("The capital of France is", targets=" Paris")
            assert seen and not any(seen) and frozen.requires_grad == user_flag
    finally:
        hook.remove()
        gpt2.requires_grad_(True)
