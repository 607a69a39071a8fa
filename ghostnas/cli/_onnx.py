"""``ghostnas onnx``: write a model as ONNX and check it against PyTorch."""

from __future__ import annotations

import argparse
import sys

from ghostnas.cli._format import non_negative_int, positive_int, print_json

RANDOM_WEIGHTS_WARNING = (
    "no --weights given: the ONNX model holds random initial weights, not a trained network "
    "(train one with `ghostnas train` and pass its weights.pt)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "onnx",
        help="export a model to ONNX and verify it",
        description="Export a registered model or config JSON to ONNX (batch 1, or --dynamic-batch), check it with "
        "onnx.checker and compare its outputs with PyTorch through onnxruntime.",
    )
    p.add_argument("model", help="registered name or config .json")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--input-size", type=positive_int, default=224, help="input side in pixels (default 224)")
    p.add_argument(
        "--num-classes", type=non_negative_int, default=1000, help="classifier width (default 1000)"
    )
    p.add_argument("--in-chans", type=positive_int, default=3, help="input channels (default 3)")
    p.add_argument(
        "--stem-stride", type=int, choices=(1, 2), default=2, help="1 for small inputs (default 2)"
    )
    p.add_argument(
        "--weights",
        help="state-dict file to load (weights_only=True), e.g. the weights.pt of `ghostnas train`; "
        "without it the ONNX model has random initial weights (a warning says so)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="make the batch axis dynamic (default: fixed at 1)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_onnx)


def cmd_onnx(args: argparse.Namespace) -> int:
    from ghostnas.onnx_export import export_onnx

    info = export_onnx(
        args.model,
        args.output,
        input_size=args.input_size,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        stem_stride=args.stem_stride,
        weights=args.weights,
        dynamic_batch=args.dynamic_batch,
    )
    if info["random_weights"]:
        print(f"ghostnas onnx: warning: {RANDOM_WEIGHTS_WARNING}", file=sys.stderr)
    if args.json:
        print_json(info)
    elif info["onnxruntime"]:
        print(
            f"wrote {info['path']}: onnx.checker ok, max |onnxruntime - torch| = {info['max_abs_diff']:.2e}"
        )
    else:
        print(f"wrote {info['path']}: onnx.checker ok (install onnxruntime to compare outputs)")
    return 0
