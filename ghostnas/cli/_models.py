"""``ghostnas models`` and ``ghostnas profile``: the model library from the command line."""

from __future__ import annotations

import argparse

from ghostnas.cli._format import non_negative_int, positive_int, print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered models with params and MACs")
    p.add_argument("--input-size", type=positive_int, default=224, help="input side in pixels (default 224)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "profile",
        help="params and MACs of a model name or config JSON",
        description="Closed-form params and MACs (conv+linear multiply-accumulates, the "
        "GhostNet paper's FLOPs) of a registered model or a config JSON file.",
    )
    p.add_argument("model", help="registered name (see `ghostnas models`) or path to a config .json")
    p.add_argument("--input-size", type=positive_int, default=224, help="input side in pixels (default 224)")
    p.add_argument(
        "--num-classes", type=non_negative_int, default=1000, help="classifier width (default 1000)"
    )
    p.add_argument("--verify", action="store_true", help="also build the model and count with hooks")
    p.add_argument(
        "--latency",
        action="store_true",
        help="also predict (lookup table) and measure deploy latency, batch 1 (see `ghostnas latency`)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="latency device (default cpu)")
    p.add_argument("--threads", type=positive_int, default=None, help="latency CPU threads (default 1)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="latency backend: eager PyTorch or ONNX Runtime (default torch)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="predict latency from the table as it is (marked uncalibrated)",
    )
    p.add_argument(
        "--table", default=None, help="latency table (default: this device's, under $GHOSTNAS_HOME)"
    )
    p.add_argument("--json", action="store_true", help="print JSON (keys include params and macs)")
    p.set_defaults(func=cmd_profile)


def cmd_models(args: argparse.Namespace) -> int:
    from ghostnas.profiling import model_table

    rows = model_table(args.input_size)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "source", "params", "macs"])
        print(
            f"\nMACs: conv+linear multiply-accumulates at {args.input_size}x{args.input_size}, 1000 classes"
        )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from ghostnas.profiling import profile_model

    info = profile_model(args.model, args.input_size, args.num_classes, verify=args.verify)
    if args.latency:
        from ghostnas.profiling import profile_latency

        info |= profile_latency(
            args.model,
            args.input_size,
            args.num_classes,
            args.device,
            args.threads,
            args.table,
            backend=args.backend,
            calibrate=not args.no_calibration,
        )
    if args.json:
        print_json(info)
        return 0
    print(f"model       {info['model']}")
    print(f"arch        {info['arch']}")
    print(f"params      {info['params']:,}")
    print(
        f"macs        {info['macs']:,}  ({info['macs'] / 1e6:.1f}M at {args.input_size}px, {args.num_classes} classes)"
    )
    if args.verify:
        print(f"hook count  params {info['hook_params']:,}  macs {info['hook_macs']:,}")
    if args.latency:
        cal = info["latency_calibration"]
        how = (
            f"calibrated x {cal['used_factor']:.3f}"
            if cal is not None
            else f"UNCALIBRATED: {info['latency_uncalibrated_reason']}"
        )
        print(
            f"latency     {info['latency_ms_predicted']:.2f} +- {info['latency_uncertainty_ms']:.2f} ms "
            f"predicted ({how}), {info['latency_ms_measured']:.2f} ms measured (median "
            f"{info['latency_median_ms']:.2f}, IQR {info['latency_iqr_ms']:.2f}; {args.backend} on "
            f"{args.device}, batch 1)"
        )
    print(f"convention  {info['macs_convention']}")
    return 0
