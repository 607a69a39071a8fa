"""How well the lookup-table predictor matches measured latency, on this machine.

For N random configs of the default search space (``ghostnet_v1``), this script

1. builds a fresh latency table for the parts of those configs and of F *other* configs,
2. fits the whole-network correction (scale, constant) on the F other configs only,
3. times each of the N deploy models (eval, BN folded, batch 1) in P interleaved passes,
4. reports the share of predictions within +-10%, the MAPE and Kendall tau, for the raw sum of
   parts and for the corrected prediction, and the measurement noise (pass-to-pass spread),

and writes everything (table, per-config rows, summary, command, commit, machine) under
``results/latency-<device>-<date>/``. Run it under the CPU lock:

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_latency.py --configs 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info
from ghostnas.config import config_to_dict
from ghostnas.latency import (
    LatencyPredictor,
    LatencyTable,
    MeasureSettings,
    NetworkSpec,
    accuracy_report,
    device_fingerprint,
    fit_table,
    measure_network,
    network_parts,
    part_timer,
    save_table,
)

log = logging.getLogger("bench_latency")


def sampler(space: str) -> tuple[Any, str]:
    """The search space's random sampler and a description of it for the record."""
    from ghostnas.space import load_space

    return load_space(space).sample, f"ghostnas.space.load_space({space!r}).sample"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", type=int, default=60, help="configs judged (default 60)")
    p.add_argument(
        "--fit", type=int, default=16, help="other configs used to fit the correction (default 16)"
    )
    p.add_argument("--passes", type=int, default=3, help="interleaved timing passes per config (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin timings per table part (default 2)")
    p.add_argument(
        "--recheck", type=int, default=60, help="table parts re-timed to report noise (default 60)"
    )
    p.add_argument("--space", default="ghostnet_v1", help="search space to sample (default ghostnet_v1)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blocks", type=int, default=25, help="timed blocks per measurement (default 25)")
    p.add_argument("--min-block-ms", type=float, default=5.0, help="shortest timed block, ms (default 5)")
    p.add_argument("--out", default=None, help="results folder (default results/latency-<device>-<date>)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    started = time.time()
    info = run_info()  # at the start: the code that ran, even if files change meanwhile

    sample, source = sampler(args.space)
    rng = random.Random(args.seed)
    cfgs = [sample(rng) for _ in range(args.configs)]
    fit_rng = random.Random(args.seed + 1_000_003)
    fit_cfgs = [sample(fit_rng) for _ in range(args.fit)]
    judged_keys = {json.dumps(config_to_dict(c), sort_keys=True) for c in cfgs}
    fit_cfgs = [c for c in fit_cfgs if json.dumps(config_to_dict(c), sort_keys=True) not in judged_keys]
    log.info("configs from %s: %d judged, %d for fitting (disjoint)", source, len(cfgs), len(fit_cfgs))

    spec = NetworkSpec(input_size=args.input_size)
    settings = MeasureSettings(blocks=args.blocks, min_block_s=args.min_block_ms / 1e3)
    table = LatencyTable(device=device_fingerprint(args.device, args.threads))
    predictor = LatencyPredictor(table, spec, part_timer(args.device, args.threads, settings))
    t0 = time.time()
    n_parts = predictor.fill(
        cfgs + fit_cfgs,
        progress=lambda i, n, _k: log.info("table: %d/%d timings", i, n) if i % 200 == 0 or i == n else None,
        rounds=args.rounds,
    )
    table_s = time.time() - t0
    log.info("table: %d parts in %.0f s", n_parts, table_s)

    fit = fit_table(predictor, fit_cfgs, args.device, args.threads, passes=args.passes)

    # Table noise: re-time a sample of parts, at a later moment than the first time.
    noise_rng = random.Random(args.seed + 11)
    parts = {p.key: p for c in cfgs for p in network_parts(c, spec)}
    recheck = noise_rng.sample(sorted(parts), min(args.recheck, len(parts)))
    timer = part_timer(args.device, args.threads, settings)
    part_spread = sorted(
        abs(timer(parts[k]).latency_ms - table.entries[k].latency_ms) / table.entries[k].latency_ms
        for k in recheck
    )

    # Interleaved passes: config order is shuffled per pass so that slow periods of the machine
    # do not line up with the same configs.
    passes: list[list[dict[str, float]]] = [[{} for _ in cfgs] for _ in range(args.passes)]
    order_rng = random.Random(args.seed + 7)
    for pi in range(args.passes):
        order = list(range(len(cfgs)))
        order_rng.shuffle(order)
        for i in order:
            t = measure_network(cfgs[i], spec, args.device, args.threads, settings)
            passes[pi][i] = {"latency_ms": t.latency_ms, "median_ms": t.median_ms, "iqr_ms": t.iqr_ms}
        log.info("pass %d/%d done", pi + 1, args.passes)

    rows = []
    for i, cfg in enumerate(cfgs):
        runs = [passes[pi][i] for pi in range(args.passes)]
        lat = [r["latency_ms"] for r in runs]
        measured = min(lat)
        rows.append(
            {
                "arch": cfg.short(),
                "config": config_to_dict(cfg),
                "sum_of_parts_ms": predictor.sum_parts(cfg),
                "predicted_ms": predictor.predict(cfg),
                "measured_ms": measured,
                "passes": runs,
                "pass_spread": (max(lat) - min(lat)) / measured,
            }
        )
    meas = [r["measured_ms"] for r in rows]
    corrected = accuracy_report([r["predicted_ms"] for r in rows], meas)
    raw = accuracy_report([r["sum_of_parts_ms"] for r in rows], meas)
    spreads = sorted(r["pass_spread"] for r in rows)
    rel_iqr = sorted(r["iqr_ms"] / r["median_ms"] for row in rows for r in row["passes"])
    noise = {
        "part_retime_rel_diff_median": statistics.median(part_spread) if part_spread else None,
        "part_retime_rel_diff_p90": part_spread[int(0.9 * (len(part_spread) - 1))] if part_spread else None,
        "parts_retimed": len(part_spread),
        "pass_to_pass_spread_median": statistics.median(spreads) if args.passes > 1 else None,
        "pass_to_pass_spread_p90": spreads[int(0.9 * (len(spreads) - 1))] if args.passes > 1 else None,
        "within_run_iqr_over_median_median": statistics.median(rel_iqr),
    }
    summary = {
        "configs": len(rows),
        "config_source": source,
        "fit_networks": len(fit_cfgs),
        "device": table.device,
        "spec": vars(spec),
        "latency_statistic": "20th percentile of per-block means (see ghostnas.latency._measure)",
        "measured_is": f"min over {args.passes} interleaved passes of each pass's latency",
        "predicted_corrected": corrected,
        "predicted_raw_sum": raw,
        "fit": table.fit | {"scale": table.scale, "constant_ms": table.constant_ms, "rms_ms": fit.rms_ms},
        "noise": noise,
        "measured_ms_range": [min(meas), max(meas)],
        "table_parts": len(table.entries),
        "table_seconds": table_s,
        "total_seconds": time.time() - started,
    }
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    out = Path(args.out or f"results/latency-{args.device}-{date}")
    out.mkdir(parents=True, exist_ok=True)
    save_table(table, out / "table.json")
    (out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    run = info | {"cwd": os.getcwd(), "table_device": table.device}
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")

    print(
        f"\n{len(rows)} configs ({source}); fit on {len(fit_cfgs)} others; {args.device}, {args.threads} thread(s)"
    )
    print(f"measured latency range {min(meas):.2f} - {max(meas):.2f} ms")
    for name, rep in (("raw sum of parts", raw), ("fitted prediction", corrected)):
        print(
            f"{name:18s} within +-10%: {rep['within']:.0%}   MAPE {rep['mape']:.1%}   "
            f"max {rep['max_abs_pct_error']:.1%}   bias {rep['mean_signed_pct_error']:+.1%}   "
            f"Kendall tau {rep['kendall_tau']:.3f}"
        )
    if args.passes > 1:
        print(
            f"noise: pass-to-pass spread median {noise['pass_to_pass_spread_median']:.1%}, "
            f"p90 {noise['pass_to_pass_spread_p90']:.1%}; within-run IQR/median "
            f"{noise['within_run_iqr_over_median_median']:.1%}"
        )
    if part_spread:
        print(
            f"noise: {len(part_spread)} table parts re-timed later differ by median "
            f"{noise['part_retime_rel_diff_median']:.1%}, p90 {noise['part_retime_rel_diff_p90']:.1%}"
        )
    print(f"results in {out}/ ({summary['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
