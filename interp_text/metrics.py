"""How faithful an explanation is: remove or add its top elements and watch the probability.

Deletion and Insertion re-run the model on masked inputs (the elements masked as the
perturbation methods mask them: every token of an element replaced by the mask / pad / zero
embedding). The rationale score needs no model: it compares the ranking with gold spans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .engine import as_read, forward_only
from .errors import InterpTextError
from .explanation import Explanation
from .granularity import group_tokens
from .inputs import tokenize
from .loading import resolve
from .methods import check_model, check_options
from .model_guard import model_device
from .options import Granularity, GranularityAggregationStrategy, InferenceModes, Remade, positive_int
from .perturbation import PerturbationEngine, element_players, resolve_replacement, unique_rows
from .tasks import CLASSIFICATION, detect_task, regression


def _ranking(row: np.ndarray) -> np.ndarray:
    """Positions of ``row``'s entries from highest to lowest score; NaN last, ties by position."""
    return np.argsort(-np.nan_to_num(row, nan=-np.inf), kind="stable")


def area_under_curve(curve: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """Trapezoid area under ``(..., m)`` points at ``x`` (default: x = 0, 1/n, ..., 1 with m = n + 1);
    NaN when there is one point."""
    if curve.shape[-1] < 2:
        return np.full(curve.shape[:-1], np.nan)
    if x is None:
        n = curve.shape[-1] - 1
        return (curve[..., 0] / 2 + curve[..., 1:-1].sum(-1) + curve[..., -1] / 2) / n
    return ((curve[..., 1:] + curve[..., :-1]) / 2 * np.diff(x)).sum(-1)


def _check_probabilities(name: str, model) -> None:
    """Refuse a regression classifier: the curves need the explained class's probability.

    Hugging Face reads a ``...ForSequenceClassification`` as regression when
    ``config.problem_type == "regression"``, or when it has one output that is not a sigmoid
    (``num_labels == 1`` without ``problem_type="multi_label_classification"``). A softmax over
    one logit is 1 whatever the input, so its curves would be flat at 1.
    """
    if not regression(model):
        return
    config = model.config
    n, problem = int(getattr(config, "num_labels", 2)), getattr(config, "problem_type", None)
    hint = (
        " If its one output is a binary classifier's logit, set model.config.problem_type = "
        "'multi_label_classification' so that it is read as a sigmoid probability."
        if n == 1
        else ""
    )
    raise InterpTextError(
        f"{name} measures the probability of the explained class, and a regression model has none: "
        f"{type(model).__name__} has config.num_labels={n} and config.problem_type={problem!r}, so its outputs "
        f"are scores, not class probabilities.{hint}"
    )


class _Curve(Remade):
    """Shared constructor and evaluation of Deletion and Insertion."""

    insertion = False

    def __init__(
        self,
        model,
        tokenizer=None,
        *,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        task: str | None = None,
        replacement: str | int | None = None,
        steps: int | None = None,
        progress: bool = False,
        **options: Any,
    ):
        self._made_with(locals(), _Curve)
        if options:
            # The explainers' options that are no metric's: an explanation brings its own elements.
            granular = {"granularity", "aggregation", "granularity_aggregation_strategy"} & set(options)
            check_options(
                type(self).__name__,
                options,
                ("batch_size", "device", "progress", "replacement", "steps", "task"),
                note=". Each explanation is scored by the elements it was explained at: explain at the granularity "
                "you want scored"
                if granular
                else "",
            )
        model, tokenizer = resolve(model, tokenizer, task, device)
        check_model(model, tokenizer)
        self.steps = None if steps is None else positive_int(steps, "steps")
        if detect_task(model, task) == CLASSIFICATION:
            _check_probabilities(type(self).__name__, model)
        self.model, self.tokenizer = model, tokenizer
        self.replacement_id = resolve_replacement(replacement, model, tokenizer)
        self.settings = forward_only(
            type(self).__name__,
            model,
            batch_size=batch_size,
            granularity=Granularity.WORD,  # each explanation brings its own
            aggregation=GranularityAggregationStrategy.SUM,
            # The scores read are logits (to check an explanation's own, see _check_same_model); the curves
            # use the log-probabilities beside them, which add up over an output element's tokens.
            inference_mode=InferenceModes.LOGITS,
            device=device,
            seed=0,
            task=task,
            progress=progress,
        )
        self._remember()

    def points(self, n: int) -> np.ndarray:
        """The numbers of elements k at which a curve of n elements is read: 0..n, or with ``steps``
        (fewer than n), ``steps`` + 1 evenly spaced ones, 0 and n included."""
        if self.steps is None or self.steps >= n:
            return np.arange(n + 1)
        return np.unique(np.round(np.linspace(0, n, self.steps + 1)).astype(np.int64))

    def curves(self, explanations: Explanation | list[Explanation]) -> np.ndarray | list[np.ndarray]:
        """The probability curves: per explanation ``(targets, points)``, point k after k steps
        (``points(n)``: every k = 0..n by default).

        Deletion: point k is the target's probability with the k top-ranked elements masked.
        Insertion: with only the k top-ranked elements kept (the others masked).
        """
        out, _, single = self._curves(explanations)
        return out[0] if single else out

    def _curves(self, explanations) -> tuple[list[np.ndarray], list[int], bool]:
        """``curves``, each explanation's number of elements n, and whether one explanation was given."""
        (out, sizes), single = _curves_of([self], explanations)
        return out[0], sizes, single

    def _reading(self) -> tuple:
        """What a masked input's score depends on besides the mask: metrics that agree on it can share rows."""
        s = self.settings
        device = s.device or model_device(self.model)
        return (id(self.model), id(self.tokenizer), self.replacement_id, s.batch_size, device, s.task)

    @staticmethod
    def _check_same_model(index: int, e: Explanation, whole: np.ndarray, logits: np.ndarray) -> None:
        """The curve's point with nothing masked is the explained input: its probabilities (and, for an
        explanation of logits, its targets' logits) are the explanation's own, unless another model
        made it (its words and labels may agree)."""
        probability = np.array([t.probability for t in e.targets], dtype=np.float64)
        # Loose enough for the same weights in another precision or batch (a bf16 log-probability is
        # rounded: p = 1 recorded for 0.97), tight enough for another model's numbers. Small
        # probabilities (a forced answer's) are compared by their ratio: any two below 0.05 would
        # pass the first test.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(np.log(whole) - np.log(probability))
        checks = [
            (
                "probability",
                probability,
                whole,
                np.isclose(whole, probability, rtol=0.05, atol=0.05) & ((ratio <= 0.25) | (whole == probability)),
            ),
        ]
        if e.inference_mode == InferenceModes.LOGITS.value:
            # Two models can agree on probabilities (confident ones, 0.99 and 0.999) and not on logits.
            # Loose enough for bf16 weights read in float32.
            score = np.array([t.score for t in e.targets], dtype=np.float64)
            checks.append(("logit", score, logits, np.abs(logits - score) <= 0.05 + 0.05 * np.abs(score)))
        for what, explained, given, close in checks:
            known = ~np.isnan(explained)
            if not close[known].all():
                k = int(np.argmax(~close & known))
                raise InterpTextError(
                    f"explanation {index} gives target {e.targets[k].label!r} the {what} {explained[k]:.4g}, but this "
                    f"model gives its input {given[k]:.4g}: it was made with another model (or settings); evaluate "
                    "with the model that was explained."
                )

    def evaluate(self, explanations: Explanation | list[Explanation]) -> float | list[float]:
        """The area under each explanation's curve, averaged over its targets (rows).

        Returns a float for one explanation, a list of floats for a list.
        """
        return evaluate_together([self], explanations)[0]

    __call__ = evaluate

    def _masks(self, scores: np.ndarray) -> torch.Tensor:
        """``(targets, n)`` element scores -> ``(targets · points, n)`` bool masks, True = kept."""
        targets, n = scores.shape
        rank = np.empty((targets, n), dtype=np.int64)  # rank[r, j]: place of element j in row r's ranking
        for r in range(targets):
            rank[r, _ranking(scores[r])] = np.arange(n)
        k = self.points(n)[None, :, None]  # (1, points, 1): step k
        rank = rank[:, None, :]  # (targets, 1, n)
        keep = rank < k if self.insertion else rank >= k  # (targets, points, n)
        return torch.from_numpy(keep.reshape(targets * k.shape[1], n))

    def _target_rows(self, it, e: Explanation) -> list[list[int]]:
        """For each row of ``e``, the columns of ``target_scores`` it covers (its class, its tokens)."""
        if self.settings.task == CLASSIFICATION:
            return [[r] for r in range(len(e.targets))]
        strings = self.tokenizer.convert_ids_to_tokens(it.output_ids)
        _, _, out_map = group_tokens(
            it.output_text, it.output_offsets, it.output_special, Granularity(e.granularity), strings
        )
        rows = [[t for t, m in enumerate(out_map) if m == r] for r in range(len(e.targets))]
        if [[it.output_ids[t] for t in cols] for cols in rows] != [t.token_ids for t in e.targets]:
            raise InterpTextError(
                f"the output of explanation {it.index} ({e.output_text!r}) does not tokenize back to the tokens "
                "it explains; evaluate with the tokenizer that was explained (or explain with targets= the output "
                "text, so it is tokenized the same way)."
            )
        return rows


def evaluate_together(metrics: list[_Curve], explanations) -> list[float] | list[list[float]]:
    """``evaluate`` of several metrics (Deletion and Insertion of one model, batch size, device and
    replacement) on the same explanations, their masked inputs scored together: see ``_curves_of``.

    Returns per metric what its ``evaluate`` returns: a float for one explanation, a list for a list.

    Example:
        >>> deletion, insertion = evaluate_together([Deletion(m, t), Insertion(m, t)], explanations)  # doctest: +SKIP
    """
    metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]  # one metric: a list of one
    (curves, sizes), single = _curves_of(metrics, explanations)
    areas = [
        [float(area_under_curve(c, m.points(n) / max(n, 1)).mean()) for c, n in zip(per, sizes)]
        for m, per in zip(metrics, curves)
    ]
    return [a[0] for a in areas] if single else areas


