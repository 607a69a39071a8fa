"""Does a latency-budgeted search keep its promise? Time every config of a search's Pareto front.

Reads ``pareto.json`` from a ``ghostnas search --budget 20ms`` run folder, times each front
config's deploy model on this machine (the same measurement as ``ghostnas latency measure``),
and prints predicted against measured latency and the largest measured value next to the
budget. Run it under the CPU lock:

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_latency_front.py RUN_DIR --budget-ms 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ghostnas.config import config_from_dict
from ghostnas.latency import measure_network
from ghostnas.run_folder import read_pareto_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="search run folder with pareto.json")
    p.add_argument("--budget-ms", type=float, required=True)
    p.add_argument("--passes", type=int, default=2, help="timing passes per config, lowest kept (default 2)")
    args = p.parse_args(argv)
    front = read_pareto_json(Path(args.run_dir) / "pareto.json")
    cfgs = [config_from_dict(r["config"]) for r in front]
    best = [float("inf")] * len(cfgs)
    for _ in range(args.passes):
        for i, cfg in enumerate(cfgs):
            best[i] = min(best[i], measure_network(cfg).latency_ms)
    rows = []
    for r, measured in zip(front, best, strict=True):
        pred = r["latency_ms_predicted"]
        rows.append({"trial": r["trial"], "predicted_ms": pred, "measured_ms": measured})
        print(
            f"trial {r['trial']:4d}  predicted {pred:6.2f} ms  measured {measured:6.2f} ms  "
            f"error {(pred - measured) / measured:+6.1%}  {'OVER' if measured > args.budget_ms else 'ok'}"
        )
    worst = max(best)
    over = sum(m > args.budget_ms for m in best)
    print(
        f"{len(best)} front configs, budget {args.budget_ms:g} ms: largest measured {worst:.2f} ms, "
        f"{over} over budget"
    )
    (Path(args.run_dir) / "front_measured.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
