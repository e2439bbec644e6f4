"""From what the user passed to tokenized items: texts, chat messages, targets, generation."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import torch

from .errors import InterpTextError, user_stacklevel
from .model_guard import call_lock
from .tasks import CAUSAL_LM, CLASSIFICATION, SEQ2SEQ, Item, accepts, unwrapped


def _is_chat(x: Any) -> bool:
    """Chat messages: dicts, one of them at least with a "role" (a list of text pairs has none)."""
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(isinstance(m, dict) for m in x)
        and any("role" in m for m in x)
    )


class TextPair(str):
    """Two texts a classifier reads together (premise and hypothesis, question and passage), tokenized
    as the pair they are; as a string, the first text, a line break, the second."""

    def __new__(cls, first: str, second: str) -> TextPair:
        pair = super().__new__(cls, first + "\n" + second)
        pair.first, pair.second = first, second
        return pair

    def __reduce__(self):
        return TextPair, (self.first, self.second)

    @property
    def second_start(self) -> int:
        """Where the second text starts in the string."""
        return len(self.first) + 1


PAIR_KEYS = ("text", "text_pair")


def _text_pair(x: dict, i: int) -> TextPair:
    """``{"text": a, "text_pair": b}`` (the keys Hugging Face's pipelines take) as a ``TextPair``."""
    if set(x) != set(PAIR_KEYS):
        extra, missing = sorted(set(x) - set(PAIR_KEYS), key=str), sorted(set(PAIR_KEYS) - set(x))
        what = "; ".join(
            [f"{k!r} is not read" for k in extra] + [f"{k!r} is missing" for k in missing]  # e.g. a data set's "label"
        )
        raise InterpTextError(
            f"text {i} is a dict with keys {sorted(x, key=str)} ({what}); a text pair is written "
            '{"text": "...", "text_pair": "..."} (from a data set row: {k: row[k] for k in ("text", "text_pair")}), '
            'and a chat conversation is a list of {"role": ..., "content": ...}.'
        )
    for key in PAIR_KEYS:
        if not isinstance(x[key], str) or not x[key].strip():
            raise InterpTextError(f'the "{key}" of text {i} must be a non-empty string; got {x[key]!r}.')
    return TextPair(x["text"], x["text_pair"])


def normalise_texts(model_inputs: Any) -> tuple[list[Any], bool]:
    """Return ``(texts, single)``: a list of strings, text pairs or chat conversations, and whether one was given."""
    if isinstance(model_inputs, (str, dict)) or _is_chat(model_inputs):
        texts, single = [model_inputs], True
    elif isinstance(model_inputs, (list, tuple)):
        texts, single = list(model_inputs), False
        if not texts:
            raise InterpTextError("explain() got an empty list; pass a string or a non-empty list of strings.")
    else:
        raise InterpTextError(
            f"explain() takes a string, a text pair {{'text': ..., 'text_pair': ...}}, chat messages, or a list of "
            f"those; got {type(model_inputs).__name__}."
        )
    for i, t in enumerate(texts):
        if _is_chat(t):
            for k, message in enumerate(t):
                if "role" not in message:
                    raise InterpTextError(
                        f'message {k} of conversation {i} has no "role": a chat message is '
                        '{"role": ..., "content": "..."}.'
                    )
                if not isinstance(message.get("content"), (str, list)):
                    raise InterpTextError(
                        f"message {k} of conversation {i} has no text: a chat message is "
                        '{"role": ..., "content": "..."}.'
                    )
                if isinstance(message["content"], str):
                    _check_unicode(message["content"], i, f"message {k} of conversation {i}")
            continue
        if isinstance(t, dict):
            texts[i] = _text_pair(t, i)
        elif isinstance(t, (list, tuple)) and t and all(isinstance(m, dict) for m in t):  # no message has a role
            raise InterpTextError(
                f'text {i} is a list of dicts, but none has a "role": a chat message is '
                '{"role": ..., "content": "..."}.'
            )
        elif isinstance(t, (list, tuple)):  # not chat messages (see _is_chat)
            raise InterpTextError(
                f"text {i} is a {type(t).__name__} but not chat messages; a text is a string, a text pair "
                "{'text': ..., 'text_pair': ...}, or chat messages [{'role': ..., 'content': ...}, ...]."
            )
        elif not isinstance(t, str):
            raise InterpTextError(f"text {i} is a {type(t).__name__}, not a string; pass str (or a list of str).")
        elif not t.replace("\u200b", "").strip():  # a zero-width space is a space (see granularity)
            raise InterpTextError(f"text {i} is empty; pass a text with at least one non-space character.")
        _check_unicode(texts[i], i)  # a text, or a pair's two texts joined
    return texts, single


def _check_unicode(text: str, index: int, what: str | None = None) -> None:
    """Refuse a lone surrogate (half of a UTF-16 pair, as a bad decode leaves): no tokenizer reads it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InterpTextError(
            f"{what or f'text {index}'} holds {text[err.start]!r} at character {err.start}, a lone surrogate that is not valid "
            "Unicode; decode the text's source correctly (or drop that character)."
        ) from None


class Templated(str):
    """A text a chat template wrote: it holds its own special tokens, so none are added.

    ``contents``: the spans of the messages' contents in it, in order; the rest (role names, the
    template's separators, a system prompt it adds by itself) is the template's, which is read but
    not explained. None: every token that is not a special token is explained (a template that
    changed a content, so it could not be found).
    """

    contents: tuple[tuple[int, int], ...] | None = None

    def __new__(cls, text: str, contents=None) -> Templated:
        templated = super().__new__(cls, text)
        templated.contents = None if contents is None else tuple((int(a), int(b)) for a, b in contents)
        return templated

    def __reduce__(self):
        return Templated, (str(self), self.contents)

    def template_tokens(self, offsets: list[tuple[int, int]]) -> list[bool]:
        """Per token: whether it reads only the template's text (no message content)."""
        if self.contents is None:
            return [False] * len(offsets)
        return [not any(s < b and a < e for a, b in self.contents) for s, e in offsets]


def _marked(messages: list[dict]) -> tuple[list[dict], list[str]]:
    """The messages with each text content (or text part) swapped for a marker ``⟦k⟧``, and the
    contents in marker order."""
    marked, contents = [], []

    def mark(text: Any) -> Any:
        if not isinstance(text, str) or not text.strip():
            return text
        contents.append(text)
        return f"\u27e6{len(contents) - 1}\u27e7"

    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {**p, "text": mark(p.get("text"))} if isinstance(p, dict) and "text" in p else p for p in content
            ]
        else:
            content = mark(content)
        marked.append({**message, "content": content})
    return marked, contents


