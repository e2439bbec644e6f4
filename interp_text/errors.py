"""The one exception type for user errors, and where a warning points."""

import os
import sys

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class InterpTextError(ValueError):
    """Raised when an argument or input cannot be explained; the message names the fix."""


def short(value: object) -> str:
    """``repr(value)`` cut to one readable line, for messages that quote a text."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def user_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn``, called by the caller of this, that points at the first
    frame outside this package: the user's own line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
