"""What a benchmark records next to its results (the command, the commit and the machine), and
the shared CPU lock benchmarks take so that timed work does not overlap."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ghostnas._machine import cpu_model


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _commit() -> dict[str, Any]:
    """The checkout's commit, or the one named by ``GHOSTNAS_GIT_COMMIT`` (marked as such) for a
    copy of the tree run on another machine, where a stale ``.git`` may have come along."""
    named = os.environ.get("GHOSTNAS_GIT_COMMIT")
    if named:  # the tree was sent elsewhere: whatever .git came along may be older than the files
        return {"git_commit": named, "git_dirty": "unknown", "git_commit_from": "GHOSTNAS_GIT_COMMIT"}
    commit = _git("rev-parse", "HEAD")
    if commit == "unknown":
        return {"git_commit": commit, "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def run_info() -> dict[str, Any]:
    """Command line, UTC time, git commit (and whether the tree was dirty), machine and torch."""
    info: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **_commit(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@contextlib.contextmanager
def cpu_lock(path: str | None) -> Iterator[float]:
    """Hold the shared CPU lock (``flock`` on ``path``) for one unit of work, so benchmarks
    interleave instead of timing each other; yields the seconds spent waiting. No path: no lock."""
    if not path:
        yield 0.0
        return
    t0 = time.perf_counter()
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - t0
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