def content_spans(text: str, marked_text: str, contents: list[str]) -> tuple[tuple[int, int], ...] | None:
    """Where each content sits in ``text``, the template's output, read off ``marked_text``, its output
    for the same messages with the contents swapped for markers (``_marked``): what lies between
    the markers is the template's own (a content is never searched for, so one that repeats the
    template's words, "user" or a default system prompt's, is not found there). A content may come
    stripped (a template that trims it). None if the two outputs do not line up so (a template that
    changes a content otherwise, or writes a marker otherwise than it was given)."""
    pieces = re.split("\u27e6(\\d+)\u27e7", marked_text)  # template, index, template, index, ..., template
    if [int(k) for k in pieces[1::2]] != list(range(len(contents))):
        return None
    spans, at = [], 0
    for k, own in enumerate(pieces[0::2]):
        if not text.startswith(own, at):
            return None
        at += len(own)
        if k == len(contents):
            break
        form = next((f for f in (contents[k], contents[k].strip()) if text.startswith(f, at)), None)
        if form is None:
            return None
        spans.append((at, at + len(form)))
        at += len(form)
    return tuple(spans) if at == len(text) else None


def _render(tokenizer, messages: list[dict]) -> str:
    if messages and messages[-1].get("role") == "assistant":
        # A conversation that ends with the assistant's words is a start to continue (a prefill), as
        # transformers' text-generation pipeline reads it, not a finished turn to answer.
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False, continue_final_message=True
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def apply_chat_template(tokenizer, messages: list[dict]) -> Templated:
    if getattr(tokenizer, "chat_template", None) is None:
        raise InterpTextError(
            "a chat-message prompt needs a tokenizer with a chat template (tokenizer.chat_template is None); "
            "pass the prompt as a plain string instead."
        )
    text = _render(tokenizer, messages)
    for k, message in enumerate(messages):
        parts = message.get("content")
        if isinstance(parts, list) and str(parts) in text:
            raise InterpTextError(
                f"the chat template does not read the content of message {k} as a list of parts (it wrote the list "
                "itself into the prompt); pass that content as a string."
            )
    marked, contents = _marked(messages)
    try:
        spans = content_spans(text, _render(tokenizer, marked), contents)
    except Exception:  # a template that refuses the markers (it checks a content's form): contents not found
        spans = None
    return Templated(text, spans)


