"""Does searching beat picking GhostNet off the shelf? The search-quality benchmark.

One run of this script does, side by side and with the same settings:

1. ``ghostnas search --budget B`` twice at the same seed and trial count: with the default
   sampler (TPE) and with ``random``. Both use the same proxy evaluator.
2. Trains the winner of each search (``best.json``: best proxy score under budget) and
   ``ghostnet_100`` (141M MACs) with one shared training recipe
   (:func:`ghostnas.full_training.train_model`), at several seeds each, and scores each on the
   official test set.
3. Writes ``table.md`` and ``results.json`` (mean and spread of test accuracy, MACs, params, the
   hypervolume of both fronts), ``search_quality.png`` (both fronts; final test accuracy against
   MACs), ``command.txt`` and ``run.json`` (exact command, commit, machine, timings) into ``--out``.

The full-scale benchmark is for a CUDA GPU (``--device cuda``, 30+ trials, full training). On the
2-core CPU machine it runs at a reduced scale that fits about half an hour; the scale is
recorded next to the results and printed in the table's title. Every unit of work (a search, a
training run) takes the shared CPU lock (``--lock``) on its own, so other jobs can interleave.

Example (the CPU run kept under results/)::

    .venv/bin/python benchmarks/search_quality.py --out results/search-quality-cpu-2026-11-23 \
        --trials 16 --proxy-epochs 1 --train-epochs 2 --train-images 10000 --seeds 0 1 2 \
        --lock /tmp/ghostnas-cpu.lock
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from ghostnas.budget import parse_budget
from ghostnas.config import config_to_dict
from ghostnas.cost import count_cost
from ghostnas.front import best_record, hypervolume_2d, pareto_front, scored_in_budget
from ghostnas.full_training import TrainSettings, train_model
from ghostnas.noise import DEFAULT_NOISE_SEEDS
from ghostnas.provenance import provenance
from ghostnas.registry import resolve_config
from ghostnas.run_folder import RunFolder, open_run
from ghostnas.search import SearchSettings, run_search

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import cpu_lock
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import cpu_lock

SAMPLERS = ("tpe", "random")
BASELINE = "ghostnet_100"


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc).strftime('%H:%M:%S')}] {msg}", flush=True)


def _summary(run: RunFolder, seconds: float) -> dict[str, Any]:
    """One search's line in the results, read from its run folder: counts, time, best trial,
    hypervolume and front, and the search's own noise floor (``run.json``'s ``noise``: the
    reference's seed-to-seed proxy SD)."""
    counts = run.info["counts"]
    noise = run.info.get("noise") or {}
    measured = bool(noise.get("measured"))
    best = best_record(run.records, run.budget)
    if best is None:
        raise SystemExit(f"search_quality: {run.path} has no trial scored under budget")
    front = pareto_front(scored_in_budget(run.records, run.budget), "macs")
    return {
        "run_dir": str(run.path),
        "evaluated": counts["evaluated"],
        "over_budget": counts["over_budget"],
        "failed": counts["failed"],
        "seconds": round(seconds, 1),
        "best_trial": best.number,
        "best_is_reference": best.reference,
        "best_proxy": best.accuracy,
        "best_macs": best.macs,
        "best_params": best.params,
        "best_arch": best.arch,
        "hypervolume": hypervolume_2d(front, "macs", run.budget.limit),
        "pareto": [
            {"trial": r.number, "macs": r.macs, "params": r.params, "accuracy": r.accuracy} for r in front
        ],
        "noise_sd": noise.get("sd") if measured else None,
        "noise_threshold": noise.get("distinguishable_if_difference_over") if measured else None,
        "noise_reference_mean": noise.get("mean") if measured else None,
        "reference_on_front": any(r.reference for r in front),
    }


def _search_from_folder(folder: Path) -> dict[str, Any]:
    """A finished search's summary read back from its run folder (``--summarise-only``)."""
    run = open_run(folder)
    # the study's total over every invocation (a resumed search's own timing is only its last run)
    return _summary(run, (run.info.get("totals") or run.info["timing"])["loop_seconds"])


