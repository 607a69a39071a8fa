"""Does a detection search beat the stock and the hand-made Ghost YOLOv8n? The detection benchmark.

One run of this script does, with the same settings for every model:

1. Makes the detection dataset (``ghostnas data make-detect``) unless ``--data`` names one.
2. Runs ``ghostnas search --task detect --base yolov8n --budget B`` (the short-training proxy,
   val mAP50-95) and exports its winner (``ghostnas export RUN --best --yolo-yaml``).
3. Trains the winner, the stock YOLOv8n and the seed's C2f_GhostBottleneck YOLOv8n (every
   backbone C2f with the official GhostBottleneck, at YOLOv8n's depth and width) with one longer
   recipe (:func:`ghostnas.evaluators.detect.train_detector`), at several seeds each, and scores
   each on the dataset's **test** split (never seen by the search).
4. Writes ``results.json`` (per seed and mean, SD and standard error of test mAP50-95; GFLOPs in
   Ultralytics' convention; params; the paired differences winner - baseline with their standard
   error), ``table.md``, ``command.txt`` and ``run.json`` (exact command, commit, machine) into
   ``--out``.

GFLOPs are Ultralytics' (2 x conv MACs at 640x640, nc from the data, the fused model's count);
the stock YOLOv8n (8.09 at nc=10) and the seed's Ghost YOLOv8n (6.77) are both above a 6.5
GFLOPs budget, which the table says: they are the references users compare with, not
candidates of the search.

The full scale (many images, 100+ epochs, 640 pixels) is for a GPU. On the shared 2-core CPU
it runs at a reduced scale (a few hundred 256-pixel canvases, training at 128 or 160 pixels for
tens of epochs), recorded next to the results and in the table's title. Each training run takes
the shared CPU lock (``--lock``) on its own.

Example::

    .venv/bin/python benchmarks/detect_quality.py --out results/detect-quality-cpu-2026-11-29 \
        --images 600 --search-trials 6 --search-epochs 5 --final-epochs 20 --seeds 0 1 \
        --lock /tmp/ghostnas-cpu.lock
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ghostnas.data.detect import DetectRecipe as DataRecipe
from ghostnas.data.detect import make_detect_dataset, read_detect_data
from ghostnas.detect import C2fChoice, DetectConfig, base_detector, detect_config_from_dict, detect_costs
from ghostnas.evaluators.detect import DetectRecipe, train_detector

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import cpu_lock, run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import cpu_lock, run_info


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc).strftime('%H:%M:%S')}] {msg}", flush=True)


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "se": sd / math.sqrt(n) if sd is not None else None,
        "values": values,
    }


def _cli(args: list[str], log_path: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "ghostnas"), *args]
    log("$ " + shlex.join(cmd))
    with log_path.open("a") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", default=None, help="an Ultralytics data.yaml (default: make one in OUT/data)")
    p.add_argument("--images", type=int, default=600, help="canvases when making the data")
    p.add_argument("--canvas", type=int, default=256, help="canvas side when making the data")
    p.add_argument("--budget", default="6.5GFLOPs")
    p.add_argument("--search-trials", type=int, default=6)
    p.add_argument("--search-epochs", type=int, default=5)
    p.add_argument("--final-epochs", type=int, default=20)
    p.add_argument("--imgsz", type=int, default=128, help="training side of the proxy and the final runs")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--noise-seeds", type=int, default=2, help="the search's noise-floor seeds (reference)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--lock", default=None, help="shared CPU lock file (flock) taken per training run")
    args = p.parse_args(argv)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    info = run_info()
    (out / "command.txt").write_text(info["command"] + "\n")
    t_start = time.perf_counter()
    cli_log = out / "log.txt"

    if args.data is None:
        data_yaml = out / "data" / "data.yaml"
        if not data_yaml.exists():
            log(f"making {args.images} canvases of {args.canvas}x{args.canvas}")
            make_detect_dataset(out / "data", DataRecipe(images=args.images, imgsz=args.canvas, seed=0))
    else:
        data_yaml = Path(args.data)
    data = read_detect_data(data_yaml)
    nc = data.nc

    run_dir = out / "search"
    search_args = [
        "search", "--task", "detect", "--base", "yolov8n", "--budget", args.budget, "--data", str(data_yaml),
        "--trials", str(args.search_trials), "--epochs", str(args.search_epochs), "--image-size", str(args.imgsz),
        "--device", args.device, "--out", str(run_dir), "--no-progress", "--noise-seeds", str(args.noise_seeds),
    ]  # fmt: skip
    t0 = time.perf_counter()
    with cpu_lock(args.lock):
        _cli(search_args, cli_log)
    search_seconds = time.perf_counter() - t0
    winner_yaml = out / "winner.yaml"
    _cli(
        [
            "export",
            str(run_dir),
            "--best",
            "--name",
            "detect_winner",
            "--yolo-yaml",
            str(winner_yaml),
            "--force",
        ],
        cli_log,
    )
    meta = yaml.safe_load(winner_yaml.read_text())["ghostnas"]
    winner = detect_config_from_dict(meta["config"])

    base = base_detector("yolov8n", nc)
    models = {
        "searched winner": winner,
        "YOLOv8n (stock)": base.stock_config(),
        "YOLOv8n C2f_GhostBottleneck (seed)": DetectConfig(
            "yolov8n", tuple(C2fChoice("ghost", s.depth, s.width) for s in base.sites)
        ),
    }
    recipe = DetectRecipe(epochs=args.final_epochs, imgsz=args.imgsz, device=args.device)
    rows: dict[str, Any] = {}
    for label, cfg in models.items():
        costs = detect_costs(cfg, nc)
        runs = []
        for seed in args.seeds:
            with cpu_lock(args.lock) as waited:
                t0 = time.perf_counter()
                scores = train_detector(cfg, str(data.yaml_path), nc, _with_seed(recipe, seed), test=True)
                seconds = time.perf_counter() - t0
            runs.append(
                {"seed": seed, "seconds": round(seconds, 1), "lock_wait_s": round(waited, 1), **scores}
            )
            with (out / "runs.jsonl").open(
                "a"
            ) as fh:  # kept as it goes: a cut-off run still shows its figures
                fh.write(json.dumps({"label": label, "arch": cfg.short(), **runs[-1]}) + "\n")
            log(f"{label} seed {seed}: test mAP50-95 {scores['test']['map']:.4f} ({seconds:.0f} s)")
        rows[label] = {
            "arch": cfg.short(),
            "gflops": round(costs["gflops"], 4),
            "params": int(costs["params"]),
            "within_budget": costs["gflops"] <= float(args.budget.lower().replace("gflops", "")),
            "test_map": _stats([r["test"]["map"] for r in runs]),
            "val_map": _stats([r["val"]["map"] for r in runs]),
            "runs": runs,
        }
    diffs = {}
    win = rows["searched winner"]["test_map"]["values"]
    for label in list(models)[1:]:
        other = rows[label]["test_map"]["values"]
        diffs[f"winner - {label}"] = _stats([a - b for a, b in zip(win, other, strict=True)])
    results = {
        "what": "test mAP50-95 of the detection search's winner vs stock and seed Ghost YOLOv8n, same recipe",
        "scale": {
            "data": str(data.yaml_path),
            "images": dict(data.images),
            "boxes": dict(data.boxes),
            "budget": args.budget,
            "search_trials": args.search_trials,
            "search_epochs": args.search_epochs,
            "final_epochs": args.final_epochs,
            "imgsz": args.imgsz,
            "seeds": args.seeds,
            "device": args.device,
            "reduced": args.device == "cpu",
        },
        "gflops_convention": "Ultralytics: 2 x conv MACs at 640x640, nc from the data (fused model's count)",
        "search": {"run_dir": str(run_dir), "seconds": round(search_seconds, 1), "winner": meta},
        "models": rows,
        "paired_differences": diffs,
        "seconds": round(time.perf_counter() - t_start, 1),
        "shared_machine": "other processes may have shared the CPU; times are wall-clock",
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "table.md").write_text(_table(results))
    log(f"wrote {out}")
    return 0


def _with_seed(recipe: DetectRecipe, seed: int) -> DetectRecipe:
    from dataclasses import replace

    return replace(recipe, seed=seed)


def _fmt(s: dict[str, Any]) -> str:
    se = "" if s["se"] is None else f" ± {s['se']:.4f}"
    return f"{s['mean']:.4f}{se}"


def _table(r: dict[str, Any]) -> str:
    sc = r["scale"]
    lines = [
        f"# Detection search quality ({'reduced CPU scale' if sc['reduced'] else sc['device']}): "
        f"{sum(sc['images'].values())} images, proxy {sc['search_epochs']} epochs x {sc['search_trials']} trials, "
        f"final {sc['final_epochs']} epochs at {sc['imgsz']} px, seeds {sc['seeds']}",
        "",
        f"GFLOPs: {r['gflops_convention']}. Budget {sc['budget']}. Test mAP50-95: mean ± standard error over seeds.",
        "",
        "| model | arch | GFLOPs | params | within budget | test mAP50-95 | val mAP50-95 |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for label, m in r["models"].items():
        lines.append(
            f"| {label} | `{m['arch']}` | {m['gflops']:.2f} | {m['params']:,} | {'yes' if m['within_budget'] else 'no'} | "
            f"{_fmt(m['test_map'])} | {_fmt(m['val_map'])} |"
        )
    lines += ["", "| paired difference (same seed) | mean ± SE |", "|---|---:|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in r["paired_differences"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