class Limit(int):
    """The most tokens a text may have. ``model``: what the model's positions take, where the
    tokenizer's ``model_max_length`` is lower and so is the limit; else None."""

    model: int | None = None

    def who(self) -> str:
        return f"the {'model' if self.model is None else 'tokenizer'} accepts at most"

    def note(self) -> str:
        """Where the tokenizer sets it, what to raise."""
        if self.model is None:
            return ""
        return (
            f" (its model_max_length; the model's positions take {self.model}: raise tokenizer.model_max_length "
            "to explain longer texts)"
        )

    def words(self) -> str:
        """Who sets the limit, for a message: "the model accepts at most 512"."""
        return f"{self.who()} {int(self)}{self.note()}"


def max_input_length(model, tokenizer) -> Limit | None:
    config = model.config
    limits = [getattr(config, k, None) for k in ("max_position_embeddings", "n_positions", "n_ctx")]
    limits = [v for v in limits if isinstance(v, int) and v > 0]
    offset = _position_offset(model)
    if offset and isinstance(getattr(config, "max_position_embeddings", None), int):
        limits.append(config.max_position_embeddings - offset)
    own = min(limits) if limits else None
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < 1_000_000 and (own is None or tok_limit < own):
        limit = Limit(tok_limit)
        limit.model = own
        return limit
    return None if own is None else Limit(own)


def _position_offset(model) -> int:
    """Positions a model's table never reads: RoBERTa's (and XLM-R's, CamemBERT's...) count from its
    pad id + 1, so 514 positions take 512 tokens."""
    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding):
            return module.padding_idx + 1 if module.padding_idx is not None else 0
    return 0


def _mid_word(text: str, cut: int) -> bool:
    return 0 < cut < len(text) and text[cut - 1].isalnum() and text[cut].isalnum()


def _best_cut(text: str, cuts: list[int], before: bool) -> int:
    """Of ``cuts`` (token boundaries in ``text``, nearest the limit first), the first at a space (the
    character ``before`` it, or after it), else the first that splits no word, else the first."""
    at = -1 if before else 0
    spaced = next((c for c in cuts if 0 < c < len(text) and text[c + at].isspace()), None)
    if spaced is not None:
        return spaced
    # No space (text written without them): a kept start begins at a word, not on the last one's full stop.
    whole = [c for c in cuts if not _mid_word(text, c)]
    return next((c for c in whole if not before or text[c].isalnum()), whole[0] if whole else cuts[0])


def truncated(tokenizer, text: str, limit: int, keep_end: bool) -> str | None:
    """``text`` cut to the words that fit in ``limit`` tokens, special tokens included: its first
    ones, or its last (``keep_end``, a prompt); None when it fits as it is, or when the special
    tokens alone fill ``limit``. The cut falls between words (between tokens where no word
    boundary is within 16 tokens).
    """
    part = text
    for _ in range(8):  # a cut can tokenize into a token more; a few tries always fit
        ids, offsets, special, _ = tokenize(tokenizer, part)
        if len(ids) <= limit:
            return part if part is not text else None
        content = [offsets[k] for k, flag in enumerate(special) if not flag]
        room = limit - (len(ids) - len(content))
        if room < 1:  # the special tokens alone fill it: the length check says so
            return None
        # The cut moves by up to 16 tokens into the part kept: to a space if there is one, else to
        # where no word is split (languages written without spaces), else it stays.
        if keep_end:
            part = part[_best_cut(part, [a for a, _ in content[-room:][:16]], before=True) :]
        else:
            part = part[: _best_cut(part, [b for _, b in reversed(content[:room][-16:])], before=False)]
        if not part.strip():
            break
    raise InterpTextError(f"cannot cut a text to {limit} tokens at a word boundary; shorten it yourself.")


