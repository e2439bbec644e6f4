"""Rendering: an explanation as HTML (notebooks, standalone pages) or as ANSI text (terminals).

Rendering reads an :class:`~interp_text.explanation.Explanation` and never recomputes a score.
Colours are a diverging scale: white at 0, red for scores that raise the explained output, blue
for scores that lower it. A score ``v`` is shown at intensity ``t = min(|v| / s, 1)`` where ``s``
is the largest finite ``|score|`` of the row shown, or a ``scale`` the caller shares across
renders. NaN scores (columns an output cannot depend on) are never tinted: they are marked
"not attributable".

The HTML is one self-contained fragment per render: inline CSS and vanilla JS scoped to a unique
element id, data embedded in the script as escaped JSON, no CDN, no ``require``. The default target is painted
in the static markup, so a notebook that does not run scripts (untrusted, nbviewer) still shows it.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import InterpTextError
from .explanation import TASKS, Explanation, checked_suffix

__all__ = [
    "ExplanationList",
    "explanation_html",
    "explanation_terminal",
    "explanations_html",
    "save_html",
    "score_rgb",
    "text_rgb",
]

POSITIVE_RGB = (220, 38, 38)  # red: the element raises the explained output
NEGATIVE_RGB = (37, 99, 235)  # blue: the element lowers it
WHITE_RGB = (255, 255, 255)
DARK_TEXT_RGB = (0, 0, 0)  # black: with white, every tint reaches WCAG AA contrast (4.5)
LIGHT_TEXT_RGB = (255, 255, 255)
MAX_HEATMAP_CELLS = 40_000  # beyond this the matrix table is left out (the page would be megabytes)
_JSON_INF = 1.7976931348623157e308  # JSON has no infinity; the largest double stands in for it
HTML_OPTIONS = ("scale", "target")  # the keywords of explanation_html, explanations_html and save_html
TERMINAL_OPTIONS = ("target", "color", "scale")  # the keywords of explanation_terminal


# ----------------------------------------------------------------- colours and numbers
def score_rgb(value: float, scale: float) -> tuple[int, int, int] | None:
    """The background colour of a score on the diverging scale.

    Each channel goes linearly from white (``t = 0``) to red (positive) or blue (negative) at
    ``t = min(|value| / scale, 1)``. The page's JavaScript computes the same numbers.

    Args:
        value: the score.
        scale: the ``|score|`` drawn at full colour; ``<= 0`` draws everything white.

    Returns:
        ``(r, g, b)`` in 0..255, or ``None`` for NaN (not attributable).

    Example:
        >>> score_rgb(0.0, 1.0), score_rgb(1.0, 1.0), score_rgb(-2.0, 1.0)
        ((255, 255, 255), (220, 38, 38), (37, 99, 235))
    """
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        t = 1.0
    else:
        t = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    end = POSITIVE_RGB if value >= 0 else NEGATIVE_RGB
    # floor(x + 0.5) rather than round(): JavaScript's Math.round, so both sides agree exactly
    return tuple(math.floor(255 + t * (c - 255) + 0.5) for c in end)  # type: ignore[return-value]


def _luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG relative luminance."""

    def lin(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_rgb(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """The text colour (near-black or white) with the higher WCAG contrast on ``background``.

    Example:
        >>> text_rgb((255, 255, 255)), text_rgb((37, 99, 235))
        ((0, 0, 0), (255, 255, 255))
    """
    lum = _luminance(background)
    dark = (lum + 0.05) / (_luminance(DARK_TEXT_RGB) + 0.05)
    light = 1.05 / (lum + 0.05)
    return DARK_TEXT_RGB if dark >= light else LIGHT_TEXT_RGB


def _css(rgb: tuple[int, int, int]) -> str:
    # the form getComputedStyle returns, so tests can compare strings
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def _fmt_exact(value: float) -> str:
    return f"{value:+.6g}"


def _fmt_short(value: float, signed: bool = True) -> str:
    """A score in two decimals, or in scientific notation when two decimals would read 0 or take
    more than ten characters; with a "+" unless the scores have no sign (``unsigned``)."""
    plus = "+" if signed else ""
    if value == 0 or math.isinf(value) or 0.005 <= abs(value) < 1e6:
        return f"{value:{plus}.2f}"
    return f"{value:{plus}.1e}"


def _fmt_scale(scale: float) -> str:
    return f"{scale:.3g}"


def _fmt_prob(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes: wide (CJK, most emoji) characters two, combining marks and
    zero-width characters none; a character that U+FE0F asks to draw as an emoji ("\u2764\ufe0f") two."""
    return sum(
        0
        if unicodedata.combining(c) or unicodedata.category(c) in ("Cf", "Mn", "Me")
        else 2
        if unicodedata.east_asian_width(c) in ("W", "F") or text.startswith("\ufe0f", i + 1)
        else 1
        for i, c in enumerate(text)
    )


def _fit(text: str, width: int, cut: str) -> str:
    """``text`` padded with spaces to ``width`` terminal columns, or cut to them, ending in ``cut``."""
    if _columns(text) > width:
        room = width - _columns(cut)
        while text and _columns(text) > room:
            text = text[:-1]
        text += cut
    return text + " " * (width - _columns(text))


class Glyphs(NamedTuple):
    """The characters our own decorations are drawn with; the user's text never changes."""

    sep: str  # between the fields of a header line
    pointer: str  # starts a class / output element header
    rule: str  # between an output's probability and its columns
    arrow: str  # "output element -> its columns"
    newline: str  # a line break inside a one-line label
    tab: str  # a tab inside a one-line label
    space: str  # a label of spaces only, which would read as nothing
    controls: dict[int, str]  # str.translate table: control characters as visible symbols
    # With the ASCII decorations: standard output's encoding. The user's characters it cannot write
    # are shown as Python escapes ("\\xe9"), so that printing an explanation never fails.
    encoding: str | None = None


# Control characters shown as symbols, so no user text can drive the terminal (ESC, CR...).
_CONTROL_PICTURES = {c: chr(0x2400 + c) for c in range(32) if c not in (9, 10)} | {0x7F: "\u2421"}
_CONTROL_PICTURES |= {c: "\ufffd" for c in range(0x80, 0xA0)}
_CONTROL_CARETS = {c: "^" + chr(c + 64) for c in range(32) if c not in (9, 10)} | {0x7F: "^?"}
_CONTROL_CARETS |= {c: "?" for c in range(0x80, 0xA0)}

UNICODE_GLYPHS = Glyphs(" \u00b7 ", "\u25b6", "\u2502", "\u2192", "\u21b5", "\u2192", "\u2423", _CONTROL_PICTURES)
# For a standard output that cannot encode the above (a Windows cp1252 console, LANG=C): printing
# must not fail on characters we chose.
ASCII_GLYPHS = Glyphs(" | ", ">", "|", "->", "\\n", "\\t", "\\x20", _CONTROL_CARETS)


def _visible(label: str, glyphs: Glyphs = UNICODE_GLYPHS) -> str:
    """A label with its line breaks (\\n, \\r\\n or a lone \\r) and tabs made visible, for one-line
    places (tables, buttons)."""
    one_kind = label.replace("\r\n", "\n").replace("\r", "\n")
    return one_kind.replace("\n", glyphs.newline).replace("\t", glyphs.tab)


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _script_json(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` are \\u-escaped."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, code in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, code)
    return text


def _json_score(value: float) -> float | None:
    if math.isnan(value):
        return None
    if math.isinf(value):
        return math.copysign(_JSON_INF, value)
    return float(value)


# ----------------------------------------------------------------- validation and layout
def check_options(name: str, given: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse rendering options ``name`` does not take, before anything is rendered or written."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise InterpTextError(f"{name} got unknown option(s) {unknown}; the accepted options are {sorted(allowed)}.")


def _check_explanation(expl: Any) -> Explanation:
    if not isinstance(expl, Explanation):
        raise InterpTextError(f"expected an Explanation to render, got {type(expl).__name__}.")
    if expl.task not in TASKS:
        raise InterpTextError(f"cannot render task {expl.task!r}; known tasks: {list(TASKS)}.")
    if not expl.targets:
        raise InterpTextError("nothing to render: this explanation has no targets (scores has 0 rows).")
    return expl


def shared_scale(scale: Any, explanations: Sequence[Explanation]) -> Any:
    """``scale="shared"``: the largest finite |score| of every row of ``explanations``, so that colours
    compare across rows and texts; any other value is returned as it is."""
    if not (isinstance(scale, str) and scale == "shared"):
        return scale
    largest = 0.0
    for e in explanations:
        finite = np.abs(e.scores[np.isfinite(e.scores)])
        if finite.size:
            largest = max(largest, float(finite.max()))
    return largest if largest > 0 else 1.0  # all zero: any scale draws them white


def _check_scale(scale: Any) -> float | None:
    if scale is None:
        return None
    ok = isinstance(scale, (int, float, np.integer, np.floating)) and not isinstance(scale, bool)
    if not ok or not math.isfinite(float(scale)) or float(scale) <= 0:
        raise InterpTextError(
            f'scale must be a positive finite number (the |score| drawn at full colour) or "shared" (the largest '
            f"|score| of every row shown), got {scale!r}."
        )
    return float(scale)


def _default_row(expl: Explanation, target: int | str | None) -> int:
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, (int, np.integer, str)):
            raise InterpTextError(f"target must be a row number or a target label, got {target!r}.")
        return expl._row_index(target if isinstance(target, str) else int(target)) % len(expl.targets)
    if expl.task == "classification" and expl.predicted is not None:
        for i, t in enumerate(expl.targets):
            if t.index == expl.predicted:
                return i
    return 0


def _row_scales(scores: np.ndarray, scale: float | None) -> list[float]:
    """The |score| drawn at full colour, per row: the shared scale, or the row's largest finite |score|."""
    rows = scores.shape[0]
    if scale is not None:
        return [scale] * rows
    if scores.shape[1] == 0:
        return [0.0] * rows
    finite = np.where(np.isfinite(scores), np.abs(scores), 0.0)  # (targets, columns)
    return [float(v) for v in finite.max(axis=1)]


def _segments(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[int | None, str]]:
    """Cut ``text`` into ``(element index or None, piece)`` in text order.

    Every element appears exactly once and the pieces concatenate to ``text``: overlapping spans
    are clipped, and an element with an empty span (a special token) gets an empty piece.
    """
    n = len(text)
    order = sorted(range(len(spans)), key=lambda j: (spans[j][0], spans[j][1], j))
    out: list[tuple[int | None, str]] = []
    cursor = 0
    for j in order:
        start, end = spans[j]
        start = min(max(start, cursor), n)
        end = min(max(end, start), n)
        if start > cursor:
            out.append((None, text[cursor:start]))
        out.append((j, text[start:end]))
        cursor = end
    if cursor < n:
        out.append((None, text[cursor:]))
    return out


# What an element shows when the element before it already drew its characters: the byte pieces
# of one character at ALL_TOKENS (three tokens for one emoji), each its own column.
CONTINUED = "+"


def _continued(span: tuple[int, int], piece: str) -> bool:
    """Whether an element drew nothing although it has text: an earlier element drew its characters."""
    return not piece and span[1] > span[0]


def _locate(text: str, elements: Sequence[str]) -> list[tuple[int, int]] | None:
    """Spans of ``elements`` found left to right in ``text``, or None if one is missing."""
    spans, cursor = [], 0
    for element in elements:
        start = text.find(element, cursor)
        if start < 0 or not element:
            return None
        spans.append((start, start + len(element)))
        cursor = start + len(element)
    return spans


def _output_side(expl: Explanation) -> tuple[str, list[str], list[tuple[int, int]]]:
    """The output text, its elements and their spans (rebuilt from the labels when missing)."""
    elements = list(expl.output_elements) if expl.output_elements is not None else expl.target_labels
    text = expl.output_text
    spans = list(expl.output_spans) if expl.output_spans is not None else None
    if text is not None and spans is not None and len(spans) == len(elements):
        return text, elements, spans
    if text is not None:
        found = _locate(text, elements)
        if found is not None:
            return text, elements, found
    sep = "" if any(e[:1].isspace() for e in elements[1:]) else " "
    spans, cursor = [], 0
    for k, element in enumerate(elements):
        cursor += len(sep) if k else 0
        spans.append((cursor, cursor + len(element)))
        cursor += len(element)
    return sep.join(elements), elements, spans


def _output_rows(expl: Explanation, n_outputs: int) -> dict[int, int]:
    """Output element position -> score row explaining it."""
    rows = {t.index: i for i, t in enumerate(expl.targets) if 0 <= t.index < n_outputs}
    if len(rows) != len(expl.targets) and len(expl.targets) == n_outputs:
        rows = {i: i for i in range(n_outputs)}  # indices unusable: rows are the outputs in order
    return rows


def _top_line(expl: Explanation, i: int, k: int = 5) -> str:
    """The ``k`` columns of largest |score| of row ``i``, with their scores: readable without hovering."""
    row, columns = expl.scores[i], expl.columns
    order = [j for j in np.argsort(-np.nan_to_num(np.abs(row), nan=-1.0), kind="stable") if not math.isnan(row[j])]
    # each name isolated (FSI ... PDI): a right-to-left word must not pull its score to its other side
    signed = not unsigned(expl)
    picks = [f"\u2068{_shown(columns[j])}\u2069 {_fmt_short(float(row[j]), signed)}" for j in order[:k]]
    return ("largest |score|: " + " \u00b7 ".join(picks)) if picks else ""


def _row_info(expl: Explanation, i: int, sep: str = UNICODE_GLYPHS.sep) -> str:
    """The line under a target's name: probability, explained value, completeness gap."""
    t = expl.targets[i]
    parts = []
    if not math.isnan(t.probability):
        parts.append(f"p = {_fmt_prob(t.probability)}")
    if not math.isnan(t.score):
        parts.append(f"f(x) = {t.score:.4g} ({expl.inference_mode})")
    if expl.completeness_gap is not None and i < len(expl.completeness_gap):
        gap = float(expl.completeness_gap[i])
        if not math.isnan(gap):
            parts.append(f"completeness gap {gap:+.3g}")
    # A regression (no probability on any row) predicts a value, not a class: nothing to name.
    regression = all(math.isnan(u.probability) for u in expl.targets)
    if expl.task == "classification" and expl.predicted is not None and not regression:
        if t.index == expl.predicted:
            parts.append("predicted")
        else:  # switched to another class: still say which one the model chose
            # An explanation saved before predicted_label was kept names another class by its index.
            chosen = expl.predicted_label or next(
                (u.label for u in expl.targets if u.index == expl.predicted), f"class {expl.predicted}"
            )
            parts.append(f"predicted: {chosen}")
    return sep.join(parts)


# ----------------------------------------------------------------- HTML
_CSS = """
#@{font-family:ui-sans-serif,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
font-size:14px;line-height:1.5;color:#1f2328;background:#fff;border:1px solid #d0d7de;border-radius:8px;
padding:12px 14px;margin:6px 0;box-sizing:border-box;max-width:100%;text-align:left;color-scheme:light}
#@ .itx-head{display:flex;align-items:baseline;gap:12px;margin:0 0 8px;white-space:nowrap;min-width:0}
#@ .itx-head+.itx-hint{margin:-6px 0 8px}
#@ .itx-title{display:flex;align-items:center;gap:5px;flex:0 1 auto;min-width:0;max-width:70%;font-size:15px}
#@ .itx-label{display:block;min-width:0;min-height:1.5em;overflow:hidden;text-overflow:ellipsis;white-space:pre;
font-weight:600;background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;padding:0 5px}
#@ .itx-info{flex:1 1 0;min-width:0;overflow:hidden;text-overflow:ellipsis}
#@ .itx-info,#@ .itx-hint{color:#57606a;font-size:13px}
#@ .itx-top{color:#57606a;font-size:13px;margin:6px 0 0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
#@ .itx-hint{font-style:italic}
#@ .itx-controls{display:flex;flex-wrap:wrap;gap:4px;margin:0 0 8px}
#@ .itx-btn{display:inline-flex;align-items:baseline;gap:4px;max-width:100%;font:inherit;font-size:13px;
line-height:1.6;color:#1f2328;background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:1px 9px;
cursor:pointer;white-space:pre;margin:0}
#@ .itx-btn-label{min-width:0;max-width:16em;overflow:hidden;text-overflow:ellipsis}
#@ .itx-btn small{color:#57606a;font-size:11px}
#@ .itx-btn[aria-pressed="true"]{background:#1f2328;border-color:#1f2328;color:#fff}
#@ .itx-btn[aria-pressed="true"] small{color:#d0d7de}
#@ .itx-controls label{min-width:0;max-width:100%}
#@ .itx-select{font:inherit;font-size:13px;padding:2px 4px;color:#1f2328;background:#fff;border:1px solid #d0d7de;
border-radius:6px;max-width:20em}
#@ .itx-text{white-space:pre-wrap;overflow-wrap:anywhere;font-size:15px;line-height:1.95;padding:8px 10px;
border:1px solid #eaeef2;border-radius:6px;background:#fff;color:#1f2328;margin:0;text-align:start}
#@ .itx-el{border-radius:3px;padding:2px 0;-webkit-box-decoration-break:clone;box-decoration-break:clone}
#@ .itx-nan{background-color:#eef0f3;background-image:repeating-linear-gradient(135deg,#f3f4f6 0 3px,#dde1e6 3px 6px);
color:#57606a}
#@ .itx-empty::before{content:attr(data-label);font-size:11px;border:1px dashed #8c959f;border-radius:3px;
padding:0 3px;margin:0 1px}
#@ .itx-ws::before{content:attr(data-ws);padding:0 2px}
#@ .itx-out{padding:2px 3px}
#@ .itx-out.itx-short{padding:2px 6px}
#@ .itx-out[data-row]{cursor:pointer}
#@ .itx-out[data-row]:hover{box-shadow:0 0 0 1px #57606a}
#@ .itx-out.itx-sel,#@ .itx-out.itx-sel:hover{outline:2px solid #1f2328;outline-offset:1px;box-shadow:none;
background-image:none;background-color:#fff;color:#1f2328}
#@ .itx-panels{display:flex;flex-wrap:wrap;gap:12px}
#@ .itx-panel{flex:1 1 300px;min-width:0}
#@ .itx-panel.itx-out-panel{position:sticky;top:0;align-self:flex-start;background:#fff}
#@ .itx-panel-title{font-size:11px;font-weight:600;color:#57606a;text-transform:uppercase;letter-spacing:.05em;
margin:0 0 3px}
#@ .itx-legend{display:flex;flex-wrap:wrap;align-items:center;gap:6px 18px;margin-top:10px;font-size:12px;
color:#57606a}
#@ .itx-scale{width:200px}
#@ .itx-bar{height:10px;border:1px solid #d0d7de;border-radius:2px}
#@ .itx-ticks{display:flex;justify-content:space-between;font-variant-numeric:tabular-nums;color:#1f2328}
#@ .itx-swatch{display:inline-block;width:16px;height:11px;vertical-align:middle;border:1px solid #d0d7de;
border-radius:2px;margin-right:4px}
#@ .itx-meta{margin-top:6px;font-size:11px;color:#57606a;overflow-wrap:anywhere}
#@ details.itx-heat-box{margin-top:12px}
#@ details.itx-heat-box summary{cursor:pointer;font-size:12px;color:#57606a;margin-bottom:4px}
#@ .itx-heat-wrap{overflow:auto;max-height:420px;border:1px solid #eaeef2;border-radius:6px;background:#fff}
#@ table.itx-heat{border-collapse:separate;border-spacing:1px;font-size:11px;line-height:1.2;margin:0;width:auto;
table-layout:auto;background:#fff}
#@ table.itx-heat tr,#@ table.itx-heat tbody tr{background:#fff}
#@ table.itx-heat td{width:16px;min-width:16px;height:16px;padding:0;border:none;text-align:center}
#@ table.itx-heat th{padding:0 6px 0 3px;border:none;font-weight:normal;color:#1f2328;background:#fff;
white-space:pre;text-align:right}
#@ table.itx-heat thead th{position:sticky;top:0;z-index:1;vertical-align:bottom;text-align:center;padding:2px 0}
#@ table.itx-heat thead th.itx-corner{left:0;z-index:3}
#@ table.itx-heat tbody th{position:sticky;left:0;cursor:pointer}
#@ table.itx-heat tbody th span{display:block;max-width:12em;overflow:hidden;text-overflow:ellipsis}
#@ table.itx-heat .itx-colh span{writing-mode:vertical-rl;transform:rotate(180deg);display:inline-block;
max-height:96px;overflow:hidden;white-space:pre;text-overflow:ellipsis}
#@ table.itx-heat .itx-first-out{border-left:2px solid #57606a}
#@ table.itx-heat tr.itx-sel-row th{background:#1f2328;color:#fff}
"""

_JS = """
(function () {
  "use strict";
  var CARDS = __CARDS__;  // [[card id, its data], ...]: one card, or every card of a list
  var INF = 1.7976931348623157e308;  // _JSON_INF
  var here = document.currentScript ? document.currentScript.parentNode : null;
  CARDS.forEach(function (card) {
    var sel = '[id="' + card[0] + '"]';
    var roots = document.querySelectorAll(sel);
    if (!roots.length && here) {  // not found by id in the document: look beside the script
      roots = here.id === card[0] ? [here] : here.querySelectorAll(sel);
    }
    for (var k = 0; k < roots.length; k++) { init(roots[k], card[1]); }
  });

  function init(root, D) {
    if (!root || root.getAttribute("data-itx-ready")) { return; }
    root.setAttribute("data-itx-ready", "1");
    var pinned = D.row;
    function all(sel) { return Array.prototype.slice.call(root.querySelectorAll(sel)); }
    var cells = all(".itx-el[data-col]");
    var outs = all(".itx-out[data-row]");
    var buttons = all(".itx-btn[data-row]");
    var heatRows = all("tr[data-row]");
    var select = root.querySelector("select.itx-select");
    var labelNode = root.querySelector(".itx-label");
    var infoNode = root.querySelector(".itx-info");
    var topNode = root.querySelector(".itx-top");
    var lo = root.querySelector(".itx-lo");
    var hi = root.querySelector(".itx-hi");

    function luminance(c) {
      var s = 0, w = [0.2126, 0.7152, 0.0722];
      for (var i = 0; i < 3; i++) {
        var x = c[i] / 255;
        s += w[i] * (x <= 0.04045 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
      }
      return s;
    }
    function colour(v, s) {
      var t = Math.abs(v) >= INF ? 1 : (s > 0 ? Math.min(Math.abs(v) / s, 1) : 0);
      var end = v >= 0 ? D.pos : D.neg, out = [];
      for (var i = 0; i < 3; i++) { out.push(Math.floor(255 + t * (end[i] - 255) + 0.5)); }
      return out;
    }
    function textColour(bg) {
      var l = luminance(bg);
      return (l + 0.05) / (luminance(D.dark) + 0.05) >= 1.05 / (l + 0.05) ? D.dark : D.light;
    }
    function css(c) { return "rgb(" + c[0] + ", " + c[1] + ", " + c[2] + ")"; }
    function fmt(v) {  // as _fmt_exact does: Python's "%+.6g", exact halves to even as Python rounds them
      if (Math.abs(v) >= INF) { return v > 0 ? "+inf" : "-inf"; }  // JSON's stand-in for an infinite score
      var sign = v < 0 || (v === 0 && 1 / v < 0) ? "-" : "+", a = Math.abs(v);
      if (a === 0) { return sign + "0"; }
      // 26 exact significant digits: a double that is not an exact half shows a non-zero digit in them.
      var e = a.toExponential(25).split("e"), exp = Number(e[1]), d = e[0].replace(".", "");
      var rest = d.slice(6), up = rest[0] > "5" || (rest[0] === "5" && (/[1-9]/.test(rest.slice(1)) || d[5] % 2 === 1));
      var n = Number(d.slice(0, 6)) + (up ? 1 : 0);
      if (n === 1000000) { n = 100000; exp += 1; }
      var ds = String(n), x = Math.abs(exp), out;
      if (exp < -4 || exp >= 6) {
        out = trim(ds[0] + "." + ds.slice(1)) + "e" + (exp < 0 ? "-" : "+") + (x < 10 ? "0" : "") + x;
      } else if (exp >= 0) {
        out = trim(ds.slice(0, exp + 1) + "." + ds.slice(exp + 1));
      } else {
        out = trim("0." + "0".repeat(x - 1) + ds);
      }
      return sign + out;
    }
    function trim(s) { return s.indexOf(".") < 0 ? s : s.replace(/0+$/, "").replace(/\\.$/, ""); }
    function shown(s) {  // as _shown does
      if (!s) { return '""'; }
      var v = s.replace(/\\r\\n?/g, "\\n").replace(/\\n/g, "\\u21b5").replace(/\\t/g, "\\u2192");
      return s && !s.trim() ? v.replace(/\\s/g, "") || "\\u2423" : v;
    }

    function paint(row) {
      var values = D.scores[row], s = D.scales[row];
      cells.forEach(function (el) {
        var j = Number(el.getAttribute("data-col")), v = values[j], name = shown(D.columns[j]);
        if (v === null) {
          el.classList.add("itx-nan");
          el.style.backgroundColor = "";
          el.style.color = "";
          el.title = name + ": not attributable";
        } else {
          var bg = colour(v, s);
          el.classList.remove("itx-nan");
          el.style.backgroundColor = css(bg);
          el.style.color = css(textColour(bg));
          el.title = name + ": " + fmt(v);
        }
      });
      outs.forEach(function (el) { el.classList.toggle("itx-sel", Number(el.getAttribute("data-row")) === row); });
      heatRows.forEach(function (el) {
        el.classList.toggle("itx-sel-row", Number(el.getAttribute("data-row")) === row);
      });
      // One line each, cut with an ellipsis (the whole text in the title): a line that wrapped
      // would move everything below it while the pointer is on an output.
      if (labelNode) { labelNode.textContent = shown(D.rows[row].label); labelNode.title = D.rows[row].label; }
      if (infoNode) { infoNode.textContent = infoNode.title = D.rows[row].info; }
      if (topNode) { topNode.textContent = topNode.title = D.rows[row].top; }
      if (lo) { lo.textContent = "-" + D.rows[row].scale; }
      if (hi) { hi.textContent = "+" + D.rows[row].scale; }
      root.setAttribute("data-row", String(row));
    }
    function pin(row) {
      pinned = row;
      paint(row);
      buttons.forEach(function (b) {
        b.setAttribute("aria-pressed", Number(b.getAttribute("data-row")) === row ? "true" : "false");
      });
      if (select) { select.value = String(row); }
    }
    function rowOf(el) { return Number(el.getAttribute("data-row")); }

    buttons.forEach(function (b) { b.addEventListener("click", function () { pin(rowOf(b)); }); });
    if (select) { select.addEventListener("change", function () { pin(Number(select.value)); }); }
    outs.forEach(function (el) {
      el.addEventListener("mouseenter", function () { paint(rowOf(el)); });
      el.addEventListener("mouseleave", function () { paint(pinned); });
      el.addEventListener("click", function () { pin(rowOf(el)); });
      // Keyboard: focus previews as hover does, Enter or Space pins.
      el.addEventListener("focus", function () { paint(rowOf(el)); });
      el.addEventListener("blur", function () { paint(pinned); });
      el.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pin(rowOf(el)); }
      });
    });
    heatRows.forEach(function (tr) {
      tr.addEventListener("mouseenter", function () { paint(rowOf(tr)); });
      tr.addEventListener("mouseleave", function () { paint(pinned); });
      tr.addEventListener("click", function () { pin(rowOf(tr)); });
      tr.addEventListener("keydown", function (e) {  // its row label is focusable
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pin(rowOf(tr)); }
      });
    });
  }
})();
"""


def _element_span(
    col: int | None,
    piece: str,
    label: str,
    value: float | None,
    scale: float,
    *,
    extra_class: str = "",
    extra_attrs: str = "",
    shown_as: str | None = None,
) -> str:
    """One element as a ``<span>``: tinted by ``value`` (None: not a score column).

    An element with nothing to draw (an empty span, or only whitespace: 0 px wide at a line end)
    gets a symbol as CSS generated content (``shown_as``, else its label), so it can be seen and
    hovered while the text, and the line breaks it holds, stay as they are.
    """
    classes = ["itx-el"] + ([extra_class] if extra_class else [])
    attrs = [] if col is None else [f'data-col="{col}"']
    style = ""
    name = _shown(label)
    if not piece:
        classes.append("itx-empty")
        attrs.append(f'data-label="{_esc(_shown(label if shown_as is None else shown_as))}"')
    elif piece.isspace():
        classes.append("itx-ws")
        attrs.append(f'data-ws="{_esc(_whitespace_mark(piece))}"')
    if value is None:
        title = name
    elif math.isnan(value):
        classes.append("itx-nan")
        title = f"{name}: not attributable"
    else:
        bg = score_rgb(value, scale)
        style = f' style="background-color:{_css(bg)};color:{_css(text_rgb(bg))}"'
        title = f"{name}: {_fmt_exact(value)}"
    attrs.append(f'title="{_esc(title)}"')
    if extra_attrs:
        attrs.append(extra_attrs)
    return f'<span class="{" ".join(classes)}" {" ".join(attrs)}{style}>{_esc(piece)}</span>'


def _whitespace_mark(piece: str, glyphs: Glyphs = UNICODE_GLYPHS) -> str:
    """What a whitespace-only piece shows: a symbol per line break or tab, else one for spaces."""
    return "".join(c for c in _visible(piece, glyphs) if not c.isspace()) or glyphs.space


def _shown(label: str, glyphs: Glyphs = UNICODE_GLYPHS) -> str:
    """A label on one line (of the page, a terminal table): line breaks and tabs as symbols, and a
    label of whitespace only as its symbols (it would read as nothing). The page's JavaScript does
    the same (``shown``)."""
    if not label:  # a class named "" (id2label {0: ""}): an empty button would read as no class
        return '""'
    return _whitespace_mark(label, glyphs) if label.isspace() else _visible(label, glyphs)


def _text_block(
    text: str,
    spans: Sequence[tuple[int, int]],
    labels: Sequence[str],
    values: Sequence[float] | None,
    scale: float,
    *,
    side: str,
    col_offset: int = 0,
    rows_of: dict[int, int] | None = None,
    selected: int | None = None,
) -> str:
    """A text with each element a span; ``values`` None: the elements are not score columns."""
    parts = []
    for j, piece in _segments(text, spans):
        if j is None:
            parts.append(_esc(piece))
            continue
        value = None if values is None else float(values[col_offset + j])
        col = None if values is None else col_offset + j
        extra_class, extra_attrs = "", f'data-{side}="{j}"'
        if rows_of is not None:
            extra_class = "itx-out" + (" itx-short" if len(piece.strip()) == 1 else "")  # a wider target for "."
            if j in rows_of:
                extra_attrs += f' data-row="{rows_of[j]}" tabindex="0" role="button"'
                if rows_of[j] == selected:
                    extra_class += " itx-sel"
        parts.append(
            _element_span(
                col,
                piece,
                labels[j],
                value,
                scale,
                extra_class=extra_class,
                extra_attrs=extra_attrs,
                shown_as=CONTINUED if _continued(spans[j], piece) else None,
            )
        )
    return f'<div class="itx-text" data-side="{side}" dir="auto" style="white-space:pre-wrap">{"".join(parts)}</div>'


def unsigned(expl: Explanation) -> bool:
    """Whether the scores are magnitudes (how much, not which way): a variance, a mean of squares,
    a Sobol index (a share of variance), or a norm / mean of absolute values over the hidden dimension."""
    magnitude_methods = ("vargrad", "squaregrad", "sobol")
    if expl.method.lower() not in magnitude_methods and expl.token_reduction not in ("l2", "abs_mean"):
        return False
    return not bool((np.nan_to_num(expl.scores, nan=0.0) < 0).any())


def _legend(scale: float, shared: bool, generation: bool, magnitudes: bool = False) -> str:
    if magnitudes:  # nothing is ever blue, and red means "more", not "raises"
        gradient = f"linear-gradient(90deg,{_css(WHITE_RGB)} 0%,{_css(POSITIVE_RGB)} 100%)"
        ticks = f'<span>0</span><span class="itx-hi">+{_fmt_scale(scale)}</span>'
        meaning = (
            '<div><span style="color:rgb(220, 38, 38);font-weight:600">red</span>: a larger score. These '
            "scores have no sign: they say how much, not which way</div>"
        )
    else:
        gradient = f"linear-gradient(90deg,{_css(NEGATIVE_RGB)} 0%,{_css(WHITE_RGB)} 50%,{_css(POSITIVE_RGB)} 100%)"
        ticks = (
            f'<span class="itx-lo">-{_fmt_scale(scale)}</span><span>0</span>'
            f'<span class="itx-hi">+{_fmt_scale(scale)}</span>'
        )
        meaning = (
            '<div><span style="color:rgb(220, 38, 38);font-weight:600">red</span> raises the explained output, '
            '<span style="color:rgb(37, 99, 235);font-weight:600">blue</span> lowers it</div>'
        )
    note = (
        f"shared scale: full colour at |score| \u2265 {_fmt_scale(scale)}"
        if shared
        else "full colour at the largest |score| of the " + ("output shown" if generation else "class shown")
    )
    return (
        '<div class="itx-legend">'
        '<div class="itx-scale">'
        f'<div class="itx-bar" style="background:{gradient}"></div>'
        f'<div class="itx-ticks">{ticks}</div>'
        "</div>"
        f"{meaning}"
        '<div><span class="itx-swatch itx-nan"></span>not attributable</div>'
        f'<div class="itx-note">{_esc(note)}</div>'
        "</div>"
    )


def _heatmap(expl: Explanation, scales: list[float], selected: int, n_prompt: int, shared: bool) -> str:
    columns = expl.columns
    rows, cols = expl.scores.shape
    summary = (
        f"Attribution matrix: {rows} output element{'s' * (rows != 1)} \u00d7 {cols} column{'s' * (cols != 1)}"
        + (" (shared scale" if shared else " (each row on its own scale")
        + "; click a row to show it)"
    )
    if rows * cols > MAX_HEATMAP_CELLS:
        return (
            f'<details class="itx-heat-box"><summary>{_esc(summary)}</summary><div class="itx-hint">'
            f"The matrix has {rows * cols} cells, more than {MAX_HEATMAP_CELLS}: left out to keep the page small."
            "</div></details>"
        )
    head = ['<th class="itx-corner"></th>']
    for j, name in enumerate(columns):
        first_out = (
            ' class="itx-colh itx-first-out"' if j == n_prompt and expl.task == "causal_lm" else ' class="itx-colh"'
        )
        head.append(f'<th{first_out} title="{_esc(name)}"><span dir="auto">{_esc(_shown(name))}</span></th>')
    body = []
    for i, t in enumerate(expl.targets):
        cells = [f'<th title="{_esc(t.label)}" tabindex="0"><span dir="auto">{_esc(_shown(t.label))}</span></th>']
        for j, name in enumerate(columns):
            value = float(expl.scores[i, j])
            border = ' class="itx-first-out"' if j == n_prompt and expl.task == "causal_lm" else ""
            if math.isnan(value):
                cls = ' class="itx-nan itx-first-out"' if border else ' class="itx-nan"'
                title = _esc(f"{t.label} \u2190 {name}: not attributable")
                cells.append(f'<td{cls} title="{title}"></td>')
            else:
                bg = score_rgb(value, scales[i])
                title = _esc(f"{t.label} \u2190 {name}: {_fmt_exact(value)}")
                cells.append(f'<td{border} style="background-color:{_css(bg)}" title="{title}"></td>')
        sel = ' class="itx-sel-row"' if i == selected else ""
        body.append(f'<tr data-row="{i}"{sel}>{"".join(cells)}</tr>')
    return (
        f'<details class="itx-heat-box" open><summary>{_esc(summary)}</summary><div class="itx-heat-wrap">'
        f'<table class="itx-heat"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        "</div></details>"
    )


def explanation_html(expl: Explanation, *, scale: float | None = None, target: int | str | None = None) -> str:
    """A self-contained HTML fragment showing one explanation.

    Each element of the text is a ``<span>`` tinted by its score (hover it for the exact score);
    classification adds a switch between the explained classes, generation shows the prompt and
    the output, where hovering or clicking an output element shows what drove it, and a heat map
    of the whole matrix.

    Args:
        expl: the explanation.
        scale: the ``|score|`` drawn at full colour, shared by every row (and by every render that
            passes the same value), or ``"shared"``: the largest finite ``|score|`` of every row;
            default: the largest finite ``|score|`` of the row shown.
        target: the row shown first (row number or label); default: the predicted class when it
            is explained, else the first row.

    Returns:
        An HTML fragment (inline CSS and JS, no network).

    Example:
        >>> html_text = explanation_html(expl, scale=1.0)  # doctest: +SKIP
    """
    return _card_html(expl, scale, target)


def _card_html(expl: Explanation, scale: float | None, target: int | str | None, cards: list | None = None) -> str:
    """One explanation's card, with its stylesheet and script; or, in a list (``cards``), without
    them: the list gives one stylesheet to all its cards, and one script that takes every card's
    ``(id, data)``, which this appends to ``cards``."""
    expl = _check_explanation(expl)
    shared = _check_scale(shared_scale(scale, [expl]))
    row = _default_row(expl, target)
    scales = _row_scales(expl.scores, shared)
    uid = "itx-" + uuid.uuid4().hex[:12]
    generation = expl.task != "classification"
    values = expl.scores[row]

    if generation:
        head = _head("Output element", expl, row) + (
            '<div class="itx-hint">hover or click (tap) an output element to see what drove it</div>'
            if len(expl.targets) > 1
            else ""
        )
        controls = ""
        out_text, out_labels, out_spans = _output_side(expl)
        rows_of = _output_rows(expl, len(out_labels))
        n_prompt = len(expl.elements)
        prompt = _text_block(expl.text, expl.spans, expl.elements, values, scales[row], side="prompt")
        output = _text_block(
            out_text,
            out_spans,
            out_labels,
            values if expl.task == "causal_lm" else None,
            scales[row],
            side="output",
            col_offset=n_prompt,
            rows_of=rows_of,
            selected=row,
        )
        body = (
            '<div class="itx-panels">'
            f'<div class="itx-panel"><div class="itx-panel-title">{"Input" if expl.task == "seq2seq" else "Prompt"}</div>'
            f"{prompt}</div>"
            # Beside a long prompt, the outputs stay in view while it scrolls: they are what one clicks.
            f'<div class="itx-panel itx-out-panel"><div class="itx-panel-title">Output</div>{output}</div>'
            "</div>"
        )
        body += _top_div(expl, row)
        body += _legend(scales[row], shared is not None, True, unsigned(expl))
        body += _heatmap(expl, scales, row, n_prompt, shared is not None)
    else:
        head = _head("Explained class", expl, row)
        controls = _class_switch(expl, row) if len(expl.targets) > 1 else ""
        body = _text_block(expl.text, expl.spans, expl.elements, values, scales[row], side="prompt")
        body += _top_div(expl, row)
        body += _legend(scales[row], shared is not None, False, unsigned(expl))

    meta = " \u00b7 ".join(
        [
            f"method: {expl.method}",
            f"task: {expl.task}",
            f"granularity: {expl.granularity} ({expl.aggregation})",
            f"explained f: {expl.inference_mode}",
        ]
        + ([f"token reduction: {expl.token_reduction}"] if expl.token_reduction not in ("none", "") else [])
        + ([f"model: {expl.model}"] if expl.model else [])
        + [note for note in [cut_note(expl)] if note]
    )
    data = {
        "row": row,
        "scores": [[_json_score(v) for v in r] for r in expl.scores.tolist()],
        "scales": scales,
        "columns": expl.columns,
        "rows": [
            {"label": tt.label, "info": _row_info(expl, i), "scale": _fmt_scale(scales[i]), "top": _top_line(expl, i)}
            for i, tt in enumerate(expl.targets)
        ],
        "pos": POSITIVE_RGB,
        "neg": NEGATIVE_RGB,
        "dark": DARK_TEXT_RGB,
        "light": LIGHT_TEXT_RGB,
    }
    alone = cards is None
    if not alone:
        cards.append((uid, data))
    return (
        f'<div class="itx-root" id="{uid}" data-task="{_esc(expl.task)}" data-row="{row}">'
        + (f"<style>{_CSS.replace('#@', '#' + uid)}</style>" if alone else "")
        + f"{head}{controls}{body}"
        f'<div class="itx-meta">{_esc(meta)}</div>' + (_script([(uid, data)]) if alone else "") + "</div>"
    )


def _script(cards: list[tuple[str, dict]]) -> str:
    """The ``<script>`` that paints ``cards`` and makes them interactive. The data lives in the
    script itself: hosts that re-create scripts may drop other ones."""
    return f"<script>{_JS.replace('__CARDS__', _script_json([list(c) for c in cards]))}</script>"


def _head(kind: str, expl: Explanation, row: int) -> str:
    """The row's name and its info line, one line whatever their length (see ``paint`` in ``_JS``)."""
    label, info = expl.targets[row].label, _row_info(expl, row)
    return (
        f'<div class="itx-head"><div class="itx-title">{kind} '
        f'<b class="itx-label" dir="auto" title="{_esc(label)}">{_esc(_shown(label))}</b></div>'
        f'<div class="itx-info" title="{_esc(info)}">{_esc(info)}</div></div>'
    )


def _top_div(expl: Explanation, row: int) -> str:
    top = _top_line(expl, row)
    return f'<div class="itx-top" title="{_esc(top)}">{_esc(top)}</div>'


def _class_switch(expl: Explanation, selected: int) -> str:
    """Buttons for a few classes, a ``<select>`` for many."""
    targets = expl.targets
    if len(targets) <= 10:
        buttons = []
        for i, t in enumerate(targets):
            prob = "" if math.isnan(t.probability) else f" <small>{_fmt_prob(t.probability)}</small>"
            pressed = "true" if i == selected else "false"
            buttons.append(
                f'<button type="button" class="itx-btn" data-row="{i}" aria-pressed="{pressed}" '
                f'title="{_esc(t.label)}"><span class="itx-btn-label" dir="auto">{_esc(_shown(t.label))}</span>'
                f"{prob}</button>"
            )
        return f'<div class="itx-controls" role="group" aria-label="explained class">{"".join(buttons)}</div>'
    options = []
    for i, t in enumerate(targets):
        prob = "" if math.isnan(t.probability) else f" (p = {_fmt_prob(t.probability)})"
        sel = " selected" if i == selected else ""
        options.append(f'<option value="{i}"{sel}>{_esc(_shown(t.label) + prob)}</option>')
    return (
        '<div class="itx-controls"><label>explained class '
        f'<select class="itx-select">{"".join(options)}</select></label></div>'
    )


def _as_list(explanations: Any) -> list[Explanation]:
    if isinstance(explanations, Explanation):
        return [explanations]
    if isinstance(explanations, (str, bytes)) or not isinstance(explanations, Sequence):
        raise InterpTextError(f"expected an Explanation or a list of them, got {type(explanations).__name__}.")
    return [_check_explanation(e) for e in explanations]


_LIST_CSS = """
#@{font-family:ui-sans-serif,system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1f2328;
background:#f6f8fa;border-radius:8px;padding:2px 8px 2px 0;color-scheme:light}
#@ .itx-list-row{display:flex;gap:10px;align-items:flex-start}
#@ .itx-list-idx{flex:0 0 auto;min-width:28px;margin-top:14px;text-align:right;font-size:12px;font-weight:600;
color:#57606a;font-variant-numeric:tabular-nums}
#@ .itx-list-body{flex:1 1 auto;min-width:0}
#@ .itx-list-empty{color:#57606a;font-style:italic}
"""


def explanations_html(
    explanations: Sequence[Explanation], *, scale: float | None = None, target: int | str | None = None
) -> str:
    """One HTML fragment showing several explanations, one row per text.

    Args:
        explanations: the explanations, in display order.
        scale: a ``|score|`` drawn at full colour in every row, so that colours compare across
            texts, or ``"shared"``: the largest ``|score|`` of all of them; default: each row's own
            largest ``|score|``.
        target: the row shown first in every explanation (see :func:`explanation_html`).

    Returns:
        An HTML fragment.

    Example:
        >>> page = explanations_html([expl_a, expl_b], scale=0.5)  # doctest: +SKIP
    """
    items = _as_list(explanations)
    scale = shared_scale(scale, items)
    uid = "itx-list-" + uuid.uuid4().hex[:12]
    cards: list[tuple[str, dict]] = []
    rows = [
        f'<div class="itx-list-row"><div class="itx-list-idx">{n}</div>'
        f'<div class="itx-list-body">{_card_html(e, scale, target, cards)}</div></div>'
        for n, e in enumerate(items, start=1)
    ]
    if not rows:
        rows = ['<div class="itx-list-empty">no explanations</div>']
    # One stylesheet and one script for every card (12 KB and 7 KB each otherwise: 38 MB of
    # repeats in a list of 2000). The script comes after the cards it paints.
    style = _CSS.replace("#@", f"#{uid} .itx-root")
    style = f"<style>{style}{_LIST_CSS.replace('#@', '#' + uid)}</style>"
    return f'<div class="itx-list" id="{uid}">{style}{"".join(rows)}{_script(cards) if cards else ""}</div>'


def save_html(explanations: Explanation | Sequence[Explanation], path: str | Path, **options: Any) -> Path:
    """Write a standalone UTF-8 page (``<!doctype html>``) that needs no network to view.

    Args:
        explanations: one explanation, or a list shown one row per text.
        path: the file to write.
        **options: ``scale`` and ``target``, as for :func:`explanation_html`.

    Returns:
        The path written.

    Example:
        >>> save_html(expl, "explanation.html", scale=1.0)  # doctest: +SKIP
    """
    check_options("save_html", options, HTML_OPTIONS)
    path = checked_suffix(path, "save_html")
    if isinstance(explanations, Explanation):
        fragment = explanation_html(explanations, **options)
        items = [explanations]
    else:
        items = _as_list(explanations)
        fragment = explanations_html(items, **options)
    methods = sorted({e.method for e in items})
    title = "interp_text explanation" + (f" \u00b7 {', '.join(methods)}" if methods else "")
    page = (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        # no request can leave the page, whatever ends up in it
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n"
        "<style>body{margin:24px auto;max-width:1200px;padding:0 16px;background:#f6f8fa;"
        "font-family:ui-sans-serif,system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif}"
        "h1{font-size:18px;font-weight:600;color:#1f2328}</style>\n"
        f"</head>\n<body>\n<h1>{_esc(title)}</h1>\n{fragment}\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


class ExplanationList(list):
    """A list of explanations that a notebook displays as one page, one row per text.

    Slices, sums and repetitions are ExplanationLists too; ``print`` shows every explanation
    for the terminal (``Explanation.to_terminal``'s options: ``target``, ``color``, ``scale``).

    Example:
        >>> ExplanationList([expl_a, expl_b]).save_html("page.html")  # doctest: +SKIP
    """

    # list's own methods build plain lists: each one that returns a new list is wrapped here
    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return ExplanationList(item) if isinstance(index, slice) else item

    def __add__(self, other: Any) -> ExplanationList:
        return ExplanationList(super().__add__(other))

    def __radd__(self, other: Any) -> ExplanationList:
        if not isinstance(other, list):
            return NotImplemented
        return ExplanationList(list(other) + list(self))

    def __mul__(self, n: Any) -> ExplanationList:
        return ExplanationList(super().__mul__(n))

    __rmul__ = __mul__

    def copy(self) -> ExplanationList:
        return ExplanationList(self)

    def __str__(self) -> str:
        return self.to_terminal()

    def __repr__(self) -> str:
        if not self:
            return "ExplanationList([])"

        def one_or_all(values: set[str]) -> str:
            return repr(next(iter(values))) if len(values) == 1 else repr(sorted(values))

        methods = one_or_all({str(getattr(e, "method", type(e).__name__)) for e in self})
        tasks = one_or_all({str(getattr(e, "task", type(e).__name__)) for e in self})
        texts = [str(getattr(e, "text", "")) for e in list(self)[:3]]
        texts = [repr(t if len(t) <= 30 else t[:27] + "...") for t in texts] + (["..."] if len(self) > 3 else [])
        count = f"{len(self)} explanation" + ("s" if len(self) > 1 else "")
        return f"ExplanationList({count}, method={methods}, task={tasks}, texts=[{', '.join(texts)}])"

    def to_html(self, **options: Any) -> str:
        """One HTML fragment for the whole list (options ``scale``, ``target``, as ``Explanation.to_html``)."""
        check_options("to_html", options, HTML_OPTIONS)
        return explanations_html(self, **options)

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path: str | Path, **options: Any) -> Path:
        """Write the list as one standalone page (options ``scale``, ``target``, as ``Explanation.save_html``)."""
        return save_html(self, path, **options)

    def save(self, path: str | Path) -> Path:
        """Write the list as JSON lines, one ``Explanation.to_dict()`` per line; ``ExplanationList.load``
        reads it back (as it reads ``interp-text explain --output`` files)."""
        path = checked_suffix(path, "save")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(e.to_json() + "\n" for e in _as_list(self)), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ExplanationList:
        """The explanations of a JSON-lines file (``save``'s, or the command line's ``--output``).

        The loaded list's ``ids`` hold each line's "id" (the command line writes the input's, or
        the input line's index from 0 where it had none), None for a line without one:
        ``dict(zip(loaded.ids, loaded))`` finds a result by id.
        """
        out, ids = cls(), []
        # Lines end at "\n" only: a text may hold U+2028 and the like, which JSON leaves unescaped.
        for n, line in enumerate(Path(path).read_text(encoding="utf-8-sig").split("\n"), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise InterpTextError(f"{path}:{n} is not a JSON line ({err.msg}); it is not a saved list.") from None
            if not isinstance(data, dict):
                raise InterpTextError(f"{path}:{n} is not an explanation (a JSON object); it is not a saved list.")
            ids.append(data.get("id"))
            out.append(Explanation.from_dict(data))
        out.ids = ids
        return out

    def to_terminal(self, **options: Any) -> str:
        """Every explanation for a terminal, separated by blank lines (``Explanation.to_terminal``'s options: ``target``, ``color``, ``scale``)."""
        check_options("to_terminal", options, TERMINAL_OPTIONS)
        if not self:
            return "no explanations"
        items = _as_list(self)
        if "scale" in options:
            options = {**options, "scale": shared_scale(options["scale"], items)}
        return "\n\n".join(explanation_terminal(e, **options) for e in items)


# ----------------------------------------------------------------- terminal
_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_UNDERLINE = "\x1b[4m"


def _use_color(color: bool | None) -> bool:
    """The explicit ``color``, else: no if NO_COLOR, yes if FORCE_COLOR, else whether stdout is a terminal
    other than TERM=dumb.

    The text is returned, not written, so the stream it will reach is unknown: standard output
    is where ``print`` and the CLI send it. A Jupyter kernel's output is no terminal but shows
    colours. NO_COLOR wins over FORCE_COLOR, as in CPython.
    """
    if color is not None:
        if not isinstance(color, bool):
            raise InterpTextError(f"color must be True, False or None (auto), got {color!r}.")
        return color
    if os.environ.get("NO_COLOR", ""):  # https://no-color.org: set and non-empty
        return False
    if os.environ.get("FORCE_COLOR", ""):  # https://force-color.org: set and non-empty, whatever its value
        return True
    if type(sys.stdout).__module__.startswith("ipykernel"):  # a notebook: its output shows ANSI colours
        return True
    if os.environ.get("TERM") == "dumb":  # a terminal that says it cannot show escapes (Emacs shell, some CI)
        return False
    try:
        return bool(sys.stdout is not None and sys.stdout.isatty())
    except (AttributeError, ValueError):  # a stand-in without isatty, or a closed stream
        return False


def _ansi(piece: str, bg: tuple[int, int, int]) -> str:
    """``piece`` on background ``bg``; line breaks stay uncoloured so no colour bleeds to the line end."""
    fg = text_rgb(bg)
    code = f"\x1b[48;2;{bg[0]};{bg[1]};{bg[2]}m\x1b[38;2;{fg[0]};{fg[1]};{fg[2]}m"
    return "\n".join(f"{code}{line}{_RESET}" if line else "" for line in piece.split("\n"))


def _glyphs() -> Glyphs:
    """Unicode decorations, or ASCII ones where standard output's encoding cannot write them.

    As for colour, the text is returned, not written: standard output is where it goes. A stream
    that names no encoding (a StringIO) is taken to hold any text.
    """
    encoding = getattr(sys.stdout, "encoding", None)
    if not encoding:
        return UNICODE_GLYPHS
    every = "".join(UNICODE_GLYPHS[:7]) + "".join(UNICODE_GLYPHS.controls.values())
    try:
        every.encode(encoding)
    except UnicodeEncodeError:
        return ASCII_GLYPHS._replace(encoding=encoding)
    except LookupError:  # an encoding Python does not know: ASCII is safe
        return ASCII_GLYPHS._replace(encoding="ascii")
    return UNICODE_GLYPHS


def _term_safe(text: str, glyphs: Glyphs) -> str:
    """Control characters as visible symbols, so no user text can drive the terminal (ESC, CR...);
    where standard output cannot write a character, its Python escape. A Windows line break
    ("\\r\\n") is a line break, not a carriage return to show."""
    text = text.replace("\r\n", "\n").translate(glyphs.controls)
    if glyphs.encoding:
        text = text.encode(glyphs.encoding, "backslashreplace").decode(glyphs.encoding)
    return text


def _term_element(
    piece: str,
    label: str,
    value: float,
    scale: float,
    color: bool,
    glyphs: Glyphs,
    mark: bool = False,
    signed: bool = True,
) -> str:
    shown = _term_safe(piece or label, glyphs)  # an element with an empty span (special token) shows its name
    if not color:
        if mark:
            return f"{shown}[target]"
        return f"{shown}[{'n/a' if math.isnan(value) else _fmt_short(value, signed)}]"
    if mark:
        return f"{_BOLD}{_UNDERLINE}{shown}{_RESET}"
    if math.isnan(value):
        return f"{_DIM}{shown}{_RESET}"
    bg = score_rgb(value, scale)
    return shown if bg == WHITE_RGB else _ansi(shown, bg)


def _term_text(
    text: str,
    spans: Sequence[tuple[int, int]],
    labels: Sequence[str],
    values: Sequence[float] | None,
    scale: float,
    color: bool,
    glyphs: Glyphs,
    *,
    col_offset: int = 0,
    mark: int | None = None,
    signed: bool = True,
) -> str:
    parts = []
    for j, piece in _segments(text, spans):
        if j is None:
            parts.append(_term_safe(piece, glyphs))
        elif values is None:  # not score columns (seq2seq outputs): only the target is marked
            mark_it = j == mark
            parts.append(
                _term_element(piece, labels[j], math.nan, scale, color, glyphs, mark=True)
                if mark_it
                else _term_safe(piece, glyphs)
            )
        else:
            value = float(values[col_offset + j])
            label = CONTINUED if _continued(spans[j], piece) else labels[j]
            parts.append(_term_element(piece, label, value, scale, color, glyphs, mark=j == mark, signed=signed))
    return "".join(parts)


def _term_legend(scale: float | None, color: bool, magnitudes: bool = False) -> str:
    where = f"|score| {_fmt_scale(scale)}" if scale is not None else "each row's largest |score|"
    unsigned_note = "; scores have no sign: how much, not which way" if magnitudes else ""
    if not color:
        return f"legend: element[score], n/a = not attributable{unsigned_note}"
    steps = [0.0, 0.25, 0.5, 0.75, 1.0] if magnitudes else [-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]
    bar = "".join(_ansi("  ", score_rgb(s, 1.0)) for s in steps)
    low = "0" if magnitudes else "-"
    return f"legend: {low} {bar} + (full colour at {where}; {_DIM}dim{_RESET} = not attributable{unsigned_note})"


def _term_header(expl: Explanation, i: int, color: bool, kind: str, glyphs: Glyphs) -> str:
    t = expl.targets[i]
    label = _term_safe(repr(t.label), glyphs)
    label = f"{_BOLD}{label}{_RESET}" if color else label
    info = _term_safe(_visible(_row_info(expl, i, glyphs.sep), glyphs), glyphs)  # it may name a label: "\n", ESC
    return f"{glyphs.pointer} {kind} {label}" + (f"  {info}" if info else "")


def cut_note(expl: Explanation) -> str:
    """What ``truncation=True`` cut of the text given, for a view ("" where it cut nothing)."""
    cut = (expl.options or {}).get("truncated")
    if not isinstance(cut, dict):
        return ""
    try:
        start, end, of = int(cut["start"]), int(cut["end"]), int(cut["of"])
    except (KeyError, TypeError, ValueError):
        return ""
    return f"cut to fit the model (truncation=True): characters {start}-{end} of {of} explained"


def explanation_terminal(
    expl: Explanation,
    *,
    target: int | str | None = None,
    color: bool | None = None,
    scale: float | None = None,
) -> str:
    """The explanation as text for a terminal, with 24-bit ANSI background colours.

    Classification: one header per class (label, probability) followed by the tinted text.
    Generation: the prompt and the output, then one line per output element with its five
    columns of largest ``|score|``; with ``target``, the whole text tinted for that output.
    Where standard output's encoding cannot write our decorations (``·``, ``▶``, ``│``...), they are
    drawn in ASCII, and the characters of the user's text it cannot write are shown as Python
    escapes (``caf\\xe9``); otherwise the text is left as it is.

    Args:
        expl: the explanation.
        target: show only this row (row number or label); default: every row.
        color: True: ANSI colours; False: plain text with scores in brackets (``good[+0.52]``);
            None: plain if the ``NO_COLOR`` environment variable is set, colours if
            ``FORCE_COLOR`` is, else colours only when standard output is a terminal (not ``TERM=dumb``).
        scale: the ``|score|`` drawn at full colour; default: each row's largest ``|score|``.

    Returns:
        The text, lines separated by ``\\n``.

    Example:
        >>> print(explanation_terminal(expl, color=False))  # doctest: +SKIP
    """
    expl = _check_explanation(expl)
    use_color = _use_color(color)
    glyphs = _glyphs()
    shared = _check_scale(shared_scale(scale, [expl]))
    scales = _row_scales(expl.scores, shared)
    rows = [_default_row(expl, target)] if target is not None else list(range(len(expl.targets)))
    meta = glyphs.sep.join(
        [expl.method, expl.task, f"{expl.granularity} ({expl.aggregation})", f"f = {expl.inference_mode}"]
        # A folder's absolute path would fill the line: its last part names it.
        + ([Path(expl.model).name if Path(expl.model).is_absolute() else expl.model] if expl.model else [])
    )
    meta = _term_safe(_visible(meta, glyphs), glyphs)  # a model's name is the user's text
    lines = [f"{_DIM}{meta}{_RESET}" if use_color else meta]
    lines += [note for note in [cut_note(expl)] if note]
    signed = not unsigned(expl)

    if expl.task == "classification":
        for i in rows:
            lines.append(_term_header(expl, i, use_color, "class", glyphs))
            lines.append(
                _term_text(
                    expl.text, expl.spans, expl.elements, expl.scores[i], scales[i], use_color, glyphs, signed=signed
                )
            )
        lines.append(_term_legend(shared, use_color, unsigned(expl)))
        return "\n".join(lines)

    out_text, out_labels, out_spans = _output_side(expl)
    rows_of = _output_rows(expl, len(out_labels))
    output_of = {r: k for k, r in rows_of.items()}
    n_prompt = len(expl.elements)
    causal = expl.task == "causal_lm"
    if target is not None:
        i = rows[0]
        lines.append(_term_header(expl, i, use_color, "output element", glyphs))
        lines.append("prompt:")
        lines.append(
            _term_text(
                expl.text, expl.spans, expl.elements, expl.scores[i], scales[i], use_color, glyphs, signed=signed
            )
        )
        lines.append("output:")
        lines.append(
            _term_text(
                out_text,
                out_spans,
                out_labels,
                expl.scores[i] if causal else None,
                scales[i],
                use_color,
                glyphs,
                col_offset=n_prompt,
                mark=output_of.get(i),
                signed=signed,
            )
        )
    else:
        lines.append(f"prompt: {_term_safe(expl.text, glyphs)}")
        lines.append(f"output: {_term_safe(out_text, glyphs)}")
        lines.append(
            f"output element {glyphs.arrow} its 5 columns of largest |score|"
            + (" (earlier outputs included)" if causal else "")
        )
        columns = expl.columns
        shown = [_term_safe(repr(t.label), glyphs) for t in expl.targets]  # a label the console cannot write
        width = min(max(map(_columns, shown), default=0), 24)  # terminal columns: CJK takes two
        probs = ["" if math.isnan(t.probability) else f"p={_fmt_prob(t.probability)} " for t in expl.targets]
        gaps = expl.completeness_gap
        if gaps is not None:  # integrated gradients', KernelShap's: how far the row is from complete
            probs = [p + ("" if math.isnan(g) else f"gap {g:+.3g} ") for p, g in zip(probs, map(float, gaps))]
        prob_width = max(map(len, probs), default=0)  # so that every row's │ lines up
        for i in range(len(expl.targets)):
            row = expl.scores[i]
            order = [
                j for j in np.argsort(-np.nan_to_num(np.abs(row), nan=-1.0), kind="stable") if not math.isnan(row[j])
            ]
            chips = []
            for j in order[:5]:
                name = _term_safe(_shown(columns[j], glyphs), glyphs)
                name = f"out:{name}" if j >= n_prompt else name  # an earlier output, not the prompt
                if use_color:
                    bg = score_rgb(float(row[j]), scales[i])
                    chips.append(f"{_ansi(name, bg)} {_DIM}{_fmt_short(float(row[j]), signed)}{_RESET}")
                else:
                    chips.append(f"{name}[{_fmt_short(float(row[j]), signed)}]")
            prob = probs[i].ljust(prob_width)
            label = _fit(shown[i], width, "..." if glyphs.encoding else "\u2026")  # a long label is cut
            label = f"{_BOLD}{label}{_RESET}" if use_color else label
            lines.append(f"  {label} {prob}{glyphs.rule} {'  '.join(chips) if chips else '(nothing attributable)'}")
    lines.append(_term_legend(shared, use_color, unsigned(expl)))
    return "\n".join(lines)
