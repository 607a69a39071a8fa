"""Reproduce the seed documents' YOLO tables with ``ghostnas yolo build`` and ``ghostnas yolo profile``.

Every row is made by the command line itself, in its own process: ``ghostnas yolo build BASE
--nc 1 ... --out rows/NAME.yaml`` then ``ghostnas yolo profile rows/NAME.yaml --json`` (and, for
the rows in ``LATENCY_ROWS``, ``ghostnas yolo profile ... --latency`` again under the shared CPU
lock, ``flock /tmp/ghostnas-cpu.lock``). The table puts each seed figure beside ghostnas' numbers
under the seed's convention and under the others (see ``ghostnas.yolo.profile``).

Writes ``--out``: ``table.md`` (the tables and notes), ``rows.json`` (every profile),
``rows/*.yaml`` (the built models), ``logs/`` (each command's stderr), ``command.txt`` and
``run.json`` (commit, machine, Ultralytics and thop versions, load average).

    .venv/bin/python benchmarks/yolo_seed_tables.py --out results/yolo-seed-tables-cpu-2026-11-29
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info

LOCK = "/tmp/ghostnas-cpu.lock"

# name, build arguments, seed figures (layers, params, GFLOPs) or None for rows no seed has
V8_ROWS: list[tuple[str, list[str], tuple[int, int, float] | None]] = [
    ("YOLOv8s (seed baseline)", ["yolov8s"], (168, 11_125_971, 28.4)),
    ("YOLOv8n (fair baseline)", ["yolov8n"], None),
    (
        "C2f_GhostBottleneckV2",
        ["yolov8n", "--replace", "backbone-c2f=ghost_v2:dfc=false"],
        (279, 2_553_539, 6.8),
    ),
    ("C2f_GhostBottleneck", ["yolov8n", "--replace", "backbone-c2f=ghost"], (267, 2_553_539, 6.8)),
    ("C2f_g_ghostBottleneck", ["yolov8n", "--replace", "backbone-c2f=regnet"], (195, 2_581_091, 6.9)),
    ("new: GhostNetV2 bottleneck, DFC on", ["yolov8n", "--replace", "backbone-c2f=ghost_v2"], None),
    (
        "new: G-Ghost stage (RegNet gw 1, 1 deep, cheap 0.5)",
        ["yolov8n", "--replace", "backbone-c2f=g_ghost"],
        None,
    ),
]
# name, build arguments, seed (params in millions, GFLOPs, which count) or None
Y11_ROWS: list[tuple[str, list[str], tuple[float, float, str] | None]] = [
    ("YOLO11m", ["yolo11m"], (20.0, 67.6, "fused")),
    ("YOLO11m + GhostNet 1.0 backbone", ["yolo11m", "--backbone", "ghostnet_100"], (14.5, 32.0, "unfused")),
    ("new: YOLO11n", ["yolo11n"], None),
    ("new: YOLO11n + GhostNet 0.5", ["yolo11n", "--backbone", "ghostnet_050"], None),
    ("new: YOLO11n + GhostNet 1.0", ["yolo11n", "--backbone", "ghostnet_100"], None),
    ("new: YOLO11s", ["yolo11s"], None),
    ("new: YOLO11s + GhostNet 0.5", ["yolo11s", "--backbone", "ghostnet_050"], None),
    ("new: YOLO11s + GhostNet 1.0", ["yolo11s", "--backbone", "ghostnet_100"], None),
]
LATENCY_ROWS = (
    "YOLOv8n (fair baseline)",
    "C2f_GhostBottleneck",
    "new: GhostNetV2 bottleneck, DFC on",
    "new: YOLO11n",
    "new: YOLO11n + GhostNet 0.5",
    "new: YOLO11n + GhostNet 1.0",
)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _ghostnas(args: list[str], log: Path, lock: bool = False) -> str:
    """Run ``ghostnas ARGS`` in a fresh process (under the CPU lock if asked); its stdout."""
    cmd = [sys.executable, "-m", "ghostnas", *args]
    if lock:
        cmd = ["flock", LOCK, *cmd]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    log.write_text(f"$ {shlex.join(cmd)}\n# {time.time() - t0:.1f} s, exit {proc.returncode}\n{proc.stderr}")
    if proc.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stdout


def run(out: Path, imgsz: int, latency: bool, threads: int) -> list[dict[str, Any]]:
    (out / "rows").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    rows = []
    for table, specs in (("yolov8", V8_ROWS), ("yolo11", Y11_ROWS)):
        for name, build_args, seed in specs:
            slug = _slug(name)
            yaml_path = out / "rows" / f"{slug}.yaml"
            build = ["yolo", "build", *build_args, "--nc", "1", "--out", str(yaml_path)]
            _ghostnas(build, out / "logs" / f"{slug}.build.log")
            profile = ["yolo", "profile", str(yaml_path), "--imgsz", str(imgsz), "--json"]
            info = json.loads(_ghostnas(profile, out / "logs" / f"{slug}.profile.log"))
            row = {"table": table, "name": name, "seed": seed, "build": build, "profile": profile, **info}
            if latency and name in LATENCY_ROWS:
                timed = [*profile, "--latency", "--threads", str(threads)]
                t_info = json.loads(_ghostnas(timed, out / "logs" / f"{slug}.latency.log", lock=True))
                row |= {k: v for k, v in t_info.items() if k.startswith("latency")}
                row["latency_command"] = ["flock", LOCK, "ghostnas", *timed]
            rows.append(row)
            print(f"{name}: params {info['params']:,} / fused {info['params_fused']:,}", file=sys.stderr)
    return rows


def _macs(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n else "-"


def _m(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def render(rows: list[dict[str, Any]], imgsz: int, info: dict[str, Any]) -> str:
    v8 = [r for r in rows if r["table"] == "yolov8"]
    y11 = [r for r in rows if r["table"] == "yolo11"]
    lines = [
        "# The seed YOLO tables, reproduced with `ghostnas yolo build` / `ghostnas yolo profile`",
        "",
        f"Ultralytics {info['ultralytics']}, ultralytics-thop {info['thop']}, torch {info['torch']}; every model "
        f"nc=1; GFLOPs at {imgsz}x{imgsz}. Exact commands: `command.txt`, each row's in `rows.json` "
        "(`build`, `profile`, `latency_command`). Commit and machine: `run.json`.",
        "",
        "## YOLOv8: every backbone C2f's bottleneck replaced (n scale, nc=1)",
        "",
        "Seed convention: fused, C2f 1x1 convs left unfolded (the blog's pasted Conv), layers = "
        "len(model.modules()) of the fused model, GFLOPs = old count (<= 8.3) of the fused model.",
        "",
        "| row | seed layers | ghostnas layers (modules, fused) | seed params | ghostnas params, seed convention | "
        "ghostnas params, stock Conv (fused) | difference | params unfused | seed GFLOPs | GFLOPs old, fused | "
        "GFLOPs 8.4, fused | Ghost-part MACs (closed form) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in v8:
        seed = r["seed"]
        seed_conv = r.get("params_fused_pasted_conv", r["params_fused"])
        lines.append(
            f"| {r['name']} | {seed[0] if seed else '-'} | {r['layers_modules_fused']} | "
            f"{f'{seed[1]:,}' if seed else '-'} | {seed_conv:,} | {r['params_fused']:,} | "
            f"{seed_conv - r['params_fused']:,} | {r['params']:,} | {seed[2] if seed else '-'} | "
            f"{r['gflops_old_fused']:.1f} | {r['gflops_fused']:.1f} | {_macs(r['ghost_macs'])} |"
        )
    lines += [
        "",
        "## YOLO11 with a ghostnas backbone (P3/P4/P5 = last tensor at strides 8/16/32; nc=1)",
        "",
        "The seed's two figures use different conventions: 67.6 is the fused baseline, 14.5M / 32.0 "
        "the unfused GhostNet model, both with the old GFLOPs count.",
        "",
        "| row | taps (channels) | seed params | params unfused | params fused | seed GFLOPs | GFLOPs old, unfused | "
        "GFLOPs old, fused | GFLOPs 8.4, unfused | GFLOPs 8.4, fused | backbone MACs (closed form) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in y11:
        seed = r["seed"]
        taps = next((p["taps"] for p in r["ghost_parts"] if p["module"] == "GhostnasBackbone"), None)
        lines.append(
            f"| {r['name']} | {'/'.join(map(str, taps)) if taps else 'stock'} | "
            f"{f'{seed[0]}M ({seed[2]})' if seed else '-'} | {_m(r['params'])} ({r['params']:,}) | "
            f"{_m(r['params_fused'])} ({r['params_fused']:,}) | {f'{seed[1]} ({seed[2]})' if seed else '-'} | "
            f"{r['gflops_old']:.1f} | {r['gflops_old_fused']:.1f} | {r['gflops']:.1f} | {r['gflops_fused']:.1f} | "
            f"{_macs(r['ghost_macs'])} |"
        )
    timed = [r for r in rows if "latency_ms" in r]
    if timed:
        r0 = timed[0]
        lines += [
            "",
            f"## CPU latency (deploy model: fused, remaining BN folded, eval, batch 1, {r0['latency_imgsz']}x"
            f"{r0['latency_imgsz']}, {r0['latency_threads']} thread, {r0['latency_clock']} clock)",
            "",
            f"Machine: {info['cpu']} ({info['cpu_count']} cores), shared with other sessions' processes "
            f"(load average {info['load_before']} before, {info['load_after']} after); each timing ran under "
            f"`flock {LOCK}`. With one thread the clock is the thread's CPU time, which time-sharing does "
            "not inflate, but cache and memory-bandwidth contention still can. The latency is the 20th "
            "percentile of block means (ghostnas.latency); median and IQR beside it.",
            "",
            "| row | latency ms | median ms | IQR ms | GFLOPs old, fused | BN folded inside Ghost blocks |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in timed:
            lines.append(
                f"| {r['name']} | {r['latency_ms']:.1f} | {r['latency_median_ms']:.1f} | {r['latency_iqr_ms']:.1f} | "
                f"{r['gflops_old_fused']:.1f} | {r['latency_bn_folded']} |"
            )
    lines += ["", "## Notes", "", *NOTES]
    return "\n".join(lines) + "\n"


NOTES = [
    "- The 960-param difference: the seed blog's C2f wrapper built its two 1x1 convs from a pasted copy of "
    "Ultralytics' `Conv`, which `fuse()` does not recognise, so the 8 batch-norms of the four C2f stayed "
    "(32+32+64+64+128+128+256+256 = 960 channels; an unfolded BN keeps 2 params per channel where a folded one "
    "leaves a 1-param conv bias: +1 per channel). `ghostnas.yolo.GhostnasC2f` uses the stock `Conv`; the "
    "'seed convention' column is measured on a copy built the blog's way (`params_fused_pasted_conv`).",
    "- The 'V2' seed row has DFC attention off; a GhostNetV2 bottleneck without DFC is the V1 bottleneck, so "
    "its params equal V1's. The row with DFC on is the real GhostNetV2 bottleneck.",
    "- Layers differ from the seed because the module trees differ: the seed used the official GhostNet code's "
    "modules; ghostnas' blocks hold `nn.Identity` placeholders (stride-1 depthwise conv, SE off) and the "
    "fused C2f convs lose their BN modules. Params and MACs do not depend on this.",
    "- 'YOLOv8s' in the seed's ghost rows selects no scale: Ultralytics fell back to n. The seed's YOLOv8s row "
    "is a real s model (11.1M), so the fair baseline for the Ghost rows is YOLOv8n nc=1 (3.0M, 8.1 GFLOPs).",
    "- GFLOPs 'old' = 2 x thop MACs of one 32x32 input x (640/32)^2 (Ultralytics <= 8.3); '8.4' = the installed "
    "version's `get_flops`. They agree for plain conv nets and part where global pooling or attention sees the "
    "small probe differently. Ghost-part MACs are ghostnas' closed form (conv+linear multiply-accumulates).",
    "- The seed's GPU claim (3.5 -> 3.2 ms) was not measured: no GPU was available to this session.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    info = run_info() | {
        "ultralytics": metadata.version("ultralytics"),
        "thop": metadata.version("ultralytics-thop"),
        "load_before": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "cpu_lock": LOCK,
        "shared_machine": "other sessions ran on the same 2-core machine during this run",
    }
    rows = run(args.out, args.imgsz, not args.no_latency, args.threads)
    info["load_after"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "table.md").write_text(render(rows, args.imgsz, info))
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    (args.out / "command.txt").write_text(info["command"] + "\n")
    print(f"wrote {args.out}/table.md", file=sys.stderr)


if __name__ == "__main__":
    main()
