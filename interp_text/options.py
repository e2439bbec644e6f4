"""Option enums (named as in interpreto) and their validation."""

from __future__ import annotations

import difflib
import inspect
import numbers
import operator
from enum import Enum
from typing import Any

from .errors import InterpTextError


class Granularity(str, Enum):
    """What one explained element is."""

    ALL_TOKENS = "all_tokens"  # every token, special tokens included
    TOKEN = "token"  # every token of the text (no special tokens)
    WORD = "word"
    SENTENCE = "sentence"


class GranularityAggregationStrategy(str, Enum):
    """How token scores are pooled into one element score."""

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    SUM = "sum"
    SIGNED_MAX = "signed_max"  # the value of largest magnitude, sign kept


class InferenceModes(str, Enum):
    """Which function of the model output is explained."""

    LOGITS = "logits"
    SOFTMAX = "softmax"
    LOG_SOFTMAX = "log_softmax"


TOKEN_REDUCTIONS = ("sum", "l2", "abs_mean")


def as_enum(enum_type: type[Enum], value: Any, name: str) -> Enum:
    """Accept an enum member or its value / name as a string (case-insensitive)."""
    if isinstance(value, enum_type):
        return value
    # Another library's member of the same name (interpreto's Granularity.WORD) means ours.
    keys = [value.name, value.value] if isinstance(value, Enum) else [value]
    for key in (k.strip().lower() for k in keys if isinstance(k, str)):
        for member in enum_type:
            if key in (member.value, member.name.lower()):
                return member
    allowed = ", ".join(f"{enum_type.__name__}.{m.name}" for m in enum_type)
    raise InterpTextError(f"{name}={value!r} is not valid; use one of {allowed} (or its name as a string).")


def named(value: Any) -> Any:
    """Another library's enum member for a string option, as the string it names here: interpreto's
    ``SobolIndicesOrders.FIRST_ORDER`` is ``"first"``; its ``DistancesFromMask.COSINE``, which
    Python makes the plain function ``cosine_distance`` (a staticmethod in an Enum is no member),
    is ``"cosine"``; anything else as it is."""
    if isinstance(value, Enum):
        name = value.name.lower()
        return name[: -len("_order")] if name.endswith("_order") else name
    name = getattr(value, "__name__", "")
    if callable(value) and isinstance(name, str) and name.endswith("_distance"):
        return name[: -len("_distance")]
    return value


def as_int(value: Any) -> int | None:
    """``value`` as a Python int when it is an integer of any kind (numpy's, a 0-d integer tensor), else None.

    ``True`` is not an integer here: ``n_samples=True`` is a mistake, not 1.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def plain(value: Any) -> Any:
    """A numpy number (``np.int64(0)``, ``np.float32(0.5)``) as the Python number it holds, for
    records that JSON writes; anything else as it is."""
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item) and getattr(value, "ndim", None) == 0:
        return item()
    return value


def positive_int(value: Any, name: str, minimum: int = 1) -> int:
    number = as_int(value)
    if number is None or number < minimum:
        raise InterpTextError(f"{name}={value!r} must be an integer >= {minimum}.")
    return number


def non_negative_float(value: Any, name: str) -> float:
    # `not value >= 0` also refuses NaN; inf is refused apart: it would turn every score into NaN.
    # numbers.Real takes numpy's floats and ints as well as Python's.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0 or value == float("inf"):
        raise InterpTextError(f"{name}={value!r} must be a finite number >= 0.")
    return float(value)


def seed_int(value: Any) -> int:
    """A seed torch's and numpy's generators both take: an int in [0, 2**64)."""
    seed = as_int(value)
    if seed is None:
        raise InterpTextError(f"seed={value!r} must be an int.")
    if not 0 <= seed < 2**64:
        # torch would take a negative seed as its two's complement (-1 as 2**64 - 1): refused, not guessed.
        raise InterpTextError(f"seed={value!r} is out of range; use an int between 0 and 2**64 - 1.")
    return seed


def method_key(name: str) -> str:
    """A method's name as the method tables key it: case, ``_`` and ``-`` ignored ("Kernel_SHAP")."""
    return name.lower().replace("_", "").replace("-", "")


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)  # "word" and Granularity.WORD are equal
    except Exception:  # a value that does not compare to a bool
        return True


