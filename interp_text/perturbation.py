"""Perturbation methods: mask whole elements (tokens, words, sentences) and watch the score move.

Notation: the text has n perturbable elements (the granularity's elements, special tokens never
included). A mask z ∈ {0, 1}ⁿ keeps element i when z_i = 1; x_z is the input whose masked elements
have every token's embedding replaced by the replacement embedding r (the mask token's, else the
pad token's, else zeros). f is the target score under the inference mode, teacher-forced for
generation. f(x) = f(x_1) is the unperturbed score, f(x_0) the score with every element masked.

Masking happens on the input embeddings, so the user's tokenizer and model are never changed
(no added tokens, no resized embedding matrix). Every masked input of every text goes through
one batched, gradient-free forward per ``batch_size`` rows of one length; an input two texts
share (a template whose differing words are masked) runs once.

For generation only the prompt is perturbed: output tokens are scored teacher-forced, and for
causal LMs the output columns of ``Explanation.scores`` are NaN (a perturbation method explains
the prompt, not the earlier outputs).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .engine import Engine, Progress, Settings, _group, check_finite, forward_only
from .errors import InterpTextError, user_stacklevel
from .explanation import Explanation
from .granularity import group_tokens, output_sums, pool
from .inputs import embedding_rows
from .loading import resolve
from .methods import check_explain_options, check_explainer_options, check_model, shared_options
from .options import (
    Granularity,
    GranularityAggregationStrategy,
    InferenceModes,
    Remade,
    as_int,
    named,
    non_negative_float,
    positive_int,
    seed_int,
)
from .tasks import (
    CAUSAL_LM,
    CLASSIFICATION,
    HeadNotReached,
    Item,
    Table,
    _plain_linear,
    accepts,
    apply_mode,
    class_log_norm,
    embed,
    head_targets,
    send,
    table_rows,
    target_logits,
    text_table,
    unwrapped,
)

REPLACEMENTS = ("mask", "pad", "unk", "zeros")


# --------------------------------------------------------------------------- masking
# A text that needs more masked inputs than this gets a warning (none of the defaults does below
# ~120 elements; Sobol's N (n + 2) passes it at that many words), as does one whose masked inputs
# hold more token positions than LARGE_POSITIONS (Occlusion of a 1500-token text).
LARGE_ROWS = 4096
LARGE_POSITIONS = 4096 * 512


def resolve_replacement(replacement: Any, model, tokenizer) -> int | None:
    """The token id whose embedding stands in for a masked token, or None for zeros.

    ``None`` (the default) picks the mask token if the tokenizer has one, else the pad token,
    else zeros; a special token the model has no embedding for (added to the tokenizer without
    resizing the model) is passed over.
    """
    n_vocab = model.get_input_embeddings().weight.shape[0]
    if replacement is None:
        for name in ("mask", "pad"):
            token_id = getattr(tokenizer, f"{name}_token_id", None)
            if token_id is not None and 0 <= token_id < n_vocab:
                return int(token_id)
        return None
    if isinstance(replacement, str) and replacement.isidentifier():
        if replacement == "zeros":
            return None
        # Any special token the tokenizer names: "mask", "pad", "unk", "eos", "bos", ...
        token_id = getattr(tokenizer, f"{replacement}_token_id", None)
        if not isinstance(token_id, int):
            word = tokenizer.get_vocab().get(replacement) if hasattr(tokenizer, "get_vocab") else None
            hint = (
                f" ({replacement!r} is a token of the vocabulary, not a special token's name: to mask with it, pass "
                f"its id, replacement={word})"
                if isinstance(word, int)
                else ""
            )
            raise InterpTextError(
                f"replacement={replacement!r}: the tokenizer has no {replacement} token{hint}; use one of "
                f"{REPLACEMENTS}, another special token's name, a token id, or None (mask token, else pad "
                "token, else zeros)."
            )
        if not 0 <= token_id < n_vocab:
            raise InterpTextError(
                f"replacement={replacement!r}: the {replacement} token's id {token_id} has no embedding in this "
                f"model (0..{n_vocab - 1}; the tokenizer grew without model.resize_token_embeddings); use "
                "'zeros', another token, or None."
            )
        return int(token_id)
    if isinstance(replacement, str) and replacement in getattr(tokenizer, "all_special_tokens", ()):
        # A special token as the tokenizer writes it ("[CLS]", "<pad>"): its id.
        return resolve_replacement(int(tokenizer.convert_tokens_to_ids(replacement)), model, tokenizer)
    token_id = as_int(replacement)
    if token_id is not None:
        if not 0 <= token_id < n_vocab:
            raise InterpTextError(f"replacement={replacement!r} is not a token id of this model (0..{n_vocab - 1}).")
        return token_id
    raise InterpTextError(
        f"replacement={replacement!r} is not valid; use one of {REPLACEMENTS} (or another special token's name, "
        "'cls', 'eos'...), a special token as the tokenizer writes it ('[MASK]', '<pad>'), a token id, or None (mask "
        "token, else pad token, else zeros)."
    )


@dataclass
class Players:
    """The elements of one text that a perturbation can mask."""

    elements: list[str]  # every element of the prompt (the explanation's columns)
    spans: list[tuple[int, int]]
    columns: list[int]  # the element (column) of each player; special tokens are never players
    token_player: list[int]  # the player of each model-input token, -1 if never masked

    @property
    def n(self) -> int:
        return len(self.columns)


def element_players(it: Item, granularity: Granularity, outputs: bool = False) -> Players:
    """Which tokens move together when an element is masked: every token of a word, of a sentence.

    A causal LM reads prompt + output; its output elements are players too with ``outputs``
    (``mask_outputs=True``), all but the last (which no target reads), their columns after the
    prompt's; else output tokens are never masked.
    """
    elements, spans, mapping = group_tokens(
        it.text, it.offsets, it.special, granularity, it.token_strings, it.hidden_spans
    )
    playing = [m if m >= 0 and not special else -1 for m, special in zip(mapping, it.special)]
    n_out = it.input_ids.shape[0] - len(playing)  # a causal LM's output tokens, after the prompt's
    if outputs and n_out:
        out_map, last = it.output_groups[2], len(it.output_groups[0]) - 1
        playing += [
            len(elements) + m if 0 <= m < last and not special else -1 for m, special in zip(out_map, it.output_special)
        ]
    else:
        playing += [-1] * n_out
    columns = sorted(set(playing) - {-1})
    player_of = {c: j for j, c in enumerate(columns)}
    return Players(elements, spans, columns, [player_of.get(m, -1) for m in playing])


def token_keep(units: list[tuple[Players, torch.Tensor]]) -> np.ndarray:
    """``(rows, seq)`` bool, the kept tokens of every row of texts of one length: each text's players
    with its ``(rows, n)`` kept elements, stacked. Built in numpy, whose calls cost a microsecond
    where torch's cost several: a call holds many short texts."""
    width = max(m.shape[1] for _, m in units) + 1  # the last column is always kept: tokens no player owns read it
    table = np.ones((sum(m.shape[0] for _, m in units), width), dtype=bool)
    players = np.empty((table.shape[0], len(units[0][0].token_player)), dtype=np.int64)
    a = 0
    for p, m in units:
        b = a + m.shape[0]
        table[a:b, : m.shape[1]] = m.numpy()
        players[a:b] = p.token_player
        a = b
    players[players < 0] = width - 1
    return np.take_along_axis(table, players, 1)


# Token ids (and target tables) sent to the device in one copy, at most (unless one length group
# needs more): 2**24 int64 values, 128 MiB.
SEND_ELEMENTS = 2**24

# A causal row whose first PREFIX_MIN tokens (and a quarter of its length) are unmasked reuses the
# unmasked prefix's cache instead of recomputing it.
PREFIX_MIN = 16


# The float32 logits one forward of a generator may hold (a few copies of them are made as the
# targets are read): 256 MiB is 6 rows of a 198-token output over a 50 257-token vocabulary.
LOGITS_BYTES = 2**28


def prefix_pays(cut: int, seq: int) -> bool:
    return cut >= PREFIX_MIN and 4 * cut >= seq


