"""``ghostnas train``: train a named model or config fully and report validation and test accuracy."""

from __future__ import annotations

import argparse
import logging
import sys

from ghostnas.cli._format import int_at_least, positive_float, print_json
from ghostnas.cli._search import _int


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
        "--seed", type=_int, default=0, help="initialisation, batch order, augmentation (default 0)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument(
        "--train-images",
        type=int_at_least(0),
        default=0,
        help="train on this many images of the training split (default 0: all)",
    )
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument(
        "--out", default=None, help="run folder (default results/train-<model>-<data>-e<epochs>-seed<seed>)"
    )
    p.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print metrics.json")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from ghostnas.full_training import TrainSettings, train_model

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
    )
    bar = None

    def progress(epoch: int, total: int, val_acc: float) -> None:
        nonlocal bar
        if args.no_progress:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(
                total=total, desc="train", unit="epoch", file=sys.stderr, dynamic_ncols=True, disable=None
            )
        bar.update(max(0, epoch - bar.n))
        bar.set_postfix_str(f"val acc {val_acc:.4f}")

    data_log = logging.getLogger("ghostnas.data")  # decoding a large folder shows its progress
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("ghostnas train: %(message)s"))
    data_log.addHandler(handler)
    data_log.setLevel(logging.INFO)
    try:
        report = train_model(settings, progress=progress)
    finally:
        if bar is not None:
            bar.close()
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
    print(f"time         {m['train_s']:.1f} s training on {m['device']}, {m['images_per_s']:.0f} images/s")
    print("files        weights.pt (state dict, weights_only=True), metrics.json, config.json, run.json")
    return 0