class Remade:
    """An explainer or metric whose options can be changed after it is made.

    Its settings (sample counts, the baseline, the options an explanation records) are computed
    from its constructor's arguments once, when it is made. So setting one of them afterwards
    (``explainer.n_samples = 300``, ``explainer.batch_size = 8``) makes it again with that argument
    changed, checked as at construction: a refused value leaves it as it was. Any other attribute
    is set as usual. A base class calls ``_made_with(locals())`` first thing in its ``__init__``
    and ``_remember()`` last.
    """

    def _made_with(self, arguments: dict[str, Any], base: type) -> None:
        """``arguments``: the ``locals()`` of ``base.__init__``, the one that makes the object. A
        subclass with an ``__init__`` of its own is not made again (its arguments are not these)."""
        made = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
        for extra in ("method_options", "options"):  # the **keywords, as the keywords they were
            made.update(made.pop(extra, None) or {})
        object.__setattr__(self, "_making", made if type(self).__init__ is base.__init__ else None)
        object.__setattr__(self, "_base", base)

    def _remember(self) -> None:
        object.__setattr__(self, "_made", self.__dict__.pop("_making"))

    def _option_names(self) -> tuple[str, ...]:
        return ()

    def _defaults(self) -> dict[str, Any]:
        """The base constructor's keyword defaults."""
        parameters = inspect.signature(self.__dict__["_base"].__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}

    def __getattr__(self, name: str) -> Any:
        # Reached only when the usual lookup fails: an option of the constructor's (batch_size,
        # granularity...) reads as it was given, or as its default.
        made = self.__dict__.get("_made")
        if made is not None and name in made:
            return made[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        made = self.__dict__.get("_made")
        if made is None:
            return object.__repr__(self)
        model = made.get("model")
        shown = [repr(model) if isinstance(model, str) else type(getattr(self, "model", model)).__name__]
        defaults = self._defaults()
        own = {k: getattr(self, k, None) for k in self._option_names()}  # as made: the defaults filled in
        given = {k: v for k, v in made.items() if k not in ("model", "tokenizer") and k not in own}
        for k, v in own.items():
            if v is not None:  # a tensor (a baseline) as its shape
                shown.append(f"{k}=<tensor of shape {tuple(v.shape)}>" if hasattr(v, "shape") else f"{k}={v!r}")
        shown += [f"{k}={plain(v)!r}" for k, v in given.items() if k not in defaults or _differs(v, defaults[k])]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _refuse_a_misspelt_option(self, name: str, value: Any) -> None:
        from .methods import check_options, peer_name

        own = self._option_names()
        shared = tuple(k for k in self.__dict__["_made"] if k not in ("model", "tokenizer") and k not in own)
        # Another library's name is refused even where it names an attribute of ours (SmoothGrad's
        # n_samples, which n_perturbations sets); a near-miss only where it names nothing yet.
        peer = peer_name(name, (*own, *shared)) is not None
        ours = name in self.__dict__ or hasattr(type(self), name)
        if peer or (not ours and difflib.get_close_matches(name.lower(), {n.lower() for n in (*own, *shared)}, 1, 0.8)):
            check_options(type(self).__name__, {name: value}, own, shared)

    def __setattr__(self, name: str, value: Any) -> None:
        made = self.__dict__.get("_made")
        if made is None:
            object.__setattr__(self, name, value)
            return
        if name not in made and name not in self._option_names():
            # A misspelt option, or another library's name for one, would be kept and never read: refused.
            # Any other name is the user's own (a tag, a subclass's record of its last result); a private
            # one, the library's own memo (set on every call), is not looked at.
            if not name.startswith("_"):
                self._refuse_a_misspelt_option(name, value)
            object.__setattr__(self, name, value)
            return
        fresh = type(self)(**{**made, name: value})
        self.__dict__.clear()
        self.__dict__.update(fresh.__dict__)