def run_searches(args: argparse.Namespace, out: Path, command: list[str]) -> dict[str, Any]:
    budget = parse_budget(args.budget)
    found = {}
    if args.summarise_only:
        return {s: _search_from_folder(out / f"search-{s}") for s in SAMPLERS}
    for sampler in SAMPLERS:
        settings = SearchSettings(
            budget=budget,
            space=args.space,
            trials=args.trials,
            sampler=sampler,
            evaluator=args.evaluator,
            epochs=args.proxy_epochs,
            data=args.data,
            data_dir=args.data_dir,
            seed=args.search_seed,
            device=args.device,
            noise_seeds=args.noise_seeds,
            rungs=args.rungs,
            out=str(out / f"search-{sampler}"),
            command=command,
        )
        with cpu_lock(args.lock) as waited:
            log(f"search {sampler}: {args.trials} trials (waited {waited:.0f} s for the lock)")
            t0 = time.perf_counter()
            result = run_search(settings)
            seconds = time.perf_counter() - t0
        found[sampler] = row = _summary(open_run(result.out_dir), seconds)
        log(
            f"search {sampler}: best trial {row['best_trial']} proxy {row['best_proxy']:.4f} "
            f"{row['best_macs'] / 1e6:.1f}M MACs; hypervolume {row['hypervolume']:.4f}; {seconds:.0f} s"
        )
    return found


def train_candidates(
    args: argparse.Namespace, out: Path, candidates: dict[str, str], command: list[str]
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in candidates}
    for seed in args.seeds:  # seed-major: an interrupted run still has every model at the first seeds
        for label, model in candidates.items():
            folder = out / "train" / f"{label}-seed{seed}"
            settings = TrainSettings(
                model=model,
                data=args.data,
                data_dir=args.data_dir,
                epochs=args.train_epochs,
                seed=seed,
                device=args.device,
                train_images=args.train_images,
                out=str(folder),
                force=True,
                command=command,
            )
            m = _finished(folder, settings)
            if m is None and args.summarise_only:
                log(f"train {label} seed {seed}: not finished; left out (--summarise-only)")
                continue
            if m is None and args.stop_after is not None and time.perf_counter() > args.deadline:
                log(
                    f"train {label} seed {seed}: not started (--stop-after {args.stop_after:g} min); rerun resumes"
                )
                continue
            if m is None:
                with cpu_lock(args.lock) as waited:
                    log(f"train {label} seed {seed} (waited {waited:.0f} s for the lock)")
                    m = train_model(settings).metrics
            else:
                log(f"train {label} seed {seed}: reusing the finished run in {folder}")
            if not args.keep_weights:
                (folder / "weights.pt").unlink(missing_ok=True)
            log(
                f"train {label} seed {seed}: val {m['val_acc']:.4f} test {m['test_acc']:.4f} ({m['total_s']:.0f} s)"
            )
            runs[label].append(
                {
                    k: m[k]
                    for k in (
                        "seed",
                        "val_acc",
                        "test_acc",
                        "test_loss",
                        "params",
                        "macs",
                        "total_s",
                        "arch",
                    )
                }
            )
    return runs


def _finished(folder: Path, settings: TrainSettings) -> dict[str, Any] | None:
    """Metrics of a training run this benchmark already finished in ``folder`` with the same
    model, data, epochs, subset and seed (a re-run after an interruption does not train it again)."""
    try:
        m = json.loads((folder / "metrics.json").read_text())
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    same = (
        cfg == config_to_dict(resolve_config(settings.model))
        and m["seed"] == settings.seed
        and m["epochs"] == settings.epochs
        and m["recipe"]["train_images"] == settings.train_images
        and m.get("dataset") == settings.data
    )
    return m if same else None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, list[dict[str, Any]]], searches: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for label, rs in runs.items():
        if not rs:
            continue
        test_m, test_s = _mean_std([r["test_acc"] for r in rs])
        val_m, val_s = _mean_std([r["val_acc"] for r in rs])
        sampler = label.removeprefix("search-").removesuffix("-winner")
        s = searches.get(sampler)
        rows.append(
            {
                "model": label,
                "arch": rs[0]["arch"],
                "macs": rs[0]["macs"],
                "params": rs[0]["params"],
                "proxy_score": s["best_proxy"] if s else None,
                "search_trial": s["best_trial"] if s else None,
                "is_ghostnet_reference": s["best_is_reference"] if s else True,
                "seeds": [r["seed"] for r in rs],
                "test_acc": [r["test_acc"] for r in rs],
                "test_acc_mean": test_m,
                "test_acc_std": test_s,
                "val_acc_mean": val_m,
                "val_acc_std": val_s,
            }
        )
    return rows


