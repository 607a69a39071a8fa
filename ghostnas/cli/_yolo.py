"""``ghostnas yolo build`` and ``ghostnas yolo profile``: Ghost parts in Ultralytics YOLO models."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any

from ghostnas.cli._format import int_at_least, print_json
from ghostnas.errors import GhostnasError

_positive = int_at_least(1)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "yolo",
        help="Ghost blocks and ghostnas backbones in Ultralytics YOLO (needs ghostnas[yolo])",
        description="Write YOLOv8/YOLO11 model YAMLs with Ghost parts, and count what they cost.",
    )
    yolo_sub = p.add_subparsers(dest="yolo_command", metavar="ACTION", parser_class=type(p))
    yolo_sub.required = True

    q = yolo_sub.add_parser(
        "build",
        help="write a model YAML: a stock base with Ghost C2f bottlenecks or a ghostnas backbone",
        description="Write a stock YOLOv8/YOLO11 definition with explicit channels (no scales "
        "table), optionally with every backbone C2f's bottlenecks of a ghostnas block kind or "
        "with a ghostnas network as the backbone. Load it with `import ghostnas.yolo; "
        "ultralytics.YOLO(FILE)`.",
    )
    q.add_argument("base", metavar="BASE", help="yolov8{n,s,m,l,x} or yolo11{n,s,m,l,x}")
    q.add_argument("--out", required=True, metavar="FILE.yaml", help="where to write the model YAML")
    q.add_argument("--nc", type=_positive, default=80, help="number of classes (default 80)")
    q.add_argument(
        "--replace",
        metavar="backbone-c2f=KIND",
        default=None,
        help="bottleneck kind of every backbone C2f: ghost, ghost_v2, ghost_v2:dfc=false, ghost_v3, "
        "regnet (group width 1), g_ghost (a G-Ghost stage); options as KIND:key=value,...",
    )
    q.add_argument(
        "--backbone",
        metavar="NAME_OR_CFG",
        default=None,
        help="a ghostnas model name, config JSON or exported winner as the backbone (P3/P4/P5 taps)",
    )
    q.set_defaults(func=cmd_build)

    q = yolo_sub.add_parser(
        "profile",
        help="params, layers and GFLOPs under each convention (optionally CPU latency)",
        description="Params unfused and fused, layers and GFLOPs under Ultralytics' old (<= 8.3) "
        "and installed conventions, and ghostnas' closed-form MACs of the Ghost parts.",
    )
    q.add_argument("model", metavar="FILE_OR_BASE", help="a model .yaml or a base name such as yolov8n")
    q.add_argument(
        "--nc", type=_positive, default=None, help="number of classes (default: the file's, or 80)"
    )
    q.add_argument(
        "--imgsz", type=_positive, default=640, help="image side for GFLOPs and latency (default 640)"
    )
    q.add_argument("--latency", action="store_true", help="also time the deploy model on the CPU, batch 1")
    q.add_argument("--threads", type=_positive, default=1, help="CPU threads for --latency (default 1)")
    q.add_argument(
        "--json", action="store_true", help="print JSON (keys include params, params_fused, gflops)"
    )
    q.set_defaults(func=cmd_profile)


def _yolo() -> ModuleType:
    try:
        import ghostnas.yolo as yolo
    except ImportError as exc:
        raise GhostnasError(f"{exc}") from None
    return yolo


def cmd_build(args: argparse.Namespace) -> int:
    yolo = _yolo()
    spec = yolo.parse_replace(args.replace) if args.replace is not None else None
    model = yolo.build_yaml(args.base, args.nc, replace=spec, backbone=args.backbone)
    path = yolo.write_yaml(model, args.out)
    print(f"wrote {path} ({', '.join(f'{k}: {v}' for k, v in model['ghostnas'].items())}, nc {args.nc})")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    yolo = _yolo()
    info = yolo.profile_yolo(args.model, args.nc, args.imgsz, latency=args.latency, threads=args.threads)
    if args.json:
        print_json(info)
        return 0
    for line in profile_lines(info):
        print(line)
    return 0


def profile_lines(info: dict[str, Any]) -> list[str]:
    """The profile as labelled lines: every number says its convention."""
    s = info["imgsz"]
    lines = [
        f"model        {info['model']}  ({', '.join(f'{k} {v}' for k, v in info['ghostnas'].items()) or 'no ghostnas parts'}; "
        f"nc {info['nc']}; ultralytics {info['ultralytics']})",
        f"params       {info['params']:,} unfused, {info['params_fused']:,} fused (Ultralytics fuse(): BN folded into its own Conv only)",
    ]
    if "params_fused_pasted_conv" in info:
        lines.append(
            f"             {info['params_fused_pasted_conv']:,} fused with each GhostnasC2f's 1x1 convs unfolded "
            "(the seed blog's pasted-Conv convention)"
        )
    lines += [
        f"layers       {info['layers_modules']} unfused / {info['layers_modules_fused']} fused as len(model.modules()) "
        f"(Ultralytics <= 8.2); {info['layers_leaf']} / {info['layers_leaf_fused']} leaf modules (8.4)",
        f"GFLOPs       {info['gflops_old']:.1f} unfused / {info['gflops_old_fused']:.1f} fused, old count "
        f"(<= 8.3: 2 x thop MACs of a 32x32 probe x ({s}/32)^2)",
        f"             {info['gflops']:.1f} unfused / {info['gflops_fused']:.1f} fused, ultralytics "
        f"{info['ultralytics']} get_flops at {s} (GFLOPs = 2 x MACs / 1e9)",
        f"ghost parts  {info['ghost_params']:,} params, {info['ghost_macs']:,} MACs at {s}x{s} "
        "(ghostnas closed form: conv+linear multiply-accumulates)",
    ]
    for p in info["ghost_parts"]:
        what = p.get("kind") or p.get("arch", "")
        lines.append(
            f"  layer {p['layer']:<3} {p['module']:<16} {what}  side {p['input_side']}: "
            f"{p['params']:,} params, {p['macs']:,} MACs"
        )
    if "latency_ms" in info:
        lines.append(
            f"latency      {info['latency_ms']:.1f} ms (median {info['latency_median_ms']:.1f}, IQR "
            f"{info['latency_iqr_ms']:.1f}) deploy model, batch 1, {info['latency_imgsz']}x{info['latency_imgsz']}, "
            f"CPU, {info['latency_threads']} thread(s), {info['latency_clock']} clock"
        )
    return lines