def tokenize(tokenizer, text: str, add_special_tokens: bool = True) -> tuple[list[int], list, list[bool], list[str]]:
    """Token ids, character offsets, special-token flags and token strings of one text."""
    return tokenize_all(tokenizer, [text], add_special_tokens)[0]


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise InterpTextError(
            f"{type(tokenizer).__name__} is a slow tokenizer, which gives no character offsets; interp_text needs a "
            "fast one (backed by the tokenizers library, saved as tokenizer.json). AutoTokenizer.from_pretrained "
            "loads it where the model ships one; some models (opus-mt's MarianTokenizer) have none."
        )


def _backend_encode(backend, tokenizer, inputs: list, add_special_tokens: bool) -> list:
    """The backend's own batch call: what tokenizer(...) returns, without its per-call conversions
    (a third of the time) and without its side effect: it switches off a truncation or padding the
    user's tokenizer was set to, for good. Here they are off for this call only."""
    with call_lock(tokenizer):  # its backend's settings are changed for the call: one thread at a time
        truncation, padding = backend.truncation, backend.padding
        split = backend.encode_special_tokens  # the tokenizer's split_special_tokens, for this call
        try:
            if truncation is not None:
                backend.no_truncation()
            if padding is not None:
                backend.no_padding()
            backend.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
            return backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            backend.encode_special_tokens = split
            if truncation is not None:
                backend.enable_truncation(**truncation)
            if padding is not None:
                backend.enable_padding(**padding)


def _encode(tokenizer, texts: list[str], add_special_tokens: bool, pairs: list[TextPair] | None = None) -> list:
    """Per text (or per pair, when ``pairs`` are given): token ids, offsets, special-token flags, token
    strings, each token's sequence (0, 1, or None for an added special token) and token type id."""
    _check_fast(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        inputs = texts if pairs is None else [(p.first, p.second) for p in pairs]
        encodings = _backend_encode(backend, tokenizer, inputs, add_special_tokens)
        if pairs is None:  # each attribute read builds a list: only the ones a text needs
            return [(e.ids, e.offsets, e.special_tokens_mask, e.tokens, None, None) for e in encodings]
        return [(e.ids, e.offsets, e.special_tokens_mask, e.tokens, e.sequence_ids, e.type_ids) for e in encodings]
    firsts, seconds = (texts, None) if pairs is None else ([p.first for p in pairs], [p.second for p in pairs])
    enc = tokenizer(
        firsts,
        seconds,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
        truncation=False,
        verbose=False,
    )
    return [
        (ids, offsets, special, tokenizer.convert_ids_to_tokens(list(ids)), enc.sequence_ids(k), types)
        for k, (ids, offsets, special, types) in enumerate(
            zip(enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], enc["token_type_ids"])
        )
    ]


