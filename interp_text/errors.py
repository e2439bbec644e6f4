"""The one exception type for user errors."""


class InterpTextError(ValueError):
    """Raised when an argument or input cannot be explained; the message names the fix."""
