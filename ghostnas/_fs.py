"""File-system faults: an output folder that cannot be made, and a write that fails mid-run.

Two faults of the machine, not of the user's typing, that must still end in one line:

* An output folder that cannot be created or written: its parent cannot be made, a part of the
  path is a file, no permission, a read-only file system. :func:`check_output_dir` finds it
  before any work starts by asking the file system itself (it makes and removes a probe), so
  what root may do, what a read-only mount refuses and what ``/proc`` silently rejects are all
  answered by one test. It raises :class:`~ghostnas.errors.OutputDirError` (CLI exit 2).
* A write that fails once work is under way: no space left, a quota, a file system remounted
  read-only, an I/O error. :func:`writing` turns the OS error raised inside it into a
  :class:`~ghostnas.errors.WriteFailedError` that names the file; :func:`as_write_failed` finds
  the same faults deep in an exception chain raised by a library (SQLite's ``database or disk is
  full`` under SQLAlchemy's ``OperationalError`` under Optuna's ``AssertionError: Should not
  reach``), which is how a search maps a full disk under its study storage to one line.

Nothing here makes a write safe; it only names the fault. Outputs are replaced atomically
(:mod:`ghostnas._io`), SQLite rolls back a failed transaction, and :func:`repair_journal_tail`
drops the unfinished last line a failed append leaves in an Optuna journal file.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ghostnas.errors import GhostnasError, OutputDirError, WriteFailedError

__all__ = [
    "WriteFault",
    "as_write_failed",
    "check_output_dir",
    "exception_chain",
    "free_bytes",
    "is_write_fault",
    "repair_journal_tail",
    "reports_write_faults",
    "write_fault",
    "writing",
]

# errno values that mean "this write cannot be done here", as opposed to a bug or bad input.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FAULT_ERRNOS = _FULL_ERRNOS | {errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
# SQLite primary result codes (the low byte of an extended code) and their messages.
_SQLITE_FULL = 13
_SQLITE_FAULTS = {
    _SQLITE_FULL: "database or disk is full",
    10: "disk I/O error",  # SQLITE_IOERR
    8: "attempt to write a readonly database",  # SQLITE_READONLY
}
_PROBE_PREFIX = ".ghostnas-probe-"


@dataclass(frozen=True)
class WriteFault:
    """A write fault found in an exception chain.

    Attributes:
        reason: The OS's or SQLite's words.
        disk_full: Out of space or over a quota (freeing space fixes it).
        filename: The file the OS named, when it named one.
    """

    reason: str
    disk_full: bool
    filename: str | None = None


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: causes, contexts and SQLAlchemy's ``orig``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
        for nxt in (e.__cause__, orig, None if e.__suppress_context__ else e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def write_fault(exc: BaseException) -> WriteFault | None:
    """The write fault behind ``exc`` (anywhere in its chain), or None when it is something else.

    Recognised: an ``OSError`` whose errno means the write cannot be done here (no space, quota,
    file too large, read-only file system, I/O error, no permission), SQLite's full / I/O /
    read-only errors, and a driver message containing "No space left on device" (PostgreSQL).
    """
    chain = list(exception_chain(exc))
    for e in chain:
        if isinstance(e, WriteFailedError):
            return WriteFault(e.reason, e.disk_full, e.path)
        if isinstance(e, OSError) and e.errno in _FAULT_ERRNOS:
            name = None if e.filename is None else os.fsdecode(e.filename)
            return WriteFault(e.strerror or os.strerror(e.errno), e.errno in _FULL_ERRNOS, name)
        if isinstance(e, sqlite3.Error):
            code = getattr(e, "sqlite_errorcode", None)
            primary = code & 0xFF if isinstance(code, int) else None
            for number, words in _SQLITE_FAULTS.items():
                if primary == number or words in str(e):
                    return WriteFault(words, number == _SQLITE_FULL)
    for e in chain:
        if "No space left on device" in str(e):
            return WriteFault("No space left on device", True)
    return None


def is_write_fault(exc: BaseException) -> bool:
    """Whether ``exc`` is (or hides) a failed write rather than a bug or the user's input."""
    return as_write_failed(exc, "") is not None


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def as_write_failed(
    exc: BaseException, path: str | os.PathLike[str], what: str | None = None
) -> WriteFailedError | None:
    """``exc`` as a :class:`WriteFailedError`, or None when it is not a write fault.

    A :class:`WriteFailedError` is returned as it is (it already names its file). Another
    :class:`GhostnasError` is never a write fault: it is the user's input, said in its own line.
    Otherwise the fault found in the chain is attributed to ``path`` (``what`` names it) unless
    the OS named another file.
    """
    if isinstance(exc, WriteFailedError):
        return exc
    if isinstance(exc, GhostnasError):
        return None
    for e in exception_chain(exc):
        if isinstance(e, WriteFailedError):  # raised inside a library (Optuna) that then failed
            return e  # itself while cleaning up: the original says more than a copy would
    fault = write_fault(exc)
    if fault is None:
        return None
    where = fault.filename or os.fspath(path)
    return WriteFailedError(
        what if fault.filename is None else None,
        where,
        fault.reason,
        disk_full=fault.disk_full,
        free=free_bytes(where) if fault.disk_full else None,
    )


