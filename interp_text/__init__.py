"""interp_text: explain what drives a Hugging Face text model's output.

Example:
    >>> from interp_text import VarGrad
    >>> explanation = VarGrad(model, tokenizer).explain("The food was cold.")  # doctest: +SKIP
"""

from .bundled import load_default
from .compare import compare, compare_default
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

__version__ = "0.1.0"

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
]
