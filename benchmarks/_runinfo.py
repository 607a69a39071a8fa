"""What a benchmark records next to its results (the command, the commit and the machine), and
the shared CPU lock benchmarks take so that timed work does not overlap."""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ghostnas import provenance


def _commit() -> dict[str, Any]:
    """The checkout's commit in this file's flat keys (see :func:`ghostnas.provenance.git_commit`,
    which also honours ``GHOSTNAS_GIT_COMMIT`` for a copy of the tree run on another machine)."""
    git = provenance.git_commit()
    if git is None:
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    out = {"git_commit": git["commit"], "git_dirty": git["dirty"]}
    if "from" in git:
        out["git_commit_from"] = git["from"]
    return out


def run_info() -> dict[str, Any]:
    """Command line, UTC time, git commit (and whether the tree was dirty), machine and torch:
    the facts of :mod:`ghostnas.provenance`, flat, plus torch's threads and CUDA device."""
    machine = provenance.machine_info()
    info: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **_commit(),
        "cpu": machine["cpu"],
        "cpu_count": machine["cores"],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": machine["python"],
        "platform": machine["platform"],
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
