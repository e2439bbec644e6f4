"""Tokens to elements (tokens, words, sentences) by character offsets, and vectorised pooling.

Every element keeps its ``(start, end)`` span in the original text, so ``text[start:end]`` is the
element and the text between spans is whitespace, zero-width spaces included (or characters no
token covers, or special tokens written in the text, as a chat template writes them).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

import regex
import torch

from .options import Granularity, GranularityAggregationStrategy

# A word: word characters (letters, digits, combining marks, joiners: "\w" of the `regex` module,
# which, unlike `re`'s, keeps "नमस्ते" and a decomposed "é" whole) joined by apostrophes or hyphens
# ("don't", "state-of-the-art"), digits joined by a point, comma or colon ("3.50", "1,000",
# "10:30"), with the sign of a number that follows no word character ("-5", "+3", "−2.5"); or a
# run of other non-space characters (punctuation; emoji with their variation selectors and
# zero-width joiners). Invisible format characters (soft hyphen, word joiner,
# byte-order mark) stay inside the word they touch; a zero-width space separates words (Thai and
# Khmer write their word breaks with it), as a space does. The hyphens U+2010 and U+2011 join
# words as "-" does.
_WORD = regex.compile(
    r"(?:(?<!\w)[-+\u2212](?=\d))?(?:\w|(?!\u200b)\p{Cf})+"
    r"(?:(?:['’\-\u2010\u2011]|(?<=\d)[.,:](?=\d))(?:\w|(?!\u200b)\p{Cf})+)*"
    r"|(?:(?!(?<!\w)[-+\u2212]\d)[^\w\s\u200b]|[\p{M}\u200d])+"
)
# A sentence ends at a run of . ! ? … (closing quotes and brackets included) followed by a space or
# the end of the text, at 。！？ (and the Devanagari, Arabic and Urdu stops), or at a line or
# paragraph break. So "$3.50" and "e.g." inside a sentence do not end it; neither does a title
# such as "Dr." (ABBREVIATIONS) before a name, a list number ("1." starting a line), or a dotted
# abbreviation ("p.m.", "U.S.") before a word in lower case.
_CLOSE = r"""['"’”“»›)\]」』]*"""
_SENTENCE_END = regex.compile(rf"[.!?\u2026]+{_CLOSE}(?=\s|$)|[。！？।॥؟۔]+{_CLOSE}|\r\n?|\n|\u2028|\u2029")
_WORD_CHAR = regex.compile(r"\w")
# How byte-level BPE and SentencePiece write whitespace in token strings.
_SPACE_MARKS = str.maketrans({"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"})
_OPENING = "(\"'“‘«„‹["
ABBREVIATIONS = frozenset("mr mrs ms dr prof sr jr st mt vs e.g i.e cf fig approx dept gen col lt sgt rev".split())


# _WORD on ASCII text, in `re`, three times faster: no format characters or combining marks there,
# and `regex`'s \s there is these five characters and the space (not "\x1c".."\x1f", which `re` counts).
_ASCII_WORD = re.compile(
    r"(?:(?<!\w)[-+](?=\d))?\w+(?:(?:['\-]|(?<=\d)[.,:](?=\d))\w+)*|(?:(?!(?<!\w)[-+]\d)[^\w \t\n\x0b\x0c\r])+"
)


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in (_ASCII_WORD if text.isascii() else _WORD).finditer(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if m.group() == "." and not _ends_sentence(text, m.start(), end):
            continue
        _append_trimmed(spans, text, start, end)
        start = end
    _append_trimmed(spans, text, start, len(text))
    return spans


def _ends_sentence(text: str, stop: int, end: int) -> bool:
    """Whether the one period at ``text[stop]`` ends its sentence (``end``: just after it)."""
    line_start = text.rfind("\n", 0, stop) + 1
    words = text[max(line_start, stop - 24) : stop].split()
    word = words[-1].lower().lstrip(_OPENING) if words else ""
    if word.isdigit() and len(word) <= 3 and not text[line_start:stop].strip()[: -len(word)].strip():
        return False  # "1." starting a line numbers a list item ("2019." is a year)
    if word in ABBREVIATIONS:
        # A title before a name ("Ms. Smith"), "vs." or "St." after a number too; but "30 ms." is a unit, which can end one.
        return word == "ms" and len(words) > 1 and words[-2].replace(",", "").replace(".", "").isdigit()
    after = text[end:].lstrip()
    if "." in word and after[:1].islower():
        return False  # "p.m. on Friday", "U.S. officials", "e.g. this"
    return True


def _is_space_token(token_strings: list[str] | None, i: int, read: str = "") -> bool:
    """Whether token ``i`` is whitespace as the tokenizer writes it ("Ġ", "▁", "Ċ"). Not when it is
    the text it reads (``read``): "Ġ", "Ċ" and "ĉ" are Maltese and Esperanto letters in a WordPiece
    or SentencePiece vocabulary."""
    return token_strings is not None and token_strings[i] != read and token_strings[i].translate(_SPACE_MARKS).isspace()


def _append_trimmed(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    start, end = _trim(text, start, end)
    if start < end:
        spans.append((start, end))


def _trim(text: str, start: int, end: int, gap: str = "") -> tuple[int, int]:
    """Drop the whitespace a token's offsets may include (byte-level BPE keeps the leading space),
    and the characters of ``gap``."""
    while start < end and (text[start].isspace() or text[start] in gap):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in gap):
        end -= 1
    return start, end


# Between words, a zero-width space is a space (see _WORD): a token of it joins a word as a space does.
_GAP = "\u200b"


def group_tokens(
    text: str,
    offsets: list[tuple[int, int]],
    special: list[bool],
    granularity: Granularity,
    token_strings: list[str] | None = None,
    hidden: Sequence[tuple[int, int]] = (),
) -> tuple[list[str], list[tuple[int, int]], list[int]]:
    """Map each token to an element.

    Args:
        text: the text the offsets point into.
        offsets: one ``(start, end)`` per token.
        special: True for special tokens ([CLS], <bos>, ...), which have no text.
        granularity: what an element is.
        token_strings: token strings, used to name special tokens under ALL_TOKENS.
        hidden: spans of text that belong to no token any more (special tokens dropped from the
            input), which no word may take in at WORD and SENTENCE.

    Returns:
        ``(elements, spans, token_to_element)``, ``token_to_element[i] == -1`` for a token that
        belongs to no element (special tokens). At WORD and SENTENCE a whitespace-only token
        belongs to the element it precedes (the one it follows at the end).
    """
    n = len(offsets)
    if granularity == Granularity.ALL_TOKENS:
        elements, spans, read = [], [], 0  # read: where the text read so far ends
        for i, (s, e) in enumerate(offsets):
            if not special[i] and e > s and _is_space_token(token_strings, i, text[s:e]) and text[s:e].strip():
                # A lone "▁" given the offsets of the character after it (a Metaspace quirk of XLM-R's
                # and T5's tokenizers, whose next token holds that character): it has no text of its own.
                e = s
            if special[i]:
                # An added token ([CLS], [SEP], <s>) has no text: it sits where it is read, so
                # a [SEP] comes after the words, not at 0 with [CLS].
                s, e = (s, e) if e > s else (read, read)
            elif e > s and text[s:e].strip():
                s, e = _trim(text, s, e)
            elif e == s and not _is_space_token(token_strings, i):
                # A byte piece that ends inside a character (a decoded output's "€" in three tokens)
                # has no text of its own: it shares the span of the token that completes the
                # character, as the prompt's byte pieces do.
                s, e = next(((a, b) for a, b in offsets[i + 1 :] if b > a and a == s), (s, e))
            elif e == s:
                # A lone "Ġ" whose offsets a trimming tokenizer emptied: the space it stands for is
                # the text just before ("a  b": the second space), or at the start just after, that
                # no other token reads.
                space = token_strings[i].translate(_SPACE_MARKS)
                if s - len(space) >= max(read, offsets[i - 1][1] if i else 0) and text[s - len(space) : s] == space:
                    s -= len(space)
                elif text[s : s + len(space)] == space and all(a >= s + len(space) for a, _ in offsets[i + 1 : i + 2]):
                    e += len(space)
            spans.append((s, e))
            read = max(read, e)
            name = text[s:e]  # a special token a chat template wrote: its text, as the template's words
            if not name:
                name = token_strings[i] if token_strings is not None else text[s:e]
                if not special[i] and _is_space_token(token_strings, i):  # a lone "Ġ" or "▁" with no text
                    name = name.translate(_SPACE_MARKS)
            elements.append(name)
        grown, moved = _take_dropped(text, offsets, hidden, spans, [not flag for flag in special])
        if grown != spans:
            # A special token placed where a token's text ended now sits where it ends.
            spans = [(moved.get(s, s),) * 2 if special[i] and s == e else (s, e) for i, (s, e) in enumerate(grown)]
            elements = [text[s:e] if not special[i] and e > s else elements[i] for i, (s, e) in enumerate(spans)]
        return elements, spans, list(range(n))

    trimmed = [
        (-1, -1)
        if special[i]
        # Most tokens have no surrounding whitespace: skip the trimming call for them.
        else (s, e)
        if s < e and not text[s].isspace() and not text[e - 1].isspace() and text[s] != _GAP and text[e - 1] != _GAP
        else _trim(text, s, e, _GAP)
        for i, (s, e) in enumerate(offsets)
    ]
    if granularity == Granularity.TOKEN:
        # Tokens whose spans overlap (byte pieces of one character) form one element.
        # Whitespace-only tokens stay elements here; WORD and SENTENCE drop them.
        mapping = [-1] * n
        spans: list[tuple[int, int]] = []
        for i, (s, e) in enumerate(trimmed):
            if e <= s and not special[i]:
                s, e = offsets[i]  # a whitespace token ("\n") is still a token of the text
            if e <= s:
                continue
            if spans and s < spans[-1][1]:
                spans[-1] = (spans[-1][0], max(e, spans[-1][1]))
            else:
                spans.append((s, e))
            mapping[i] = len(spans) - 1
        _attach_spaces(mapping, trimmed, special)  # a token with no text (a trimmed lone space)
        spans, _ = _take_dropped(text, offsets, hidden, spans)
        return [text[s:e] for s, e in spans], spans, mapping

    scan = text
    written = [(s, e) for (s, e), flag in zip(offsets, special) if flag and e > s] + list(hidden)
    if written:  # special tokens written in the text (a chat template's, an output's <eos>) are no words
        chars = list(text)
        for s, e in written:
            chars[s:e] = " " * (e - s)
        scan = "".join(chars)
    if granularity == Granularity.WORD:
        spans = word_spans(scan)
    else:  # a written special token ends a sentence (a chat message that ends without a period)
        spans, start = [], 0
        for s, e in sorted(written) + [(len(text), len(text))]:
            if s > start:
                spans += [(a + start, b + start) for a, b in sentence_spans(scan[start:s])]
            start = max(start, e)
    starts = [s for s, _ in spans]
    mapping = []
    reach = list(range(len(spans)))  # reach[j]: the last span a token starting in span j runs into
    overruns = False  # whether a token runs past the end of its span
    for s, e in trimmed:
        if e <= s:
            mapping.append(-1)
            continue
        j = bisect.bisect_right(starts, s) - 1
        if not (j >= 0 and s < spans[j][1]):
            j += 1  # the token starts in the space before a span
        if j >= len(spans) or spans[j][0] >= e:
            mapping.append(-1)
            continue
        if j + 1 < len(spans) and spans[j + 1][0] < e and not _WORD_CHAR.search(text, s, spans[j + 1][0]):
            # Punctuation that leads the next span's letters in one token (Llama 3's and Qwen's "。今",
            # ".value") goes with them: it ends the span before rather than merging the two.
            if s > spans[j][0] or j not in mapping:
                spans[j] = (spans[j][0], max(spans[j][0], s))  # emptied: no token covers it, it is dropped
                j += 1
                spans[j] = (s, spans[j][1])
                starts[j] = s
        mapping.append(j)
        if e > spans[j][1]:
            reach[j] = max(reach[j], bisect.bisect_left(starts, e) - 1)
            overruns = True
    # A token that runs over several spans ("[MASK]" typed in a text is one token, three regex
    # words) makes them one element: a token belongs to one element, and the element's span holds
    # every character of its tokens.
    if overruns:
        group, merged, end = [], [], -1
        for j, (s, e) in enumerate(spans):
            if j > end:
                merged.append((s, e))
            else:
                merged[-1] = (merged[-1][0], e)
            group.append(len(merged) - 1)
            end = max(end, reach[j])
        if len(merged) < len(spans):
            spans = merged
            mapping = [group[m] if m >= 0 else -1 for m in mapping]
    # A span no token covers (characters the normaliser dropped: "good\ufffd", a control character)
    # that touches a covered one joins it, before else after, as at TOKEN; the others are dropped.
    covered = set(mapping)
    covered.discard(-1)
    if len(covered) < len(spans):
        owner = {j: j for j in covered}
        for j in range(1, len(spans)):
            if j not in owner and j - 1 in owner and spans[j - 1][1] == spans[j][0]:
                owner[j] = owner[j - 1]
        for j in range(len(spans) - 2, -1, -1):
            if j not in owner and j + 1 in owner and spans[j][1] == spans[j + 1][0]:
                owner[j] = owner[j + 1]
        grown = list(spans)
        for j, o in owner.items():
            grown[o] = (min(grown[o][0], spans[j][0]), max(grown[o][1], spans[j][1]))
        spans = grown
    # Keep only elements some token covers (a word the tokenizer dropped cannot be scored).
    if len(covered) < len(spans):
        used = sorted(covered)
        renumber = {old: new for new, old in enumerate(used)}
        spans = [spans[j] for j in used]
        mapping = [renumber[m] if m >= 0 else -1 for m in mapping]
    _attach_spaces(mapping, trimmed, special)
    return [text[s:e] for s, e in spans], spans, mapping


def _blank(c: str) -> bool:
    return c.isspace() or c == _GAP


def _take_dropped(
    text: str,
    offsets: list[tuple[int, int]],
    hidden: Sequence[tuple[int, int]],
    spans: list[tuple[int, int]],
    extend: list[bool] | None = None,
) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """Token spans (TOKEN, ALL_TOKENS) that take in the characters no token covers, and the span ends
    that moved (old end -> new end).

    A normalising tokenizer can leave characters out of every token's offsets: NFKC composes
    "e" + U+0301 into one "é" whose offsets are the "e" alone, BERT's drops a soft hyphen. A run of
    them joins the token it touches (the one before, else the one after), as WORD's words take
    them in, so the elements still rebuild the text. ``extend``: which spans may grow (not special
    tokens'); all by default.
    """
    gaps, reach = [], 0
    for s, e in sorted([(s, e) for s, e in offsets if e > s] + list(hidden)) + [(len(text), len(text))]:
        if s > reach and text[reach:s].replace(_GAP, "").strip():
            gaps.append((reach, s))
        reach = max(reach, e)
    if not gaps:
        return spans, {}
    growing = [k for k, (s, e) in enumerate(spans) if e > s and (extend is None or extend[k])]
    ends, starts = {spans[k][1] for k in growing}, {spans[k][0] for k in growing}
    new_end, new_start = {}, {}
    for a, b in gaps:
        i = a
        while i < b and not _blank(text[i]):
            i += 1
        j = b
        while j > i and not _blank(text[j - 1]):
            j -= 1
        if i > a and a in ends:
            new_end[a] = i
        elif i > a and i == b and b in starts:  # no token before it: the one after takes the whole gap
            new_start[b] = a
        if j < b and j > a and b in starts:
            new_start[b] = j
    out = list(spans)
    for k in growing:
        s, e = spans[k]
        out[k] = (new_start.get(s, s), new_end.get(e, e))
    return out, new_end


def _attach_spaces(mapping: list[int], trimmed: list, special: list[bool]) -> None:
    """A token of whitespace only, or with no text at all, joins the element it precedes (else the
    one it follows), in place.

    Byte-level BPE writes a lone "Ġ" before some words (a double space; with trimmed offsets its
    span is empty), SentencePiece a lone "▁" before digits (Llama: " 2023" is "▁", "2", "0", "2",
    "3"): the space is part of that word's tokens, so it is masked with the word and its
    probability is part of the word's.
    """
    spaces = {i for i, (s, e) in enumerate(trimmed) if mapping[i] < 0 and not special[i] and e <= s}
    if not spaces:
        return
    # Never across a special token: a space that ends a pair's first text (before its "</s></s>")
    # stays with that text, one before a chat template's token stays with the text before it.
    following, nxt = [-1] * len(mapping), -1
    for i in range(len(mapping) - 1, -1, -1):
        following[i] = nxt
        if special[i]:
            nxt = -1
        elif mapping[i] >= 0:
            nxt = mapping[i]
    previous = -1
    for i in range(len(mapping)):
        if i in spaces:
            mapping[i] = following[i] if following[i] >= 0 else previous
        elif special[i]:
            previous = -1
        elif mapping[i] >= 0:
            previous = mapping[i]


def output_sums(mapping: list[int], n_elements: int, dtype: torch.dtype) -> torch.Tensor:
    """``(tokens, n_elements)``: 1 where a token belongs to an element (``mapping`` as in ``pool``, -1
    dropped), so that ``scores @ output_sums(...)`` adds up each element's tokens' columns."""
    sums = torch.zeros(len(mapping), n_elements, dtype=dtype)
    for t, e in enumerate(mapping):
        if e >= 0:
            sums[t, e] = 1.0
    return sums


def pool(
    scores: torch.Tensor, mapping: list[int], n_elements: int, strategy: GranularityAggregationStrategy
) -> torch.Tensor:
    """Pool token scores into element scores along the last dimension, ignoring NaN.

    Args:
        scores: ``(..., tokens)``.
        mapping: element index per token, -1 to drop the token.
        n_elements: number of elements.
        strategy: MEAN, MAX, MIN, SUM or SIGNED_MAX (the value of largest magnitude, sign kept).

    Returns:
        ``(..., n_elements)``; an element whose tokens are all NaN is NaN.
    """
    if n_elements == scores.shape[-1] and mapping == list(range(n_elements)):
        return scores.clone()  # one token per element: nothing to pool
    index = torch.as_tensor(mapping, dtype=torch.long, device=scores.device)
    keep = index >= 0
    x = scores[..., keep]  # (..., kept tokens)
    index = index[keep].expand_as(x)
    valid = ~torch.isnan(x)
    out_shape = (*x.shape[:-1], n_elements)
    count = torch.zeros(out_shape, dtype=x.dtype, device=x.device).scatter_add_(-1, index, valid.to(x.dtype))

    def reduce(values: torch.Tensor, how: str, fill: float) -> torch.Tensor:
        init = torch.full(out_shape, fill, dtype=x.dtype, device=x.device)
        return init.scatter_reduce(-1, index, torch.where(valid, values, torch.full_like(values, fill)), how)

    if strategy in (GranularityAggregationStrategy.SUM, GranularityAggregationStrategy.MEAN):
        total = reduce(x, "sum", 0.0)
        out = total if strategy == GranularityAggregationStrategy.SUM else total / count.clamp(min=1)
    elif strategy == GranularityAggregationStrategy.MAX:
        out = reduce(x, "amax", -float("inf"))
    elif strategy == GranularityAggregationStrategy.MIN:
        out = reduce(x, "amin", float("inf"))
    else:  # SIGNED_MAX
        hi = reduce(x, "amax", -float("inf"))
        lo = reduce(x, "amin", float("inf"))
        out = torch.where(hi.abs() >= lo.abs(), hi, lo)
    return torch.where(count > 0, out, torch.full_like(out, float("nan")))
