"""The one result type shared by every method and task.

Rendering reads it and never recomputes anything.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InterpTextError

TASKS = ("classification", "causal_lm", "seq2seq")


def _same(a: Any, b: Any) -> bool:
    """Exact equality in which NaN equals NaN and arrays compare by shape and values."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=True))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@dataclass
class Target:
    """One explained output: a class, or one output token / word / sentence of a generator.

    Attributes:
        label: class name (``model.config.id2label``) or the output element's text.
        index: class index, or the output element's position in the output.
        token_ids: generation: the ids of the output tokens this row covers; classification: [].
        probability: probability of this class / of these output tokens (product) on the
            unperturbed input.
        score: the explained function f on the unperturbed input (logit, probability or
            log-probability, per the inference mode; summed over the tokens of an output element).
    """

    label: str
    index: int
    token_ids: list[int] = field(default_factory=list)
    probability: float = float("nan")
    score: float = float("nan")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))


ONE_TEXT = (
    "an Explanation is one text's: explain(text) returns one, explain([text, ...]) a list of them. Its numbers "
    "are .scores (targets x elements), its elements .elements, its targets .targets"
)


@dataclass
class Explanation:
    """Scores of the elements of one text for one or several targets.

    ``scores[i, j]`` is how much input column ``j`` drove target ``i``. For classification and
    seq2seq models the columns are ``elements`` (spans into ``text``). For causal LMs the columns
    are the prompt's ``elements`` followed by the ``output_elements`` (spans into
    ``output_text``): output element ``i`` can only depend on the outputs before it, and the
    columns it cannot depend on hold NaN (never a zero attribution).
    """

    text: str
    elements: list[str]
    spans: list[tuple[int, int]]
    scores: np.ndarray  # (targets, columns)
    targets: list[Target]
    method: str
    task: str = "classification"
    granularity: str = "word"
    aggregation: str = "mean"
    inference_mode: str = "logits"
    token_reduction: str = "sum"
    output_text: str | None = None
    output_elements: list[str] | None = None
    output_spans: list[tuple[int, int]] | None = None
    predicted: int | None = None  # classification: the predicted class index
    # IntegratedGradients: Σ scores − (f(x) − f(baseline)); KernelShap: Σ scores − (f(x) − f(all masked)).
    completeness_gap: np.ndarray | None = None  # (targets,)
    options: dict[str, Any] = field(default_factory=dict)
    output_ids: list[int] | None = None  # generation: every output token id, in order
    predicted_label: str | None = None  # classification: the predicted class's name, explained or not
    model: str | None = None  # what the model was loaded from (its name_or_path; a bundled model's name)

    def __eq__(self, other: object) -> bool:
        # the generated __eq__ compares the score arrays with ==, which has no single truth value
        if not isinstance(other, Explanation):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.spans = [(int(a), int(b)) for a, b in self.spans]
        if self.output_spans is not None:
            self.output_spans = [(int(a), int(b)) for a, b in self.output_spans]
        if self.completeness_gap is not None:
            self.completeness_gap = np.asarray(self.completeness_gap, dtype=np.float64)
        for what, elements, spans in (
            ("", self.elements, self.spans),
            ("output ", self.output_elements, self.output_spans),
        ):
            if spans is not None and len(spans) != len(elements or ()):
                raise InterpTextError(
                    f"an explanation has one span per {what}element: {len(elements or ())} {what}elements here, but "
                    f"{len(spans)} spans."
                )
        want = (len(self.targets), len(self.columns))
        if self.scores.shape != want:
            causal = " (prompt elements, then output elements)" if self.task == "causal_lm" else ""
            raise InterpTextError(
                f"an explanation's scores are one row per target and one column per element{causal}: "
                f"{want[0]} x {want[1]} here, but they are {' x '.join(map(str, self.scores.shape))}."
            )

    # ----------------------------------------------------------------- views
    @property
    def columns(self) -> list[str]:
        """The text of every score column (prompt elements, then outputs for causal LMs)."""
        if self.task == "causal_lm":
            return list(self.elements) + list(self.output_elements or [])
        return list(self.elements)

    @property
    def attributions(self):
        """The scores as a torch tensor (targets × columns), as interpreto returns them."""
        import torch

        return torch.from_numpy(self.scores.copy())

    @property
    def target_labels(self) -> list[str]:
        return [t.label for t in self.targets]

    def row(self, target: int | str = 0) -> np.ndarray:
        """The scores of one target, chosen by row number or label."""
        return self.scores[self._row_index(target)]

    def top(self, k: int = 5, target: int | str = 0, absolute: bool = False) -> list[tuple[str, float]]:
        """The k columns with the highest score for a target (NaN columns skipped), with their
        signed scores; ``absolute=True``: the k largest in magnitude, evidence for and against
        alike (as the views' "largest |score|" line and ``rationale_average_precision(absolute=True)``)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise InterpTextError(
                f"k must be a whole number >= 0 (how many columns to list), got {k!r}; "
                "for the lowest scores, sort row(target) instead."
            )
        if not isinstance(absolute, bool):
            raise InterpTextError(f"absolute must be True or False, got {absolute!r}.")
        row = self.row(target)
        key = np.abs(row) if absolute else row
        order = [j for j in np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable") if not math.isnan(row[j])]
        cols = self.columns
        return [(cols[j], float(row[j])) for j in order[:k]]

    def _row_index(self, target: int | str) -> int:
        if isinstance(target, str):
            labels = self.target_labels
            rows = [i for i, label in enumerate(labels) if label == target]
            if not rows and target.strip() != target:  # " Paris", as forced: its label is the word, "Paris"
                rows = [i for i, label in enumerate(labels) if label == target.strip()]
            if not rows:
                raise InterpTextError(f"target {target!r} is not explained here; explained: {labels}.")
            if len(rows) > 1:  # a generated text can repeat a word: the label alone does not say which
                raise InterpTextError(
                    f"target {target!r} is ambiguous: rows {rows} have this label; "
                    f"pass the row number instead (target={rows[0]})."
                )
            return rows[0]
        if not -len(self.targets) <= target < len(self.targets):
            raise InterpTextError(
                f"target row {target} is out of range for {len(self.targets)} targets: rows are the explained targets "
                f"in order ({self.target_labels[:5]}), not class indices; pick one by label, e.g. "
                f"row({self.target_labels[0]!r})."
            )
        return target

    # ----------------------------------------------------------------- rendering
    def to_html(self, **options: Any) -> str:
        """A self-contained HTML fragment: the text, each element tinted by its score."""
        from .render import HTML_OPTIONS, check_options, explanation_html

        check_options("to_html", options, HTML_OPTIONS)
        return explanation_html(self, **options)

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path: str | Path, **options: Any) -> Path:
        """Write a standalone page (no network needed to view it)."""
        from .render import save_html

        return save_html(self, path, **options)

    def to_terminal(self, **options: Any) -> str:
        """The text with ANSI background colours when standard output is a terminal, else plain."""
        from .render import TERMINAL_OPTIONS, check_options, explanation_terminal

        check_options("to_terminal", options, TERMINAL_OPTIONS)
        return explanation_terminal(self, **options)

    def __str__(self) -> str:
        return self.to_terminal()

    # One text's explanation is not a list of them (as interpreto's result for one text was): say so.
    # No __iter__: a for loop falls back to __getitem__, so it says the same, and the explanation is
    # still no Iterable to code that checks (pandas, a JSON encoder's default).
    def __getitem__(self, key: Any) -> Any:
        raise TypeError(ONE_TEXT)

    def __repr__(self) -> str:
        labels = ", ".join(self.target_labels[:4]) + (" ..." if len(self.targets) > 4 else "")
        return (
            f"Explanation(method={self.method!r}, task={self.task!r}, granularity={self.granularity!r}, "
            f"elements={len(self.elements)}, targets=[{labels}])"
        )

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: NaN scores become null, infinite ones (a log-probability of 0) the strings
        "inf" and "-inf", which strict JSON has no number for."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, float) and math.isinf(x):
                return "inf" if x > 0 else "-inf"
            return x

        return {
            "text": self.text,
            "elements": list(self.elements),
            "spans": [list(s) for s in self.spans],
            "scores": [[clean(float(v)) for v in row] for row in self.scores],
            "targets": [
                {
                    "label": t.label,
                    "index": int(t.index),
                    "token_ids": [int(i) for i in t.token_ids],
                    "probability": clean(float(t.probability)),
                    "score": clean(float(t.score)),
                }
                for t in self.targets
            ],
            "method": self.method,
            "task": self.task,
            "granularity": self.granularity,
            "aggregation": self.aggregation,
            "inference_mode": self.inference_mode,
            "token_reduction": self.token_reduction,
            "output_text": self.output_text,
            "output_elements": None if self.output_elements is None else list(self.output_elements),
            "output_spans": None if self.output_spans is None else [list(s) for s in self.output_spans],
            "predicted": self.predicted,
            "completeness_gap": None
            if self.completeness_gap is None
            else [clean(float(v)) for v in self.completeness_gap],
            "options": copy.deepcopy(self.options),  # the caller's to edit, not this explanation's
            "output_ids": None if self.output_ids is None else [int(i) for i in self.output_ids],
            "predicted_label": self.predicted_label,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """The explanation written by ``to_dict``; a CLI JSONL record (the same plus "id") reads too.

        The record's "id" names the input line, not the explanation: it is dropped.
        """

        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        if not isinstance(data, dict):
            raise InterpTextError(
                f"an explanation is read from a dict (a JSON object), not a {type(data).__name__}; write it with "
                "Explanation.to_dict() (a list of them: ExplanationList.load)."
            )
        # A copy: the explanation must not share its lists and options with the caller's dict.
        scores = {"scores": data["scores"]} if "scores" in data else {}  # rebuilt as an array below
        data = copy.deepcopy({k: v for k, v in data.items() if k not in ("id", "scores")}) | scores
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InterpTextError(
                f"cannot read an explanation from a dict with unknown key(s) {unknown}; "
                "it takes the keys of Explanation.to_dict() (and 'id', which is ignored)."
            )
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise InterpTextError(
                f"cannot read an explanation from a dict without key(s) {missing}; write it with Explanation.to_dict()."
            )
        rows = [[num(v) for v in row] for row in data["scores"]]
        if len({len(row) for row in rows}) > 1:
            raise InterpTextError(
                f"an explanation's score rows have {sorted({len(row) for row in rows})} columns; each row has one per "
                "element: write it with Explanation.to_dict()."
            )
        data["scores"] = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
        target_keys = ("label", "index", "token_ids", "probability", "score")
        for t in data["targets"]:
            lacking = [k for k in target_keys if not isinstance(t, dict) or k not in t]
            if lacking:
                raise InterpTextError(
                    f"an explanation's target {t!r} has no {', '.join(lacking)}; each target is a dict of "
                    f"{', '.join(target_keys)}: write it with Explanation.to_dict()."
                )
        data["targets"] = [
            Target(t["label"], t["index"], list(t["token_ids"]), num(t["probability"]), num(t["score"]))
            for t in data["targets"]
        ]
        if data.get("completeness_gap") is not None:
            data["completeness_gap"] = np.array([num(v) for v in data["completeness_gap"]])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def save(self, path: str | Path) -> Path:
        """Write this explanation as JSON; read it back with ``Explanation.load``."""
        path = checked_suffix(path, "save")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        text = Path(path).read_text(encoding="utf-8-sig")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if err.msg == "Extra data":  # JSON lines, as `interp-text explain --output` writes them
                raise InterpTextError(
                    f"{path} holds several JSON values (one explanation per line, as ExplanationList.save and the "
                    "command line's --output write); read them with interp_text.ExplanationList.load(path)."
                ) from None
            raise InterpTextError(f"{path} is not an explanation saved by Explanation.save: {err}.") from None
        return cls.from_dict(data)


# What each writer writes, and the suffixes that would say otherwise (a page named .json, JSON named .html).
_WRITERS = {"save": ("JSON", (".html", ".htm"), "save_html"), "save_html": ("a page", (".json", ".jsonl"), "save")}


def names_other_format(path: str | Path, writer: str) -> bool:
    """Whether ``path``'s suffix names the other writer's format (``save("e.html")``, which would put
    JSON where a browser then shows it as text). The command line asks it of its file flags too."""
    return Path(path).suffix.lower() in _WRITERS[writer][1]


def checked_suffix(path: str | Path, writer: str) -> Path:
    """``path``, refused when its suffix names the other writer's format."""
    path = Path(path)
    what, _, other = _WRITERS[writer]
    if names_other_format(path, writer):
        raise InterpTextError(
            f"{writer}() writes {what}, but {str(path)!r} names another format: use {other}({str(path)!r})."
        )
    return path
