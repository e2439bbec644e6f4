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


@pytest.fixture(scope="module")
def trimming_bpe():
    """Byte-level BPE whose offsets leave out the space (as GPT-2's and RoBERTa's tokenizer.json do):
    a lone space token then has an empty span."""
    from conftest import bpe_tokenizer
    from tokenizers import processors

    tok = bpe_tokenizer()
    tok.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    return tok


@pytest.mark.parametrize("gran", [Granularity.TOKEN, Granularity.WORD, Granularity.SENTENCE])
def test_a_lone_space_token_with_an_empty_span_joins_the_next_element(gran, trimming_bpe):
    text = "The capital of  France is"
    ids, offsets, special, strings = tokenize(trimming_bpe, text)
    empty = [i for i, (s, e) in enumerate(offsets) if s == e]
    assert empty and not any(special[i] for i in empty)  # the tokenizer gives what this test is about
    elements, spans, mapping = group_tokens(text, offsets, special, gran, strings)
    assert -1 not in mapping
    for i in empty:
        assert mapping[i] == mapping[i + 1]
    _check_spans(text, elements, spans)


def test_occlusion_masks_a_lone_space_with_its_word(trimming_bpe):
    from transformers import GPT2Config, GPT2LMHeadModel

    from interp_text import Occlusion

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(trimming_bpe), n_embd=32, n_layer=2, n_head=2)).eval()
    prompt, target = "The capital of  France is", " Paris"
    e = Occlusion(model, trimming_bpe, replacement="eos", inference_mode="log_softmax").explain(prompt, targets=target)
    ids = trimming_bpe(prompt)["input_ids"]
    out = trimming_bpe(target, add_special_tokens=False)["input_ids"]
    france = next(i for i, t in enumerate(trimming_bpe.convert_ids_to_tokens(ids)) if t == "F")

    def logp(prompt_ids):
        with torch.no_grad():
            logits = model(torch.tensor([prompt_ids + out])).logits[0, len(prompt_ids) - 1 :]
        return sum(logits[k].log_softmax(-1)[t].item() for k, t in enumerate(out))

    masked = list(ids)
    for i in range(france - 2, france + 3):  # "Ġ", "Ġ", "F", "ran", "ce": the space goes with the word
        masked[i] = trimming_bpe.eos_token_id
    assert e.elements[3] == "France"
    assert e.scores[0, 3] == pytest.approx(logp(ids) - logp(masked), abs=1e-5)


@pytest.mark.parametrize("gran", [Granularity.WORD, Granularity.SENTENCE])
def test_a_token_over_several_words_makes_them_one_element(gran, wp_tokenizer):
    text = "the [MASK] was good. fine"  # "[MASK]" typed in the text: one token, three regex words
    ids, offsets, special, strings = tokenize(wp_tokenizer, text)
    assert strings[2] == "[MASK]" and offsets[2] == (4, 10)
    elements, spans, mapping = group_tokens(text, offsets, special, gran, strings)
    if gran == Granularity.WORD:
        assert elements == ["the", "[MASK]", "was", "good", ".", "fine"]
    else:
        assert elements == ["the [MASK] was good.", "fine"]
    _check_spans(text, elements, spans)


def test_added_special_tokens_sit_where_they_are_read(wp_tokenizer):
    text = "the food was cold"
    ids, offsets, special, strings = tokenize(wp_tokenizer, text)
    elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert elements[0] == "[CLS]" and elements[-1] == "[SEP]"
    assert spans[0] == (0, 0) and spans[-1] == (len(text), len(text))  # [SEP] after the words, not at 0


def test_punctuation_that_leads_a_token_into_the_next_span_goes_with_it():
    """Llama 3 and Qwen pre-tokenize "。今" and ".value": one token across a sentence or word boundary.
    The punctuation goes with the letters after it, so the sentences stay apart (before: one sentence)."""
    text = "我爱北京天安门。今天天气很好！你好吗？"
    offsets = [
        (0, 7),
        (7, 9),
        (9, 14),
        (14, 16),
        (16, 18),
        (18, 19),
    ]  # 我爱北京天安门 | 。今 | 天天气很好 | ！你 | 好吗 | ？
    special = [False] * len(offsets)
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.SENTENCE)
    assert elements == ["我爱北京天安门", "。今天天气很好", "！你好吗？"]
    assert mapping == [0, 1, 1, 2, 2, 2]
    assert [text[a:b] for a, b in spans] == elements
    elements, _, mapping = group_tokens(text, offsets, special, Granularity.WORD)
    assert elements == ["我爱北京天安门", "。今天天气很好", "！你好吗", "？"] and mapping == [0, 1, 1, 2, 2, 3]
    code = "x = self.value"
    elements, _, mapping = group_tokens(code, [(0, 1), (1, 3), (3, 8), (8, 14)], [False] * 4, Granularity.WORD)
    assert elements == ["x", "=", "self", ".value"] and mapping == [0, 1, 2, 3]
    # A token whose part before the next span holds letters still joins the spans it covers.
    elements, _, _ = group_tokens("ab.cd ef", [(0, 5), (5, 8)], [False] * 2, Granularity.WORD)
    assert elements == ["ab.cd", "ef"]