def tokenize_all(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[tuple]:
    """``tokenize`` of several texts, in one call of the (fast, batched) tokenizer."""
    return [
        (list(ids), [tuple(o) for o in offsets], [bool(v) for v in special], list(strings))
        for ids, offsets, special, strings, _, _ in _encode(tokenizer, texts, add_special_tokens)
    ]


def tokenize_pairs(tokenizer, pairs: list[TextPair]) -> list[tuple]:
    """``tokenize_all`` of text pairs, tokenized as pairs (``tokenizer(first, second)``), with each
    token's offsets into the pair's string and its token type id."""
    out = []
    for pair, (ids, offsets, special, strings, sequence, types) in zip(pairs, _encode(tokenizer, [], True, pairs)):
        shift = pair.second_start  # the second text's offsets count from its own start
        offsets = [(a + shift, b + shift) if q == 1 else (a, b) for (a, b), q in zip(offsets, sequence)]
        out.append((list(ids), offsets, [bool(v) for v in special], list(strings), list(types)))
    return out


# --------------------------------------------------------------------------- targets
def as_plain(targets: Any) -> Any:
    """Tensors and numpy arrays or scalars (``logits.argmax()``) as Python ints and lists."""
    if isinstance(targets, (torch.Tensor, np.ndarray, np.generic)):
        return targets.tolist()
    if isinstance(targets, (list, tuple)):
        return [as_plain(t) for t in targets]
    return targets


def classification_targets(targets: Any, n_texts: int, single: bool, n_classes: int, label2id: dict) -> list:
    """One entry per text: None (the predicted class) or a list of class indices."""

    def one(t: Any) -> int:
        if isinstance(t, str):
            if t in label2id:
                return label2id[t]
            folded = [name for name in label2id if name.casefold() == t.casefold()]  # "Positive" for "positive"
            if len(folded) == 1:
                return label2id[folded[0]]
            raise InterpTextError(f"target {t!r} is not a class name; the classes are {list(label2id)}.")
        if isinstance(t, bool) or not isinstance(t, int):
            raise InterpTextError(f"target {t!r} must be a class index (int) or class name (str).")
        if not 0 <= t < n_classes:
            raise InterpTextError(
                f"target {t} is out of range: the model has {n_classes} classes (0..{n_classes - 1})."
            )
        return t

    def many(t: Any) -> list[int] | None:
        if t is None:
            return None
        if isinstance(t, str) and t == "all":
            return list(range(n_classes))
        if isinstance(t, (list, tuple)):
            if not t:
                raise InterpTextError("a text's targets are an empty list; pass at least one class.")
            return [one(x) for x in t]
        return [one(t)]

    targets = as_plain(targets)
    if targets is None or isinstance(targets, (int, str)):
        return [many(targets)] * n_texts
    if isinstance(targets, (list, tuple)):
        if single:
            # [[0, 1]], ["all"] or [None] for one text: its entry, as a list of texts would take it.
            nested = len(targets) == 1 and (isinstance(targets[0], (list, tuple)) or targets[0] in (None, "all"))
            return [many(targets[0] if nested else list(targets))]
        if len(targets) != n_texts:
            several = f" ({list(targets)!r} as classes of the one text: [{list(targets)!r}])" if n_texts == 1 else ""
            raise InterpTextError(
                f"got {len(targets)} targets for {n_texts} texts; pass one target (or list of targets) per "
                f"text{several}."
            )
        return [many(t) for t in targets]
    raise InterpTextError(f"targets={targets!r} is not understood; pass an int, a class name, a list, or None.")


def model_class_targets(model, targets: Any, n_texts: int, single: bool) -> list:
    """``classification_targets`` for ``model``'s classes: its ``num_labels``, named by its ``id2label``."""
    label2id = {str(v): int(k) for k, v in (model.config.id2label or {}).items()}
    return classification_targets(targets, n_texts, single, int(model.config.num_labels), label2id)


def generation_targets(targets: Any, n_texts: int, single: bool) -> list:
    """One entry per prompt: None (generate), a string to force, or a list of token ids."""
    targets = as_plain(targets)
    if targets is None or isinstance(targets, str):
        _not_all(targets, None)
        return [targets] * n_texts
    if isinstance(targets, int) and not isinstance(targets, bool):  # one token, for every prompt
        return [[targets]] * n_texts
    if isinstance(targets, (list, tuple)):
        if single and all(isinstance(t, int) and not isinstance(t, bool) for t in targets):
            return [list(targets)]
        if single and len(targets) == 1:  # [target] for the one prompt: checked as an entry of a list is
            return [_one_generation_target(targets[0], 0)]
        if len(targets) != n_texts:
            raise InterpTextError(
                f"got {len(targets)} targets for {n_texts} prompts; pass one target (string, token ids or None) per prompt."
            )
        return [_one_generation_target(t, i) for i, t in enumerate(targets)]
    raise InterpTextError(f"targets={targets!r} is not understood; pass a string, token ids, or None to generate.")


def _not_all(target: Any, index: int | None) -> None:
    """``"all"`` (every class, to a classifier) would be forced as the output text "all"."""
    if isinstance(target, str) and target.strip() == "all" and not target.startswith(" "):  # as classifiers read it
        where = "" if index is None else f" (prompt {index})"
        raise InterpTextError(
            f"targets={target!r}{where}: 'all' means every class of a classifier, but this model generates; leave "
            "targets=None to explain what it generates, or force a text. To force the word itself, pass ' all' (with "
            "the space before it) or its token ids."
        )


def _one_generation_target(target: Any, index: int) -> Any:
    """One prompt's target: None, a string, or token ids (one id is a one-token target)."""
    if isinstance(target, int) and not isinstance(target, bool):
        return [target]
    if target is None or isinstance(target, str):
        _not_all(target, index)
        return target
    if isinstance(target, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in target):
        return list(target)
    raise InterpTextError(
        f"the target of prompt {index} ({target!r}) is not understood; pass a string, token ids, or None to generate."
    )


def target_token_ids(tokenizer, targets: list) -> list[list[int] | None]:
    """Token ids of each prompt's target (None: to generate); strings are tokenized in one call."""
    strings = [t for t in targets if isinstance(t, str)]
    tokenized = iter([e[0] for e in tokenize_all(tokenizer, strings, add_special_tokens=False)] if strings else [])
    out = []
    for index, target in enumerate(targets):
        if target is None:
            out.append(None)
            continue
        ids = next(tokenized) if isinstance(target, str) else [int(t) for t in target]
        if not ids:
            raise InterpTextError(
                f"the target of prompt {index} ({target!r}) tokenizes to nothing; pass a non-empty target."
            )
        out.append(ids)
    return out


def decoded_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]], list[bool]]:
    """Decode output ids to text, with each token's character span in that text."""
    special_ids = special_token_ids(tokenizer)

    def decode_one(k: int) -> str:
        return tokenizer.decode(ids[k : k + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    spans, text = [], ""
    stable = 0  # characters of the text no later token changes
    pending: list[int] = []  # tokens whose bytes end in a character not complete yet
    for k in range(len(ids)):
        # Decoding prefixes keeps merges (spaces, multi-byte characters) as the tokenizer does them.
        nxt = tokenizer.decode(ids[: k + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if not nxt.startswith(text[:stable]):
            nxt = text + decode_one(k)
        # A token that ends inside a multi-byte character decodes to "\ufffd" (byte-level BPE: one
        # for the run; byte fallback: one per byte): it covers no character of the final text yet,
        # and joins the token that completes the character.
        if pending and nxt.startswith(text) and not _continues(tokenizer, ids[k], decode_one(k)):
            # This token does not go on with it (a special token; a new character): the bytes stay
            # a "\ufffd" of the text, which is theirs.
            for j in pending:
                spans[j] = (spans[j][0], len(text))
            stable, pending = len(text), []
        start = stable
        # The last token covers what is left.
        end = len(nxt) if k == len(ids) - 1 else max(start, len(nxt.rstrip("\ufffd")))
        pending = pending + [k] if end < len(nxt) else []
        spans.append((start, end))
        stable, text = end, nxt
    return text, spans, [i in special_ids for i in ids]


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2's table), to the byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in kept:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_OF = _byte_level_alphabet()
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a byte-fallback token (SentencePiece, Llama)


def _continues(tokenizer, token_id: int, alone: str) -> bool:
    """Whether a token can go on with a character whose bytes are not complete: it starts with a UTF-8
    continuation byte (10xxxxxx). Its bytes come from its string (a byte-fallback "<0x98>", or a
    byte-level BPE piece); for others, whether it decodes alone to a replacement character."""
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str) and piece:
        match = _BYTE_TOKEN.fullmatch(piece)
        first = int(match.group(1), 16) if match else _BYTE_OF.get(piece[0])
        if first is not None and alone.startswith("\ufffd"):  # a byte token: its first byte says
            return first & 0xC0 == 0x80
    return alone.startswith("\ufffd")


def eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        v = getattr(src, "eos_token_id", None)
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    return ids


def forced_first_token(model, task: str, ids: list[int]) -> list[int]:
    """A seq2seq output given as text, as generate() writes it: after the first token the generation
    config forces (``forced_bos_token_id``: mBART's, NLLB's language code), when there is one."""
    first = getattr(getattr(model, "generation_config", None), "forced_bos_token_id", None)
    if task == SEQ2SEQ and isinstance(first, int) and ids and ids[0] != first:
        return [first, *ids]
    return ids


def special_token_ids(tokenizer) -> set[int]:
    """The ids of every special token: the named ones (bos, eos, ...) and the added tokens flagged
    special, which a tokenizer may not name (Llama 3's <|start_header_id|>, <|eot_id|>)."""
    ids = set(tokenizer.all_special_ids)
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(int(i) for i, token in added.items() if getattr(token, "special", False))
    # The unknown token stands for text (a character the vocabulary lacks), as the tokenizer's own
    # special-tokens mask says: an element, unless it is also a control token (GPT-2's <|endoftext|>).
    unk = getattr(tokenizer, "unk_token_id", None)
    named = (getattr(tokenizer, f"{n}_token_id", None) for n in ("bos", "eos", "pad", "cls", "sep", "mask"))
    if isinstance(unk, int) and unk not in set(named):
        ids.discard(unk)
    return ids


def strip_generated(ids: list[int], stop: set[int], pad: int | None) -> list[int]:
    """Cut generated ids at the first end-of-sequence token, and drop the padding after an output
    that ended before the rest of its batch (generate() fills the row with ``pad``, the pad token it
    was given). A pad token inside an output was generated there: it stays, as later tokens read it."""
    out = []
    for t in ids:
        if t in stop:
            break
        out.append(t)
    while pad is not None and pad not in stop and out and out[-1] == pad:
        out.pop()
    return out


def build_items(model, tokenizer, task: str, texts: list[Any], targets: list, max_length: int | None) -> list[Item]:
    """Tokenize every text; for generation with forced targets, append/attach the output ids."""
    items, rows = [], embedding_rows(model)
    pairs = [i for i, raw in enumerate(texts) if isinstance(raw, TextPair)]
    if pairs and task != CLASSIFICATION:
        raise InterpTextError(
            f"text {pairs[0]} is a text pair; pairs are read by classifiers (NLI, cross-encoders), and this model "
            "generates: pass the prompt as one string."
        )
    plain = [i for i, raw in enumerate(texts) if not _is_chat(raw) and not isinstance(raw, (Templated, TextPair))]
    tokens = dict(zip(plain, tokenize_all(tokenizer, [texts[i] for i in plain]))) if plain else {}
    types = {}  # text index -> token type ids, for pairs read with them
    if pairs:
        # Token types go to the model as tokenizer(first, second) would give them to it.
        # Asked of the model a wrapper (PEFT, torch.compile) runs: the wrapper passes them on by **kwargs.
        with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ()) and accepts(
            unwrapped(model), "token_type_ids"
        )
        for i, (*encoded, type_ids) in zip(pairs, tokenize_pairs(tokenizer, [texts[i] for i in pairs])):
            tokens[i] = encoded
            if with_types and any(type_ids):
                types[i] = tuple(type_ids)
    special_ids = None  # read once, for the first chat text
    bos = getattr(tokenizer, "bos_token_id", None)
    for i, raw in enumerate(texts):
        if i in tokens:
            text, (ids, offsets, special, strings) = raw, tokens[i]
        else:  # a chat template already holds its special tokens
            text = raw if isinstance(raw, Templated) else apply_chat_template(tokenizer, raw)
            ids, offsets, special, strings = tokenize(tokenizer, text, add_special_tokens=False)
            # The template's special tokens are in the text, where the tokenizer does not flag them; the
            # template's own words (role names, separators) are read as special tokens are: not explained.
            special_ids = special_token_ids(tokenizer) if special_ids is None else special_ids
            template = text.template_tokens(offsets)
            special = [flag or t in special_ids or own for flag, t, own in zip(special, ids, template)]
        if not ids:
            raise InterpTextError(f"text {i} tokenizes to nothing; pass a text the tokenizer can read.")
        if i in tokens and len(ids) > 1 and bos is not None and ids[0] == ids[1] == bos and special[0]:
            warnings.warn(
                f"text {i} starts with {tokenizer.bos_token!r}, and the tokenizer adds another: the model reads it "
                "twice. A text a chat template wrote: pass the messages instead ([{'role': 'user', 'content': ...}]), "
                "or drop the first token from the text.",
                stacklevel=user_stacklevel(),
            )
        check_ids(rows, tokenizer, ids, f"text {i}")
        item = Item(i, text, torch.tensor(ids), offsets, special, strings, token_types=types.get(i))
        if task == CLASSIFICATION:
            item.classes = targets[i] or []
        items.append(item)
    return items


def is_plain(text: Any) -> bool:
    """A text given as a string: not a pair, not a conversation, not a chat template's output."""
    return isinstance(text, str) and not isinstance(text, (Templated, TextPair))


def set_outputs(
    model,
    tokenizer,
    task: str,
    item: Item,
    output_ids: list[int],
    max_length: Limit | None,
    rows: int | None = None,
    hint: str = "",
) -> None:
    """The output ids of ``item`` (forced or generated); ``rows``: ``embedding_rows(model)``, if known;
    ``hint``: as for ``check_length``."""
    if not output_ids:
        raise InterpTextError(
            f"the output for prompt {item.index} is empty (the model stopped at once); pass targets= or "
            "generation options such as min_new_tokens=1."
        )
    check_ids(
        embedding_rows(model) if rows is None else rows, tokenizer, output_ids, f"the output of prompt {item.index}"
    )
    item.output_ids = list(output_ids)
    item.output_text, item.output_offsets, item.output_special = decoded_offsets(tokenizer, item.output_ids)
    if task == CAUSAL_LM:
        item.input_ids = torch.cat([item.input_ids[: item.n_prompt], torch.tensor(item.output_ids)])
    # Cutting the prompt helps only where the output leaves it a token.
    check_length(item, task, max_length, hint if max_length is not None and len(output_ids) < max_length else "")


def embedding_rows(model) -> int:
    return model.get_input_embeddings().weight.shape[0]


def check_ids(rows: int, tokenizer, ids: list[int], what: str) -> None:
    """Every id must have one of the ``rows`` of the model's input embeddings (an out-of-range id is an
    IndexError deep in the forward, or a wrong row on some devices)."""
    if min(ids) >= 0 and max(ids) < rows:
        return
    bad = next(t for t in ids if not 0 <= t < rows)
    if bad < 0:
        raise InterpTextError(f"{what} has token id {bad}; token ids are >= 0.")
    name = tokenizer.convert_ids_to_tokens(bad) if bad < len(tokenizer) else None
    raise InterpTextError(
        f"{what} has token id {bad}{'' if name is None else f' ({name!r})'} but the model's input embeddings have "
        f"{rows} rows (ids 0..{rows - 1}). A token added to the tokenizer needs "
        "model.resize_token_embeddings(len(tokenizer)); otherwise use the tokenizer the model was trained with."
    )


def check_length(item: Item, task: str, max_length: Limit | None, hint: str = "") -> None:
    """Refuse a text over ``max_length``; ``hint`` ends the message's fix (what ``truncation=True``
    would do, or why it did not)."""
    if max_length is None:
        return
    n = item.input_ids.shape[0]
    if n > max_length:
        what = " (prompt + output)" if task == CAUSAL_LM and item.output_ids else ""
        if what:
            fix = "shorten the prompt or the " + (
                "forced output (the target)" if item.forced else "output (max_new_tokens)"
            )
        else:
            fix = "shorten the text" if task == CLASSIFICATION else "shorten the prompt"
        raise InterpTextError(f"text {item.index} has {n} tokens{what} but {max_length.words()}; {fix}{hint}.")
    if task == SEQ2SEQ and len(item.output_ids) > max_length:
        raise InterpTextError(
            f"the output of text {item.index} has {len(item.output_ids)} tokens; at most {max_length}."
        )
