import numpy as np
import pytest
import torch

from interp_text.granularity import group_tokens, pool, sentence_spans, word_spans
from interp_text.inputs import tokenize
from interp_text.options import Granularity
from interp_text.options import GranularityAggregationStrategy as G

TEXTS = [
    "The food was cold but the staff were lovely.",
    "  Naïve café:   don't   stop!\nNew line here 😀 ok.",
    "state-of-the-art, really?! Yes...",
]


def _check_spans(text, elements, spans):
    assert all(text[s:e] == el for el, (s, e) in zip(elements, spans))
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
    rebuilt, pos = [], 0
    for s, e in spans:
        gap = text[pos:s]
        rebuilt.append(gap)
        rebuilt.append(text[s:e])
        pos = e
    rebuilt.append(text[pos:])
    assert "".join(rebuilt) == text


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("gran", [Granularity.TOKEN, Granularity.WORD, Granularity.SENTENCE])
@pytest.mark.parametrize("which", ["wp", "bpe"])
def test_spans_rebuild_the_text(text, gran, which, wp_tokenizer, bpe):
    tok = wp_tokenizer if which == "wp" else bpe
    ids, offsets, special, strings = tokenize(tok, text)
    elements, spans, mapping = group_tokens(text, offsets, special, gran, strings)
    _check_spans(text, elements, spans)
    assert len(mapping) == len(ids)
    # every non-space character of the text is covered by a token of some element (words/sentences)
    assert set(m for m in mapping if m >= 0) == set(range(len(elements)))
    # special tokens belong to no element
    assert all(m == -1 for m, sp in zip(mapping, special) if sp)


def test_words_and_sentences():
    text = "Don't stop, state-of-the-art!  Next one? Yes.\nLast"
    assert [text[s:e] for s, e in word_spans(text)] == [
        "Don't",
        "stop",
        ",",
        "state-of-the-art",
        "!",
        "Next",
        "one",
        "?",
        "Yes",
        ".",
        "Last",
    ]
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Don't stop, state-of-the-art!",
        "Next one?",
        "Yes.",
        "Last",
    ]


def test_subwords_pool_into_their_word(wp_tokenizer):
    text = "unloved pastas"
    ids, offsets, special, strings = tokenize(wp_tokenizer, text)
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.WORD, strings)
    assert elements == ["unloved", "pastas"]
    assert len(ids) > 4  # split into pieces plus [CLS]/[SEP]
    assert mapping[0] == -1 and mapping[-1] == -1
    assert mapping[1:-1] == sorted(mapping[1:-1])


def test_all_tokens_keeps_special_tokens(wp_tokenizer):
    text = "good food"
    ids, offsets, special, strings = tokenize(wp_tokenizer, text)
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert elements == ["[CLS]", "good", "food", "[SEP]"]
    assert mapping == [0, 1, 2, 3]


def test_byte_pieces_of_one_character_form_one_token_element(bpe):
    text = "ok 😀"
    ids, offsets, special, strings = tokenize(bpe, text)
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.TOKEN, strings)
    assert "😀" in elements
    assert len(ids) > len(elements)


@pytest.mark.parametrize(
    "strategy,expected",
    [
        (G.MEAN, [[2.0, -1.5, np.nan, 7.0]]),
        (G.SUM, [[4.0, -3.0, np.nan, 7.0]]),
        (G.MAX, [[3.0, 1.0, np.nan, 7.0]]),
        (G.MIN, [[1.0, -4.0, np.nan, 7.0]]),
        (G.SIGNED_MAX, [[3.0, -4.0, np.nan, 7.0]]),
    ],
)
def test_pool_strategies(strategy, expected):
    scores = torch.tensor([[1.0, 3.0, 1.0, -4.0, 9.0, 7.0, float("nan")]], dtype=torch.float64)
    mapping = [0, 0, 1, 1, -1, 3, 3]  # token 4 dropped; element 2 has no token
    out = pool(scores, mapping, 4, strategy)
    np.testing.assert_allclose(out.numpy(), np.array(expected), equal_nan=True)


def test_pool_all_nan_element_is_nan():
    scores = torch.tensor([[float("nan"), float("nan"), 2.0]], dtype=torch.float64)
    out = pool(scores, [0, 0, 1], 2, G.SUM)
    assert np.isnan(out[0, 0].item()) and out[0, 1].item() == 2.0


@pytest.mark.parametrize(
    "text,words",
    [
        ("مَرْحَبًا بالعالم", ["مَرْحَبًا", "بالعالم"]),  # Arabic with harakat (combining marks)
        ("नमस्ते दुनिया", ["नमस्ते", "दुनिया"]),  # Devanagari vowel signs and virama
        ("e\u0301tait bon", ["e\u0301tait", "bon"]),  # a decomposed accent (NFD, as macOS writes it)
        ("I ❤️ it 👨\u200d👩\u200d👧 ok", ["I", "❤️", "it", "👨\u200d👩\u200d👧", "ok"]),
        ("$3.50 for 1,000 at 10:30, ok.", ["$", "3.50", "for", "1,000", "at", "10:30", ",", "ok", "."]),
    ],
)
def test_words_keep_combining_marks_joiners_and_numbers(text, words):
    assert [text[s:e] for s, e in word_spans(text)] == words


@pytest.mark.parametrize(
    "text,sentences",
    [
        ("I paid $3.50 for it. Great value.", ["I paid $3.50 for it.", "Great value."]),
        ("Dr. Smith came, e.g. on Monday. He left!", ["Dr. Smith came, e.g. on Monday.", "He left!"]),
        ('Is it (really)? Yes. "Sure." Ok', ["Is it (really)?", "Yes.", '"Sure."', "Ok"]),
        ("今天很好。明天见！好", ["今天很好。", "明天见！", "好"]),
        ("One line\nanother", ["One line", "another"]),
    ],
)
def test_sentences_end_at_a_stop_followed_by_a_space(text, sentences):
    assert [text[s:e] for s, e in sentence_spans(text)] == sentences


def test_a_word_with_combining_marks_is_one_element_of_the_model(bpe):
    text = "नमस्ते दुनिया"
    ids, offsets, special, strings = tokenize(bpe, text)
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.WORD, strings)
    assert elements == ["नमस्ते", "दुनिया"]
    _check_spans(text, elements, spans)


@pytest.mark.parametrize("gran", [Granularity.WORD, Granularity.SENTENCE])
def test_a_lone_space_token_joins_the_next_element_or_else_the_previous(gran, bpe):
    text = "The  capital of France "  # two spaces, and one at the end: lone space tokens
    ids, offsets, special, strings = tokenize(bpe, text)
    elements, spans, mapping = group_tokens(text, offsets, special, gran, strings)
    lone = [i for i, (s, e) in enumerate(offsets) if e > s and not text[s:e].strip()]
    assert len(lone) >= 2 and -1 not in mapping
    for i in lone[:-1]:
        assert mapping[i] == mapping[i + 1]  # a space before a word is that word's
    assert lone[-1] == len(ids) - 1 and mapping[-1] == mapping[-2]  # the trailing space: the last element's
    _check_spans(text, elements, spans)


def test_added_special_tokens_sit_where_they_are_read(wp_tokenizer):
    text = "the food was cold"
    ids, offsets, special, strings = tokenize(wp_tokenizer, text)
    elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert elements[0] == "[CLS]" and elements[-1] == "[SEP]"
    assert spans[0] == (0, 0) and spans[-1] == (len(text), len(text))  # [SEP] after the words, not at 0