def _curves_of(metrics: list[_Curve], explanations) -> tuple[tuple[list[list[np.ndarray]], list[int]], bool]:
    """``_Curve._curves`` of several metrics that read the model alike (``_Curve._reading``), their masked
    inputs scored together: a row that two of them need (the input with nothing or everything
    masked, a step where two rankings agree), or two explanations of one text (several methods'),
    runs once. Returns ``((per metric its curves, each explanation's n), single)``."""
    if not metrics or not all(isinstance(m, _Curve) for m in metrics):
        raise InterpTextError(
            f"evaluate_together takes a list of Deletion and Insertion metrics, got {metrics!r}; pass "
            "[Deletion(model, tokenizer), Insertion(model, tokenizer)]."
        )
    first = metrics[0]
    if any(m._reading() != first._reading() for m in metrics):
        raise InterpTextError(
            "these metrics read the model differently (another model, tokenizer, replacement, batch size, device or "
            "task); evaluate them one by one."
        )
    if isinstance(explanations, Explanation):
        expls, single = [explanations], True
    elif isinstance(explanations, Iterable) and not isinstance(explanations, (str, bytes, dict)):
        expls, single = list(explanations), False
    else:
        raise InterpTextError(
            f"expected an Explanation or a list of them, got {type(explanations).__name__}; pass what explain() "
            "returned."
        )
    if not expls:
        raise InterpTextError("got no explanations to evaluate; pass an Explanation or a non-empty list.")
    s = first.settings
    id2label = dict(first.model.config.id2label or {}) if s.task == CLASSIFICATION else {}
    n_classes = int(first.model.config.num_labels) if s.task == CLASSIFICATION else 0
    for i, e in enumerate(expls):
        if not isinstance(e, Explanation):
            raise InterpTextError(f"item {i} is a {type(e).__name__}, not an Explanation.")
        if e.task != s.task:
            raise InterpTextError(f"explanation {i} is of a {e.task} model but this model is {s.task}.")
        past = [t for t in e.targets if s.task == CLASSIFICATION and not 0 <= t.index < n_classes]
        if past:
            raise InterpTextError(
                f"explanation {i} explains class {past[0].index} ({past[0].label!r}), and this model has {n_classes} "
                f"classes (0..{n_classes - 1}): it was made with another model; evaluate with the one explained."
            )
        for t in e.targets if id2label else []:
            if t.index in id2label and str(id2label[t.index]) != t.label:
                raise InterpTextError(
                    f"explanation {i} explains class {t.index} as {t.label!r}, which this model calls "
                    f"{id2label[t.index]!r}: it was made with another model; evaluate with the one explained."
                )
    if s.task == CLASSIFICATION:
        targets = [[t.index for t in e.targets] for e in expls]
    else:
        # The explained output's own ids; an explanation saved before they were kept: its text, tokenized.
        targets = [
            e.output_ids
            if e.output_ids is not None
            else tokenize(first.tokenizer, e.output_text, add_special_tokens=False)[0]
            for e in expls
        ]
    # The causal prefix path is checked once per metric, not once per call (see PerturbationEngine).
    if len(metrics) > 1:  # one bar (and one name in a warning) for the rows they share
        s = dataclasses.replace(s, name="+".join(dict.fromkeys(type(m).__name__ for m in metrics)))
    engine = PerturbationEngine(first.model, first.tokenizer, s, first.replacement_id, memo=first)
    with engine.guarded() as device:
        texts = [as_read(e.text, e.options) for e in expls]
        items = engine._prepare(texts, targets, False, device, {})
        masks = {}
        rows_of = {}  # text index -> per row, the target columns whose scores it sums
        for it, e in zip(items, expls):
            it.decoder_start = e.options.get("decoder_start_token_id")  # seq2seq: as it was explained
            rows_of[it.index] = first._target_rows(it, e)
            players = element_players(it, Granularity(e.granularity))
            engine.players[it.index] = players
            if players.elements != e.elements:
                at = next(
                    (k for k, (a, b) in enumerate(zip(e.elements, players.elements)) if a != b),
                    min(len(e.elements), len(players.elements)),
                )
                raise InterpTextError(
                    f"explanation {it.index} has elements {e.elements[at : at + 5]} from element {at} on, but this "
                    f"tokenizer gives {players.elements[at : at + 5]}; evaluate with the model and tokenizer that "
                    "were explained (an explanation saved by another version of interp_text may group its words "
                    "otherwise: explain the text again)."
                )
            # (targets · points, n) per metric, stacked
            masks[it.index] = torch.cat([m._masks(e.scores[:, players.columns]) for m in metrics])
        # A forward depends on the mask only: the curves of a text's targets share their first and
        # last points, and any step where their rankings agree; each distinct mask runs once.
        distinct = {i: unique_rows(m) for i, m in masks.items()}
        # A generation explanation's curves are one per output element: rows add up on a long prompt.
        engine._warn_if_large(
            items,
            {i: u for i, (u, _) in distinct.items()},
            "fewer curve points (steps=20) or a coarser granularity",
        )
        # Each distinct mask's targets whose log p a curve reads: its output element's tokens (a
        # generator's head then runs over the vocabulary for those only, see PerturbationEngine).
        read = None
        if engine.s.task != CLASSIFICATION:
            read = {}
            for it, e in zip(items, expls):
                points = [len(m.points(engine.players[it.index].n)) for m in metrics]
                wanted = np.zeros((sum(points) * len(e.targets), it.n_targets), dtype=bool)
                at = 0
                for p in points:
                    for cols in rows_of[it.index]:
                        wanted[at : at + p, cols] = True
                        at += p
                u, inverse = distinct[it.index]
                mine = np.zeros((u.shape[0], it.n_targets), dtype=bool)
                np.logical_or.at(mine, inverse.numpy(), wanted)
                read[it.index] = torch.from_numpy(mine)
        logits, log_p = engine.halving(
            lambda: engine.score_rows(items, {i: u for i, (u, _) in distinct.items()}, device, read)
        )
        log_p = {
            i: v[distinct[i][1]] for i, v in log_p.items()
        }  # (targets · points, the explanation's classes or token targets)
        logits = {i: v[distinct[i][1]] for i, v in logits.items()}
    for m in metrics[1:]:
        if hasattr(first, "_prefix_checked"):
            m._prefix_checked = first._prefix_checked
    out, sizes = [[] for _ in metrics], [engine.players[it.index].n for it in items]
    for it, e, n in zip(items, expls, sizes):
        lp, fx = log_p[it.index], logits[it.index]  # a classifier's: the explanation's classes only
        widths = [len(e.targets) * len(m.points(n)) for m in metrics]
        for m, part, f_part, curves in zip(metrics, lp.split(widths), fx.split(widths), out):
            blocks = part.reshape(len(e.targets), len(m.points(n)), -1)  # (targets, points, token targets)
            # An output element's probability is the product of its tokens'; its score, their sum.
            rows = [blocks[r, :, cols].sum(-1) for r, cols in enumerate(rows_of[it.index])]
            curve = torch.stack(rows).exp().numpy()  # (targets, points)
            whole = -1 if m.insertion else 0  # the point with nothing masked
            f_blocks = f_part.reshape(len(e.targets), len(m.points(n)), -1)
            scores = np.array([float(f_blocks[r, whole, cols].sum()) for r, cols in enumerate(rows_of[it.index])])
            m._check_same_model(it.index, e, curve[:, whole], scores)
            curves.append(curve)
    return (out, sizes), single


