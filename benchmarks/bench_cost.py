"""Closed-form cost (``ghostnas.count_cost``) against building the model and running thop.

Both count the same distinct candidate configs (variants of GhostNet 1.0x over width, s and d),
side by side in one run, at 224x224 / 1000 classes. The closed form is timed with its layout
cache cleared, so each candidate is computed from scratch as in a search.

Run:  .venv/bin/python benchmarks/bench_cost.py [--candidates N]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import platform
import time

import thop
import torch

import ghostnas
from ghostnas.config import layout


def candidates(n: int) -> list[ghostnas.GhostNetConfig]:
    base = ghostnas.resolve_config("ghostnet_100")
    widths = [0.5 + 0.05 * i for i in range(20)]
    grid = itertools.product(widths, (2, 3, 4), (1, 3, 5))
    return [dataclasses.replace(base, width=w, s=s, d=d) for w, s, d in itertools.islice(grid, n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=20, help="configs timed with thop (slow side)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fast_cfgs = candidates(180)
    layout.cache_clear()
    t0 = time.perf_counter()
    closed = [ghostnas.count_cost(c) for c in fast_cfgs]
    closed_s = (time.perf_counter() - t0) / len(fast_cfgs)

    slow_cfgs = fast_cfgs[: args.candidates]
    x = torch.zeros(1, 3, 224, 224)
    t0 = time.perf_counter()
    thop_macs = []
    for cfg in slow_cfgs:
        model = ghostnas.create_model(cfg).eval()
        macs, _ = thop.profile(copy.deepcopy(model), (x,), verbose=False)
        thop_macs.append(macs)
    thop_s = (time.perf_counter() - t0) / len(slow_cfgs)

    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    )
    print(f"{'method':<32} {'per candidate':>14} {'candidates':>10}")
    print(f"{'closed form (count_cost)':<32} {closed_s * 1e6:>11.1f} us {len(fast_cfgs):>10}")
    print(f"{'build model + thop.profile':<32} {thop_s * 1e3:>11.1f} ms {len(slow_cfgs):>10}")
    print(f"speed-up: {thop_s / closed_s:,.0f}x (target >= 1000x)")
    ratio = [t / c.macs for t, c in zip(thop_macs, closed, strict=False)]
    print(
        f"thop / closed-form MACs: {min(ratio):.3f}..{max(ratio):.3f} (thop adds batch-norm and activations)"
    )


if __name__ == "__main__":
    main()
