"""Latency predictions as a user gets them: table built in one process, judged in later ones.

``benchmarks/bench_latency.py`` builds, fits and judges inside one process, minutes apart at
most; a user builds a table once and predicts later, from fresh ``ghostnas`` processes, on a
machine whose speed has moved meanwhile. This script walks that path with the real command line:

1. for each backend, ``ghostnas latency build-table --space SPACE --backend B --table T`` in its
   own process (the tables differ by backend, so each is built once);
2. other work in between: a separate process running convolutions for ``--work-s`` seconds, then
   a pause of ``--gap-s`` seconds;
3. for each of ``--configs`` configs sampled from the space with a seed the table never saw, in
   shuffled order, and for each backend (alternating which goes first):
   ``ghostnas latency predict CFG --measure-missing --json --backend B --table T`` (a fresh
   process: calibrates through the cached path, times missing blocks) and then
   ``ghostnas latency measure CFG --json --backend B`` (another fresh process, the truth);
4. reports, per backend, within +-10%, MAPE, bias and Kendall tau of the uncalibrated line and
   of the calibrated prediction, and how often the stated uncertainty covered the error;
5. optionally (``--compare-front pareto.json``) measures eager PyTorch against ONNX Runtime for
   GhostNet 0.5x/1.0x/1.3x and a searched front, each in fresh processes, two interleaved passes.

Everything (tables, per-config rows, per-process logs, summary, command, commit, machine, load
average) goes under ``--out``. Run it under the CPU lock:

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_latency_user_path.py \\
        --out results/latency-user-path-cpu-2026-11-29
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info
from ghostnas.config import config_to_dict
from ghostnas.latency import accuracy_report

log = logging.getLogger("bench_latency_user_path")

BACKENDS = ("torch", "onnxruntime")
REFERENCES = ("ghostnet_050", "ghostnet_100", "ghostnet_130")
OTHER_WORK = """
import sys, time, torch
torch.set_num_threads(1)
end = time.time() + float(sys.argv[1])
conv = torch.nn.Conv2d(64, 64, 3, padding=1)
x = torch.randn(8, 64, 56, 56)
while time.time() < end:
    conv(x).sum().backward()
