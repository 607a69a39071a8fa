"""User-facing errors.

Every mistake a user can make (a bad config, an unknown model name, a malformed budget, a missing
dataset) raises a subclass of :class:`GhostnasError`. Its message is one line that names the
problem and says how to fix it. The CLI prints that line and exits with status 2; library callers
can catch the base class. Anything else that escapes is a bug in ghostnas.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GhostnasError", "UnknownModelError"]


class GhostnasError(Exception):
    """A problem with the user's input; the message is one line and says how to fix it."""


class ConfigError(GhostnasError, ValueError):
    """An architecture config (object, dict or JSON file) is invalid."""


class UnknownModelError(GhostnasError, KeyError):
    """A model name is not registered and is not a path to a config file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
