"""Benchmark the search loop: evaluated candidates, wall time, and the share spent in Optuna.

By default it runs exactly what the bare main-job command runs (``ghostnas search --budget
150MFLOPs``: default space, sampler, evaluator and trial count) in a fresh run folder, and prints:

- candidates evaluated, proposals, and proposals rejected over budget (first/second half);
- wall time of the whole command (start-up, search loop, outputs);
- time in the evaluator, in the closed-form cost model, and in Optuna (sampler + storage:
  everything in the loop that is neither), with Optuna's share of the loop and per trial.

Targets from the issue: at least 30 evaluated candidates in 20 minutes on the 2-core CPU machine,
Optuna under 5% of the wall time. With ``--evaluator fake`` the evaluation takes microseconds, so
the figure that matters is Optuna's seconds per trial; multiply by the trial count and divide by
the real proxy's time to get its share.

Run it under the CPU lock::

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_search.py
    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_search.py --evaluator fake --trials 100

Candidates per GPU-hour (issue 18, target >= 3,000 with the default proxy): on a GPU, run the real
search with several candidates in flight and a time limit; the figure is evaluated candidates over
the whole command's wall time (start-up, Optuna and storage included)::

    python benchmarks/bench_search.py --device cuda --parallel 8 --trials 100000 --timeout 120 --out DIR

The report is printed and saved as ``bench.json`` (with command, commit and machine) in the run
folder, ``results/_scratch/bench_search/<time>`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import optuna

from ghostnas.budget import parse_budget
from ghostnas.evaluators import DEFAULT_EVALUATOR
from ghostnas.search import DEFAULT_SPACE, DEFAULT_TRIALS, SearchSettings, run_search


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", default="150MFLOPs")
    p.add_argument("--space", default=DEFAULT_SPACE)
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    p.add_argument("--sampler", default="tpe")
    p.add_argument("--evaluator", default=DEFAULT_EVALUATOR)
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite in the run folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--parallel", type=int, default=1, help="trials in flight, evaluated together")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--epochs", type=float, default=None, help="proxy epochs (None: the evaluator's default)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    out = Path(args.out or f"results/_scratch/bench_search/{stamp}")
    if out.exists():
        print(f"bench_search: {out} exists; give a fresh --out", file=sys.stderr)
        return 2
    settings = SearchSettings(
        budget=parse_budget(args.budget),
        space=args.space,
        trials=args.trials,
        sampler=args.sampler,
        evaluator=args.evaluator,
        seed=args.seed,
        out=str(out),
        storage=args.storage,
        command=[sys.executable, *sys.argv],
        device=args.device,
        parallel=args.parallel,
        timeout=args.timeout,
        data=args.data,
        epochs=args.epochs,
    )
    t0 = time.perf_counter()
    result = run_search(settings)
    wall = time.perf_counter() - t0
    info = result.run_info
    timing, counts, ob = info["timing"], info["counts"], info["over_budget"]
    proposals = timing["proposals_this_run"]
    report = {
        "command": [sys.executable, *sys.argv],
        "settings": {k: v for k, v in vars(args).items()},
        "git": info["git"],
        "machine": info["machine"],
        "versions": info["versions"],
        "evaluated": counts["evaluated"],
        "scored": counts["ok"],
        "failed": counts["failed"],
        "proposals": proposals,
        "over_budget": counts["over_budget"],
        "over_budget_share_first_half": ob["share_first_half"],
        "over_budget_share_second_half": ob["share_second_half"],
        "wall_seconds": round(wall, 3),
        "loop_seconds": timing["loop_seconds"],
        "evaluation_seconds": timing["evaluation_seconds"],
        "cost_model_seconds": timing["cost_model_seconds"],
        "optuna_seconds": timing["optuna_seconds"],
        "outputs_seconds": timing["outputs_seconds"],
        "optuna_share_of_wall": round(timing["optuna_seconds"] / wall, 4),
        "optuna_seconds_per_proposal": round(timing["optuna_seconds"] / max(proposals, 1), 4),
        "optuna_seconds_per_evaluated": round(timing["optuna_seconds"] / max(counts["evaluated"], 1), 4),
        "candidates_per_hour": round(3600 * counts["evaluated"] / wall, 1),
        "candidates_per_hour_loop_only": round(
            3600 * counts["evaluated"] / max(timing["loop_seconds"], 1e-9), 1
        ),
        "device": args.device,
        "gpu": _gpu_name(args.device),
        "parallel": args.parallel,
        "batch_sizes": timing.get("batch_sizes"),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"machine      {info['machine']['cpu']}, {info['machine']['cores']} cores, torch {info['versions']['torch']}"
    )
    print(
        f"settings     {args.space}, {args.budget}, sampler {args.sampler}, evaluator {args.evaluator}, trials {args.trials}"
    )
    print(f"evaluated    {counts['evaluated']} ({counts['ok']} scored, {counts['failed']} failed)")
    print(
        f"proposals    {proposals}, {counts['over_budget']} over budget "
        f"({ob['share_first_half']} of the first half, {ob['share_second_half']} of the second)"
    )
    print(
        f"wall         {wall:.2f} s (loop {timing['loop_seconds']:.2f} s, outputs {timing['outputs_seconds']:.2f} s)"
    )
    print(
        f"evaluation   {timing['evaluation_seconds']:.2f} s; cost model {timing['cost_model_seconds']:.4f} s"
    )
    print(
        f"optuna       {timing['optuna_seconds']:.2f} s = {100 * report['optuna_share_of_wall']:.1f}% of wall; "
        f"{report['optuna_seconds_per_proposal'] * 1000:.1f} ms per proposal, "
        f"{report['optuna_seconds_per_evaluated'] * 1000:.1f} ms per evaluated candidate"
    )
    print(
        f"rate         {report['candidates_per_hour']:.0f} evaluated candidates per hour of wall time on "
        f"{report['gpu'] or args.device} (parallel {args.parallel}; loop only: "
        f"{report['candidates_per_hour_loop_only']:.0f})"
    )
    print(f"report       {out / 'bench.json'}")
    return 0


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))


if __name__ == "__main__":
    sys.exit(main())
