"""Disks that fill up when a test says so, for the file-system fault tests.

Two kinds, one interface (``root``, ``fill()``, ``free()``):

- :class:`TmpfsDisk`: a real size-limited tmpfs mounted by the test (needs root and a kernel
  that lets it mount; skipped elsewhere). ``fill()`` writes a filler file until the kernel says
  ``ENOSPC``, so every later write fails the way it does on a full disk.
- :class:`SimulatedDisk`: the same faults injected where ghostnas and Optuna write, so every
  machine runs these tests: ``os.fsync`` (every atomic output and Optuna's journal appends) raises
  ``ENOSPC``, a journal append writes half its line and raises ``ENOSPC`` (a short write), and
  every SQLite statement that writes raises SQLite's own ``database or disk is full`` through
  SQLAlchemy, as a full disk does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class TmpfsDisk:
    """A mounted tmpfs of ``size`` at ``root``."""

    kind = "tmpfs"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as fh:
            for chunk in (65536, 512, 1):
                try:
                    while True:
                        fh.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@contextlib.contextmanager
def tmpfs(root: Path, size: str = "8m", options: str = "") -> Iterator[TmpfsDisk]:
    """Mount a tmpfs at ``root`` for the block; skip the test where mounting is not allowed."""
    root.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(root)], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the simulated disk covers these faults")
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({done.stderr.decode(errors='replace').strip()}); "
            "the simulated disk covers these faults"
        )
    try:
        yield TmpfsDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30)


class SimulatedDisk:
    """A folder on the ordinary disk whose writes fail with ENOSPC after ``fill()``."""

    kind = "simulated"

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from optuna.storages.journal import JournalFileBackend
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.root = root
        self.full = False
        root.mkdir(parents=True, exist_ok=True)
        real_fsync = os.fsync
        real_append = JournalFileBackend.append_logs
        disk = self

        def fsync(fd: int) -> None:
            if disk.full:
                raise _enospc()
            real_fsync(fd)

        def append_logs(backend: Any, logs: list[dict[str, Any]]) -> None:
            if not disk.full:
                return real_append(backend, logs)
            import json

            line = "\n".join(json.dumps(log) for log in logs) + "\n"
            with open(backend._file_path, "ab") as fh:  # a short write, then no more room
                fh.write(line[: len(line) // 2].encode())
            raise _enospc()

        def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if disk.full and not statement.lstrip().upper().startswith(("SELECT", "PRAGMA")):
                raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(JournalFileBackend, "append_logs", append_logs)
        event.listen(Engine, "before_cursor_execute", before_execute)
        self._remove = lambda: event.remove(Engine, "before_cursor_execute", before_execute)

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False

    def close(self) -> None:
        self._remove()


@contextlib.contextmanager
def disk(kind: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A :class:`TmpfsDisk` or a :class:`SimulatedDisk` at ``root``."""
    if kind == "tmpfs":
        with tmpfs(root) as d:
            yield d
        return
    d = SimulatedDisk(root, monkeypatch)
    try:
        yield d
    finally:
        d.close()
