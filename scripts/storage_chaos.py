"""Chaos on a PostgreSQL study: workers SIGKILLed at random, the server restarted, totals checked.

    .venv/bin/python scripts/storage_chaos.py [--trials 30] [--workers 3] [--kills 5] [--seed 15]

It starts a throw-away PostgreSQL server (ghostnas.testing.postgres), runs ``--workers`` copies
of ``python -m ghostnas search --space tiny --evaluator fake --storage postgresql://...`` on one
study (fake evaluator slowed to ``--sleep`` s per trial), SIGKILLs a random worker ``--kills``
times at random points of progress (each is started again at once), stops and restarts the
server once half the trials are evaluated, runs the same command once more, and prints the
timeline and the totals. Exit status 0 when the totals are exact, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ghostnas.testing.postgres import running_server
from ghostnas.testing.workers import check_study, run_chaos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=30, help="--trials of the study (default 30)")
    p.add_argument("--workers", type=int, default=3, help="workers at once (default 3)")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of a random worker (default 5)")
    p.add_argument("--sleep", type=float, default=0.2, help="seconds per fake evaluation (default 0.2)")
    p.add_argument("--down", type=float, default=2.0, help="seconds the server stays down (default 2)")
    p.add_argument("--seed", type=int, default=15, help="seed of the kill points and victims (default 15)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ghostnas-chaos-"))
    try:
        with running_server() as server:

            def restart() -> None:
                server.stop()
                time.sleep(args.down)
                server.start()

            report = run_chaos(
                work,
                server.url,
                "chaos",
                trials=args.trials,
                n_workers=args.workers,
                kills=args.kills,
                restart=restart,
                sleep=args.sleep,
                seed=args.seed,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for seconds, what in report.events:
        print(f"{seconds:7.1f} s  {what}")
    trials = report.trials
    states = Counter(t.state.name for t in trials)
    outcomes = Counter(t.user_attrs.get("outcome") for t in trials)
    problems = check_study(trials, args.trials)
    complete = states.get("COMPLETE", 0)
    if complete != args.trials:
        problems.append(f"{complete} COMPLETE trials, wanted {args.trials}")
    bad = [s for s in report.statuses if s != 0]
    if bad:
        problems.append(f"workers that were not killed exited with {bad}")
    print(
        f"{report.seconds} s, {report.kills} kills, {report.restarts} database restart(s), "
        f"{report.spawned} worker processes; {len(trials)} trials: {dict(states)}; outcomes {dict(outcomes)}"
    )
    print("\n".join(f"PROBLEM: {p}" for p in problems) or f"exact: {complete} COMPLETE, none RUNNING")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
