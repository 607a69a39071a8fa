"""Does the detection proxy, at its default recipe, score detectors above zero and apart?

Scores a few detectors (``--configs``: the stock YOLOv8n, the seed's C2f_GhostBottleneck YOLOv8n,
or a winner's YAML exported by ``ghostnas export --yolo-yaml``) with the ``detect`` evaluator's
default recipe (:class:`ghostnas.evaluators.detect.DetectRecipe`: AdamW, no warm-up or mosaic)
at several seeds, on the val split as a search would, and writes ``results.json``,
``command.txt`` and ``run.json`` into ``--out``.

Example::

    .venv/bin/python benchmarks/detect_proxy_signal.py --out results/detect-proxy-cpu-2026-11-29 \
        --data DIR/data.yaml --epochs 10 --imgsz 128 --seeds 0 1 --winner results/.../winner.yaml
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ghostnas.data.detect import read_detect_data
from ghostnas.detect import C2fChoice, DetectConfig, base_detector, detect_config_from_dict, detect_costs
from ghostnas.evaluators.detect import DetectRecipe, train_detector

try:  # benchmarks/ is on sys.path when run as a script
    from _runinfo import run_info
except ImportError:  # pragma: no cover
    from benchmarks._runinfo import run_info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=DetectRecipe.epochs)
    p.add_argument("--imgsz", type=int, default=DetectRecipe.imgsz)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--winner", default=None, help="a YAML written by ghostnas export --yolo-yaml")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    info = run_info()
    (args.out / "command.txt").write_text(info["command"] + "\n")
    data = read_detect_data(args.data)
    base = base_detector("yolov8n", data.nc)
    configs: dict[str, DetectConfig] = {
        "YOLOv8n C2f_GhostBottleneck (seed)": DetectConfig(
            "yolov8n", tuple(C2fChoice("ghost", s.depth, s.width) for s in base.sites)
        ),
    }
    if args.winner:
        configs["searched winner"] = detect_config_from_dict(
            yaml.safe_load(Path(args.winner).read_text())["ghostnas"]["config"]
        )
    recipe = replace(DetectRecipe(), epochs=args.epochs, imgsz=args.imgsz, device=args.device)
    rows: dict[str, Any] = {}
    for label, cfg in configs.items():
        runs = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            scores = train_detector(cfg, str(data.yaml_path), data.nc, replace(recipe, seed=seed))
            runs.append({"seed": seed, "seconds": round(time.perf_counter() - t0, 1), **scores})
            print(f"{label} seed {seed}: val mAP50-95 {scores['val']['map']:.4f}", flush=True)
        vals = [r["val"]["map"] for r in runs]
        rows[label] = {
            "arch": cfg.short(),
            "gflops": round(detect_costs(cfg, data.nc)["gflops"], 4),
            "val_map_mean": statistics.fmean(vals),
            "val_map_sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "runs": runs,
        }
    results = {
        "what": "val mAP50-95 of the detect proxy at its default recipe (the score a search sees)",
        "recipe": {
            k: getattr(recipe, k)
            for k in ("epochs", "imgsz", "batch", "optimizer", "lr0", "warmup_epochs", "mosaic")
        },
        "data": {"yaml": str(data.yaml_path), "images": dict(data.images), "boxes": dict(data.boxes)},
        "models": rows,
        "shared_machine": "other processes shared the CPU; seconds are wall-clock and informational",
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
