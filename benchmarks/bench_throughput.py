"""Training throughput of ghostnas's trainer against a plain eager PyTorch loop, side by side.

Both train ghostnet_100 (or ``--model``) at 28x28 with a stride-1 stem on Fashion-MNIST-shaped
data for the same number of steps at the same batch size, in one process, alternating so that
machine noise hits both. The plain loop is what a typical script does: batches sliced from an
in-memory tensor (no DataLoader), ``torch.optim.SGD``, and ``loss.item()`` every step for
logging. ghostnas's loop is :func:`ghostnas.train.fit` (precomputed batch order, device-side
schedule and loss log; on CUDA a captured CUDA graph). Reported: images per second of training
(validation excluded), CPU time per image (process CPU seconds / images, i.e. all cores), and
the ratio. On CPU it also sweeps threads and batch sizes for the trainer (how the proxy's
defaults were chosen) and times one complete default ``train`` proxy evaluation of the model on
the real Fashion-MNIST (data loading included), with the accuracy it reaches.

Run:  flock /tmp/ghostnas-cpu.lock .venv/bin/python benchmarks/bench_throughput.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import ghostnas
from ghostnas.train import Recipe, fit, normalise

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info


def fake_data(n: int, size: int, chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, chans, size, size), generator=gen, dtype=torch.uint8), torch.randint(
        0, 10, (n,), generator=gen
    )


def build(model: str, chans: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return ghostnas.create_model(model, num_classes=10, in_chans=chans, stem_stride=1)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def plain_loop(
    model: str, x: torch.Tensor, y: torch.Tensor, batch: int, steps: int, dev: torch.device, warmup: int
) -> dict[str, float]:
    """The baseline: eager fp32, torch.optim.SGD, loss.item() every step."""
    net = build(model, x.shape[1]).to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xs = normalise(x, (128.0,) * x.shape[1], (64.0,) * x.shape[1]).to(dev)
    ys = y.to(dev)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for i in range(warmup + steps):
        if i == warmup:
            sync(dev)
            t0, c0 = time.perf_counter(), time.process_time()
        idx = torch.randint(0, len(xs), (batch,), generator=gen).to(dev)
        loss = F.cross_entropy(net(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sync(dev)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = steps * batch
    return {"images_per_s": n / wall, "cpu_ms_per_image": 1e3 * cpu / n, "wall_s": wall}


def ghostnas_loop(
    model: str, x: torch.Tensor, y: torch.Tensor, batch: int, steps: int, dev: torch.device, recipe: Recipe
) -> dict[str, float]:
    """ghostnas.train.fit for exactly ``steps`` steps; its own train_s excludes validation."""
    recipe = replace(recipe, batch_size=batch, train_images=steps * batch, epochs=1.0, val_images=batch)
    c0 = time.process_time()
    res = fit(
        lambda: build(model, x.shape[1]),
        (x[: steps * batch], y[: steps * batch]),
        (x[:batch], y[:batch]),
        recipe,
        dev,
    )
    cpu = time.process_time() - c0  # includes one small validation pass and setup: conservative
    return {
        "images_per_s": res.images_per_s,
        "cpu_ms_per_image": 1e3 * cpu / res.images,
        "wall_s": res.train_s,
    }


def compare(
    model: str, dev: torch.device, batch: int, steps: int, recipe: Recipe, rounds: int
) -> dict[str, Any]:
    size, chans = 28, 1
    x, y = fake_data(max(steps * batch, 2 * batch), size, chans)
    plain, ours = [], []
    plain_loop(model, x, y, batch, 2, dev, warmup=1)  # first-touch costs out of the way
    for _ in range(rounds):
        plain.append(plain_loop(model, x, y, batch, steps, dev, warmup=1))
        ours.append(ghostnas_loop(model, x, y, batch, steps, dev, recipe))
    best = lambda runs: max(runs, key=lambda r: r["images_per_s"])  # noqa: E731
    p, o = best(plain), best(ours)
    return {
        "device": str(dev),
        "batch": batch,
        "steps": steps,
        "rounds": rounds,
        "recipe": {k: getattr(recipe, k) for k in ("bf16", "channels_last", "cuda_graphs")},
        "plain": p,
        "ghostnas": o,
        "ratio": o["images_per_s"] / p["images_per_s"],
        "all_plain_images_per_s": [r["images_per_s"] for r in plain],
        "all_ghostnas_images_per_s": [r["images_per_s"] for r in ours],
    }


GPU_RECIPES = {
    "fp32": ("graph fp32", Recipe()),
    "bf16": ("graph bf16", Recipe(bf16=True)),
    "cl": ("graph channels_last fp32", Recipe(channels_last=True)),
    "bf16cl": ("graph bf16+channels_last", Recipe(bf16=True, channels_last=True)),
    "eager": ("eager (no graph) fp32", Recipe(cuda_graphs=False)),
}


def _concurrent_child(model: str, batch: int, steps: int, device: str, barrier: Any, queue: Any) -> None:
    """One of several proxy trainings sharing the GPU: warm up, wait for the others, time a fit."""
    dev = torch.device(device)
    x, y = fake_data(steps * batch, 28, 1)
    ghostnas_loop(model, x, y, batch, 8, dev, Recipe())  # CUDA context, cuDNN handles, first capture
    barrier.wait()
    t0 = time.time()
    r = ghostnas_loop(model, x, y, batch, steps, dev, Recipe())
    queue.put({"start": t0, "end": time.time(), "images": steps * batch, **r})


def concurrent(model: str, k: int, batch: int, steps: int, device: str = "cuda") -> dict[str, Any]:
    """``k`` proxy trainings at once on one GPU (separate processes, as ``k`` search workers are).

    The aggregate counts every image of every process over the wall time from the first start to
    the last end, model building and graph capture of the timed fits included (conservative).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [
        ctx.Process(target=_concurrent_child, args=(model, batch, steps, device, barrier, queue))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    rows = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {
        "processes": k,
        "batch": batch,
        "steps": steps,
        "aggregate_images_per_s": sum(r["images"] for r in rows) / wall,
        "per_process_images_per_s_mean": sum(r["images_per_s"] for r in rows) / k,
        "rows": rows,
    }


def sweep(model: str, steps: int) -> list[dict[str, Any]]:
    """Trainer throughput by threads and batch size on the CPU."""
    rows = []
    before = torch.get_num_threads()
    for threads in sorted({1, before}):
        torch.set_num_threads(threads)
        for batch in (64, 128, 256):
            n = max(2, steps * 128 // batch)
            x, y = fake_data(n * batch, 28, 1)
            r = ghostnas_loop(model, x, y, batch, n, torch.device("cpu"), Recipe())
            rows.append({"threads": threads, "batch": batch, **r})
    torch.set_num_threads(before)
    return rows


def proxy_run(model: str, device: str = "cpu") -> dict[str, Any]:
    """One complete default `train` evaluation on Fashion-MNIST, data loading included."""
    from ghostnas.evaluators import EvalSettings, make_evaluator

    c0, t0 = time.process_time(), time.perf_counter()
    ev = make_evaluator("train", EvalSettings(data="fashion-mnist", device=device))
    res = ev.evaluate(ghostnas.resolve_config(model))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = dict(res.metrics)
    return {
        "model": model,
        "device": device,
        "recipe": {k: v for k, v in vars(ev.recipe).items()},
        "val_acc": res.score,
        "chance": 0.1,
        "seconds_total_incl_data_loading": wall,
        "train_images": m["images"],
        "val_images_scored": ev.recipe.val_images * len([k for k in m if k.startswith("val_acc_")]),
        "cpu_ms_per_train_image_incl_everything": 1e3 * cpu / m["images"],
        "metrics": m,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ghostnet_100")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per run (CPU)")
    parser.add_argument(
        "--gpu-steps",
        type=int,
        default=100,
        help="timed training steps per run at batch 128 (CUDA); larger batches take proportionally fewer, at least 20",
    )
    parser.add_argument("--gpu-batches", default="128,512,2048", help="CUDA batch sizes (128 is the proxy's)")
    parser.add_argument(
        "--gpu-recipes", default=",".join(GPU_RECIPES), help=f"CUDA variants, from {','.join(GPU_RECIPES)}"
    )
    parser.add_argument(
        "--concurrent",
        default="1,2,4",
        help="CUDA: also time this many proxy trainings at once in separate processes ('' to skip)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating repetitions; the best is kept")
    parser.add_argument("--no-sweep", action="store_true", help="skip the CPU threads x batch sweep")
    parser.add_argument("--no-proxy", action="store_true", help="skip the full proxy run on Fashion-MNIST")
    parser.add_argument("--out", type=Path, help="folder for results.json and command.txt")
    args = parser.parse_args()
    unknown = sorted(set(args.gpu_recipes.split(",")) - set(GPU_RECIPES))
    if unknown:  # checked before any timing, so a typo does not cost a GPU run
        parser.error(f"--gpu-recipes: unknown {', '.join(unknown)}; choose from {','.join(GPU_RECIPES)}")

    out: dict[str, Any] = {"run": run_info(), "model": args.model, "input": "28x28x1, stem stride 1"}
    cpu = compare(args.model, torch.device("cpu"), 128, args.steps, Recipe(), args.rounds)
    out["cpu"] = cpu
    print(
        f"{args.model} 28x28 stride-1 stem, CPU ({out['run']['cpu']}, {torch.get_num_threads()} threads), batch 128"
    )
    print(
        f"  plain eager loop : {cpu['plain']['images_per_s']:7.1f} img/s  {cpu['plain']['cpu_ms_per_image']:6.2f} CPU ms/img"
    )
    print(
        f"  ghostnas trainer : {cpu['ghostnas']['images_per_s']:7.1f} img/s  {cpu['ghostnas']['cpu_ms_per_image']:6.2f} CPU ms/img"
    )
    print(f"  ratio            : {cpu['ratio']:.2f}x")

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        out["gpu"] = []
        batches = [int(b) for b in args.gpu_batches.split(",")]
        for label, recipe in (GPU_RECIPES[k] for k in args.gpu_recipes.split(",")):
            for batch in batches:
                steps = max(20, args.gpu_steps * 128 // batch)  # about the same images per run
                r = compare(args.model, dev, batch, steps, recipe, args.rounds)
                r["label"] = label
                out["gpu"].append(r)
                print(
                    f"GPU {torch.cuda.get_device_name(0)} batch {batch} {label}: plain "
                    f"{r['plain']['images_per_s']:.0f} img/s, ghostnas {r['ghostnas']['images_per_s']:.0f} img/s, "
                    f"ratio {r['ratio']:.2f}x"
                )
        if args.concurrent:
            out["gpu_concurrent"] = []
            for k in (int(v) for v in args.concurrent.split(",")):
                r = concurrent(args.model, k, 128, args.gpu_steps * 3)
                out["gpu_concurrent"].append(r)
                print(
                    f"GPU several candidates at once: {k} processes x batch 128 (CUDA graph fp32): "
                    f"{r['aggregate_images_per_s']:.0f} img/s together, "
                    f"{r['per_process_images_per_s_mean']:.0f} img/s each"
                )
    else:
        out["gpu"] = "no CUDA device in this run: GPU columns not measured"
        print("GPU: no CUDA device in this run (not measured)")

    if not args.no_sweep:
        out["cpu_sweep"] = sweep(args.model, args.steps)
        print("ghostnas trainer on CPU by threads and batch:")
        for r in out["cpu_sweep"]:
            print(
                f"  threads {r['threads']} batch {r['batch']:3d}: {r['images_per_s']:6.1f} img/s, {r['cpu_ms_per_image']:.2f} CPU ms/img"
            )

    if not args.no_proxy:
        for device in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
            p = proxy_run(args.model, device)
            out["proxy_run" if device == "cpu" else "proxy_run_gpu"] = p
            print(
                f"default `train` proxy of {args.model} on Fashion-MNIST, {device}: val acc {p['val_acc']:.4f} "
                f"(chance 0.10) in {p['seconds_total_incl_data_loading']:.1f} s including data loading; "
                f"{p['cpu_ms_per_train_image_incl_everything']:.2f} CPU ms per training image (everything included)"
            )

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(out, indent=2) + "\n")
        (args.out / "command.txt").write_text(
            f"{out['run']['command']}\n# commit {out['run']['git_commit']} dirty={out['run']['git_dirty']}\n"
            f"# machine: {out['run']['cpu']}, {out['run']['cpu_count']} cores, torch {out['run']['torch']}, "
            f"{out['run']['torch_threads']} threads, {out['run']['utc']}\n"
        )
        print(f"wrote {args.out}/results.json")


if __name__ == "__main__":
    main()