@contextmanager
def writing(path: str | os.PathLike[str], what: str | None = None) -> Iterator[None]:
    """Any ``OSError`` raised inside becomes a :class:`WriteFailedError` naming ``path``.

    Wrap the code that writes one output (a file, a cache entry, a table): every OS error there
    is a failed write of that output, whatever its errno. A :class:`WriteFailedError` raised by
    an inner writer keeps its file and gets ``what`` if it had no name for it.

    Args:
        path: The file (or folder) being written.
        what: How to name it in the message, e.g. ``"the latency table"``.
    """
    try:
        yield
    except WriteFailedError as exc:
        if exc.what is None and what is not None and Path(exc.path) == Path(path):
            exc.what = what
        raise
    except OSError as exc:
        fault = write_fault(exc)
        full = fault is not None and fault.disk_full
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WriteFailedError(
            what, os.fspath(path), reason, disk_full=full, free=free_bytes(path) if full else None
        ) from exc


_F = TypeVar("_F", bound=Callable[..., Any])


def reports_write_faults(fn: _F) -> _F:
    """Decorate a writer whose first argument is the file it writes: its OS errors become
    :class:`WriteFailedError` naming that file (see :func:`writing`)."""

    @functools.wraps(fn)
    def wrapper(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        with writing(path):
            return fn(path, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def check_output_dir(path: str | os.PathLike[str], flag: str, name: str | None = None) -> None:
    """Raise :class:`OutputDirError` unless the folder ``path`` exists and takes new files, or
    can be created. Nothing is left behind: the probe is removed at once.

    Args:
        path: The output folder.
        flag: How the user gave it, for the message (e.g. ``"--out"``).
        name: What the user typed when ``path`` is the folder of it (e.g. a storage URL whose
            file lives in ``path``); None when the user typed ``path`` itself.
    """
    path = Path(path)
    base = path
    while not os.path.lexists(base) and base.parent != base:
        base = base.parent
    shown = name if name is not None else path
    if not base.is_dir():
        if base == path:
            what = "exists and is not a folder" if name is None else f"{path} is not a folder"
        else:
            what = f"{base} is a file, not a folder"
        raise OutputDirError(f"{flag} {shown}: {what}; choose another {flag}")
    try:
        if base == path:
            fd, probe = tempfile.mkstemp(dir=base, prefix=_PROBE_PREFIX)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(dir=base, prefix=_PROBE_PREFIX))
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # /proc, /sys: the folder is there but takes no new entries
            reason = "this file system does not take new files or folders there"
        else:
            reason = exc.strerror or str(exc)
        if base == path:
            where = "cannot write in this folder" if name is None else f"cannot write in its folder {base}"
        else:
            where = "cannot create it" if name is None else f"cannot create its folder {path}"
            where += f" in {base}"
        raise OutputDirError(f"{flag} {shown}: {where} ({reason}); choose another {flag}") from None


def repair_journal_tail(path: str | os.PathLike[str]) -> int:
    """Drop the unfinished last line of an Optuna journal file; return the bytes dropped.

    An append that fails part-way (disk full, a kill in the middle of a write) can leave a last
    line without its newline. Optuna's reader skips such a line, but the next append would be
    glued to it and corrupt the journal. The file's lock (the one Optuna's writers hold while
    appending) is taken first, so a line another worker is writing right now is never cut.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return 0
    lock = JournalFileSymlinkLock(os.fspath(p))
    lock.acquire()
    try:
        with p.open("rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            end = size
            while end > 0:
                start = max(0, end - 65536)
                fh.seek(start)
                chunk = fh.read(end - start)
                if end == size and chunk.endswith(b"\n"):
                    return 0
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                end = start
            else:
                keep = 0
            fh.truncate(keep)
            return size - keep
    finally:
        lock.release()
