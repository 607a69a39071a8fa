"""Does promotion (``--rungs 2``) find better networks than today's search at equal compute?

For each seed, two searches with the same space, budget, data, proxy recipe and noise probes:

- ``flat``: today's search, ``--trials T``: every candidate trained once (rung 0).
- ``promote``: ``--rungs R``: candidates on or near the front train on to 3x the epochs. It is
  run for as many trials as fit in the training images the flat search used (resumed one trial
  at a time until its training images reach the flat search's), so both spend the same compute.

Equal compute is counted in *training images processed* (every rung and the noise probes
included), not wall time: the machine is shared with other jobs, so wall time says more about
the neighbours than about the method. CPU seconds of this process are recorded too.

The two searches' own scores are not comparable (a promoted candidate's score had 3x the
training), so both are judged the same way afterwards, at the top rung with fresh seeds that
neither search used: each front point is retrained to the top rung (rung 0, then the
continuation) with one fresh seed, giving the *top-rung hypervolume* of each front; the winner
(``best.json``) gets a second fresh seed, giving the *winner's top-rung score* (mean of two).
Identical configs are evaluated once per seed (the reference network is in both searches).

Writes ``results.json``, ``table.md``, ``command.txt`` and ``run.json`` into ``--out`` with the
per-seed figures, mean, SD and standard error, and the paired difference.

Example (the CPU run under results/)::

    .venv/bin/python benchmarks/promotion.py --out results/promotion-cpu-2026-11-29 \
        --trials 8 --budget 60M --epochs 1 --train-images 1024 --val-images 1000 --batch-size 64 \
        --rungs 2 --seeds 0 1 2 --lock /tmp/ghostnas-cpu.lock
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from ghostnas.budget import parse_budget
from ghostnas.config import GhostNetConfig, config_from_dict
from ghostnas.evaluators.proxy import TrainEvaluator
from ghostnas.front import hypervolume_2d, pareto_front, scored_in_budget
from ghostnas.promotion import DEFAULT_FACTOR
from ghostnas.records import TrialRecord
from ghostnas.run_folder import open_run
from ghostnas.search import SearchSettings, run_search
from ghostnas.stats import mean_sd_se
from ghostnas.train import Recipe

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import cpu_lock, run_info
except ImportError:  # imported as benchmarks.promotion (tests)
    from benchmarks._runinfo import cpu_lock, run_info


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc).strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def search(args: argparse.Namespace, seed: int, out: Path, trials: int, rungs: int) -> dict[str, Any]:
    settings = SearchSettings(
        budget=parse_budget(args.budget),
        space=args.space,
        trials=trials,
        data=args.data,
        seed=seed,
        out=str(out),
        noise_seeds=args.noise_seeds,
        rungs=rungs,
        command=["benchmarks/promotion.py", f"--seed {seed}", f"--rungs {rungs}"],
    )
    with cpu_lock(args.lock):
        result = run_search(settings, evaluator=evaluator(args, seed))
    result_run = open_run(result.out_dir)
    return {
        "images": int(result.run_info["promotion"]["training_images"]),
        "evaluated": result.evaluated,
        "front": [dict(p) for p in result.pareto],
        "front_records": pareto_front(scored_in_budget(result_run.records, result_run.budget), "macs"),
        "best_trial": result.best.number if result.best else None,
        "noise_sd": (result.run_info.get("noise") or {}).get("sd"),
        "reached": result.run_info["promotion"]["scored_reaching_rung"],
    }


def evaluator(args: argparse.Namespace, seed: int) -> TrainEvaluator:
    """The proxy at the benchmark's reduced scale (the default recipe with fewer images)."""
    recipe = Recipe(
        epochs=args.epochs,
        train_images=args.train_images,
        val_images=args.val_images,
        batch_size=args.batch_size,
    )
    return TrainEvaluator(args.data, recipe=recipe, seed=seed, threads=args.threads)