class Deletion(_Curve):
    """Deletion: how fast the target's probability falls as the top-ranked elements are masked.

    The elements of the prompt (the explanation's columns that can be masked; special tokens never
    are) are ranked by score, highest first. Point k of the curve, k = 0..n, is the probability
    of the target with the k top-ranked elements masked; the x-axis is normalised, x = k / n, and
    the score is the trapezoid area under the curve, in [0, 1]. Lower is better: a faithful
    explanation names first what the model needs.

    Classification: the probability of each explained class (each row of the explanation has its
    own ranking). Generation: of each output element given the prompt (teacher-forced; the product
    of its tokens' probabilities), with its row's ranking; an explanation's score is the mean of
    its rows' areas. A regression classifier (one output that is not a sigmoid, or
    ``problem_type="regression"``) has no probability and is refused.

    Args:
        model, tokenizer: the ones that were explained (or a name, folder or pipeline, as for the explainers).
        batch_size: masked inputs per forward (rows of every explanation of one length share it).
        device: where to compute (default: the model's).
        task: as for the explainers; detected from the model if None.
        replacement: as for the perturbation methods (default: mask, else pad, else zeros).
        steps: read each curve at ``steps + 1`` evenly spaced points (0 and n included; the area uses
            their true x) instead of all n + 1: long prompts cost fewer rows. None (default): all.
        progress: a bar on stderr while the masked inputs run (``Deletion: [####....] 40/90 rows, 1.2s``);
            metrics evaluated together draw one (``Deletion+Insertion``).

    Example:
        >>> Deletion(model, tokenizer, steps=20).evaluate(Occlusion(model, tokenizer).explain(texts))  # doctest: +SKIP
    """


