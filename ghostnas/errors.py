"""User-facing errors.

Every mistake a user can make (a bad config, an unknown model name, a malformed budget, a missing
dataset) raises a subclass of :class:`GhostnasError`. Its message is one line that names the
problem and says how to fix it. The CLI prints that line and exits with status 2; library callers
can catch the base class. Anything else that escapes is a bug in ghostnas.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GhostnasError", "OutputDirError", "UnknownModelError", "WriteFailedError"]


class GhostnasError(Exception):
    """A problem with the user's input; the message is one line and says how to fix it."""


class ConfigError(GhostnasError, ValueError):
    """An architecture config (object, dict or JSON file) is invalid."""


class UnknownModelError(GhostnasError, KeyError):
    """A model name is not registered and is not a path to a config file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputDirError(GhostnasError):
    """An output folder cannot be created or written (found before any work starts)."""


class WriteFailedError(GhostnasError):
    """A write failed once the work was under way: the disk is full, a quota is reached, the
    file system went read-only, or another OS error.

    It is not the user's typing, but it is not a bug either, so it is still one line. The
    library fills in what failed; the layer that knows more adds it: :func:`ghostnas.run_search`
    says which trials are safe, the CLI adds the exact command that resumes. The CLI exits with
    status 1 for it (2 is for input to fix).

    Attributes:
        what: What was being written, e.g. ``"the study storage"`` (None: just the path).
        path: The file or folder.
        reason: The OS's or SQLite's words, e.g. ``"No space left on device"``.
        disk_full: The cause is a full disk or a quota (free space fixes it).
        free: Free bytes left on that file system when the error was seen, if known.
        kept: What is safe, e.g. ``"the 12 evaluated trials are safe in study 'run'"``.
        rerun: How the command continues: ``"resume"`` (a search) or ``"run again"``.
        command: The exact command line to run once space is freed.
    """

    def __init__(
        self,
        what: str | None,
        path: str,
        reason: str,
        *,
        disk_full: bool,
        free: int | None = None,
        kept: str | None = None,
        rerun: str = "run again",
        command: str | None = None,
    ) -> None:
        super().__init__(what, path, reason)
        self.what = what
        self.path = path
        self.reason = reason
        self.disk_full = disk_full
        self.free = free
        self.kept = kept
        self.rerun = rerun
        self.command = command

    def __str__(self) -> str:
        target = f"{self.what} {self.path}" if self.what else self.path
        if self.disk_full:
            free = "" if self.free is None else f"; {_size(self.free)} free there now"
            head = f"disk full: no space left to write {target} ({self.reason}{free})"
            fix = "free some space on that file system"
        else:
            head = f"cannot write {target} ({self.reason})"
            fix = "fix that"
        parts = [head]
        if self.kept:
            parts.append(self.kept)
        command = f": {self.command}" if self.command else " the same command"
        verb = "resume with" if self.rerun == "resume" else "run again"
        parts.append(f"{fix}, then {verb}{command}")
        return "; ".join(parts)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
