"""Explanations built by hand, with known scores, for the rendering tests (no model needed)."""

from __future__ import annotations

import re

import numpy as np

from interp_text.explanation import Explanation, Target


def words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return [text[s:e] for s, e in spans], spans


def classification(text: str, scores, labels=("neg", "pos"), predicted: int | None = 1, probs=None) -> Explanation:
    elements, spans = words(text)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(labels), len(elements))
    probs = probs or [1 / len(labels)] * len(labels)
    targets = [Target(label, i, probability=p) for i, (label, p) in enumerate(zip(labels, probs))]
    return Explanation(text, elements, spans, scores, targets, method="saliency", predicted=predicted)


def causal(prompt: str, output: str, scores: np.ndarray, probability: float = 0.5) -> Explanation:
    """A causal-LM explanation; ``scores`` is (outputs, prompt + outputs), masked here to NaN
    where output i would depend on itself or later outputs."""
    elements, spans = words(prompt)
    out_elements, out_spans = words(output)
    n = len(elements)
    scores = np.array(scores, dtype=np.float64)
    for i in range(len(out_elements)):
        scores[i, n + i :] = np.nan
    targets = [Target(label, k, probability=probability) for k, label in enumerate(out_elements)]
    return Explanation(
        prompt,
        elements,
        spans,
        scores,
        targets,
        method="integrated_gradients",
        task="causal_lm",
        output_text=output,
        output_elements=out_elements,
        output_spans=out_spans,
    )
