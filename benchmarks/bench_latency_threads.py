"""Which thread count gives repeatable latency numbers on this machine: 1 or 2 intra-op threads?

Times the registered GhostNets (deploy form, batch 1, 224x224) R times each with 1 and with 2
threads, interleaved (1, 2, 1, 2, ...) so that both see the same moments of machine load, and
reports for each setting the median latency and the repeat-to-repeat spread ((max - min) /
median). One thread is timed with both clocks ghostnas knows (thread CPU time, its default for
one thread, and wall time); two threads can only be timed by the wall clock. With
``--load N`` it runs N busy-looping processes meanwhile, standing in for the other jobs that share
this machine. Run it under the CPU lock:

    flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_latency_threads.py [--load 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch

from ghostnas.latency import MeasureSettings, NetworkSpec, deploy_model, thread_count, time_callable
from ghostnas.registry import resolve_config


def _spin() -> None:
    while True:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", default="ghostnet_050,ghostnet_100,ghostnet_130")
    p.add_argument("--load", type=int, default=0, help="busy-looping processes to run meanwhile (default 0)")
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    args = p.parse_args(argv)
    spec = NetworkSpec()
    settings = MeasureSettings()
    x = torch.randn(1, 3, spec.input_size, spec.input_size)
    setups = (
        ("1 thread, thread-cpu clock", 1, time.thread_time),
        ("1 thread, wall clock", 1, time.perf_counter),
        ("2 threads, wall clock", 2, time.perf_counter),
    )
    out: dict[str, dict[str, dict[str, float]]] = {}
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.load)]
    for h in hogs:
        h.start()
    for name in args.models.split(","):
        model = deploy_model(resolve_config(name), spec)
        runs: dict[str, list[float]] = {s[0]: [] for s in setups}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for label, threads, clock in setups:
                    with thread_count(threads):
                        runs[label].append(
                            time_callable(lambda m=model: m(x), settings, clock=clock).latency_ms
                        )
        out[name] = {}
        for label, values in runs.items():
            med = statistics.median(values)
            out[name][label] = {"median_ms": med, "spread": (max(values) - min(values)) / med, "runs": values}
            print(
                f"{name:13s} {label:28s} latency {med:7.2f} ms  spread over {args.repeats} repeats "
                f"{(max(values) - min(values)) / med:6.1%}",
                flush=True,
            )
    for h in hogs:
        h.terminate()
        h.join()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"command": " ".join([sys.executable, *sys.argv]), "load": args.load, "results": out},
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
