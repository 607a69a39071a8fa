"""scripts/gpu_session.sh: the prepared GPU session, exercised on the CPU at toy sizes (dry-run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.paths import REPO

SCRIPT = REPO / "scripts" / "gpu_session.sh"


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
        cwd=REPO,
    )


def test_usage_and_collect_errors(tmp_path):
    usage = run()
    assert usage.returncode == 2 and "prepare" in usage.stdout and "dry-run" in usage.stdout
    missing = run("collect", str(tmp_path))
    assert missing.returncode == 2 and "results-gpu.tar.gz not found" in missing.stderr


@pytest.mark.slow
def test_dry_run_runs_every_step_packs_them_and_resumes(tmp_path):
    first = run("dry-run", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    results = tmp_path / "results"
    (conc,) = results.glob("concurrency-dry-*")
    best = json.loads((conc / "results.json").read_text())["best"]["n"]
    assert best in (1, 2)
    (rate,) = results.glob("search-rate-dry-*")
    for par in {best, 1}:
        bench = json.loads((rate / f"parallel{par}" / "bench.json").read_text())
        assert bench["parallel"] == par and bench["evaluated"] >= 1 and bench["candidates_per_hour"] > 0
        assert bench["git"]["commit"] == "dry-run"  # GHOSTNAS_GIT_COMMIT reaches the search's provenance
    (fid,) = results.glob("fidelity-dry-*")  # issue 11's repeatable reference, two seeds inline
    assert (fid / "fidelity.md").is_file() and "exit 0" in (fid / "sessions.txt").read_text()
    assert json.loads((fid / "fidelity.json").read_text())["reference_seeds"] == [1, 2]
    (sq,) = results.glob("search-quality-dry-*")
    assert (sq / "table.md").is_file() and "exit 0" in (sq / "sessions.txt").read_text()
    with tarfile.open(tmp_path / "out" / "results-gpu.tar.gz") as tar:
        tops = {n.split("/")[0] for n in tar.getnames()}
    assert tops == {conc.name, rate.name, fid.name, sq.name}

    again = run("dry-run", str(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1. concurrency: done" in again.stdout and "(skipped)" in again.stdout
    assert "3. fidelity: done" in again.stdout
    assert "reusing the finished run" in again.stdout
    assert (sq / "sessions.txt").read_text().count("exit 0") == 2