def compare(r: dict[str, Any], base: dict[str, Any]) -> str:
    """One model against another: the difference in mean test accuracy, its standard error over
    seeds (seeds as the only source of variation) and whether it exceeds twice that."""
    n1, n2 = len(r["test_acc"]), len(base["test_acc"])
    diff = r["test_acc_mean"] - base["test_acc_mean"]
    se = math.sqrt(r["test_acc_std"] ** 2 / n1 + base["test_acc_std"] ** 2 / n2)
    if min(n1, n2) < 2:
        word = "cannot be compared yet (fewer than 2 seeds) with"
    elif r["is_ghostnet_reference"] and base["model"] == BASELINE:
        word = "is the search's own reference network (width-scaled GhostNet, trial 0), compared with"
    elif se > 0 and abs(diff) > 2 * se:
        word = "beats" if diff > 0 else "loses to"
    else:
        word = "is within noise of"
    return (
        f"{r['model']} {word} {base['model']}: {100 * diff:+.2f} points of test accuracy "
        f"(standard error {100 * se:.2f}, 2 x SE = {200 * se:.2f}; seeds {r['seeds']} vs {base['seeds']}), "
        f"{r['macs'] / 1e6:.1f}M vs {base['macs'] / 1e6:.1f}M MACs"
    )


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Each search winner against ghostnet_100, then the default (TPE) winner against the random
    search's winner."""
    base = next((r for r in rows if r["model"] == BASELINE), None)
    if base is None:
        return [f"{BASELINE} has no finished training run; no comparison"]
    lines = [compare(r, base) for r in rows if r is not base]
    by_model = {r["model"]: r for r in rows}
    tpe, rnd = by_model.get("search-tpe-winner"), by_model.get("search-random-winner")
    if tpe is not None and rnd is not None and tpe["arch"] != rnd["arch"]:
        lines.append(compare(tpe, rnd))
    elif tpe is not None and rnd is not None:
        lines.append("search-tpe-winner and search-random-winner are the same network")
    return lines


