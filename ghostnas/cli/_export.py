"""``ghostnas export``: a search result becomes a named model (and optionally an ONNX file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ghostnas.cli._format import non_negative_int, positive_int, print_json
from ghostnas.cli._onnx import RANDOM_WEIGHTS_WARNING

_EPILOG = """\
The config is written with its provenance (run folder, study, trial, metrics, search space and
its digest, ghostnas version, date) to DIR/NAME.json; DIR defaults to the user's model library
($GHOSTNAS_HOME/models, default ~/.ghostnas/models), where ghostnas.create_model(NAME),
`ghostnas profile NAME` and `ghostnas models` find it. Shipped model names are always refused;
an existing export of the same name is replaced only with --force.
"""


def _trial_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a trial number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: trial numbers start at 0")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a searched architecture as a named model (and optionally ONNX)",
        description="Export the best trial (--best) or trial N (--trial N) of a search's run folder "
        "as a named model config with provenance.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the folder a `ghostnas search` wrote")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--best", action="store_true", help="the best scored trial under budget")
    which.add_argument("--trial", type=_trial_number, metavar="N", help="trial number N (see trials.csv)")
    p.add_argument(
        "--name", required=True, help="model name: lower-case letters, digits, _ . - (e.g. ghostnas_150m)"
    )
    p.add_argument(
        "--to",
        metavar="DIR",
        default=None,
        help="folder to write NAME.json (default: the user's model library)",
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing export (or ONNX file) of that name"
    )
    p.add_argument("--onnx", metavar="FILE", default=None, help="also write a checked ONNX model to FILE")
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        help="ONNX input side in pixels (default: the data's)",
    )
    p.add_argument(
        "--num-classes",
        type=non_negative_int,
        default=None,
        help="ONNX classifier width (default: the data's)",
    )
    p.add_argument(
        "--in-chans", type=positive_int, default=None, help="ONNX input channels (default: the data's)"
    )
    p.add_argument(
        "--stem-stride",
        type=int,
        choices=(1, 2),
        default=None,
        help="ONNX stem stride (default: the rule for the data's size, 1 below 64 pixels)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="state-dict file for the ONNX model (weights_only=True); without it the ONNX model has "
        "random initial weights (a warning says so, and meta.onnx records random_weights)",
    )
    p.add_argument(
        "--dynamic-batch", action="store_true", help="ONNX batch axis dynamic (default: fixed at 1)"
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="the study's storage, for a run folder written before trials carried their config whose "
        "run.json storage (recorded without its password) does not reach it",
    )
    p.add_argument(
        "--yolo-yaml",
        metavar="FILE",
        default=None,
        help="a detection run (search --task detect): write the trial as an Ultralytics model YAML to FILE "
        "(import ghostnas.yolo; YOLO(FILE).train(data=...))",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ghostnas.detect.export import is_detect_run
    from ghostnas.export import OnnxOptions, export_trial

    if args.yolo_yaml is not None or is_detect_run(args.run_dir):
        return _export_detector(args)

    onnx = None
    if args.onnx is not None:
        onnx = OnnxOptions(
            path=Path(args.onnx),
            input_size=args.input_size,
            num_classes=args.num_classes,
            in_chans=args.in_chans,
            stem_stride=args.stem_stride,
            weights=Path(args.weights) if args.weights else None,
            dynamic_batch=args.dynamic_batch,
        )
    result = export_trial(
        args.run_dir,
        args.name,
        trial=None if args.best else args.trial,
        to=args.to,
        force=args.force,
        onnx=onnx,
        storage=args.storage,
    )
    m = result.meta["metrics"]
    if result.onnx is not None and result.onnx["random_weights"]:
        print(f"ghostnas export: warning: {RANDOM_WEIGHTS_WARNING}", file=sys.stderr)
    if args.json:
        print_json({"name": result.name, "path": str(result.path), "meta": result.meta})
        return 0
    print(f"exported     trial {result.trial} as {result.name} -> {result.path}")
    print(
        f"metrics      {m.get('score_label', 'score')} {m['accuracy']:.4f} ({m['evaluator']}), "
        f"{m['macs']:,} MACs, {m['params']:,} params"
    )
    print(f"arch         {result.meta['arch']}")
    b = result.meta["build"]
    print(
        f"built for    {b['input_size']}x{b['input_size']}x{b['in_chans']}, {b['num_classes']} classes, "
        f"stem stride {b['stem_stride']} (the search's data; costs: {result.meta['cost_convention']})"
    )
    if result.onnx is not None:
        diff = result.onnx["max_abs_diff"]
        check = f"max |onnxruntime - torch| = {diff:.2e}" if diff is not None else "onnxruntime not installed"
        print(f"onnx         {result.onnx['path']}: onnx.checker ok, {check}")
    print(f"use          ghostnas.create_model({result.name!r}) / ghostnas profile {result.name}")
    return 0


def _export_detector(args: argparse.Namespace) -> int:
    from ghostnas.detect.export import export_detector
    from ghostnas.errors import GhostnasError

    if args.onnx is not None or args.to is not None:
        raise GhostnasError(
            "a detection run exports an Ultralytics model YAML (--yolo-yaml FILE); --onnx and --to do not apply"
        )
    result = export_detector(
        args.run_dir,
        args.name,
        trial=None if args.best else args.trial,
        yolo_yaml=args.yolo_yaml,
        force=args.force,
    )
    if args.json:
        print_json({"name": args.name, "path": str(result.path), "meta": result.meta})
        return 0
    m = result.meta
    print(f"exported     trial {result.trial} as {args.name} -> {result.path}")
    print(
        f"metrics      {m['score_label']} {m['score']:.4f}, {m['gflops']:.3f} GFLOPs, {int(m['params']):,} params"
    )
    print(f"arch         {m['arch']}")
    print(f"costs        {m['cost_convention']}")
    print(
        f"use          import ghostnas.yolo; from ultralytics import YOLO; YOLO({str(result.path)!r}).train(data=...)"
    )
    return 0
