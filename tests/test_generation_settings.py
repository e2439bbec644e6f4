"""Generation as generate() does it: settings from generation configs, chat templates' own special
tokens and prefills, forced first tokens; and settings no explanation can follow, refused."""

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import bpe_tokenizer
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers import models as tok_models
from transformers import GenerationConfig, PreTrainedTokenizerFast

from interp_text import InterpTextError, Occlusion, Saliency

PROMPT = "The capital of France is"
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def trained_bpe(special: list[str], **named) -> PreTrainedTokenizerFast:
    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["The capital of France is Paris user assistant system"] * 5
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    return tok, named


@pytest.fixture(scope="module")
def llama3():
    """A Llama-3-like tokenizer: its header tokens are special added tokens it does not name."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, _ = trained_bpe(LLAMA3_SPECIAL)
    tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=LLAMA3_SPECIAL[0], eos_token=LLAMA3_SPECIAL[4])
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    return LlamaForCausalLM(config).eval(), tok


def test_unnamed_special_tokens_of_a_chat_template_are_no_words(llama3):
    model, tok = llama3
    assert tok.all_special_tokens == [LLAMA3_SPECIAL[0], LLAMA3_SPECIAL[4]]  # the headers are not named
    messages = [{"role": "user", "content": "The capital of France is"}]
    e = Occlusion(model, tok).explain(messages, targets=" Paris")
    assert e.elements == ["The", "capital", "of", "France", "is"]  # the header's "user" is the template's
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)
    out = tok(" Paris", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids + out])).logits[0]
    assert e.targets[0].score == pytest.approx(float(logits[len(ids) - 1, out[0]]), abs=1e-5)


def test_a_chat_message_is_a_sentence_of_its_own_without_a_period(llama3):
    # The template's special tokens end a sentence: a message ending in no punctuation did not, and
    # took the next message's role with it ("Be brief<|eot_id|><|start_header_id|>user").
    model, tok = llama3
    messages = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "The capital of France is"}]
    e = Occlusion(model, tok, granularity="sentence").explain(messages, targets=" Paris")
    assert e.elements == ["Be brief", "The capital of France is"]


def test_a_conversation_ending_with_the_assistant_is_continued(llama3):
    model, tok = llama3
    messages = [{"role": "user", "content": "The capital?"}, {"role": "assistant", "content": "The capital is"}]
    e = Saliency(model, tok).explain(messages, targets=" Paris")
    assert e.text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nThe capital is")


def test_content_the_template_does_not_read_as_parts_is_refused(llama3):
    model, tok = llama3
    parts = [{"role": "user", "content": [{"type": "text", "text": "The capital of France is"}]}]
    with pytest.raises(InterpTextError, match="does not read the content of message 0 as a list of parts"):
        Saliency(model, tok).explain(parts, targets=" Paris")


def test_a_text_that_repeats_the_bos_the_tokenizer_adds_is_warned_about(llama3):
    model, _ = llama3
    tok = bpe_tokenizer(bos=True)
    with pytest.warns(UserWarning, match=r"text 0 starts with '<s>', and the tokenizer adds another"):
        Saliency(model, tok).explain("<s>The capital of France is", targets=" Paris")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Saliency(model, tok).explain(PROMPT, targets=" Paris")


@pytest.mark.parametrize("where", ["model", "given"])
def test_num_return_sequences_of_a_generation_config_is_refused(where, gpt2, bpe, monkeypatch):
    config = GenerationConfig(max_new_tokens=3, num_return_sequences=2, num_beams=2)
    if where == "model":
        monkeypatch.setattr(gpt2, "generation_config", config)
        call = lambda: Saliency(gpt2, bpe).explain([PROMPT, "The capital of Spain"])  # noqa: E731
    else:
        call = lambda: Saliency(gpt2, bpe).explain([PROMPT, "The capital of Spain"], generation_config=config)  # noqa: E731
    with pytest.raises(
        InterpTextError, match=r"num_return_sequences must be 1 \(the options or a generation config set 2"
    ):
        call()


def test_a_generation_config_asking_for_a_dict_still_explains_its_ids(gpt2, bpe):
    config = GenerationConfig(max_new_tokens=3, return_dict_in_generate=True, do_sample=False)
    assert Saliency(gpt2, bpe).explain(PROMPT, generation_config=config).output_ids == (
        Saliency(gpt2, bpe).explain(PROMPT, max_new_tokens=3).output_ids
    )


def test_running_past_the_positions_names_the_fix(bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(bpe), n_embd=32, n_layer=1, n_head=2, n_positions=12)).eval()
    config = GenerationConfig(max_new_tokens=30, min_new_tokens=30)
    with pytest.raises(InterpTextError, match=r"ran past the 12 positions the model takes; lower max_new_tokens"):
        Saliency(model, bpe).explain(PROMPT, generation_config=config)


def test_a_failure_inside_generate_within_the_positions_is_not_blamed_on_them(gpt2, bpe, monkeypatch):
    """An IndexError from a model's own generate() (SwitchTransformers' on transformers 5) when the
    output fits the positions: the message says so and offers a forced target, not a shorter output."""

    def failing(*args, **kwargs):
        raise IndexError("index 3 is out of bounds for dimension 0 with size 3")

    monkeypatch.setattr(gpt2, "generate", failing)
    with pytest.raises(InterpTextError) as err:
        Saliency(gpt2, bpe).explain(PROMPT, max_new_tokens=3)
    assert str(err.value) == (
        "generation failed inside GPT2LMHeadModel.generate() (index 3 is out of bounds for dimension 0 with size 3), "
        "within the 128 positions the model takes; pass the output as a forced target (targets=) to explain it "
        "without generating."
    )


def test_a_list_of_decoder_starts_is_refused(t5, bpe):
    with pytest.raises(InterpTextError, match="decoder_start_token_id must be one id here"):
        Saliency(t5, bpe).explain([PROMPT, "The food"], decoder_start_token_id=[0, 5])


def test_a_forced_seq2seq_output_starts_with_the_token_generation_forces():
    """mBART / NLLB: generate() writes the language code first; a forced output is read after it too."""
    from transformers import MBartConfig, MBartForConditionalGeneration

    special = ["<s>", "<pad>", "</s>", "<unk>", "en_XX", "fr_XX"]
    tok, _ = trained_bpe(special)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        additional_special_tokens=["en_XX", "fr_XX"],
    )  # fmt: skip
    torch.manual_seed(0)
    config = MBartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2,
    )  # fmt: skip
    model = MBartForConditionalGeneration(config).eval()
    model.generation_config.forced_bos_token_id = 5
    model.generation_config.suppress_tokens = [0, 1, 3, 4]
    generated = Saliency(model, tok).explain(PROMPT, max_new_tokens=4, no_repeat_ngram_size=1)
    assert generated.output_ids[0] == 5
    as_given = Saliency(model, tok).explain(PROMPT, targets=generated.output_ids)  # the metrics' way: ids as given
    assert as_given.output_ids == generated.output_ids
    assert [t.score for t in as_given.targets] == pytest.approx([t.score for t in generated.targets], abs=1e-6)
    # A text is forced as generate() writes it: after the language code.
    forced = Saliency(model, tok).explain(PROMPT, targets=" Paris")
    paris = tok(" Paris", add_special_tokens=False)["input_ids"]
    assert forced.output_ids == [5, *paris]
    by_ids = Saliency(model, tok).explain(PROMPT, targets=[5, *paris])
    assert [t.score for t in forced.targets] == pytest.approx([t.score for t in by_ids.targets], abs=1e-6)
    assert math.isfinite(forced.targets[0].score)
    other = Saliency(model, tok).explain(PROMPT, max_new_tokens=3, forced_bos_token_id=100)
    assert other.output_ids[0] == 100
    assert Saliency(model, tok).explain(PROMPT, targets=other.output_ids).output_ids == other.output_ids


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_prompts_of_one_total_length_with_outputs_of_other_lengths(batch_size):
    """17 + 1 and 11 + 7 tokens: one length group whose rows score different numbers of targets."""
    from interp_text import Deletion, KernelShap, load_default

    model, tok = load_default("facts")
    prompts = ["Water is made of hydrogen and", "The largest planet is"]
    together = KernelShap(model, tok, batch_size=batch_size).explain(prompts, max_new_tokens=8)
    assert [len(tok(p)["input_ids"]) + len(e.output_ids) for p, e in zip(prompts, together)] == [18, 18]
    assert len({len(e.output_ids) for e in together}) == 2
    for prompt, e in zip(prompts, together):
        alone = KernelShap(model, tok).explain(prompt, max_new_tokens=8)
        assert e.output_ids == alone.output_ids
        np.testing.assert_allclose(e.scores, alone.scores, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert all(0 <= d <= 1 for d in Deletion(model, tok, batch_size=batch_size).evaluate(together))


def test_the_pad_token_generate_was_given_is_the_padding_dropped(facts):
    # generate() fills a row that ended early with the pad_token_id it is given (here not the
    # tokenizer's): batched, the first prompt's output is its token and padding, as alone it is its token.
    model, tok = facts
    prompts, options = (
        ["Paris is a city", "Rome is the capital"],
        dict(max_new_tokens=6, eos_token_id=14, pad_token_id=5),
    )
    together = Saliency(model, tok).explain(prompts, **options)
    alone = [Saliency(model, tok).explain(p, **options) for p in prompts]
    assert [e.output_ids for e in together] == [e.output_ids for e in alone]
    assert all(5 not in e.output_ids for e in together)


def test_a_pad_token_inside_an_output_stays_only_trailing_padding_goes():
    from interp_text.inputs import strip_generated

    # 143 inside was generated, and the tokens after it read it; at the end it is generate()'s filler.
    assert strip_generated([13, 143, 182, 271, 143, 143], {2}, 143) == [13, 143, 182, 271]
    assert strip_generated([13, 182, 2, 143, 9], {2}, 143) == [13, 182]  # cut at the end of sequence
    assert strip_generated([13, 2, 2], {2}, 2) == [13]  # pad = eos: cut there


def test_generation_config_as_a_dict_or_with_stop_strings_runs_as_generate_reads_it(facts):
    model, tok = facts
    want = Saliency(model, tok).explain(PROMPT, max_new_tokens=3)
    assert Saliency(model, tok).explain(PROMPT, generation_config={"max_new_tokens": 3}).output_ids == want.output_ids
    # stop_strings in a config needs the tokenizer passed to generate(), as it does when given to explain().
    direct = Saliency(model, tok).explain(PROMPT, max_new_tokens=8, stop_strings=["."])
    config = GenerationConfig(max_new_tokens=8, stop_strings=["."])
    assert Saliency(model, tok).explain(PROMPT, generation_config=config).output_ids == direct.output_ids


@pytest.mark.parametrize(
    "targets,message",
    [
        (["all"], r"targets='all' \(prompt 0\): 'all' means every class of a classifier"),
        ([758.0], r"the target of prompt 0 \(758.0\) is not understood"),
        ([[True, 14]], r"the target of prompt 0 \(\[True, 14\]\) is not understood"),
    ],
)
def test_a_one_entry_target_list_for_one_prompt_is_checked_as_any_entry(targets, message, facts):
    model, tok = facts
    with pytest.raises(InterpTextError, match=message):
        Saliency(model, tok).explain(PROMPT, targets=targets)


def test_a_forced_output_past_the_models_length_names_the_target_not_max_new_tokens(facts):
    model, tok = facts
    prompt = " ".join(["capital"] * 58)  # 59 tokens of the 64 the model reads
    with pytest.raises(InterpTextError) as err:
        Occlusion(model, tok).explain(prompt, targets=" Paris. The capital of France")
    assert str(err.value).endswith(
        "(prompt + output) but the model accepts at most 64; shorten the prompt or the forced output (the target), "
        "or build the explainer with truncation=True to explain the end of the prompt that fits."
    )
