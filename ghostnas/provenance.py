"""Where a result came from: the command, the ghostnas commit, the machine and library versions.

Every file of results records the same facts the same way: a search's ``run.json``, a trained
model's record (:mod:`ghostnas.full_training`), a latency table's device key and the benchmarks'
``run.json`` (``benchmarks/_runinfo.py`` calls this module). This is the one place they are
gathered, so a reader can compare two results without learning three layouts.

Nothing here imports torch or Optuna (their versions are read from package metadata), so any
module can depend on it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ghostnas.version import VERSION

__all__ = [
    "COMMIT_ENV",
    "cpu_model",
    "git_commit",
    "library_versions",
    "machine_info",
    "provenance",
]

COMMIT_ENV = "GHOSTNAS_GIT_COMMIT"
"""Names the commit when a copy of the tree runs on another machine, where a stale ``.git`` may
have come along with the files: it wins over whatever ``git`` says there."""

_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def git_commit() -> dict[str, Any] | None:
    """The commit of the ghostnas checkout and whether tracked files differ from it.

    Returns:
        ``{"commit", "dirty"}``; ``{"commit", "dirty": "unknown", "from": COMMIT_ENV}`` when
        :data:`COMMIT_ENV` names it; None when ghostnas does not run from a git checkout.
    """
    named = os.environ.get(COMMIT_ENV)
    if named:
        return {"commit": named, "dirty": "unknown", "from": COMMIT_ENV}
    if not (_ROOT / ".git").exists():
        return None
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def library_versions(packages: Sequence[str] = ("torch", "optuna", "numpy")) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None for one that is not installed)."""
    return {p: _version(p) for p in packages}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS and Python: what a reader needs to compare timings."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def provenance(command: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``command`` (None: not recorded), ghostnas version, git commit, machine and library
    versions, under the keys every ghostnas results file uses."""
    return {
        "command": list(command) if command is not None else None,
        "ghostnas_version": VERSION,
        "git": git_commit(),
        "machine": machine_info(),
        "versions": library_versions(),
    }