class Insertion(_Curve):
    """Insertion: how fast the target's probability rises as the top-ranked elements are added.

    Starting from the input with every element masked, point k of the curve, k = 0..n, is the
    probability of the target with only the k top-ranked elements kept. x = k / n, trapezoid area
    in [0, 1]; higher is better. Everything else is as for ``Deletion``.

    Example:
        >>> Insertion(model, tokenizer).evaluate(explanations)  # doctest: +SKIP
    """

    insertion = True


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def checked_spans(spans: object, name: str = "rationale_spans", nested: str = "") -> list[tuple[int, int]]:
    """``spans`` as a list of ``(start, end)`` int pairs with start < end; ``name`` is what errors call it.

    A bare pair ``(13, 21)`` is refused rather than read as ``[(13, 21)]``: a list of rationales
    (one list of spans per text, as ``compare`` takes) would then read one text's two spans
    ``[(2, 4), (9, 10)]`` as one span for each of two texts. ``nested``: the fix to name instead,
    where the spans are one entry of such a list (``compare``'s).
    """
    try:
        items = list(spans) if not isinstance(spans, str) else None
    except TypeError:
        items = None
    if items is None:
        raise InterpTextError(f"{name} = {spans!r} is not a list; pass a list of (start, end) pairs.")
    if len(items) == 2 and all(_is_int(x) for x in items):
        pair = (int(items[0]), int(items[1]))
        fix = nested.format(pair=pair) if nested else f"pass a list of (start, end) pairs: [{pair}]"
        raise InterpTextError(f"{name} = {spans!r} is one (start, end) pair; {fix}.")
    out = []
    for j, span in enumerate(items):
        pair = tuple(span) if isinstance(span, (tuple, list, np.ndarray)) else ()
        if len(pair) != 2 or not all(_is_int(x) for x in pair):
            raise InterpTextError(
                f"{name}[{j}] = {span!r} is not a (start, end) pair of ints; pass a list of (start, end) "
                "character spans into the text."
            )
        a, b = int(pair[0]), int(pair[1])
        if a == b:  # it would overlap the element around it, though it holds no character
            raise InterpTextError(
                f"{name}[{j}] = {span!r} is empty; a span is (start, end) with start < end, end exclusive: "
                f"({a}, {a + 1}) covers the character at {a}."
            )
        if a > b:
            raise InterpTextError(
                f"{name}[{j}] = {span!r} is reversed; a span is (start, end) with start < end: pass ({b}, {a})."
            )
        if a < 0:
            raise InterpTextError(
                f"{name}[{j}] = {span!r} starts before the text; a span is (start, end) character positions into "
                "the text, from 0."
            )
        out.append((a, b))
    return out


