"""Several candidates trained at once in one process, against one at a time, in the same run.

Candidates are drawn from the search space under the budget (``space.sample`` with a fixed
seed, the kind of architectures a search proposes), built with the proxy's stride-1 stem at
28x28x1. For each N in ``--n`` the same N candidates are trained twice, alternating, ``--rounds``
times: one after another with :func:`ghostnas.train.fit` ("one at a time", what a search does
today), and all together with :func:`ghostnas.train_many.fit_many` (on CUDA each candidate's
step is its own CUDA graph replayed on its own stream; on the CPU they take turns). Both use the
proxy's recipe (batch 128) for ``--steps`` steps on the same in-memory data; validation is one
small pass at the end.

Reported per N: aggregate training images per second (all candidates' training images over the
training wall time: validation excluded), the ratio together / one at a time, whole proxy runs
per hour including setup, graph capture and validation (the figure a search feels), and on CUDA
the peak device memory of the group and per candidate (peak minus the shared data, over N). The
best round of each mode is kept (machine noise only ever slows a run down).

On the CPU this is a smoke test at reduced scale (the CPU has nothing to overlap: expect a
ratio near 1); the target it exists for is a GPU (issue 18: >= 3x aggregate at the best N).

Run:  python benchmarks/bench_concurrency.py --device cuda --out results/concurrency-gpu-DATE
      flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_concurrency.py --device cpu \\
          --n 1,2 --steps 4 --rounds 1 --model-scale tiny     (smoke test; numbers not a result)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

import ghostnas
from ghostnas.budget import candidate_costs, parse_budget
from ghostnas.config import GhostNetConfig
from ghostnas.space import load_space
from ghostnas.train import FitResult, Recipe, fit
from ghostnas.train_many import fit_many

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info


def candidates(space: str, budget: str, n: int, seed: int, scale: str) -> list[GhostNetConfig]:
    """``n`` distinct configs of ``space`` under ``budget``, drawn with a fixed seed.

    ``scale='tiny'`` gives width-scaled ``ghostnet_tiny`` variants instead (CPU smoke tests).
    """
    if scale == "tiny":
        base = ghostnas.resolve_config("ghostnet_tiny")
        return [base.with_width(w) for w in (1.0, 0.5, 0.75, 1.25, 1.5, 0.6, 0.9, 1.1)[:n]]
    sp, lim = load_space(space), parse_budget(budget)
    rng = random.Random(seed)
    out: list[GhostNetConfig] = []
    for _ in range(100 * n):
        cfg = sp.sample(rng)
        if lim.fits(candidate_costs(cfg)) and cfg not in out:
            out.append(cfg)
            if len(out) == n:
                return out
    raise SystemExit(f"bench_concurrency: found only {len(out)} configs under {budget} in {space}")


def fake_data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return x, torch.randint(0, 10, (n,), generator=gen)


def _factory(cfg: GhostNetConfig) -> Any:
    return lambda: ghostnas.create_model(cfg, num_classes=10, in_chans=1, stem_stride=1)


def _mem(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak(dev: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else None


def _row(results: list[FitResult], train_s: float, wall: float, dev: torch.device) -> dict[str, Any]:
    """One way of training's figures: ``train_s`` is its training time (a sum for runs one after
    another, the longest run for a group trained together)."""
    images = sum(r.images for r in results)
    return {
        "images": images,
        "train_s": train_s,
        "wall_s": wall,
        "images_per_s": images / train_s,
        "runs_per_hour": 3600 * len(results) / wall,
        "peak_memory_bytes": _peak(dev),
        "train_loss_mean": [r.train_loss_mean for r in results],
    }


def one_at_a_time(
    cfgs: list[GhostNetConfig], train: Any, val: Any, recipe: Recipe, dev: torch.device
) -> dict[str, Any]:
    _mem(dev)
    t0 = time.perf_counter()
    results: list[FitResult] = [fit(_factory(c), train, val, recipe, dev, seed=i) for i, c in enumerate(cfgs)]
    wall = time.perf_counter() - t0
    return _row(results, sum(r.train_s for r in results), wall, dev)


def together(
    cfgs: list[GhostNetConfig], train: Any, val: Any, recipe: Recipe, dev: torch.device
) -> dict[str, Any]:
    _mem(dev)
    t0 = time.perf_counter()
    outs = fit_many([_factory(c) for c in cfgs], train, val, recipe, dev, seeds=list(range(len(cfgs))))
    wall = time.perf_counter() - t0
    failed = [f"{type(o).__name__}: {o}" for o in outs if not isinstance(o, FitResult)]
    if failed:
        raise SystemExit(f"bench_concurrency: {len(failed)} candidate(s) failed together: {failed[0]}")
    results = [o for o in outs if isinstance(o, FitResult)]
    return _row(results, max(r.train_s for r in results), wall, dev)  # max: the group's training wall time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", default="1,2,4,8", help="candidates at once, comma-separated")
    p.add_argument("--steps", type=int, default=96, help="training steps per candidate (proxy: 48)")
    p.add_argument("--rounds", type=int, default=2, help="alternating repetitions; the best of each is kept")
    p.add_argument("--space", default="ghostnet_v1")
    p.add_argument("--budget", default="150MFLOPs")
    p.add_argument("--seed", type=int, default=0, help="seed of the candidate draw")
    p.add_argument(
        "--model-scale", choices=("space", "tiny"), default="space", help="tiny: CPU smoke-test models"
    )
    p.add_argument("--channels-last", action="store_true", help="CUDA: channels_last recipe variant")
    p.add_argument("--out", type=Path, help="folder for results.json, table.md and command.txt")
    args = p.parse_args(argv)
    try:
        ns = sorted({int(v) for v in args.n.split(",")})
    except ValueError:
        p.error(f"--n {args.n!r}: give whole numbers such as 1,2,4,8")
    if not ns or ns[0] < 1 or args.steps < 1 or args.rounds < 1:
        p.error("--n, --steps and --rounds must be at least 1")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu for the smoke test")

    recipe = Recipe(channels_last=args.channels_last)
    batch = recipe.batch_size
    recipe = replace(recipe, epochs=1.0, train_images=args.steps * batch, val_images=500)
    x, y = fake_data(args.steps * batch + 500)
    train, val = (x[: args.steps * batch], y[: args.steps * batch]), (x[-500:], y[-500:])
    cfgs = candidates(args.space, args.budget, max(ns), args.seed, args.model_scale)

    info = run_info()
    out: dict[str, Any] = {
        "run": info,
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "input": "28x28x1 uint8 random data, stem stride 1, 10 classes",
        "recipe": {k: getattr(recipe, k) for k in ("batch_size", "channels_last", "bf16", "cuda_graphs")},
        "steps_per_candidate": args.steps,
        "rounds": args.rounds,
        "candidates": [
            {
                "arch": c.short(),
                "macs_224": candidate_costs(c)["macs"],
                "params": candidate_costs(c)["params"],
            }
            for c in cfgs
        ],
        "data_bytes": int(x.numel() * 4),
        "rows": [],
    }
    shared = "" if dev.type == "cuda" else " (CPU smoke test: other processes may share this machine)"
    print(f"bench_concurrency on {out['gpu'] or info['cpu']}{shared}")
    fit(_factory(cfgs[0]), train, val, replace(recipe, train_images=4 * batch), dev)  # first-touch costs
    for n in ns:
        seq, tog = [], []
        for _ in range(args.rounds):
            seq.append(one_at_a_time(cfgs[:n], train, val, recipe, dev))
            tog.append(together(cfgs[:n], train, val, recipe, dev))
        s = max(seq, key=lambda r: r["images_per_s"])
        t = max(tog, key=lambda r: r["images_per_s"])
        row: dict[str, Any] = {
            "n": n,
            "one_at_a_time": s,
            "together": t,
            "aggregate_ratio": t["images_per_s"] / s["images_per_s"],
            "runs_per_hour_ratio": t["runs_per_hour"] / s["runs_per_hour"],
            "same_losses_as_alone": all(
                abs(a - b) <= 1e-3 * max(1.0, abs(a))
                for a, b in zip(s["train_loss_mean"], t["train_loss_mean"], strict=True)
            ),
            "all_rounds_images_per_s": {
                "one_at_a_time": [r["images_per_s"] for r in seq],
                "together": [r["images_per_s"] for r in tog],
            },
        }
        if t["peak_memory_bytes"] is not None:
            row["memory_per_candidate_bytes"] = (t["peak_memory_bytes"] - out["data_bytes"]) / n
        out["rows"].append(row)
        mem = (
            f", peak {t['peak_memory_bytes'] / 2**20:.0f} MiB, {row['memory_per_candidate_bytes'] / 2**20:.0f} MiB/candidate"
            if "memory_per_candidate_bytes" in row
            else ", memory: not measured on the CPU"
        )
        print(
            f"N={n}: one at a time {s['images_per_s']:.0f} img/s, together {t['images_per_s']:.0f} img/s "
            f"(x{row['aggregate_ratio']:.2f}); proxy runs/hour {s['runs_per_hour']:.0f} -> "
            f"{t['runs_per_hour']:.0f}{mem}"
        )
    best = max(out["rows"], key=lambda r: r["aggregate_ratio"])
    out["best"] = {"n": best["n"], "aggregate_ratio": best["aggregate_ratio"], "target": 3.0}
    print(f"best N={best['n']}: x{best['aggregate_ratio']:.2f} aggregate (issue-18 target on a GPU: >= 3x)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(out, indent=2) + "\n")
        (args.out / "table.md").write_text(table_md(out))
        (args.out / "command.txt").write_text(
            f"{info['command']}\n# commit {info['git_commit']} dirty={info['git_dirty']}\n"
            f"# machine: {out['gpu'] or '-'}; {info['cpu']}, {info['cpu_count']} cores, torch {info['torch']}, "
            f"{info['utc']}\n"
        )
        print(f"wrote {args.out}/results.json, table.md")
    return 0


def table_md(out: dict[str, Any]) -> str:
    """The rows as a Markdown table, with what was measured in the title."""
    where = out["gpu"] or f"CPU {out['run']['cpu']} (smoke test, shared machine)"
    lines = [
        f"# Candidates at once vs one at a time: {where}",
        "",
        f"Batch {out['recipe']['batch_size']}, {out['steps_per_candidate']} steps per candidate, "
        f"28x28x1, best of {out['rounds']} alternating rounds; commit {out['run']['git_commit']}.",
        "",
        "| N | one at a time img/s | together img/s | ratio | proxy runs/h alone | together | MiB/candidate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        mem = r.get("memory_per_candidate_bytes")
        lines.append(
            f"| {r['n']} | {r['one_at_a_time']['images_per_s']:.0f} | {r['together']['images_per_s']:.0f} | "
            f"{r['aggregate_ratio']:.2f} | {r['one_at_a_time']['runs_per_hour']:.0f} | "
            f"{r['together']['runs_per_hour']:.0f} | {'-' if mem is None else f'{mem / 2**20:.0f}'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
