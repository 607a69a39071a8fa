"""How much this machine's speed drifts between sessions: re-time configs a benchmark measured.

Reads ``rows.json`` written by ``bench_latency.py``, re-times every k-th config now (same deploy
model, same clock and statistic), and prints now / then. Within one run the pass-to-pass spread
is a few percent; across sessions on a shared VM the whole machine can be 10-15% faster or
slower, which no per-device table can know about. Run it under the CPU lock:

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_latency_drift.py \
        results/latency-cpu-20261123/rows.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
from pathlib import Path

from ghostnas.config import config_from_dict
from ghostnas.latency import measure_network


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rows", help="rows.json of an earlier bench_latency.py run")
    p.add_argument("--configs", type=int, default=10, help="configs to re-time (default 10)")
    args = p.parse_args(argv)
    rows = json.loads(Path(args.rows).read_text())
    step = max(1, len(rows) // args.configs)
    ratios = []
    for r in rows[::step][: args.configs]:
        now = measure_network(config_from_dict(r["config"])).latency_ms
        ratios.append(now / r["measured_ms"])
        print(
            f"then {r['measured_ms']:6.2f} ms  now {now:6.2f} ms  now/then {ratios[-1]:.3f}  "
            f"(predicted then {r['predicted_ms']:6.2f} ms)",
            flush=True,
        )
    print(
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: now/then median "
        f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
