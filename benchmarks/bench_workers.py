"""Many workers on one study: throughput and per-trial storage overhead, PostgreSQL vs files.

For each setting it starts K ``ghostnas search`` processes (fake evaluator, no sleep, tiny space,
a budget every config fits, random sampler) on one study and waits for all of them. It checks the
study (exactly M evaluated trials, distinct numbers, none left running) and reports, side by side:

- wall time from the first start to the last exit, and evaluated trials per second;
- per-trial overhead: each worker's ``run.json`` splits its search loop into evaluator, cost
  model and "Optuna" (everything else: storage reads and writes, the slot check, the random
  sampler, which costs microseconds); the sum over workers of the Optuna seconds divided by the
  study's trials is the storage overhead per trial (it includes waiting on the shared storage
  and, at the very end, a worker idling while the others finish the last trials).

The PostgreSQL server is a throw-away one (``ghostnas.testing.postgres``: initdb in a temp
folder, 127.0.0.1 only, fsync off, as in the tests). Run it under the CPU lock::

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_workers.py --trials 200 --workers 1,4,8

It prints a table and writes ``run.json`` (command, commit, machine, figures) to ``--out``
(default ``results/workers-<date>``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ghostnas import provenance
from ghostnas.run_folder import open_run
from ghostnas.testing import postgres
from ghostnas.testing.workers import check_study, load_trials, run_workers


def _one(kind: str, url: str, n_workers: int, trials: int, scratch: Path) -> dict[str, Any]:
    work = scratch / f"{kind}-{n_workers}"
    work.mkdir()
    study = f"bench-{kind}-{n_workers}"
    t0 = time.perf_counter()
    statuses = run_workers(work, url, study, n_workers, trials, sleep=0.0, timeout=1200, budget="30M")
    wall = time.perf_counter() - t0
    all_trials = load_trials(url, study)
    runs = [open_run(work / f"out-{i}").info for i in range(n_workers)]
    optuna_s = sum(r["timing"]["optuna_seconds"] for r in runs)
    loop_s = sum(r["timing"]["loop_seconds"] for r in runs)
    eval_s = sum(r["timing"]["evaluation_seconds"] for r in runs)
    evaluated_by = [
        sum(t.user_attrs.get("outcome") == "ok" and t.user_attrs["worker"]["pid"] == pid for t in all_trials)
        for pid in sorted({t.user_attrs["worker"]["pid"] for t in all_trials if "worker" in t.user_attrs})
    ]
    return {
        "storage": kind,
        "workers": n_workers,
        "trials_requested": trials,
        "exit_statuses": statuses,
        "study_problems": check_study(all_trials, trials),
        "trials_in_study": len(all_trials),
        "surplus_trials": sum(t.user_attrs.get("outcome") == "surplus" for t in all_trials),
        "evaluated_per_worker": evaluated_by,
        "wall_seconds": round(wall, 2),
        "trials_per_second": round(trials / wall, 2),
        "worker_loop_seconds_sum": round(loop_s, 2),
        "worker_evaluation_seconds_sum": round(eval_s, 3),
        "worker_optuna_seconds_sum": round(optuna_s, 2),
        "storage_ms_per_trial": round(1000 * optuna_s / len(all_trials), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=200, help="evaluated trials per study (default 200)")
    p.add_argument("--workers", default="1,4,8", help="worker counts for PostgreSQL (default 1,4,8)")
    p.add_argument(
        "--baseline-workers", default="1,4", help="worker counts for the journal file baseline (default 1,4)"
    )
    p.add_argument("--out", default=None, help="results folder (default results/workers-<date>)")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",") if x]
    baseline = [int(x) for x in args.baseline_workers.split(",") if x]
    out = Path(args.out or f"results/workers-{datetime.now(timezone.utc):%Y%m%d}")
    if out.exists():
        print(f"bench_workers: {out} exists; give a fresh --out", file=sys.stderr)
        return 2
    if not postgres.available():
        print("bench_workers: PostgreSQL is not installed; run scripts/setup.sh", file=sys.stderr)
        return 2
    git = provenance.git_commit()  # at the start: the code the workers run
    scratch = Path(tempfile.mkdtemp(prefix="ghostnas-bench-workers-"))
    rows = []
    try:
        with postgres.postgres_server() as url:
            for k in counts:
                rows.append(_one("postgresql", url, k, args.trials, scratch))
                print(json.dumps(rows[-1]), flush=True)
        for k in baseline:
            rows.append(_one("journal", f"journal:{scratch / f'journal-{k}.log'}", k, args.trials, scratch))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(
        f"\n{'storage':<11} {'workers':>7} {'trials':>6} {'wall s':>7} {'trials/s':>8} {'storage ms/trial':>16}  ok"
    )
    for r in rows:
        ok = "yes" if not r["study_problems"] and set(r["exit_statuses"]) == {0} else "NO"
        print(
            f"{r['storage']:<11} {r['workers']:>7} {r['trials_in_study']:>6} {r['wall_seconds']:>7.1f} "
            f"{r['trials_per_second']:>8.1f} {r['storage_ms_per_trial']:>16.1f}  {ok}"
        )
    import optuna

    out.mkdir(parents=True)
    record = {
        "command": ["python", "benchmarks/bench_workers.py", *(argv if argv is not None else sys.argv[1:])],
        "git": git,
        "machine": provenance.machine_info(),
        "optuna": optuna.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "evaluator": "fake (no sleep)",
            "space": "tiny",
            "budget": "30M (every config fits)",
            "sampler": "random",
            "postgres": "throw-away local server, 127.0.0.1, fsync off (ghostnas.testing.postgres)",
        },
        "rows": rows,
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten {out / 'run.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
