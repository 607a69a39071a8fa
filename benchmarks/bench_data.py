"""The user's-data path: decode speed, cache speed, and the proxy's cost at 32x32 RGB vs 28x28 grey.

1. An image folder is written to a scratch directory (``--images`` PNGs of 32x32 RGB in 10
   classes, and as many 64x64 JPEGs resized to 32 on decoding, the usual "photos bigger than the
   network input" case). Each is read with :func:`ghostnas.data.load_dataset` twice: the first
   read decodes every file with Pillow and writes the cache, the second reads the cache. Reported:
   images per second of wall time and of this process's CPU time (the machine may be shared; CPU
   time counts only this process's work, across its decoding threads).
2. The default ``train`` proxy (2 epochs on 3,072 images, 2,000 validation images) is run on the
   same candidates at two shapes, 32x32 RGB and 28x28 grey, 10 classes and 12,000 in-memory
   images each (class patterns plus noise, from :func:`ghostnas.data.from_arrays`), alternating
   the shapes so that a change in machine load hits both. Reported: seconds per candidate (wall
   and CPU), and the proxy's own training throughput.

Run:  flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_data.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import ghostnas
from ghostnas.cost import count_cost
from ghostnas.data import from_arrays, input_shape, load_dataset
from ghostnas.evaluators.proxy import TrainEvaluator

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info


def write_folder(root: Path, n: int, size: int, ext: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (10, size, size, 3))
    for i in range(n):
        label = i % 10
        d = root / f"class{label}"
        d.mkdir(parents=True, exist_ok=True)
        a = np.clip(0.7 * protos[label] + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(d / f"{i:05d}{ext}", **({"quality": 90} if ext == ".jpg" else {}))


def timed(fn: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_decode(n: int, reads: int) -> list[dict[str, Any]]:
    rows = []
    for label, size, ext, image_size in (
        ("png 32x32 RGB", 32, ".png", None),
        ("jpeg 64x64 -> 32", 64, ".jpg", 32),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["GHOSTNAS_HOME"] = str(Path(tmp) / "home")
            folder = Path(tmp) / "images"
            write_folder(folder, n, size, ext)
            ds, wall, cpu = timed(lambda f=folder, s=image_size: load_dataset(str(f), image_size=s))
            assert len(ds.train_x) == n
            first = {"wall_s": wall, "cpu_s": cpu}
            cached = []
            for _ in range(reads):
                again, wall, cpu = timed(lambda f=folder, s=image_size: load_dataset(str(f), image_size=s))
                assert torch.equal(again.train_x, ds.train_x)
                cached.append({"wall_s": wall, "cpu_s": cpu})
            wall = statistics.median(c["wall_s"] for c in cached)
            cpu = statistics.median(c["cpu_s"] for c in cached)
            bytes_on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            rows.append(
                {
                    "case": label,
                    "images": n,
                    "decoded_shape": list(ds.train_x.shape[1:]),
                    "folder_bytes": bytes_on_disk,
                    "first_decode": {
                        **first,
                        "images_per_s_wall": n / first["wall_s"],
                        "images_per_s_cpu": n / first["cpu_s"],
                    },
                    "cache_load_median_of": reads,
                    "cache_load": {
                        "wall_s": wall,
                        "cpu_s": cpu,
                        "images_per_s_wall": n / wall,
                        "images_per_s_cpu": n / max(cpu, 1e-9),
                    },
                }
            )
    return rows


def synthetic(n: int, size: int, chans: int, seed: int = 0) -> Any:
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, size, size, chans, generator=gen) * 255
    y = torch.arange(n) % 10
    x = (0.7 * protos[y] + 0.3 * 128 + torch.randn(n, size, size, chans, generator=gen) * 40).clamp(0, 255)
    x = x.round().to(torch.uint8)
    return from_arrays(x[..., 0] if chans == 1 else x, y, name=f"{size}x{size}x{chans}")


def bench_proxy(models: list[str], n: int) -> dict[str, Any]:
    shapes = {"32x32 RGB": synthetic(n, 32, 3), "28x28 grey": synthetic(n, 28, 1)}
    rows = []
    for model in models:
        cfg = ghostnas.resolve_config(model)
        for name, ds in shapes.items():
            ev = TrainEvaluator(ds, seed=0)
            res, wall, cpu = timed(lambda e=ev, c=cfg: e.evaluate(c))
            rows.append(
                {
                    "model": model,
                    "shape": name,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "val_acc": res.score,
                    "train_images_per_s": res.metrics["images_per_s"],
                    "macs_at_shape": count_cost(cfg, spec=input_shape(ds.spec)).macs,
                }
            )
            print(f"  {model:14s} {name:11s} {wall:6.1f} s wall  {cpu:6.1f} s CPU  val acc {res.score:.3f}")
    summary = {}
    for name in shapes:
        mine = [r for r in rows if r["shape"] == name]
        summary[name] = {
            "candidates": len(mine),
            "mean_wall_s_per_candidate": statistics.mean(r["wall_s"] for r in mine),
            "mean_cpu_s_per_candidate": statistics.mean(r["cpu_s"] for r in mine),
        }
    ratio = [
        a["wall_s"] / b["wall_s"]
        for a, b in zip(
            [r for r in rows if r["shape"] == "32x32 RGB"],
            [r for r in rows if r["shape"] == "28x28 grey"],
            strict=True,
        )
    ]
    return {"rows": rows, "summary": summary, "wall_ratio_rgb32_over_grey28_per_model": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000, help="images per decode case (default 3000)")
    parser.add_argument("--reads", type=int, default=3, help="cache reads per case; the median is reported")
    parser.add_argument(
        "--models", default="ghostnet_050,ghostnet_100,ghostnet_130", help="candidates for the proxy timing"
    )
    parser.add_argument("--proxy-images", type=int, default=12000, help="in-memory images per proxy shape")
    parser.add_argument("--out", type=Path, help="folder for results.json and command.txt")
    args = parser.parse_args()

    out: dict[str, Any] = {"run": run_info(), "loadavg_before": os.getloadavg()}
    print(
        f"machine: {out['run']['cpu']}, {out['run']['cpu_count']} cores, {torch.get_num_threads()} torch threads"
    )
    out["decode"] = bench_decode(args.images, args.reads)
    for r in out["decode"]:
        f, c = r["first_decode"], r["cache_load"]
        print(
            f"{r['case']:18s} first decode {f['images_per_s_wall']:8.0f} img/s wall ({f['images_per_s_cpu']:.0f}/CPU s); "
            f"cache load {c['images_per_s_wall']:9.0f} img/s wall"
        )
    print("proxy (default train recipe), seconds per candidate:")
    out["proxy"] = bench_proxy(args.models.split(","), args.proxy_images)
    for name, s in out["proxy"]["summary"].items():
        print(
            f"  {name:11s} mean {s['mean_wall_s_per_candidate']:.1f} s wall, {s['mean_cpu_s_per_candidate']:.1f} s CPU"
        )
    out["loadavg_after"] = os.getloadavg()
    out["note"] = (
        "The machine was shared with other processes (see loadavg_before/after, 1/5/15-minute load on "
        f"{out['run']['cpu_count']} cores); wall times include their contention, CPU times count this "
        "process only."
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(out, indent=2) + "\n")
        (args.out / "command.txt").write_text(
            f"{out['run']['command']}\n# commit {out['run']['git_commit']} dirty={out['run']['git_dirty']}\n"
            f"# machine: {out['run']['cpu']}, {out['run']['cpu_count']} cores, torch {out['run']['torch']}, "
            f"{out['run']['torch_threads']} threads, {out['run']['utc']}\n"
            f"# shared machine: load average {out['loadavg_before']} before, {out['loadavg_after']} after\n"
        )
        print(f"wrote {args.out}/results.json")


if __name__ == "__main__":
    main()