def table_md(
    rows: list[dict[str, Any]],
    searches: dict[str, Any],
    scale: str,
    args: argparse.Namespace,
) -> str:
    out = [
        f"### Search quality: {args.budget}, {scale}",
        "",
        "| model | MACs | params | proxy score | test accuracy (mean ± std) | SE | seeds | per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        proxy = "" if r["proxy_score"] is None else f"{r['proxy_score']:.4f}"
        trial = "" if r["search_trial"] is None else f" (trial {r['search_trial']})"
        out.append(
            f"| {r['model']}{trial} | {r['macs'] / 1e6:.1f}M | {r['params'] / 1e6:.2f}M | {proxy} | "
            f"{100 * r['test_acc_mean']:.2f} ± {100 * r['test_acc_std']:.2f} | "
            f"{100 * r['test_acc_std'] / math.sqrt(len(r['seeds'])):.2f} | {len(r['seeds'])} | "
            + ", ".join(f"{100 * a:.2f}" for a in r["test_acc"])
            + " |"
        )
    out += [
        "",
        "| search | evaluated | over budget (rejected) | best trial | hypervolume of the front | "
        "proxy noise SD (reference) | best vs reference (proxy) | time |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for sampler, s in searches.items():
        sd, ref_mean = s.get("noise_sd"), s.get("noise_reference_mean")
        if s["best_is_reference"]:
            vs_ref = "is the reference"
        elif sd is None or ref_mean is None:
            vs_ref = "no noise floor"
        else:
            d = s["best_proxy"] - ref_mean
            vs_ref = f"{100 * d:+.2f} points, " + (
                "beyond noise" if abs(d) > s["noise_threshold"] else "within noise"
            )
        out.append(
            f"| {sampler} | {s['evaluated']} | {s['over_budget']} | {s['best_trial']} | {s['hypervolume']:.4f} | "
            f"{'n/a' if sd is None else f'{sd:.4f}'} | {vs_ref} | {s['seconds']:.0f} s |"
        )
    out += ["", *[f"- {line}" for line in verdict(rows)], ""]
    return "\n".join(out)


def plot(
    rows: list[dict[str, Any]],
    searches: dict[str, Any],
    path: Path,
    title: str,
    budget: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), dpi=110)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (sampler, s) in enumerate(searches.items()):
        xs = [p["macs"] / 1e6 for p in s["pareto"]]
        ys = [p["accuracy"] for p in s["pareto"]]
        ax1.step(xs, ys, where="post", color=f"C{i}")
        ax1.scatter(
            xs,
            ys,
            color=f"C{i}",
            s=25,
            label=f"{sampler} front (HV {s['hypervolume']:.4f})",
        )
    ax1.axvline(budget / 1e6, color="k", linestyle="--", linewidth=1, label="budget")
    ax1.set_xlabel("MACs at 224x224 (millions)")
    ax1.set_ylabel("proxy score (validation accuracy, short training)")
    ax1.set_title("search fronts, same seed and trial count", fontsize=10)
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    for i, r in enumerate(rows):
        ax2.errorbar(
            [r["macs"] / 1e6],
            [100 * r["test_acc_mean"]],
            yerr=[100 * r["test_acc_std"]],
            fmt="o",
            capsize=4,
            color=f"C{i}",
            label=f"{r['model']} ({len(r['seeds'])} seeds)",
        )
    ax2.set_xlabel("MACs at 224x224 (millions)")
    ax2.set_ylabel("test accuracy, % (mean ± std over seeds)")
    ax2.set_title("same training recipe", fontsize=10)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--out",
        required=True,
        help="results folder (e.g. results/search-quality-cpu-<date>)",
    )
    p.add_argument("--budget", default="150MFLOPs")
    p.add_argument("--space", default="ghostnet_v1")
    p.add_argument("--trials", type=int, default=30, help="evaluated candidates per search")
    p.add_argument("--evaluator", default="train", help="proxy evaluator of both searches")
    p.add_argument(
        "--proxy-epochs",
        type=float,
        default=None,
        help="proxy epochs (None: evaluator default)",
    )
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument(
        "--noise-seeds",
        type=int,
        default=DEFAULT_NOISE_SEEDS,
        help=f"the searches' noise probes of their reference (default {DEFAULT_NOISE_SEEDS}, as ghostnas search)",
    )
    p.add_argument(
        "--rungs", type=int, default=1, help="the searches' promotion rungs (default 1, as ghostnas search)"
    )
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-epochs", type=float, default=30.0)
    p.add_argument(
        "--train-images",
        type=int,
        default=0,
        help="training subset for the final runs (0: all)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--lock",
        default=None,
        help="flock file taken around each search and training run",
    )
    p.add_argument("--keep-weights", action="store_true", help="keep each trained weights.pt")
    p.add_argument(
        "--stop-after",
        type=float,
        default=None,
        help="minutes: start no new training run after this (GPU time in slices); the table says "
        "PARTIAL and a rerun with the same arguments resumes",
    )
    p.add_argument(
        "--summarise-only",
        action="store_true",
        help="run nothing: summarise the searches and the training runs already finished in --out",
    )
    args = p.parse_args(argv)
    if args.stop_after is not None and not args.stop_after > 0:
        p.error(f"--stop-after {args.stop_after}: give a positive number of minutes")
    args.deadline = time.perf_counter() + 60 * (args.stop_after or 0)
    if len(args.seeds) < 3:
        print("search_quality: use at least 3 seeds (--seeds 0 1 2)", file=sys.stderr)
        return 2

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        Path(sys.executable).name,
        "benchmarks/search_quality.py",
        *(argv if argv is not None else sys.argv[1:]),
    ]
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    searches = run_searches(args, out, command)
    t_search = time.perf_counter() - t0
    candidates = {f"search-{s}-winner": str(Path(searches[s]["run_dir"]) / "best.json") for s in SAMPLERS}
    candidates[BASELINE] = BASELINE
    t1 = time.perf_counter()
    runs = train_candidates(args, out, candidates, command)
    t_train = time.perf_counter() - t1
    rows = summarise(runs, searches)
    base_cost = count_cost(resolve_config(BASELINE))
    assert all(r["macs"] == base_cost.macs for r in rows if r["model"] == BASELINE)

    full = args.device.startswith("cuda") and args.train_images == 0 and args.train_epochs >= 30
    scale = (
        "full scale"
        if full
        else f"REDUCED SCALE on {args.device} ({args.trials} trials/search, proxy epochs "
        f"{args.proxy_epochs or 'default'}; final training {args.train_epochs:g} epochs on "
        f"{args.train_images or 'all'} images)"
    )
    done = sum(len(rs) for rs in runs.values())
    if done < len(candidates) * len(args.seeds):
        scale += f"; PARTIAL: {done} of {len(candidates) * len(args.seeds)} training runs finished"
    for (
        label,
        model,
    ) in candidates.items():  # keep the trained configs next to the table
        if model.endswith(".json"):
            shutil.copyfile(model, out / f"{label}.json")
    ended = datetime.now(timezone.utc)
    results = {
        "scale": scale,
        "settings": {k: v for k, v in vars(args).items() if k != "deadline"},
        "searches": searches,
        "models": rows,
        "verdict": verdict(rows),
        "timing": {"search_s": round(t_search, 1), "train_s": round(t_train, 1)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = table_md(rows, searches, scale, args)
    (out / "table.md").write_text(md)
    plot(
        rows,
        searches,
        out / "search_quality.png",
        f"{args.budget} on {args.data}: {scale}",
        parse_budget(args.budget).limit,
    )
    info = {
        **provenance(command),
        "started": started.isoformat(timespec="seconds"),
        "ended": ended.isoformat(timespec="seconds"),
        "timing": results["timing"],
    }
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "command.txt").write_text(
        " ".join(command)
        + "\n\n# from the repository root; git commit "
        + str((info.get("git") or {}).get("commit"))
        + f"\n# machine: {info['machine']['cpu']}, {info['machine']['cores']} cores; torch {info['versions']['torch']}\n"
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
