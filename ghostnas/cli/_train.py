"""``ghostnas train``: train a named model or config fully and report validation and test accuracy."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from ghostnas.cli._format import any_int, int_at_least, positive_float, print_json
from ghostnas.device import DEVICES_HELP


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model fully; validation and official test accuracy, weights and metrics",
        description="Train a registered model (e.g. one made by `ghostnas export`) or a config JSON "
        "with the full recipe (the proxy's loop and data code; cosine LR, label smoothing, random "
        "crops and horizontal flips). Writes weights.pt (state dict, weights_only=True), "
        "metrics.json, config.json and run.json into the run folder.",
    )
    p.add_argument("model", metavar="NAME_OR_CFG", help="registered name or config .json")
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist (default), cifar10, synthetic, or your own data: an image folder "
        "(PATH/<class>/*.png, optionally PATH/train|val|test/<class>/) or an .npz file (x, y)",
    )
    p.add_argument("--data-dir", default=None, help="folder with a named dataset's files")
    p.add_argument(
        "--image-size",
        type=int_at_least(1),
        default=None,
        help="resize your images to NxN (default: their own size, if they all share one)",
    )
    p.add_argument("--epochs", type=positive_float, default=30.0, help="training epochs (default 30)")
    p.add_argument(
        "--seed", type=any_int, default=0, help="initialisation, batch order, augmentation (default 0)"
    )
    p.add_argument("--device", default="auto", help=f"{DEVICES_HELP} (default auto)")
    p.add_argument(
        "--train-images",
        type=int_at_least(0),
        default=0,
        help="train on this many images of the training split (default 0: all)",
    )
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument(
        "--out",
        default=None,
        help="run folder (default ./ghostnas-runs/train-<model>-<data>-e<epochs>-seed<seed>)",
    )
    p.add_argument(
        "--reparam",
        action="store_true",
        help="train the re-parameterisable training form (ghostnetv3_*), save the folded deploy weights",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (on a terminal) or per-epoch lines (otherwise); the start line stays",
    )
    p.add_argument("--json", action="store_true", help="print metrics.json")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ghostnas.cli._progress import ProgressDisplay
    from ghostnas.full_training import TrainSettings, TrainStart, short_run_note, train_model

    settings = TrainSettings(
        model=args.model,
        data=args.data,
        data_dir=args.data_dir,
        image_size=args.image_size,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        train_images=args.train_images,
        flip=not args.no_flip,
        out=args.out,
        force=args.force,
        command=["ghostnas", *args.argv],
        reparam=args.reparam,
    )
    display: ProgressDisplay | None = None

    def on_start(s: TrainStart) -> None:
        nonlocal display
        display = ProgressDisplay(
            total=max(1, math.ceil(s.epochs)), unit="epoch", desc="train", enabled=not args.no_progress
        )
        display.line(
            f"ghostnas train: {s.model} ({s.params / 1e6:.2f}M params, {s.macs / 1e6:.1f}M MACs at 224x224, "
            f"1000 classes) on {s.data}: {s.train_images:,} training images, {s.epochs:g} epochs "
            f"({s.steps:,} steps of {s.batch_size}), device {s.device}; then the official test set "
            f"({s.test_images:,} images); run folder {s.out_dir}"
        )

    def progress(epoch: int, total: int, val_acc: float) -> None:
        if display is not None:
            display.step(
                epoch, status=f"val acc {val_acc:.4f}", line=f"epoch {epoch}/{total}: val acc {val_acc:.4f}"
            )

    def on_test(images: int) -> None:
        if display is not None and not args.no_progress:
            display.line(f"ghostnas train: training done; scoring the official test set ({images:,} images)")

    data_log = logging.getLogger("ghostnas.data")  # decoding a large folder shows its progress
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ghostnas train: %(message)s"))
    data_log.addHandler(handler)
    data_log.setLevel(logging.INFO)
    try:
        report = train_model(settings, progress=progress, on_start=on_start, on_test=on_test)
    finally:
        if display is not None:
            display.close()
        data_log.removeHandler(handler)
        data_log.setLevel(logging.NOTSET)
    m = report.metrics
    if args.json:
        print_json(m)
        return 0
    print(f"run folder   {report.out_dir}")
    print(f"model        {m['model']}: {m['params']:,} params, {m['macs']:,} MACs (224x224, 1000 classes)")
    build = m["build"]
    print(
        f"data         {m['data']}: {m['train_images']:,} train, {m['val_images']:,} val, {m['test_images']:,} test; "
        f"built for {m['input_size']}x{m['input_size']}x{build['in_chans']}, {build['num_classes']} classes, "
        f"stem stride {build['stem_stride']}"
    )
    test = "no test split" if m["test_acc"] is None else f"test {m['test_acc']:.4f}"
    print(f"accuracy     val {m['val_acc']:.4f}, {test} after {m['epochs']:g} epochs (seed {m['seed']})")
    note = short_run_note(m["epochs"])
    if note is not None:
        print(f"note         {note}")
    print(f"time         {m['train_s']:.1f} s training on {m['device']}, {m['images_per_s']:.0f} images/s")
    print("files        weights.pt (state dict, weights_only=True), metrics.json, config.json, run.json")
    return 0
