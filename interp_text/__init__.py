"""interp_text: explain what drives a Hugging Face text model's output.

Example:
    >>> from interp_text import VarGrad
    >>> explanation = VarGrad(model, tokenizer).explain("The food was cold.")  # doctest: +SKIP

The names below load their module (and torch, transformers) when first read, so that the
``interp-text`` command answers ``--help`` at once and a Ctrl-C while it starts is its own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name, by the module that holds it.
_HOME = {
    "load_default": "bundled",
    "compare": "comparison",
    "compare_default": "comparison",
    "format_table": "comparison",
    "InterpTextError": "errors",
    "Explanation": "explanation",
    "Target": "explanation",
    "GRADIENT_METHODS": "methods",
    "GradientShap": "methods",
    "InputXGradient": "methods",
    "IntegratedGradients": "methods",
    "Saliency": "methods",
    "SmoothGrad": "methods",
    "SquareGrad": "methods",
    "VarGrad": "methods",
    "Deletion": "metrics",
    "Insertion": "metrics",
    "evaluate_together": "metrics",
    "rationale_average_precision": "metrics",
    "Granularity": "options",
    "GranularityAggregationStrategy": "options",
    "InferenceModes": "options",
    "PERTURBATION_METHODS": "perturbation",
    "KernelShap": "perturbation",
    "Lime": "perturbation",
    "Occlusion": "perturbation",
    "Sobol": "perturbation",
    "ExplanationList": "render",
}

__all__ = [
    "PERTURBATION_METHODS",
    "Deletion",
    "Insertion",
    "KernelShap",
    "Lime",
    "Occlusion",
    "Sobol",
    "compare",
    "compare_default",
    "format_table",
    "evaluate_together",
    "rationale_average_precision",
    "GRADIENT_METHODS",
    "Explanation",
    "ExplanationList",
    "GradientShap",
    "Granularity",
    "GranularityAggregationStrategy",
    "InferenceModes",
    "InputXGradient",
    "IntegratedGradients",
    "InterpTextError",
    "Saliency",
    "SmoothGrad",
    "SquareGrad",
    "Target",
    "VarGrad",
    "load_default",
]  # the names of _HOME


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'interp_text' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # read once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


if TYPE_CHECKING:  # what editors and type checkers read
    from .bundled import load_default
    from .comparison import compare, compare_default, format_table
    from .errors import InterpTextError
    from .explanation import Explanation, Target
    from .methods import (
        GRADIENT_METHODS,
        GradientShap,
        InputXGradient,
        IntegratedGradients,
        Saliency,
        SmoothGrad,
        SquareGrad,
        VarGrad,
    )
    from .metrics import Deletion, Insertion, evaluate_together, rationale_average_precision
    from .options import Granularity, GranularityAggregationStrategy, InferenceModes
    from .perturbation import PERTURBATION_METHODS, KernelShap, Lime, Occlusion, Sobol
    from .render import ExplanationList