"""


class Runner:
    """Runs ``ghostnas`` commands in fresh processes, logging each one's output and wall time."""

    def __init__(self, out: Path) -> None:
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.loads: list[float] = []

    def __call__(self, args: list[str], name: str, timeout: float = 3600) -> tuple[str, float]:
        self.count += 1
        self.loads.append(os.getloadavg()[0])
        cmd = [sys.executable, "-m", "ghostnas", *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.perf_counter() - t0
        (self.logs / f"{self.count:04d}-{name}.log").write_text(
            f"$ {' '.join(cmd[1:])}\n# exit {proc.returncode}, {wall:.1f} s\n--- stdout\n{proc.stdout}"
            f"--- stderr\n{proc.stderr}"
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"
            )
        return proc.stdout, wall


def other_work(seconds: float, gap: float) -> None:
    """A separate process that trains a convolution for ``seconds``, then an idle pause."""
    if seconds > 0:
        subprocess.run([sys.executable, "-c", OTHER_WORK, str(seconds)], check=True, timeout=seconds + 120)
    if gap > 0:
        time.sleep(gap)


def coverage(rows: list[dict[str, Any]], k: float) -> float:
    """Share of rows whose calibrated error is within ``k`` stated uncertainties."""
    hits = [abs(r["calibrated_ms"] - r["measured_ms"]) <= k * r["uncertainty_ms"] for r in rows]
    return sum(hits) / len(hits)


def judge(
    args: argparse.Namespace, run: Runner, out: Path, cfg_paths: list[Path]
) -> dict[str, list[dict[str, Any]]]:
    """Predict then measure every config on every backend, each step a fresh process."""
    rows: dict[str, list[dict[str, Any]]] = {b: [] for b in args.backends}
    order = list(range(len(cfg_paths)))
    random.Random(args.seed + 7).shuffle(order)
    started = time.time()
    for n, i in enumerate(order):
        backends = list(args.backends) if n % 2 == 0 else list(reversed(args.backends))
        for b in backends:
            table = out / f"table-{b}.json"
            pred_out, pred_wall = run(
                [
                    "latency",
                    "predict",
                    str(cfg_paths[i]),
                    "--measure-missing",
                    "--json",
                    "--backend",
                    b,
                    "--table",
                    str(table),
                ],
                f"predict-{b}-c{i:02d}",
            )
            pred = json.loads(pred_out)
            meas_out, meas_wall = run(
                ["latency", "measure", str(cfg_paths[i]), "--json", "--backend", b], f"measure-{b}-c{i:02d}"
            )
            meas = json.loads(meas_out)
            rows[b].append(
                make_row(cfg_paths[i].name, pred, meas, pred_wall, meas_wall, time.time() - started)
            )
        log.info("judged %d/%d configs", n + 1, len(order))
    return rows


def make_row(
    config: str,
    pred: dict[str, Any],
    meas: dict[str, Any],
    pred_wall: float,
    meas_wall: float,
    since_s: float,
) -> dict[str, Any]:
    """One judged config on one backend, from the JSON of its predict and measure commands."""
    cal = pred["calibration"]
    return {
        "config": config,
        "minutes_after_start_of_judging": since_s / 60,
        "uncalibrated_ms": pred["latency_ms_uncalibrated"],
        "calibrated_ms": pred["latency_ms_predicted"],
        "uncertainty_ms": pred["uncertainty_ms"],
        "calibrated": pred["calibrated"],
        "calibration_factor": None if cal is None else cal["factor"],
        "calibration_used_factor": None if cal is None else cal["used_factor"],
        "calibration_from_cache": None if cal is None else cal["from_cache"],
        "measured_ms": meas["latency_ms"],
        "measured_median_ms": meas["median_ms"],
        "measured_iqr_ms": meas["iqr_ms"],
        "predict_process_s": pred_wall,
        "measure_process_s": meas_wall,
    }


def rows_from_logs(out: Path, backends: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The judged rows rebuilt from the per-process logs (for a run stopped before its summary).

    Each log holds the command's exit status, wall time and stdout (the JSON); a predict log is
    paired with the measure log of the same backend and config that follows it.
    """

    def parse(path: Path) -> tuple[dict[str, Any], float] | None:
        text = path.read_text()
        head = text.splitlines()[1]  # "# exit RC, WALL s"
        if not head.startswith("# exit 0,"):
            return None
        body = text.split("--- stdout\n", 1)[1].split("--- stderr\n", 1)[0]
        return json.loads(body), float(head.split(",")[1].split()[0])

    logs = sorted((out / "logs").glob("*.log"))
    start = next((f.stat().st_mtime for f in logs if "-predict-" in f.name), 0.0)
    pending: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
    rows: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
    for f in logs:
        kind, _, rest = f.stem.partition("-")[2].partition("-")
        backend, _, config = rest.rpartition("-")
        got = parse(f) if kind in ("predict", "measure") and backend in rows else None
        if got is None:
            continue
        if kind == "predict":
            pending[(backend, config)] = got
        elif (backend, config) in pending:
            pred, pred_wall = pending.pop((backend, config))
            since = f.stat().st_mtime - start
            rows[backend].append(make_row(f"{config}.json", pred, got[0], pred_wall, got[1], since))
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    meas = [r["measured_ms"] for r in rows]
    cal_rows = [r for r in rows if r["calibrated"]]
    factors = [r["calibration_factor"] for r in cal_rows]
    return {
        "configs": len(rows),
        "uncalibrated": accuracy_report([r["uncalibrated_ms"] for r in rows], meas),
        "calibrated": accuracy_report([r["calibrated_ms"] for r in rows], meas),
        "calibrated_share": len(cal_rows) / len(rows),
        "calibrations_measured": sum(1 for r in cal_rows if not r["calibration_from_cache"]),
        "calibration_factor_range": [min(factors), max(factors)] if factors else None,
        "uncertainty_median_rel": statistics.median(r["uncertainty_ms"] / r["calibrated_ms"] for r in rows),
        "error_within_1_uncertainty": coverage(rows, 1.0),
        "error_within_2_uncertainties": coverage(rows, 2.0),
        "measured_ms_range": [min(meas), max(meas)],
        "predict_process_s_median": statistics.median(r["predict_process_s"] for r in rows),
    }


def compare_front(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Eager PyTorch against ONNX Runtime on the reference networks and a searched front.

    Timed in this process (not the user's path; it compares backends, not predictions), two
    interleaved passes with the backend order alternating, lowest kept.
    """
    from ghostnas.config import config_from_dict
    from ghostnas.latency import measure_network
    from ghostnas.registry import resolve_config

    models = [(name, resolve_config(name)) for name in REFERENCES]
    from ghostnas.run_folder import read_pareto_json

    front = read_pareto_json(args.compare_front)
    models += [(f"front trial {row['trial']}", config_from_dict(row["config"])) for row in front]
    best: dict[tuple[str, str], float] = {}
    for p in range(2):
        for name, cfg in models:
            for b in BACKENDS if p == 0 else tuple(reversed(BACKENDS)):
                ms = measure_network(cfg, backend=b).latency_ms
                best[(name, b)] = min(best.get((name, b), float("inf")), ms)
        log.info("backend comparison: pass %d/2 done", p + 1)
    return [
        {
            "model": name,
            "macs": count_macs(cfg),
            "torch_ms": best[(name, "torch")],
            "onnxruntime_ms": best[(name, "onnxruntime")],
            "torch_over_onnxruntime": best[(name, "torch")] / best[(name, "onnxruntime")],
        }
        for name, cfg in models
    ]


def count_macs(cfg: Any) -> int:
    from ghostnas.cost import count_cost

    return int(count_cost(cfg).macs)


def run_fresh(
    args: argparse.Namespace, run: Runner, out: Path
) -> tuple[dict[str, dict[str, Any]], float, dict[str, list[dict[str, Any]]]]:
    """Build the tables, do other work, then judge: the benchmark proper."""

    from ghostnas.space import load_space

    space = load_space(args.space)
    rng = random.Random(args.seed)
    cdir = out / "configs"
    cdir.mkdir(exist_ok=True)
    cfg_paths = []
    for i in range(args.configs):
        path = cdir / f"c{i:02d}.json"
        path.write_text(json.dumps(config_to_dict(space.sample(rng))) + "\n")
        cfg_paths.append(path)

    builds = {}
    for b in args.backends:
        if args.skip_build:
            continue
        t0 = time.time()
        o, wall = run(
            [
                "latency",
                "build-table",
                "--space",
                args.space,
                "--samples",
                str(args.samples),
                "--fit",
                str(args.fit),
                "--backend",
                b,
                "--table",
                str(out / f"table-{b}.json"),
            ],
            f"build-{b}",
        )
        builds[b] = {"wall_s": wall, "finished_unix": time.time(), "started_unix": t0, "stdout": o}
        log.info("built %s table in %.0f s", b, wall)

    t0 = time.time()
    other_work(args.work_s, args.gap_s)
    log.info("other work and pause: %.0f s", time.time() - t0)
    judge_start = time.time()
    rows = judge(args, run, out, cfg_paths)
    return builds, judge_start, rows


def render(summary: dict[str, Any]) -> list[str]:
    """The report's lines, from the summary alone (``--report-only`` re-renders a saved one)."""
    lines = [
        f"{summary['configs']} configs of {summary['space']} (seed {summary['seed']}), judged in fresh processes"
    ]
    for b, s in summary["backends"].items():
        lines.append(f"{b}: measured {s['measured_ms_range'][0]:.2f}-{s['measured_ms_range'][1]:.2f} ms")
        for name in ("uncalibrated", "calibrated"):
            rep = s[name]
            lines.append(
                f"  {name:13s} within +-10%: {rep['within']:.0%}  MAPE {rep['mape']:.1%}  "
                f"bias {rep['mean_signed_pct_error']:+.1%}  max {rep['max_abs_pct_error']:.1%}  "
                f"Kendall tau {rep['kendall_tau']:.3f}"
            )
        lines.append(
            f"  uncertainty (median {s['uncertainty_median_rel']:.1%} of the prediction) covered "
            f"{s['error_within_1_uncertainty']:.0%} of errors at 1x, {s['error_within_2_uncertainties']:.0%} at 2x; "
            f"{s['calibrations_measured']} calibrations measured, factors {s['calibration_factor_range']}"
        )
    if "compare_front" in summary:
        lines.append("model                  MACs(M)  torch ms  onnxruntime ms  torch/ort")
        for r in summary["compare_front"]["rows"]:
            lines.append(
                f"{r['model']:22s} {r['macs'] / 1e6:7.1f} {r['torch_ms']:9.2f} {r['onnxruntime_ms']:15.2f} "
                f"{r['torch_over_onnxruntime']:10.2f}"
            )
    load = summary.get("load_average_1min") or {}
    if load.get("median") is not None:
        lines.append(f"load average (1 min) median {load['median']:.1f}, max {load['max']:.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--configs", type=int, default=30, help="configs judged (default 30)")
    p.add_argument("--space", default="ghostnet_v1", help="search space (default ghostnet_v1)")
    p.add_argument("--samples", type=int, default=50, help="build-table --samples (default 50)")
    p.add_argument("--fit", type=int, default=6, help="build-table --fit (default 6)")
    p.add_argument("--seed", type=int, default=20261129, help="seed of the judged configs")
    p.add_argument("--backends", default="torch,onnxruntime", help="comma-separated (default both)")
    p.add_argument("--work-s", type=float, default=60, help="seconds of other work before judging")
    p.add_argument("--gap-s", type=float, default=60, help="idle seconds after the other work")
    p.add_argument(
        "--compare-front", default=None, help="pareto.json of a latency search to compare backends on"
    )
    p.add_argument("--skip-build", action="store_true", help="reuse the tables already in --out")
    p.add_argument(
        "--from-logs",
        action="store_true",
        help="only summarise: rebuild the judged rows from --out/logs of a run stopped early",
    )
    p.add_argument("--report-only", action="store_true", help="only re-render report.txt from summary.json")
    args = p.parse_args(argv)
    if args.report_only:
        lines = render(json.loads((Path(args.out) / "summary.json").read_text()))
        (Path(args.out) / "report.txt").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    args.backends = tuple(b for b in args.backends.split(",") if b)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = run_info()
    started = time.time()
    run = Runner(out)
    if args.from_logs:
        (out / "command-summarise.txt").write_text(info["command"] + "\n")
        rows = rows_from_logs(out, args.backends)
        builds = {}
        for f in sorted((out / "logs").glob("*-build-*.log")):
            text = f.read_text()
            wall = float(text.splitlines()[1].split(",")[1].split()[0])
            stdout = text.split("--- stdout\n", 1)[1].split("--- stderr\n", 1)[0]
            end = f.stat().st_mtime
            builds[f.stem.rpartition("-")[2]] = {
                "wall_s": wall,
                "finished_unix": end,
                "started_unix": end - wall,
                "stdout": stdout,
            }
        first = min((f for f in (out / "logs").glob("*-predict-*.log")), key=lambda f: f.name)
        judge_start = first.stat().st_mtime - float(
            first.read_text().splitlines()[1].split(",")[1].split()[0]
        )
    else:
        (out / "command.txt").write_text(info["command"] + "\n")
        builds, judge_start, rows = run_fresh(args, run, out)
    summary: dict[str, Any] = {
        "space": args.space,
        "configs": args.configs,
        "seed": args.seed,
        "builds": {
            b: {k: v for k, v in d.items() if k != "stdout"} | {"output": d["stdout"].splitlines()}
            for b, d in builds.items()
        },
        "minutes_from_build_to_judging": {
            b: (judge_start - d["finished_unix"]) / 60 for b, d in builds.items()
        },
        "other_work": {"conv_training_s": args.work_s, "idle_s": args.gap_s},
        "path": "each prediction: `ghostnas latency predict CFG --measure-missing --json --backend B "
        "--table T` in a fresh process; each truth: `ghostnas latency measure CFG --json --backend B` "
        "in the next fresh process",
        "backends": {b: summarise(rows[b]) for b in args.backends},
        "load_average_1min": {
            "median": statistics.median(run.loads) if run.loads else None,
            "max": max(run.loads) if run.loads else None,
            "note": "other helpers' processes shared this 2-core VM; the thread-CPU clock excludes "
            "time-sharing but not cache and memory-bandwidth contention",
        },
    }
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    if args.compare_front:
        cmp_rows = compare_front(args, out)
        summary["compare_front"] = {
            "source": args.compare_front,
            "how": "in the benchmark process, 2 interleaved passes, lowest kept; 1 thread, batch 1, 224px",
            "macs_convention": "conv+linear multiply-accumulates at 224x224, 1000 classes",
            "rows": cmp_rows,
        }
        (out / "compare.json").write_text(json.dumps(cmp_rows, indent=1) + "\n")
    summary["total_seconds"] = time.time() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    name = "run-summarise.json" if args.from_logs else "run.json"
    (out / name).write_text(json.dumps(info | {"cwd": os.getcwd()}, indent=2) + "\n")

    lines = render(summary)
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