@pytest.mark.parametrize(
    "text,sentences",
    [
        ("Steps:\n1. Preheat the oven.\n2. Bake it.", ["Steps:", "1. Preheat the oven.", "2. Bake it."]),
        ("He said “Dr. Who?” and left.", ["He said “Dr. Who?”", "and left."]),
        ("It took 30 ms. Then it crashed.", ["It took 30 ms.", "Then it crashed."]),
        ("The score was 3 vs. 2 at halftime.", ["The score was 3 vs. 2 at halftime."]),
        ("He lives at 42 St. James Street.", ["He lives at 42 St. James Street."]),
        ("Ms. Smith took 30 ms.", ["Ms. Smith took 30 ms."]),
        ("We met at 5 p.m. on Friday. It rained.", ["We met at 5 p.m. on Friday.", "It rained."]),
        ("We met at 5 p.m. Then it rained.", ["We met at 5 p.m.", "Then it rained."]),
        ("I have 3. Then I left.", ["I have 3.", "Then I left."]),
        ("नमस्ते दुनिया। यह ठीक है।", ["नमस्ते दुनिया।", "यह ठीक है।"]),
        ("هل أنت بخير؟ نعم.", ["هل أنت بخير؟", "نعم."]),
        ("Il a dit «Oui.» Puis il est parti.", ["Il a dit «Oui.»", "Puis il est parti."]),
        ("One\rTwo\u2029Three\r\nFour", ["One", "Two", "Three", "Four"]),
        ("Wait\u2026 What? Well...", ["Wait\u2026", "What?", "Well..."]),  # an ellipsis character, as "..."
    ],
)
def test_sentence_ends(text, sentences):
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences


@pytest.mark.parametrize(
    "text,words",
    [
        ("co\u00adoperation works", ["co\u00adoperation", "works"]),  # a soft hyphen
        ("\ufeffHello there", ["\ufeffHello", "there"]),  # a byte-order mark opening a file
        ("good\u2060! fine\u200bday", ["good\u2060", "!", "fine", "day"]),  # word joiner; a zero-width space splits
        ("\u0e09\u0e31\u0e19\u200b\u0e23\u0e31\u0e01", ["\u0e09\u0e31\u0e19", "\u0e23\u0e31\u0e01"]),  # Thai word break
        ("state\u2011of\u2011the\u2011art", ["state\u2011of\u2011the\u2011art"]),  # non-breaking hyphens
    ],
)
def test_invisible_format_characters_stay_in_their_word(text, words):
    assert [text[a:b] for a, b in word_spans(text)] == words


def test_all_tokens_names_a_space_token_without_text_by_its_space():
    """A lone "Ġ" whose offsets a trimming tokenizer left empty is a space, not the letter Ġ, and its
    span is that space: text[start:end] == element."""
    elements, spans, _ = group_tokens(
        "a  b", [(0, 1), (2, 2), (3, 4)], [False] * 3, Granularity.ALL_TOKENS, ["a", "Ġ", "Ġb"]
    )
    assert elements == ["a", " ", "b"] and spans == [(0, 1), (1, 2), (3, 4)]
    # A space another token already read is not taken twice: the span stays empty.
    elements, spans, _ = group_tokens(
        "a b", [(0, 2), (2, 2), (2, 3)], [False] * 3, Granularity.ALL_TOKENS, ["a", "Ġ", "b"]
    )
    assert elements == ["a", " ", "b"] and spans == [(0, 1), (2, 2), (2, 3)]


@pytest.mark.parametrize("text", ["Café 👍🏽 is", "The  capital of France is", "a  b\n\n  c", "   good food"])
def test_all_tokens_spans_are_their_elements_with_a_trimming_bpe(text, trimming_bpe):
    _, offsets, special, strings = tokenize(trimming_bpe, text)
    assert any(s == e and strings[i] == "Ġ" for i, (s, e) in enumerate(offsets))  # a lone space, emptied
    elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert [text[a:b] for a, b in spans] == elements


