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