def rationale_average_precision(
    explanation: Explanation, rationale_spans: list[tuple[int, int]], target: int | str = 0, absolute: bool = False
) -> float:
    """Average precision of the explanation's ranking of its prompt elements against gold spans.

    An element is positive when its character span overlaps a rationale span
    (``start < rationale_end and rationale_start < end``); special tokens (elements with no text,
    under ALL_TOKENS) are left out. Ranking the elements by score, highest
    first, AP = (1 / P) Σ_k precision@k over the ranks k of the P positives. Ties are broken against
    the explanation (negatives first), so a constant explanation earns no credit; NaN scores rank
    last. 1 means every rationale element outranks every other element.

    Args:
        explanation: any explanation (classification or generation; only the prompt's elements
            are ranked).
        rationale_spans: a list of ``(start, end)`` character spans in ``explanation.text``, each
            with start < end (end exclusive); a bare ``(start, end)`` pair is an error.
        target: the row to rank by (row number or label).
        absolute: rank by |score| (``compare`` does: a deciding word that pushes against the target,
            as "good" in "not good", is still one the explanation should find).

    Example:
        >>> rationale_average_precision(expl, [(14, 18)])  # doctest: +SKIP
        1.0
    """
    spans = checked_spans(rationale_spans)
    outside = [span for span in spans if span[1] > len(explanation.text)]
    if outside:
        raise InterpTextError(
            f"the rationale span {outside[0]} ends past the end of the text ({len(explanation.text)} characters); pass "
            "(start, end) character spans into explanation.text."
        )
    row = np.asarray(explanation.row(target)[: len(explanation.elements)], dtype=np.float64)
    if absolute:
        row = np.abs(row)
    # Special tokens (ALL_TOKENS: spans of no text) are not ranked: no text of theirs can be a rationale,
    # and the metrics never mask them.
    text = np.array([e > s for s, e in explanation.spans], dtype=bool)
    positive = np.array([any(s < b and a < e for a, b in spans) for s, e in explanation.spans], dtype=bool)
    row, positive = row[text], positive[text]
    if not positive.any():
        raise InterpTextError(
            f"no element of the text overlaps the rationale spans {spans}; pass (start, end) character spans "
            f"into explanation.text (its elements' spans are {explanation.spans[:5]}...)."
        )
    key = np.nan_to_num(row, nan=-np.inf)
    order = np.lexsort((positive, -key))  # by score descending, then negatives first among ties
    hits = positive[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())
