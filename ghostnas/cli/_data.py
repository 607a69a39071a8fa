"""``ghostnas data``: look at a dataset the way the search will read it, and clear the image cache."""

from __future__ import annotations

import argparse

from ghostnas.cli._format import int_at_least, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="show a dataset as the search reads it (shape, classes, splits); clear the image cache",
        description="Read --data the way `ghostnas search` and `ghostnas train` do (decoding an image "
        "folder into the cache on first use) and show its shape, classes and splits and the network "
        "shape it implies; or delete the decoded-image cache.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = dsub.add_parser("info", help="shape, classes, splits and the network shape of a dataset")
    info.add_argument("data", metavar="DATA", help="fashion-mnist, cifar10, synthetic, a folder or an .npz")
    info.add_argument("--data-dir", default=None, help="folder with a named dataset's files")
    info.add_argument("--image-size", type=int_at_least(1), default=None, help="resize your images to NxN")
    info.add_argument("--json", action="store_true", help="print the result as JSON")
    info.set_defaults(func=cmd_info)
    clear = dsub.add_parser("clear-cache", help="delete every decoded-image cache entry")
    clear.set_defaults(func=cmd_clear)
    make = dsub.add_parser(
        "make-detect",
        help="make a detection dataset (Ultralytics YOLO layout) from Fashion-MNIST, offline",
        description="Compose Fashion-MNIST items onto canvases (several per canvas, random scales, "
        "positions, overlap limits, background clutter) with boxes from each item's true extent, in "
        "the Ultralytics layout with its data.yaml; fixed train/val/test splits; the same --seed gives "
        "the same bytes. The folder appears whole or not at all.",
    )
    make.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    make.add_argument(
        "--images", type=int_at_least(3), default=2000, help="canvases in all splits (default 2000)"
    )
    make.add_argument(
        "--imgsz", type=int_at_least(32), default=320, help="canvas side in pixels (default 320)"
    )
    make.add_argument("--seed", type=int, default=0, help="the seed every canvas derives from (default 0)")
    make.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST's idx files")
    make.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    make.set_defaults(func=cmd_make_detect)


def cmd_info(args: argparse.Namespace) -> int:
    from ghostnas.data import cache_dir, input_shape, load_dataset

    ds = load_dataset(args.data, args.data_dir, args.image_size)
    shape = input_shape(ds.spec)
    out = {
        "data": ds.label,
        "source": ds.source,
        "digest": ds.digest,
        "shape": {"in_chans": ds.spec.in_chans, "size": ds.spec.size, "num_classes": ds.spec.num_classes},
        "classes": list(ds.classes) if ds.classes is not None else None,
        "splits": {
            "train": len(ds.train_x),
            "val": None if ds.val_x is None else len(ds.val_x),
            "test": len(ds.test_x),
        },
        "build": shape.build_args(),
        "cache": str(cache_dir()) if ds.spec.name.startswith("folder:") else None,
    }
    if args.json:
        print_json(out)
        return 0
    s = out["splits"]
    val = "carved from train (fixed seed)" if s["val"] is None else f"{s['val']:,}"
    print(f"data         {out['data']} ({out['source']})")
    print(f"images       {ds.spec.describe()}")
    print(f"splits       train {s['train']:,}, val {val}, test {s['test']:,}")
    if out["classes"]:
        shown = ", ".join(out["classes"][:10]) + (", ..." if len(out["classes"]) > 10 else "")
        print(f"classes      {shown}")
    print(f"network      {shape.describe()} (ghostnas.data.input_shape)")
    if out["cache"]:
        print(f"cache        {out['cache']} (ghostnas data clear-cache)")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    from ghostnas.data import cache_dir, clear_cache

    del args
    n = clear_cache()
    print(f"removed {n} cache file{'s' if n != 1 else ''} from {cache_dir()}")
    return 0


def cmd_make_detect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ghostnas.cli._progress import ProgressDisplay
    from ghostnas.data.detect import DetectRecipe, check_new_folder, make_detect_dataset

    recipe = DetectRecipe(images=args.images, imgsz=args.imgsz, seed=args.seed)
    recipe.check()
    check_new_folder(Path(args.out))
    sizes = recipe.split_sizes()
    every = max(1, args.images // 20)
    with ProgressDisplay(
        total=args.images, unit="image", desc="make-detect", enabled=not args.no_progress
    ) as bar:
        bar.line(
            f"making {args.images} canvases of {args.imgsz}x{args.imgsz} (train {sizes['train']}, val "
            f"{sizes['val']}, test {sizes['test']}), seed {args.seed} -> {args.out}"
        )

        def progress(done: int, total: int) -> None:
            if done % every == 0 or done == total:
                bar.step(done, line=f"{done} canvases written")

        data = make_detect_dataset(args.out, recipe, data_dir=args.data_dir, progress=progress)
    counts = ", ".join(f"{s} {data.images[s]} images / {data.boxes[s]} boxes" for s in data.images)
    print(f"wrote {data.yaml_path} ({data.nc} classes; {counts})")
    return 0