def test_all_tokens_gives_an_outputs_byte_pieces_the_characters_span():
    """A decoded output's pieces that end inside "€" have no text of their own: they share its span, as
    the prompt's byte pieces do, so the page draws "€" once and "+" for the others (not "â", "Ĥ")."""
    elements, spans, _ = group_tokens(
        " €3", [(0, 1), (1, 1), (1, 1), (1, 2), (2, 3)], [False] * 5, Granularity.ALL_TOKENS, ["Ġ", "â", "Ĥ", "¬", "3"]
    )
    assert elements == [" ", "€", "€", "€", "3"]
    assert spans == [(0, 1), (1, 2), (1, 2), (1, 2), (2, 3)]


@pytest.mark.parametrize("gran", [Granularity.WORD, Granularity.SENTENCE])
def test_a_zero_width_space_token_joins_the_next_word_as_a_space_does(gran, trimming_bpe):
    """U+200B separates words but is not whitespace to Python: a token of it belongs to the element
    after it, as a space token does, never to none (its attribution, or an output's probability,
    would be lost)."""
    text = "The capital\u200bof France is"
    ids, offsets, special, strings = tokenize(trimming_bpe, text)
    elements, spans, mapping = group_tokens(text, offsets, special, gran, strings)
    gap = [i for i, (s, e) in enumerate(offsets) if "\u200b" in text[s:e]]
    assert gap and -1 not in mapping
    of = next(i for i, (s, e) in enumerate(offsets) if s <= text.index("of") < e)
    assert {mapping[i] for i in gap} == {mapping[of]}
    if gran == Granularity.WORD:
        assert elements == ["The", "capital", "of", "France", "is"]


@pytest.mark.parametrize(
    "text,offsets,strings,token_spans",
    [
        # NFKC (XLM-R, T5, ALBERT) composes "e" + U+0301 into one "é" whose offsets hold the "e" alone.
        (
            "e\u0301cole ok",
            [(0, 0), (0, 1), (2, 6), (6, 7), (7, 9), (0, 0)],
            ["<s>", "é", "cole", "▁", "ok", "</s>"],
            [(0, 2), (2, 6), (6, 7), (7, 9)],
        ),
        # BERT drops a soft hyphen: it goes with the token before it.
        (
            "co\u00adop it",
            [(0, 0), (0, 2), (3, 5), (6, 8), (0, 0)],
            ["[CLS]", "co", "##op", "it", "[SEP]"],
            [(0, 3), (3, 5), (6, 8)],
        ),
        # Dropped at the start: with the token after it; at the end: with the token before it.
        ("\u00adab cd\u00ad", [(0, 0), (1, 3), (4, 6), (0, 0)], ["[CLS]", "ab", "cd", "[SEP]"], [(0, 3), (4, 7)]),
        # Only at the start (a byte-order mark read from a file): the token after it takes it.
        ("\ufeffab cd", [(0, 0), (1, 3), (4, 6), (0, 0)], ["[CLS]", "ab", "cd", "[SEP]"], [(0, 3), (4, 6)]),
        # A special token written in the text is covered by its offsets: no neighbour takes it.
        ("ab<sep>cd", [(0, 2), (2, 7), (7, 9)], ["ab", "<sep>", "cd"], [(0, 2), (7, 9)]),
    ],
)
def test_characters_no_token_covers_join_the_token_they_touch(text, offsets, strings, token_spans):
    special = [s.startswith(("<", "[")) and s.endswith((">", "]")) for s in strings]
    elements, spans, mapping = group_tokens(text, offsets, special, Granularity.TOKEN, strings)
    assert spans == token_spans
    _check_spans(text, elements, spans)
    assert [m for m, flag in zip(mapping, special) if not flag] == list(range(len(token_spans)))
    # ALL_TOKENS: the same spans for the text's tokens; a special token added at the end sits after them.
    elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert [sp for sp, flag in zip(spans, special) if not flag] == token_spans
    assert all(text[s:e] == el for el, (s, e), flag in zip(elements, spans, special) if not flag)
    if special[-1] and offsets[-1] == (0, 0):
        assert spans[-1] == (token_spans[-1][1],) * 2