def run_pair(args: argparse.Namespace, seed: int, cache: dict[str, float]) -> dict[str, Any]:
    budget = parse_budget(args.budget)
    root = Path(args.out) / f"seed{seed}"
    row: dict[str, Any] = {"seed": seed}
    for name, rungs in (("flat", 1), ("promote", args.rungs)):
        out = root / name
        if out.exists():
            shutil.rmtree(out)
        t0, c0 = time.perf_counter(), cpu_seconds()
        if rungs == 1:
            res = search(args, seed, out, args.trials, 1)
        else:
            target = row["flat"]["images"]
            trials = max(2, args.trials // 3)
            res = search(args, seed, out, trials, rungs)
            while res["images"] < target:
                trials += 1
                res = search(args, seed, out, trials, rungs)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        res["cpu_s"] = round(cpu_seconds() - c0, 1)
        log(
            f"seed {seed} {name}: {res['evaluated']} trials, {res['images']} images, rungs reached {res['reached']}"
        )
        # judge: every front point at the top rung with a fresh seed, the winner with a second one
        judge_seeds = [100 + 10 * seed, 101 + 10 * seed]
        top = []
        for p in res["front"]:
            cfg = config_from_dict(p["config"])
            top.append(
                {
                    "trial": p["trial"],
                    "macs": p["macs"],
                    "accuracy": top_rung(args, cfg, judge_seeds[0], cache),
                }
            )
        winner = next(p for p in res["front"] if p["trial"] == res["best_trial"])
        wcfg = config_from_dict(winner["config"])
        wscores = [top_rung(args, wcfg, s, cache) for s in judge_seeds]
        res["front_top_rung"] = top
        res["hv_top_rung"] = hypervolume_2d(
            pareto_front(
                [
                    TrialRecord(t["trial"], "COMPLETE", "ok", macs=t["macs"], accuracy=t["accuracy"])
                    for t in top
                ],
                "macs",
            ),
            "macs",
            budget.limit,
        )
        res["hv_own_scores"] = hypervolume_2d(res["front_records"], "macs", budget.limit)
        res["winner"] = {
            "trial": winner["trial"],
            "macs": winner["macs"],
            "search_score": winner["accuracy"],
            "arch": winner["arch"],
            "top_rung_scores": wscores,
            "top_rung_mean": sum(wscores) / len(wscores),
        }
        del res["front"], res["front_records"]
        row[name] = res
        log(
            f"seed {seed} {name}: top-rung HV {res['hv_top_rung']:.4f}, winner {res['winner']['top_rung_mean']:.4f}"
        )
    return row


def top_rung(args: argparse.Namespace, cfg: GhostNetConfig, seed: int, cache: dict[str, float]) -> float:
    """The config's score at the top rung (rung 0 and its continuations) with ``seed``."""
    key = f"{cfg.short()}|{seed}"
    if key not in cache:
        ev = evaluator(args, seed)
        with cpu_lock(args.lock):
            res = ev.evaluate_rungs(cfg, args.rungs, DEFAULT_FACTOR, lambda r, x: True)
        cache[key] = float(res[-1].score)
    return cache[key]


def describe(values: list[float]) -> dict[str, float]:
    mean, sd, se = mean_sd_se(values)
    return {"mean": mean, "sd": sd, "se": se, "n": len(values)}


def fmt(d: dict[str, float]) -> str:
    sd = "n/a" if math.isnan(d["sd"]) else f"{d['sd']:.4f}"
    se = "n/a" if math.isnan(d["se"]) else f"{d['se']:.4f}"
    return f"{d['mean']:.4f} (SD {sd}, SE {se}, n={d['n']})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--trials", type=int, default=8, help="trials of the flat search")
    ap.add_argument("--budget", default="60M")
    ap.add_argument("--space", default="ghostnet_v1")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--epochs", type=float, default=1.0, help="rung-0 proxy epochs")
    ap.add_argument("--train-images", type=int, default=1024)
    ap.add_argument("--val-images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: robust on a loaded machine)"
    )
    ap.add_argument("--rungs", type=int, default=2)
    ap.add_argument("--noise-seeds", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lock", default=None, help="flock file taken around each unit of work")
    ap.add_argument(
        "--combine",
        nargs="+",
        default=None,
        help="no runs: merge the per-seed rows of these results.json files (seeds run as separate "
        "processes with the same scale) into --out",
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = run_info()
    (out / "command.txt").write_text(info["command"] + "\n")
    t0 = time.perf_counter()
    cache: dict[str, float] = {}
    rows = []
    if args.combine:
        for path in args.combine:
            rows += json.loads(Path(path).read_text())["rows"]
        rows.sort(key=lambda r: r["seed"])
        args.seeds = [r["seed"] for r in rows]
    for seed in [] if args.combine else args.seeds:
        rows.append(run_pair(args, seed, cache))
        (out / "results.json").write_text(json.dumps({"partial": True, "rows": rows}, indent=2) + "\n")
    summary: dict[str, Any] = {}
    for metric, get in (
        ("hv_top_rung", lambda r: r["hv_top_rung"]),
        ("winner_top_rung", lambda r: r["winner"]["top_rung_mean"]),
        ("images", lambda r: float(r["images"])),
        ("evaluated", lambda r: float(r["evaluated"])),
        ("cpu_s", lambda r: float(r["cpu_s"])),
    ):
        summary[metric] = {name: describe([get(row[name]) for row in rows]) for name in ("flat", "promote")}
        summary[metric]["promote_minus_flat"] = describe(
            [get(row["promote"]) - get(row["flat"]) for row in rows]
        )
    results = {
        "what": "promotion (--rungs) against today's search at equal training images; judged at the top rung "
        "with fresh seeds",
        "scale": {
            k: getattr(args, k)
            for k in (
                "trials",
                "budget",
                "space",
                "data",
                "epochs",
                "train_images",
                "val_images",
                "batch_size",
                "threads",
                "rungs",
                "noise_seeds",
            )
        },
        "equal_compute": "training images processed (all rungs and noise probes), not wall time",
        "rows": rows,
        "summary": summary,
        "seconds": round(time.perf_counter() - t0, 1),
        "combined_from": args.combine,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "run.json").write_text(json.dumps({**info, "seconds": results["seconds"]}, indent=2) + "\n")
    lines = [
        f"# Promotion (--rungs {args.rungs}) against today's search at equal compute",
        "",
        f"Scale (reduced, 2-core shared CPU): space {args.space}, budget {args.budget} MACs at 224x224, "
        f"{args.data}, rung 0 = {args.epochs:g} epoch(s) over {args.train_images} training images (batch "
        f"{args.batch_size}, validation on {args.val_images}, {args.threads} thread(s)), flat search "
        f"{args.trials} trials, noise seeds {args.noise_seeds}, seeds {args.seeds}. Equal compute = equal "
        "training images (the promotion search is resumed one trial at a time until it has used the flat "
        "search's images). Both judged at the top rung with two fresh seeds. Other jobs shared the machine.",
        "",
        "| metric | flat | promote | promote - flat (paired) |",
        "|---|---|---|---|",
    ]
    for metric in ("hv_top_rung", "winner_top_rung", "images", "evaluated", "cpu_s"):
        s = summary[metric]
        lines.append(
            f"| {metric} | {fmt(s['flat'])} | {fmt(s['promote'])} | {fmt(s['promote_minus_flat'])} |"
        )
    lines += [
        "",
        "Per seed:",
        "",
        "| seed | method | trials | images | rungs reached | HV top rung | winner top rung |",
        "|---:|---|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        for name in ("flat", "promote"):
            r = row[name]
            lines.append(
                f"| {row['seed']} | {name} | {r['evaluated']} | {r['images']} | {r['reached']} | "
                f"{r['hv_top_rung']:.4f} | {r['winner']['top_rung_mean']:.4f} |"
            )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