def prefix_batches(units: list, cuts: list[int], batch_size: int, seq: int) -> list[list]:
    """Batches of ``units`` (sorted by ``cuts``, longest shared prefix first).

    A batch runs from its smallest cut on, so each row wastes (its cut − the batch's) positions;
    a new batch starts when that waste passes four rows' worth (about what one more forward
    costs), or at ``batch_size`` rows.
    """
    out, waste, cut = [], 0, 0
    for u, c in zip(units, cuts):
        if out and (len(out[-1]) == batch_size or waste + len(out[-1]) * (cut - c) > 4 * seq):
            out.append([])
            waste = 0
        elif out:
            waste += len(out[-1]) * (cut - c)
        if not out:
            out.append([])
        out[-1].append(u)
        cut = c
    return out


def first_masked(keep: torch.Tensor) -> torch.Tensor:
    """``(rows,)`` each row's first masked token position (the sequence length if none is).

    ``keep``: ``(rows, seq)`` kept tokens (``token_keep``).
    """
    pos = torch.arange(keep.shape[1]).expand_as(keep)
    return torch.where(keep, keep.shape[1], pos).min(1).values


def unique_rows(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a ``(rows, n)`` bool matrix and, per row, the index of its distinct row."""
    n = masks.shape[1]
    if n > 62:
        return torch.unique(masks, dim=0, return_inverse=True)
    bits = torch.arange(n)
    # One int64 per row: a 1-D unique is far faster than unique over rows.
    codes, inverse = torch.unique((masks.long() << bits).sum(1), return_inverse=True)
    return ((codes[:, None] >> bits) & 1).bool(), inverse


@functools.lru_cache(maxsize=64)
def _row_weights(width: int) -> np.ndarray:
    """Fixed random int64 weights: a row's dot product with them is its hash."""
    weights = np.random.default_rng(0).integers(-(2**62), 2**62, width)
    weights.flags.writeable = False
    return weights


def distinct_inputs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the first occurrence of each distinct row of ``rows`` ``(G, width)`` int64 in
    order of appearance, and per row the index of its distinct row in ``first``."""
    # A 1-D unique of one hash per row is ten times faster than a unique over rows; a collision
    # (rows that differ under one hash) is caught and redone exactly. In numpy: a call holds a length
    # group of a few short texts as often as thousands of rows, and numpy's calls cost less.
    weights = _row_weights(rows.shape[1])
    _, first, inverse = np.unique(rows @ weights, return_index=True, return_inverse=True)  # the product wraps
    if not np.array_equal(rows[first[inverse]], rows):
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    by_appearance = first.argsort()  # distinct rows numbered in order of appearance
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(by_appearance.shape[0])
    return first[by_appearance], rank[inverse.reshape(-1)]


def _units(group: list[Item], masks: dict[int, torch.Tensor]) -> list[list[tuple[Item, torch.Tensor, int]]]:
    """A length group's texts with their masks (and the first of the text's rows each holds), cut so
    that no part holds more than SEND_ELEMENTS token ids (its rows times the length): the ids of a
    part are built at once, so many texts of one length (a document in fixed-size chunks), or one
    long text with many masks, are built and run part by part instead of all in memory. A text's
    rows may be cut over two parts, in order."""
    per_part = max(1, SEND_ELEMENTS // max(1, group[0].input_ids.shape[0]))  # rows
    parts: list[list[tuple[Item, torch.Tensor, int]]] = [[]]
    room = per_part
    for it in group:
        m, a = masks[it.index], 0
        while a < m.shape[0]:  # every text has a row at least: its unperturbed input
            if room == 0:
                parts.append([])
                room = per_part
            b = min(m.shape[0], a + room)
            parts[-1].append((it, m[a:b], a))
            room -= b - a
            a = b
    return parts


@dataclass
class GroupRows:
    """How the rows of one length group run.

    Rows are first made distinct: two texts' masked inputs that are the same token ids (a shared
    template with its differing words masked, both fully masked) run once. The distinct rows run
    in their order of appearance, or sorted by shared causal prefix (``order``).
    """

    items: list[Item]
    counts: list[int]  # rows per text
    inverse: np.ndarray | None  # (G,) the distinct row of each row, None: every row is distinct
    order: np.ndarray | None  # (distinct,) the row order the forwards use, None: as they are
    batches: list[tuple[int, int]]  # [start, end) of each forward, in that order
    cuts: list[int]  # causal prefix each row may skip, in that order (empty: none)
    row_items: list[Item] | None  # generation: the item of each row, in that order
    normalised: np.ndarray | None = None  # (run rows, width) bool: the log p read (None: all of them)

    @property
    def n_run(self) -> int:
        return self.batches[-1][1] if self.batches else 0


class PerturbationEngine(Engine):
    """The shared engine, with the gradient pass swapped for masked forwards.

    ``method`` supplies ``masks(n, generator) -> (samples, n) bool`` and
    ``estimate(masks, scores, clean) -> ((targets, n) scores, (targets,) gap or None)``. ``memo``
    (default: ``method``) keeps, from call to call, whether the causal prefix path was checked good
    (its ``_prefix_checked``): an explainer or metric checks it once, not once per call.
    """

    def __init__(
        self, model, tokenizer, settings: Settings, replacement_id: int | None, method: Any = None, memo: Any = None
    ):
        super().__init__(model, tokenizer, settings, method if memo is None else memo)
        self.replacement_id = replacement_id
        self.method = method
        self.players: dict[int, Players] = {}
        # Causal LMs: whether the prefix cache reproduces the plain forward; checked once per explainer.
        self.prefix_ok: bool | None = getattr(self.memo, "_prefix_checked", {}).get(id(model))
        self.results: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        # A generator explained in LOGITS: the checked per-position head ``(base, Linear, LogitMap)``,
        # with which masked rows skip the vocabulary (``tasks.head_targets``); None: the whole logits.
        self.split: tuple | None = None
        self.read: dict[int, torch.Tensor] | None = None  # see score_rows

    # Rows are embedded from token ids batch by batch: no text's embeddings are kept.
    needs_embeds = False

    def _clean_pass(self, items: list[Item]) -> None:
        """Folded into ``_attribute``: the unperturbed input is one more row of each text's masks."""

    def _plan(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(masks, rows, inverse)`` of a text with ``n`` players.

        ``masks`` ``(samples, n)`` are the method's; ``rows`` ``(1 + partial, n)`` the distinct masks to
        score, row 0 the unperturbed input (all kept: f(x) and the prediction come from the same
        forwards); ``inverse`` ``(samples,)`` the row of each mask. A seeded generator per text
        makes the masks depend on n and the seed only, so texts with as many players share them.
        """
        if n == 0:  # nothing to mask (a text of special tokens only): the unperturbed row alone
            return (
                torch.zeros(0, 0, dtype=torch.bool),
                torch.ones(1, 0, dtype=torch.bool),
                torch.zeros(0, dtype=torch.long),
            )
        m = self.method.masks(n, torch.Generator().manual_seed(self.s.seed))  # (samples, n)
        if getattr(self.method, "distinct_masks", False):
            u, inv = m.numpy(), None
        else:
            u, inv = unique_rows(m)  # (distinct, n), (samples,): a forward depends on the mask only
            u, inv = u.numpy(), inv.numpy()
        partial = ~u.all(1)  # (distinct,)
        at = np.zeros(u.shape[0], dtype=np.int64)  # row of u -> row of `rows` (0: all kept)
        at[partial] = np.arange(1, int(partial.sum()) + 1)
        rows = np.concatenate([np.ones((1, n), dtype=bool), u[partial]])
        return m, torch.from_numpy(rows), torch.from_numpy(at if inv is None else at[inv])

    def _attribute(self, items: list[Item], device) -> None:
        s = self.s
        plans: dict[int, tuple] = {}
        for it in items:
            players = self.players[it.index] = element_players(it, s.granularity, s.mask_outputs)
            self.method.check_players(players.n, it.index)
            if players.n not in plans:
                plans[players.n] = self._plan(players.n)
        rows = {it.index: plans[self.players[it.index].n][1] for it in items}
        self._warn_if_large(items, rows)
        # A classifier's rows come with its classes only, the prediction (row 0) when none was asked.
        f, log_p = self.score_rows(items, rows, device)
        by_n: dict[int, list] = {}  # n -> [(item, (rows, targets) scores)]
        for it in items:
            i = it.index
            scores, it.target_logprobs = f[i], log_p[i][0]
            it.target_scores = scores[0]
            check_finite(self.model, it)
            if self._scores_outputs():
                scores = scores @ output_sums(it.output_groups[2], len(it.output_groups[0]), scores.dtype)
            by_n.setdefault(self.players[i].n, []).append((it, scores))
        # Every estimate treats targets as independent columns: the texts that share masks are
        # estimated together, their targets side by side.
        for n, group in by_n.items():
            masks, _, inverse = plans[n]
            widths = [sc.shape[1] for _, sc in group]
            if n == 0:
                for it, _ in group:
                    self.results[it.index] = (torch.zeros(it.n_targets, 0, dtype=torch.float64), None)
                continue
            scores = torch.cat([sc for _, sc in group], 1)  # (1 + partial, Σ targets)
            clean = torch.cat([sc[0] for _, sc in group])  # (Σ targets,) row 0: the unperturbed input
            phi, gap = self.method.estimate(masks, scores[inverse], clean)  # (Σ targets, n), (Σ targets,)
            gaps = [None] * len(group) if gap is None else gap.split(widths)
            for (it, _), p, g in zip(group, phi.split(widths), gaps):
                self.results[it.index] = (p, g)

    def _scores_outputs(self) -> bool:
        """Whether the method estimates each output element's summed score itself, rather than pooling
        its tokens' rows: a method that is not linear in the scores (Sobol, whose indices would add up
        past 1), when the rows would be added or averaged (the same index: a variance ratio does not
        see the scale)."""
        return (
            not self.method.linear
            and self.s.task != CLASSIFICATION
            and self.s.aggregation in (GranularityAggregationStrategy.SUM, GranularityAggregationStrategy.MEAN)
        )

    def _warn_if_large(self, items: list[Item], rows: dict[int, torch.Tensor], fix: str | None = None) -> None:
        """One warning when a text needs more than LARGE_ROWS masked inputs (Sobol's N (n + 2), KernelShap's
        2n on a long text) or LARGE_POSITIONS token positions (Occlusion of a long text): the call runs
        that many rows through the model, with no other sign of it. ``fix``: what cuts them."""
        most_rows = max(items, key=lambda it: rows[it.index].shape[0])
        most_positions = max(items, key=lambda it: rows[it.index].shape[0] * it.input_ids.shape[0])
        it = most_rows if rows[most_rows.index].shape[0] > LARGE_ROWS else most_positions
        count, n, seq = rows[it.index].shape[0], self.players[it.index].n, it.input_ids.shape[0]
        if count > LARGE_ROWS or count * seq > LARGE_POSITIONS:
            if fix is None:
                samples = "n_samples" in getattr(self.method, "_option_names", lambda: ())()
                fix = "a coarser granularity (granularity='sentence')" + (
                    " or fewer samples (n_samples=)" if samples else ""
                )
            warnings.warn(
                f"{self.s.name} scores {count} masked inputs of text {it.index} ({n} {self.s.granularity.value} "
                f"elements, {seq} tokens: {count * seq} token positions), each a row through the model; {fix} "
                "cut that.",
                stacklevel=user_stacklevel(),
            )

    def score_rows(
        self, items: list[Item], masks: dict[int, torch.Tensor], device, read: dict[int, torch.Tensor] | None = None
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """f and log p of every masked input: ``{text index: (rows, width) float64}`` each.

        ``masks[i]`` is ``(rows, n)`` bool, True where text i's element is kept. ``width`` is the
        text's classes for a classifier (in ``Item.classes`` order; an explainer's text with none takes
        its prediction, read from its row 0, the unperturbed input), every output token for
        generation. Rows of every text of one length are
        packed together, ``batch_size`` rows per forward. A row's input is the embedding of its
        token ids with the replacement id at masked positions: one lookup per forward.
        """
        s = self.s
        self.split = self._split(items, device, read is not None)
        self.read = read
        self.bar = Progress(s.progress, s.name, sum(m.shape[0] for m in masks.values()))
        plans, outs = [], []  # per length group: its GroupRows; per forward: (logits, normalisers or None)
        wave, host = [], []  # groups not run yet, and the int64 tensors they need on the device
        try:
            for units in (u for group in _group(items, s.task).values() for u in _units(group, masks)):
                plan, tensors = self._group_rows(units)
                plans.append(plan)
                wave.append(plan)
                host.extend(tensors)
                # Token ids for every row take memory: send at most SEND_ELEMENTS of them at a time.
                if sum(h.numel() for h in host) >= SEND_ELEMENTS:
                    self._run(wave, host, device, outs)
                    wave, host = [], []
            if wave:
                self._run(wave, host, device, outs)
        finally:
            self.bar.close()
        if not outs:
            return {}, {}
        ats, start = [], 0  # per plan: each of its text rows (duplicates included) -> its row in `outs`
        for plan in plans:
            at = np.arange(start, start + plan.n_run)
            if plan.order is not None:  # back to the distinct rows' own order
                at = np.empty_like(at)
                at[plan.order] = np.arange(start, start + plan.n_run)
            if plan.inverse is not None:  # every text's rows, duplicates included
                at = at[plan.inverse]
            ats.append(torch.from_numpy(at))
            start += plan.n_run
        with torch.inference_mode():
            if s.task == CLASSIFICATION:
                f, log_p = self._class_scores(plans, outs, torch.cat(ats))
                counts = [c for plan in plans for c in plan.counts]
                per_part = list(zip(f.split(counts), log_p.split(counts)))
            else:  # plan by plan: a plan's rows are padded to its widest output, not the call's
                per_part, done, start = [], 0, 0
                for plan, at in zip(plans, ats):
                    block, done = outs[done : done + len(plan.batches)], done + len(plan.batches)
                    widest = max(c.shape[1] for c, _ in block)
                    chosen = torch.cat([torch.nn.functional.pad(c, (0, widest - c.shape[1])) for c, _ in block])
                    log_norm = torch.cat([torch.nn.functional.pad(n, (0, widest - n.shape[1])) for _, n in block])
                    f, log_p = self._scores(chosen[at - start], log_norm[at - start])
                    per_part.extend(zip(f.split(plan.counts), log_p.split(plan.counts)))
                    start += plan.n_run
        f_parts, p_parts = {}, {}  # text index -> its rows' scores, plan by plan
        items = [it for plan in plans for it in plan.items]
        for it, (f_i, p_i) in zip(items, per_part):
            f_parts.setdefault(it.index, []).append(f_i[:, : it.n_targets])
            p_parts.setdefault(it.index, []).append(p_i[:, : it.n_targets])
        # A text whose rows were cut over several plans (see _units) has several parts, in order.
        f_out = {i: parts[0] if len(parts) == 1 else torch.cat(parts) for i, parts in f_parts.items()}
        p_out = {i: parts[0] if len(parts) == 1 else torch.cat(parts) for i, parts in p_parts.items()}
        return f_out, p_out

    def _scores(self, chosen: torch.Tensor, log_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f under the inference mode, and log p, float64 on the CPU."""
        return apply_mode(chosen, log_norm, self.s.inference_mode).double().cpu(), (chosen - log_norm).double().cpu()

    def _class_scores(self, plans: list[GroupRows], outs: list, at: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A classifier's f and log p ``(text rows, width)``: each row keeps its text's classes only (every
        class of every row in float64, twice, took GiB for thousands of texts with hundreds of classes).
        A text asked for none takes its prediction, read from its unperturbed row: an explainer's first
        row of a text. ``at``: each text row's row in ``outs``, plan after plan."""
        chosen = torch.cat([c for c, _ in outs])  # (run rows, classes)
        outs.clear()  # held once, not twice
        log_norm = class_log_norm(self.model, chosen, chosen)  # (run rows, 1 or classes)
        parts = [(it, c) for plan in plans for it, c in zip(plan.items, plan.counts)]
        counts = torch.tensor([c for _, c in parts])
        if self.method is not None:  # an explainer: a text's first part starts with its unperturbed row
            heads = {}
            for k, (it, _) in enumerate(parts):
                heads.setdefault(it.index, k)
            first = (counts.cumsum(0) - counts)[list(heads.values())]  # those parts' first text rows
            predicted = chosen[at[first].to(chosen.device)].argmax(1).tolist()
            for k, c in zip(heads.values(), predicted):  # every inference mode is monotone in the logit
                it = parts[k][0]
                it.predicted = c
                if not it.classes:
                    it.classes = [c]
        width = max(len(it.classes) for it, _ in parts)
        columns = torch.tensor([it.classes + it.classes[:1] * (width - len(it.classes)) for it, _ in parts])
        columns = columns.repeat_interleave(counts, 0).to(chosen.device)  # (text rows, width)
        rows = at.to(chosen.device)
        norm = log_norm[rows[:, None], columns] if log_norm.shape[1] > 1 else log_norm[rows]
        return self._scores(chosen[rows[:, None], columns], norm)

    def _group_rows(self, units: list[tuple[Item, torch.Tensor, int]]) -> tuple[GroupRows, list[torch.Tensor]]:
        """How the rows of ``units`` (texts of one length, each with masks ``(rows, n)``) run, and the
        int64 tensors they need on the device.

        The tensors: token ids ``(rows, seq)`` with the replacement at masked positions, and for
        generation each row's target table ``(rows, ...)``; one row per distinct input.
        """
        s, rid = self.s, self.replacement_id
        group = [it for it, _, _ in units]
        counts = [m.shape[0] for _, m, _ in units]
        # In numpy: a length group is often a few short texts, and a torch call costs several numpy calls.
        keep = token_keep([(self.players[it.index], m) for it, m, _ in units])  # (G, seq)
        text_of_row = np.repeat(np.arange(len(group)), counts)  # (G,)
        ids = np.stack([it.input_ids.numpy() for it in group])[text_of_row]  # (G, seq)
        ids = np.where(keep, ids, -1 if rid is None else rid)  # -1: a zero embedding
        table = text_table(self.model, s.task, group).numpy()[text_of_row] if s.task != CLASSIFICATION else None
        inverse = None
        # One text's rows are distinct already (its masks are); texts can share rows.
        if len(group) > 1:
            first, inverse = distinct_inputs(ids if table is None else np.concatenate([ids, table], 1))
            if first.shape[0] == ids.shape[0]:
                inverse = None
            else:
                self.bar.step(ids.shape[0] - first.shape[0])
                keep, ids, text_of_row = keep[first], ids[first], text_of_row[first]
                table = None if table is None else table[first]
        order, batches, cuts = self._batches(keep, group, text_of_row)
        normalised = None
        if self.split is not None:
            normalised = self._read_columns(units, counts, inverse, ids.shape[0])
        if order is not None:
            ids, text_of_row = ids[order], text_of_row[order]
            table = None if table is None else table[order]
            normalised = None if normalised is None else normalised[order]
        if table is None:
            return GroupRows(group, counts, inverse, order, batches, cuts, None), [torch.from_numpy(ids)]
        row_items = [group[k] for k in text_of_row.tolist()]
        return GroupRows(group, counts, inverse, order, batches, cuts, row_items, normalised), [
            torch.from_numpy(ids),
            torch.from_numpy(table),
        ]

    def _run(self, plans: list[GroupRows], host: list[torch.Tensor], device, outs: list) -> None:
        """The forwards of ``plans``, appended to ``outs`` (on the device).

        Their tensors ``host`` go to the device in one copy first: a copy between forwards would
        wait for the forwards queued before it.
        """
        s, rid = self.s, self.replacement_id
        emb = functools.partial(embed, self.model)
        sent = send(torch.cat([h.reshape(-1) for h in host]), device)
        on_device = iter([v.view(h.shape) for v, h in zip(sent.split([h.numel() for h in host]), host)])
        with torch.inference_mode():
            for plan in plans:
                cuts, row_items = plan.cuts, plan.row_items
                ids = next(on_device)  # (G, seq)
                if s.task != CLASSIFICATION:
                    table = table_rows(next(on_device), max(it.n_targets for it in plan.items))
                for a, b in plan.batches:
                    if rid is None:  # zeros replace masked tokens
                        x = torch.where(ids[a:b, :, None] >= 0, emb(ids[a:b].clamp(min=0)), 0)
                    else:
                        x = emb(ids[a:b])  # (rows, seq, hidden)
                    if s.task == CLASSIFICATION:
                        # The masked ids, for a classifier that reads them (zeros have no id).
                        read = None if rid is None else (lambda rows=ids[a:b]: rows)
                        outs.append((self._classifier_logits(x, plan.items[0].token_types, read), None))
                    else:
                        cut = min(cuts[a:b]) if cuts else 0
                        norm = None if plan.normalised is None else send(torch.from_numpy(plan.normalised[a:b]), device)
                        norm = None if norm is None else norm[:, : table.valid.shape[1]]
                        out = self._prefix_logits(x, row_items[a:b], cut, table[a:b], norm) if cut else None
                        outs.append(out or self._logits(x, row_items[a:b], table[a:b], norm))
                    self.bar.step(b - a)

    def _batches(
        self, keep: np.ndarray, group: list[Item], text_of_row: np.ndarray
    ) -> tuple[np.ndarray | None, list[tuple[int, int]], list[int]]:
        """``(order, batches, cuts)`` of a length group's rows (``keep`` ``(rows, seq)`` their kept tokens,
        ``text_of_row`` the index in ``group`` of each row's text).

        Plain: no reordering, and ``batch_size`` rows per forward. Causal LMs whose rows share a
        long unmasked prefix with the clean input: rows sorted by that prefix (``order``), batched
        by ``prefix_batches``, and ``cuts`` the prefix each row (in the new order) may skip.
        """
        total, seq = keep.shape
        size = self._rows_per_forward(group, seq)
        plain = [(a, min(a + size, total)) for a in range(0, total, size)]
        if self._prefix_state() is False or not prefix_pays(max(it.n_prompt for it in group) - 1, seq):
            return None, plain, []
        # The scored positions start at n_prompt - 1: a prefix never goes past them.
        last = torch.tensor([it.n_prompt - 1 for it in group])[torch.from_numpy(text_of_row)]
        first = first_masked(torch.from_numpy(keep))
        cuts = [c if prefix_pays(c, seq) else 0 for c in torch.minimum(first, last).tolist()]
        order = sorted(range(total), key=lambda k: -cuts[k])  # rows masked late share a long prefix
        sorted_cuts = [cuts[k] for k in order]
        batches, a = [], 0
        for batch in prefix_batches(list(range(total)), sorted_cuts, size, seq):
            batches.append((a, a + len(batch)))
            a += len(batch)
        return np.array(order), batches, sorted_cuts

    def _rows_per_forward(self, group: list[Item], seq: int) -> int:
        """``batch_size``, or fewer rows for a generator whose forward would hold more than
        ``LOGITS_BYTES`` of float32 logits (rows × scored positions × vocabulary): a 198-token output
        over GPT-2's 50 257 tokens took 5.3 GiB at 64 rows, and ran faster at 8."""
        s = self.s
        if s.task == CLASSIFICATION or self.split is not None:  # the split makes logits for few rows (head_targets)
            return s.batch_size
        if s.task == CAUSAL_LM:
            positions = seq - min(it.n_prompt for it in group) + 1
        else:
            positions = max(len(it.output_ids) for it in group) + 1
        per_row = 4 * positions * embedding_rows(self.model)
        return max(1, min(s.batch_size, LOGITS_BYTES // per_row))

    def _prefix_state(self) -> bool | None:
        """Causal LMs: whether reusing the unmasked prefix's cache was checked good (None: not yet)."""
        if self.s.task != CAUSAL_LM:
            return False
        return self.prefix_ok

    def _logits(self, x, row_items: list[Item], table: Table, normalised=None, **cache):
        """Target logits and normalisers of rows: ``tasks.head_targets`` with the checked head, for
        the rows ``normalised`` (all if None); else the whole logits (``target_logits``)."""
        if self.split is not None and normalised is not None:
            try:
                return head_targets(
                    self.model,
                    self.s.task,
                    x,
                    row_items,
                    self.split,
                    normalised,
                    table=table,
                    logits_bytes=LOGITS_BYTES,
                    **cache,
                )[:2]
            except HeadNotReached:  # the whole logits from here on, and for the explainer's later calls
                self.split, self.head = None, False
                self.remember_head(self.memo)
        return target_logits(self.model, self.s.task, x, row_items, table=table, **cache)[:2]

    def _read_columns(self, units, counts: list[int], inverse, distinct: int) -> np.ndarray:
        """``(distinct rows, width)`` bool: the targets whose log p is read of each distinct row of a
        length group (``score_rows``' ``read``; an explainer's: every target of each text's first row,
        its unperturbed input), the union over the text rows a distinct row stands for."""
        width = max(it.n_targets for it, _, _ in units)
        wanted = np.zeros((sum(counts), width), dtype=bool)  # per text row
        at = 0
        for (it, _, a), count in zip(units, counts):
            if self.read is None:
                wanted[at, : it.n_targets] = a == 0
            else:
                wanted[at : at + count, : it.n_targets] = self.read[it.index][a : a + count].numpy()
            at += count
        if inverse is None:
            return wanted
        out = np.zeros((distinct, width), dtype=bool)
        np.logical_or.at(out, inverse, wanted)
        return out

    def _split(self, items: list[Item], device, reading: bool = False) -> tuple | None:
        """The per-position head for this call's masked rows, or None: a generator explained in LOGITS
        (where only each text's unperturbed row needs its log p), or scored by a metric that says
        which log p it reads (``reading``), whose head is a plain Linear and whose logits the split
        reproduces (``Engine._checked_head``, on up to 4 unperturbed texts of one length; once per
        explainer or metric, as the gradient methods check it)."""
        s = self.s
        if s.task == CLASSIFICATION or s.inference_mode != InferenceModes.LOGITS:
            return None
        if self.method is None and not reading:
            return None
        self.recall_head(self.memo)
        if self.head is None:
            group = next(iter(_group(items, s.task).values()))[:4]
            with torch.inference_mode():
                ids = send(torch.stack([it.input_ids for it in group]), device)
                x = embed(self.model, ids)
                chosen, log_norm, valid = target_logits(self.model, s.task, x, group)
                self.head = self._checked_head(x, group, chosen, log_norm, valid)
            self.remember_head(self.memo)
        return self.head if self.head and _plain_linear(self.head[1]) else None

    def _prefix_logits(self, x: torch.Tensor, row_items: list[Item], cut: int, table: Table, normalised=None):
        """Target logits and normalisers of causal rows whose first ``cut`` positions are unmasked.

        The prefix runs once per text (its cache is then indexed to the rows) and the rows only
        run from position ``cut`` on. The first time, the result is checked against the plain
        forward; a model whose cache does not reproduce it (or that takes none) keeps the plain
        forward for the rest of the call. Returns None to ask for the plain forward.
        """
        if self.prefix_ok is False:
            return None
        texts = list({id(it): it for it in row_items}.values())
        place = {id(it): k for k, it in enumerate(texts)}
        which = send(torch.tensor([place[id(it)] for it in row_items]), x.device)
        try:
            first_row = {}  # text -> its first row here: a row's first `cut` positions are unmasked
            for r, it in enumerate(row_items):
                first_row.setdefault(id(it), r)
            prefix = torch.stack([x[first_row[id(it)], :cut] for it in texts])  # (texts, cut, hidden)
            # Only the cache is read: one position's logits, where the model can be told so.
            keep = {"logits_to_keep": 1} if accepts(unwrapped(self.model), "logits_to_keep") else {}
            cache = self.model(inputs_embeds=prefix, use_cache=True, **keep).past_key_values
            if isinstance(cache, tuple):  # transformers 4's models may give the legacy tuples
                from transformers import DynamicCache

                cache = DynamicCache.from_legacy_cache(cache)
            cache.batch_select_indices(which)
            chosen, log_norm = self._logits(x[:, cut:], row_items, table, normalised, past=cache, offset=cut)
        except torch.cuda.OutOfMemoryError:
            raise  # not a verdict on the cache: halving() starts the call over with smaller batches
        except (TypeError, ValueError, AttributeError, RuntimeError, IndexError, KeyError):
            self.prefix_ok = False
            if self.memo is not None:
                self.memo._prefix_checked = {id(self.model): False}
            return None
        if self.prefix_ok is None:
            ref_chosen, ref_norm = self._logits(x, row_items, table)  # the plain forward, whole logits
            scale = float(ref_chosen.abs().max()) + 1.0
            # A few rounding steps of the model's precision apart: bfloat16 alone moves a logit of 1.5
            # by 0.006 between the two paths, where a wrong cache moves it by whole units.
            tol = max(1e-3, 4 * torch.finfo(x.dtype).eps)
            read = ~torch.isnan(log_norm)  # the normalisers made (all, without the split)
            self.prefix_ok = torch.allclose(chosen, ref_chosen, rtol=tol, atol=tol * scale) and torch.allclose(
                log_norm[read], ref_norm[read], rtol=tol, atol=tol * scale
            )
            if self.memo is not None:
                self.memo._prefix_checked = {id(self.model): self.prefix_ok}
            if not self.prefix_ok:  # as the later calls will make them: the plain forward
                return (
                    self._logits(x, row_items, table, normalised) if normalised is not None else (ref_chosen, ref_norm)
                )
        return chosen, log_norm

    def _explanation(self, it: Item, *parts: Any) -> Explanation:
        expl = super()._explanation(it, *parts)
        expl.options.update(self.method.text_options(self.players[it.index].n))
        return expl

    def _assemble(self, it: Item) -> Explanation:
        s = self.s
        players = self.players[it.index]
        phi, gap = self.results[it.index]  # (targets, n) (output elements, n: _scores_outputs), (targets,) or None
        n_in = len(players.elements)
        if s.task == CLASSIFICATION:
            if players.n == n_in:  # every element is a player (all but ALL_TOKENS)
                scores = phi.clone()
            else:  # elements that are never masked (special tokens under ALL_TOKENS) are not explained: NaN
                scores = torch.full((phi.shape[0], n_in), float("nan"), dtype=torch.float64)
                scores[:, players.columns] = phi
            return self._explanation(
                it, players.elements, players.spans, scores, self._class_targets(it), gap, None, None, None
            )
        out_elements, out_spans, out_map = it.output_groups
        n_out = len(out_elements)
        # A causal LM's outputs are columns too: NaN unless masked (mask_outputs), never a zero attribution.
        width = n_in + n_out if s.task == CAUSAL_LM else n_in
        scores = torch.full((phi.shape[0], width), float("nan"), dtype=torch.float64)
        scores[:, players.columns] = phi
        rows = (lambda x: x) if self._scores_outputs() else (lambda x: pool(x.T, out_map, n_out, s.aggregation).T)
        every = rows(scores)  # (out elements, columns) each row estimated for its output element already, or pooled
        if s.mask_outputs and not self._scores_outputs():
            # Output token t reads no output element that starts at t or later: NaN there (their estimates
            # are 0, as masking it cannot move t; exactly so but for a sampled regression's noise).
            starts = torch.tensor([out_map.index(c) for c in range(n_out)])  # each element's first token
            later = starts[None, :] >= torch.arange(len(out_map))[:, None]
            pooled = rows(torch.cat([scores[:, :n_in], scores[:, n_in:].masked_fill(later, float("nan"))], 1))
        else:
            pooled = every.clone()
        if s.task == CAUSAL_LM:
            # An output element's row shows the elements before it only, as the gradient methods' rows: a word
            # of several tokens moves its own later tokens, which neither shows.
            r_idx, c_idx = torch.arange(n_out)[:, None], torch.arange(n_out)[None, :]
            pooled[:, n_in:] = pooled[:, n_in:].masked_fill(c_idx >= r_idx, float("nan"))
        if gap is not None:
            # An output element's f is the sum of its tokens' (as Target.score): its row, every column
            # counted (the hidden ones too), sums to that f(x) − f(all masked) plus its gap, whatever
            # pooled the tokens' rows into it (with SUM, the tokens' gaps add up).
            delta = phi.sum(1) - gap  # (targets,) each token's f(x) − f(all masked), every player
            gap = torch.stack(
                [every[r].nansum() - delta[[t for t, m in enumerate(out_map) if m == r]].sum() for r in range(n_out)]
            )
        scores = pooled
        targets = self._output_targets(it, out_elements, out_map)
        return self._explanation(
            it, players.elements, players.spans, scores, targets, gap, it.output_text, out_elements, out_spans
        )


# --------------------------------------------------------------------------- public classes
class PerturbationMethod(Remade):
    """Shared constructor and ``explain`` of the perturbation explainers.

    Args:
        model: a Hugging Face model (classifier, causal LM or encoder-decoder) that accepts
            ``inputs_embeds``. It leaves every call exactly as it came.
        tokenizer: its fast tokenizer (character offsets are needed for granularity). ``model``
            may instead be a bundled model's name, a folder or Hub name (model and tokenizer are
            loaded, on ``device``), or a transformers pipeline; ``tokenizer`` is then optional.
        batch_size: masked inputs per forward pass (rows of every text of one length share it).
        granularity: the elements that are masked: ``Granularity.ALL_TOKENS``, ``TOKEN``,
            ``WORD`` (default; every token of a word together) or ``SENTENCE``. Special tokens are
            never masked (under ``ALL_TOKENS`` their columns are NaN).
        granularity_aggregation_strategy: generation only: how the rows of the output tokens of
            one output element pool into one row. Default ``SUM``, so a row explains the summed
            score of its tokens, as ``Target.score`` does. Input elements are masked whole, so they
            need no pooling.
        device: where to compute (default: the model's device; the model is moved back after).
        inference_mode: ``InferenceModes.LOGITS`` (default), ``SOFTMAX`` or ``LOG_SOFTMAX`` of the
            target class / token.
        task: ``"classification"``, ``"causal_lm"`` or ``"seq2seq"``; detected from the model if None.
        seed: seeds the masks (same seed, same masks, whatever the batch size or other texts; the
            scores then agree up to the float rounding of the model's forward, which a batch's shape
            changes, and which Sobol's variance ratios magnify on a model whose output barely moves).
        replacement: what a masked token's embedding becomes: ``"mask"``, ``"pad"``, ``"zeros"``,
            a token id, or None (default: the mask token if the tokenizer has one, else the pad
            token, else zeros).
        progress: a bar on stderr while the masked inputs run (``Sobol: [####....] 900/2048 rows, 3.2s``).
        mask_outputs: a causal LM's earlier output elements are players too, so each output row
            scores the output elements before it as well as the prompt's, as the gradient methods'
            rows do (default False: the prompt only, and those columns NaN). Every output element
            but the last becomes a player: more masked inputs to score (Occlusion and Sobol have
            more masks, Lime's and KernelShap's repeat less).
        truncation: a text longer than the model takes is cut to what fits, between words, rather
            than refused (default False): a classifier's or encoder-decoder's text keeps its start
            (its end where the tokenizer's ``truncation_side`` is "left"), a causal LM's prompt
            its end, with room for the output. ``explanation.text`` is the part explained. Plain
            strings only: a pair or a conversation over the limit is still refused.
    """

    seeded = False  # whether ``seed`` changes the result (it is then kept in Explanation.options)
    # Whether ``estimate`` is linear in the scores, so that the sum of output tokens' rows is the row
    # of their summed score. Sobol's variance ratios are not: it estimates an output element's own.
    linear = True

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        batch_size: int = 64,
        granularity: Granularity | str = Granularity.WORD,
        granularity_aggregation_strategy: GranularityAggregationStrategy | str = GranularityAggregationStrategy.SUM,
        device: str | torch.device | None = None,
        inference_mode: InferenceModes | str = InferenceModes.LOGITS,
        task: str | None = None,
        seed: int = 0,
        replacement: str | int | None = None,
        progress: bool = False,
        truncation: bool = False,
        mask_outputs: bool = False,
        **method_options: Any,
    ):
        self._made_with(locals(), PerturbationMethod)
        model, tokenizer = resolve(model, tokenizer, task, device)
        check_model(model, tokenizer)
        self.model, self.tokenizer = model, tokenizer
        check_explainer_options(
            type(self).__name__, method_options, self._option_names(), shared_options(PerturbationMethod), model, task
        )
        self._set_options(**method_options)
        token_id = as_int(replacement)  # np.int64(103): recorded as the int it is
        self.replacement = replacement if token_id is None else token_id
        self.replacement_id = resolve_replacement(replacement, model, tokenizer)
        self.settings = forward_only(
            type(self).__name__,
            model,
            batch_size=batch_size,
            granularity=granularity,
            aggregation=granularity_aggregation_strategy,
            inference_mode=inference_mode,
            device=device,
            seed=seed,
            task=task,
            progress=progress,
            truncation=truncation,
            mask_outputs=mask_outputs,
            options={
                "replacement": self.replacement,
                **self._options(),
                **({"seed": seed_int(seed)} if self.seeded else {}),
                **({"mask_outputs": True} if mask_outputs is True else {}),
            },
        )
        self._remember()

    # Subclasses override these four.
    def _option_names(self) -> tuple[str, ...]:
        return ()

    def _options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._option_names() if getattr(self, k, None) is not None}

    def _set_options(self) -> None:
        pass

    def text_options(self, n: int) -> dict[str, Any]:
        """What ``Explanation.options`` says for a text of ``n`` elements where it differs from the
        explainer's options (a default that grows with the text)."""
        return {}

    def check_players(self, n: int, index: int) -> None:
        """Refuse a text whose ``n`` elements this method's settings cannot estimate."""

    def masks(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``(samples, n)`` bool: the masked inputs to score, True where an element is kept (n ≥ 1)."""
        raise NotImplementedError

    def estimate(
        self, masks: torch.Tensor, scores: torch.Tensor, clean: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Element scores ``(targets, n)`` (and a completeness gap ``(targets,)`` or None).

        Args:
            masks: ``(samples, n)`` bool, from ``masks``.
            scores: ``(samples, targets)`` float64, f of each masked input.
            clean: ``(targets,)`` float64, f(x) on the unperturbed input.
        """
        raise NotImplementedError

    def explain(
        self, model_inputs: Any, targets: Any = None, **generate_kwargs: Any
    ) -> Explanation | list[Explanation]:
        """Explain one text (returns an ``Explanation``) or a list of texts (returns a list).

        Args:
            model_inputs: a string, a list of strings, chat messages ``[{"role", "content"}]``, a text
                pair for a classifier (``{"text": ..., "text_pair": ...}``; a tuple is two texts), or a list of these.
            targets: classification: None (predicted class), a class index or name, ``"all"``, a
                list of classes, or one of these per text. Generation: None (the model generates
                greedily; ``generate_kwargs`` such as ``max_new_tokens`` pass through), a string to
                force, or token ids; or one of these per prompt. Only the prompt is perturbed.
        """
        check_explain_options(self, generate_kwargs)
        engine = PerturbationEngine(self.model, self.tokenizer, self.settings, self.replacement_id, self)
        return engine.explain(model_inputs, targets, **generate_kwargs)

    __call__ = explain


def _n_samples(n_samples: Any, n_perturbations: Any, minimum: int, default: int) -> int:
    """``n_samples``, or interpreto's name for it, ``n_perturbations``."""
    if n_samples is not None and n_perturbations is not None:
        raise InterpTextError("pass n_samples or n_perturbations (the same option), not both.")
    value = n_perturbations if n_samples is None else n_samples
    name = "n_perturbations" if n_samples is None and n_perturbations is not None else "n_samples"
    return positive_int(default if value is None else value, name, minimum)


class Occlusion(PerturbationMethod):
    """Occlusion: how much the score drops when one element alone is masked.

    score_i = f(x) − f(x with element i masked). One forward per element. Signed: a negative score
    means the element pulled the target down. On a model that is additive in the elements this is
    each element's exact contribution.

    Example:
        >>> Occlusion(model, tokenizer).explain("The food was cold.")  # doctest: +SKIP
    """

    distinct_masks = True  # no two rows alike: nothing to look for

    def masks(self, n, gen):
        return ~torch.eye(n, dtype=torch.bool)  # (n, n): row i masks element i only

    def estimate(self, masks, scores, clean):
        return clean[:, None] - scores.T, None  # (targets, n)


class KernelShap(PerturbationMethod):
    """KernelSHAP: Shapley values of the elements, by the Shapley-kernel weighted regression.

    The game is v(S) = f(x_S), the score with only the elements of coalition S kept (the others
    masked). The Shapley values φ solve

        min_φ Σ_S π(|S|) (v(S) − v(∅) − Σ_{i∈S} φ_i)²   subject to   Σ_i φ_i = f(x) − v(∅),

    with the Shapley kernel π(s) = (n − 1) / (C(n, s) · s · (n − s)) over the coalitions of size
    0 < s < n. The constraint (efficiency) is enforced exactly by substituting
    φ_n = f(x) − v(∅) − Σ_{i<n} φ_i, so the scores of a row always sum to f(x) − f(all masked);
    ``Explanation.completeness_gap`` holds that sum minus f(x) − f(all masked), zero up to rounding.

    When 2ⁿ − 2 ≤ ``n_samples`` every coalition is enumerated and the values are the exact Shapley
    values. Otherwise ``n_samples`` coalitions are drawn with the seeded generator, their size with
    probability ∝ π(s)·C(n, s) and their members uniformly, in complementary pairs (S and its
    complement; ``n_samples`` is rounded up to even), and weighted equally (importance sampling of
    the kernel). One more forward scores v(∅). A pair gives one equation, so fewer than n − 1
    pairs cannot determine the values: a given ``n_samples`` below 2(n − 1) is refused, the default
    grows to 2n for texts of more than 100 elements, and when repeated draws leave the pairs short
    of n − 1 independent equations, as many more pairs are drawn as are missing (and two).

    Args (besides the shared ones):
        n_samples: coalitions to score (default 200, or 2n for a text of n > 100 elements,
            recorded as ``options["coalitions"]`` of its explanation).
            ``n_perturbations`` (interpreto's name) is accepted too.

    Example:
        >>> KernelShap(model, tokenizer, n_samples=500).explain("The food was cold.")  # doctest: +SKIP
    """

    seeded = True

    def _option_names(self):
        return ("n_samples", "n_perturbations")

    def _set_options(self, n_samples: int | None = None, n_perturbations: int | None = None):
        self.n_samples = _n_samples(n_samples, n_perturbations, 1, 200)
        self.chosen = n_samples is not None or n_perturbations is not None
        self._given_as = "n_perturbations" if n_samples is None and n_perturbations is not None else "n_samples"

    def samples(self, n: int) -> int:
        """Coalitions for a text of ``n`` elements: ``n_samples`` as given, else at least 2n."""
        return self.n_samples if self.chosen else max(self.n_samples, 2 * n)

    def text_options(self, n):
        # A default grown for this text: n_samples=<this> gives the same scores (200 would be refused).
        grown = self.samples(n) != self.n_samples
        return {"coalitions": self.samples(n)} if grown else {}

    def exhaustive(self, n: int) -> bool:
        return n <= 1 or 2**n - 2 <= self.samples(n)

    def check_players(self, n, index):
        # The regression has n − 1 unknowns, and a complementary pair of coalitions gives one equation
        # (its two rows are negatives of each other): fewer pairs leave it underdetermined, and its
        # minimum-norm solution would look like an answer.
        if not self.exhaustive(n) and (self.samples(n) + 1) // 2 < n - 1:  # pairs: n_samples rounded up to even
            raise InterpTextError(
                f"text {index} has {n} elements, and {self._given_as}={self.n_samples} coalitions (in complementary "
                f"pairs, one equation each) cannot determine {n} Shapley values; pass {self._given_as} >= {2 * (n - 1)} (several "
                "times more gives steadier values) or a coarser granularity."
            )

    def masks(self, n, gen):
        empty = torch.zeros(1, n, dtype=torch.bool)  # v(∅) is always scored
        if n <= 1:
            return empty
        if self.exhaustive(n):
            codes = torch.arange(1, 2**n - 1)  # every coalition but ∅ and the full one
            z = ((codes[:, None] >> torch.arange(n)) & 1).bool()  # (2ⁿ − 2, n)
        else:
            sizes = torch.arange(1, n, dtype=torch.float64)
            p = (n - 1) / (sizes * (n - sizes))  # π(s)·C(n, s): the kernel mass of all coalitions of size s

            def draw(count: int) -> torch.Tensor:  # (count, n): `size` random elements kept per row
                size = torch.multinomial(p, count, replacement=True, generator=gen) + 1
                ranks = torch.rand(count, n, generator=gen).argsort(1)  # a random order of the elements per row
                return ranks < size[:, None]

            z = draw((self.samples(n) + 1) // 2)
            # Repeated draws (small and large coalitions are the likeliest) can leave fewer independent
            # pairs than unknowns: as many pairs as are missing (and a few) are drawn until the n − 1
            # values are determined.
            for _ in range(100):
                short = n - 1 - int(torch.linalg.matrix_rank(z[:, :-1].double() - z[:, -1:].double()))
                if short <= 0:
                    break
                z = torch.cat([z, draw(short + 2)])
            z = torch.cat([z, ~z])  # complementary pairs halve the variance
        return torch.cat([empty, z])

    def estimate(self, masks, scores, clean):
        n = masks.shape[1]
        f0 = scores[0]  # (targets,) f with every element masked
        delta = clean - f0  # (targets,)
        if n == 1:
            return delta[:, None], torch.zeros_like(delta)
        z = masks[1:].double()  # (samples, n)
        if self.exhaustive(n):
            size = z.sum(1).long()
            kernel = torch.tensor(
                [(n - 1) / (math.comb(n, s) * s * (n - s)) if 0 < s < n else 0.0 for s in range(n + 1)],
                dtype=torch.float64,
            )
            w = kernel[size]  # (samples,)
        else:
            w = torch.ones(z.shape[0], dtype=torch.float64)  # sampled ∝ the kernel already
        y = scores[1:] - f0 - z[:, -1:] * delta  # (samples, targets)
        a = z[:, :-1] - z[:, -1:]  # (samples, n − 1)
        sw = w.sqrt()[:, None]
        # gelsd: minimum-norm solution when there are fewer coalitions than elements.
        head = torch.linalg.lstsq(sw * a, sw * y, driver="gelsd").solution  # (n − 1, targets)
        phi = torch.cat([head, (delta - head.sum(0))[None]]).T  # (targets, n)
        return phi, phi.sum(1) - delta


class Lime(PerturbationMethod):
    """LIME: a weighted ridge regression of the score on which elements are kept.

    Draws ``n_samples`` − 1 random masks z (the number of masked elements uniform in 1..n, which
    ones uniform) plus the unperturbed input z = 1, scores them, weighs each by its closeness to
    the original, w(z) = √exp(−d(z)² / width²) (LIME's text kernel), and fits

        min_{β, β₀} Σ_z w(z) (f(x_z) − β₀ − β·z)² + α ‖β‖²   (intercept β₀ not penalised).

    The scores are β. d is the cosine distance between z and the all-ones mask,
    d = 1 − √(|z| / n), or the Hamming distance, d = (n − |z|) / n. A text of one element has two
    inputs only, kept and masked, far apart: its weight would let α shrink β to about 0, so its score
    is the line through both, f(x) − f(masked).

    Args (besides the shared ones):
        n_samples: masked inputs, the unperturbed one included (default 200, at least 2).
            ``n_perturbations`` (interpreto's name) is accepted too.
        kernel_width: the kernel width (default 0.25; LIME's 25 on its 100× cosine scale).
        distance: ``"cosine"`` (default) or ``"hamming"``.
        alpha: the ridge penalty α (default 1.0, as in LIME).

    Example:
        >>> Lime(model, tokenizer, n_samples=500).explain("The food was cold.")  # doctest: +SKIP
    """

    seeded = True

    def _option_names(self):
        return ("n_samples", "n_perturbations", "kernel_width", "distance", "alpha")

    def _set_options(self, n_samples=None, n_perturbations=None, kernel_width=0.25, distance="cosine", alpha=1.0):
        self.n_samples = _n_samples(n_samples, n_perturbations, 2, 200)
        if kernel_width is None:  # interpreto's default, which means its own width
            raise InterpTextError("kernel_width=None: leave it out for the default, 0.25, or pass a number > 0.")
        self.kernel_width = non_negative_float(kernel_width, "kernel_width")
        if self.kernel_width == 0:
            raise InterpTextError("kernel_width=0 must be a number > 0.")
        distance = named(distance)
        if distance not in ("cosine", "hamming"):
            raise InterpTextError(f"distance={distance!r} is not valid; use 'cosine' or 'hamming'.")
        self.distance = distance
        self.alpha = non_negative_float(alpha, "alpha")

    def masks(self, n, gen):
        rows = self.n_samples - 1
        removed = torch.randint(1, n + 1, (rows,), generator=gen)  # (rows,)
        ranks = torch.rand(rows, n, generator=gen).argsort(1)  # (rows, n)
        z = ranks >= removed[:, None]  # the `removed` first elements of a random order are masked
        return torch.cat([torch.ones(1, n, dtype=torch.bool), z])  # (n_samples, n)

    def estimate(self, masks, scores, clean):
        n = masks.shape[1]
        z = masks.double()  # (samples, n)
        if n == 1:  # every sample is x or x masked: the slope between the two
            masked = ~masks[:, 0]
            if masked.any():
                return (clean - scores[masked][0])[:, None], None
        kept = z.sum(1) / n  # (samples,)
        d = 1 - kept.sqrt() if self.distance == "cosine" else 1 - kept
        w = torch.exp(-(d**2) / self.kernel_width**2).sqrt()[:, None]  # (samples, 1), as LIME weighs text samples
        # Centring on the weighted means fits the intercept without penalising it.
        zc = z - (w * z).sum(0) / w.sum()  # (samples, n)
        yc = scores - (w * scores).sum(0) / w.sum()  # (samples, targets)
        if self.alpha > 0:  # ridge: positive definite, a Cholesky solve in the smaller of n and samples
            beta = _ridge(w.sqrt() * zc, w.sqrt() * yc, self.alpha)
            if beta is not None:
                return beta.T, None
        lhs = zc.T @ (w * zc) + self.alpha * torch.eye(n, dtype=torch.float64)  # (n, n)
        rhs = zc.T @ (w * yc)  # (n, targets)
        beta = torch.linalg.lstsq(lhs, rhs, driver="gelsd").solution  # (n, targets); alpha = 0 may be singular
        return beta.T, None


def _ridge(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor | None:
    """argmin_β |aβ − b|² + α|β|², ``a`` (samples, n), ``b`` (samples, targets): (aᵀa + αI)⁻¹aᵀb, or
    aᵀ(aaᵀ + αI)⁻¹b when there are fewer samples than elements (the same β, an s × s system instead
    of n × n: a 3 000-token text at 200 samples solves in milliseconds, not seconds). None if
    rounding left the system not positive definite (the caller solves it by least squares)."""
    dual = a.shape[0] < a.shape[1]
    gram = a @ a.T if dual else a.T @ a
    factor, info = torch.linalg.cholesky_ex(gram + alpha * torch.eye(gram.shape[0], dtype=gram.dtype))
    if int(info) != 0:
        return None
    if dual:
        return a.T @ torch.cholesky_solve(b, factor)
    return torch.cholesky_solve(a.T @ b, factor)


class Sobol(PerturbationMethod):
    """Sobol indices: the share of the score's variance due to each element.

    Each element is kept independently with probability ½ (z_i ~ Bernoulli(½)), and f(x_z) is a
    random variable with variance V. Two independent mask matrices A and B (N × n, N =
    ``n_samples``) and, for each element i, A_B⁽ⁱ⁾ (A with column i taken from B) give

        total order  (Jansen 1999):    S_Ti = mean_k (f(A)_k − f(A_B⁽ⁱ⁾)_k)² / 2 / V
        first order  (Saltelli 2010):  S_i  = mean_k (f(B)_k − f̄) (f(A_B⁽ⁱ⁾)_k − f(A)_k) / V

    with f̄ and V the mean and variance of f over the rows of A and B (centring on f̄ keeps the
    estimator unbiased, as E f(A_B⁽ⁱ⁾) = E f(A), and removes the noise a large mean would add). S_Ti is the share of V that goes when
    element i alone is fixed (its effect with all its interactions); S_i its effect alone. Indices
    are unsigned importances in [0, 1] up to sampling noise (first-order estimates can dip below
    0); a score that no mask moves (V ≈ 0) gives 0. Cost: N·(n + 2) forwards per text.

    A and B come from one scrambled Sobol sequence in 2n dimensions (``sampler="sobol"``, seeded)
    or from the seeded generator (``sampler="random"``), thresholded at ½.

    Args (besides the shared ones):
        n_samples: N, rows of A and of B (default 32, at least 2). ``n_perturbations``
            (interpreto's name) is accepted too.
        order: ``"total"`` (default) or ``"first"``.
        sampler: ``"sobol"`` (default, quasi-random) or ``"random"``.

    Example:
        >>> Sobol(model, tokenizer, order="first").explain("The food was cold.")  # doctest: +SKIP
    """

    seeded = True
    linear = False

    def _option_names(self):
        return ("n_samples", "n_perturbations", "order", "sampler")

    def _set_options(self, n_samples=None, n_perturbations=None, order="total", sampler="sobol"):
        self.n_samples = _n_samples(n_samples, n_perturbations, 2, 32)
        order, sampler = named(order), named(sampler)
        if order not in ("total", "first"):
            raise InterpTextError(f"order={order!r} is not valid; use 'total' or 'first'.")
        if sampler not in ("sobol", "random"):
            raise InterpTextError(f"sampler={sampler!r} is not valid; use 'sobol' or 'random'.")
        self.order, self.sampler = order, sampler

    def masks(self, n, gen):
        big_n = self.n_samples
        if self.sampler == "sobol" and 2 * n <= torch.quasirandom.SobolEngine.MAXDIM:
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            u = torch.quasirandom.SobolEngine(2 * n, scramble=True, seed=seed).draw(big_n)  # (N, 2n)
        else:
            u = torch.rand(big_n, 2 * n, generator=gen)  # (N, 2n)
        a, b = u[:, :n] >= 0.5, u[:, n:] >= 0.5  # (N, n) each
        ab = a[None].repeat(n, 1, 1)  # (n, N, n)
        i = torch.arange(n)
        ab[i, :, i] = b.T  # ab[i] is A with column i from B
        return torch.cat([a, b, ab.reshape(n * big_n, n)])  # (N·(n + 2), n)

    def estimate(self, masks, scores, clean):
        big_n, n = self.n_samples, masks.shape[1]
        fa, fb = scores[:big_n], scores[big_n : 2 * big_n]  # (N, targets)
        fab = scores[2 * big_n :].reshape(n, big_n, -1)  # (n, N, targets)
        both = torch.cat([fa, fb])  # (2N, targets)
        var = both.var(0)  # (targets,)
        if self.order == "total":
            v = ((fa - fab) ** 2).mean(1) / 2  # (n, targets)
        else:
            v = ((fb - both.mean(0)) * (fab - fa)).mean(1)  # (n, targets)
        # float32 forwards of one input can differ by ~1e-7 relatively: a spread below 1e-6 is noise.
        moves = var > 1e-12 * (both**2).mean(0)
        return torch.where(moves, v / torch.where(moves, var, 1.0), 0.0).T, None  # (targets, n)


PERTURBATION_METHODS = {
    "occlusion": Occlusion,
    "lime": Lime,
    "kernelshap": KernelShap,
    "sobol": Sobol,
}