def test_all_tokens_a_lone_metaspace_given_the_next_characters_offsets_takes_none_of_them():
    """XLM-R's and T5's tokenizers (whitespace split, then Metaspace) give a lone "▁" the offsets of
    the character after it, which the next token holds: "▁" is the space, not an "s" or a "2"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["<unk>", "▁", "▁Quality", "▁of", "▁work", "▁is", "sufficient", "2023", "▁was", "▁good"]
    tk = Tokenizer(models.Unigram([(p, -2.0 if p == "▁" else -1.0) for p in pieces], unk_id=0))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>")
    for text, want in [
        ("Quality of work is sufficient", [(" ", (18, 19)), ("sufficient", (19, 29))]),
        ("2023 was good", [(" ", (0, 0)), ("2023", (0, 4))]),
    ]:
        ids, offsets, special, strings = tokenize(tok, text)
        assert "▁" in strings and offsets[strings.index("▁")][1] > offsets[strings.index("▁")][0]  # the quirk
        elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
        k = strings.index("▁")
        assert list(zip(elements, spans))[k : k + 2] == want


@pytest.mark.parametrize("gran", [Granularity.TOKEN, Granularity.WORD])
def test_characters_the_normaliser_drops_join_the_word_they_touch(gran, wp_tokenizer):
    """BERT's normaliser drops U+FFFD and control characters: no token holds them. Touching a word they
    join it (before, else after) at every granularity; alone between spaces they are left between elements."""
    for text, want in [
        ("good\ufffd bad", ["good\ufffd", "bad"]),
        ("\ufffd\x07good bad", ["\ufffd\x07good", "bad"]),
        ("good \ufffd bad", ["good", "bad"]),
    ]:
        ids, offsets, special, strings = tokenize(wp_tokenizer, text)
        assert len(ids) == 4  # [CLS] good bad [SEP]: the characters have no token
        elements, spans, _ = group_tokens(text, offsets, special, gran, strings)
        assert elements == want
        _check_spans(text, elements, spans)


def test_ascii_words_are_the_unicode_rule_words():
    # ASCII text takes a faster pattern: on every ASCII character, control characters included,
    # it must split as the full Unicode rule does.
    from interp_text.granularity import _WORD

    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in range(128)] + list("ab 1.,:'-") * 8
    for _ in range(3000):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(0, 14))))
        assert word_spans(text) == [m.span() for m in _WORD.finditer(text)], repr(text)


def test_letters_that_byte_level_bpe_uses_as_space_marks_are_letters_elsewhere():
    """A cased WordPiece vocabulary (mBERT's) holds "ĉ" (Esperanto), "Ġ" and "Ċ" (Maltese) as
    letters: as tokens that read those very letters, they are not byte-level BPE's tab, space and
    newline marks."""
    text = "ĉiu Ġardin Ċens"
    offsets = [(0, 0), (0, 1), (1, 3), (4, 5), (5, 10), (11, 12), (12, 15), (0, 0)]
    strings = ["[CLS]", "ĉ", "##iu", "Ġ", "##ardin", "Ċ", "##ens", "[SEP]"]
    special = [True] + [False] * 6 + [True]
    elements, spans, _ = group_tokens(text, offsets, special, Granularity.ALL_TOKENS, strings)
    assert elements == ["[CLS]", "ĉ", "iu", "Ġ", "ardin", "Ċ", "ens", "[SEP]"]
    assert spans == [(0, 0), (0, 1), (1, 3), (4, 5), (5, 10), (11, 12), (12, 15), (15, 15)]
    # Byte-level BPE's own lone "Ġ" (a double space, offsets trimmed to nothing) is still a space.
    elements, spans, _ = group_tokens(
        "a  b", [(0, 1), (2, 2), (3, 4)], [False] * 3, Granularity.ALL_TOKENS, ["a", "Ġ", "Ġb"]
    )
    assert elements == ["a", " ", "b"] and spans == [(0, 1), (1, 2), (3, 4)]


def test_a_year_that_starts_a_line_ends_its_sentence_where_a_list_number_does_not():
    def sentences(text):
        return [text[s:e] for s, e in sentence_spans(text)]

    assert sentences("It rained in 2018.\n2019. It was a dry year.") == [
        "It rained in 2018.",
        "2019.",
        "It was a dry year.",
    ]
    assert sentences("Steps:\n1. Open the box.\n12. Close it.") == ["Steps:", "1. Open the box.", "12. Close it."]


def test_a_numbers_sign_is_part_of_its_word():
    def words(text):
        return [text[s:e] for s, e in word_spans(text)]

    assert words("It was -5 degrees, +3 today (-2.5) and −4") == [
        "It", "was", "-5", "degrees", ",", "+3", "today", "(", "-2.5", ")", "and", "−4",
    ]  # fmt: skip
    assert words("pages 10-15, x+3, a - b, --5, e-5") == [
        "pages", "10-15", ",", "x", "+", "3", ",", "a", "-", "b", ",", "-", "-5", ",", "e-5",
    ]  # fmt: skip
