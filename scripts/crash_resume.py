"""Crash and resume, end to end: start a search, SIGKILL it mid-trial, run it again, verify.

    .venv/bin/python scripts/crash_resume.py [--trials 8] [--sleep 0.6] [--journal] [--keep DIR]

It runs ``python -m ghostnas search --space tiny --budget 10M --evaluator fake --sampler random
--trials N --out DIR/run --no-reference`` with the fake evaluator slowed down to ``--sleep``
seconds per trial (test-only GHOSTNAS_FAKE_SLEEP), waits until at least two trials completed
and one is being evaluated, kills the process with SIGKILL, runs the same command again, and
prints what it verified. Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from ghostnas.testing.workers import crash_and_resume


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8, help="--trials of the search (default 8)")
    p.add_argument("--sleep", type=float, default=0.6, help="seconds per fake evaluation (default 0.6)")
    p.add_argument("--journal", action="store_true", help="keep the study in a journal file (no heartbeat)")
    p.add_argument("--keep", default=None, help="folder to keep the run and logs in (default: a temp folder)")
    args = p.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ghostnas-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        report = crash_and_resume(work, trials=args.trials, sleep=args.sleep, journal=args.journal)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"killed pid {report.killed_pid} with SIGKILL while trial #{report.stale_number} was being evaluated"
    )
    print(f"completed before the kill: trials {sorted(report.completed_before)}")
    print(f"stale trial #{report.stale_number}: {report.stale_reason}")
    print(f"retried as trial #{report.retry_number} (outcome {report.retry_outcome})")
    print(f"study: {report.trials} trials, {report.evaluated} evaluated (wanted {report.target})")
    for line in report.checks:
        print(f"  ok    {line}")
    for line in report.problems:
        print(f"  FAIL  {line}")
    print("crash/resume: all checks passed" if not report.problems else "crash/resume: FAILED")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
