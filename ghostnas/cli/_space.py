"""``ghostnas space list`` and ``ghostnas space describe``: what a search space contains."""

from __future__ import annotations

import argparse

from ghostnas.cli._format import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "space",
        help="list search spaces or describe one (size, MACs and params range)",
        description="Search spaces are YAML files: shipped ones by name, any other by path.",
    )
    space_sub = p.add_subparsers(dest="space_command", metavar="ACTION", parser_class=type(p))
    space_sub.required = True

    q = space_sub.add_parser("list", help="shipped search spaces with their size")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=cmd_list)

    q = space_sub.add_parser(
        "describe",
        help="size of a space and the range of MACs and params it spans at 224",
        description="Number of distinct configs, parameters, and the exact range of MACs "
        "(conv+linear multiply-accumulates, the papers' FLOPs) and params over the space at "
        "224x224 and 1000 classes.",
    )
    q.add_argument("space", metavar="NAME_OR_PATH", help="a shipped space name or a path to a .yaml file")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_describe)


def cmd_list(args: argparse.Namespace) -> int:
    from ghostnas.space import list_spaces, load_space

    rows = []
    for name in list_spaces():
        space = load_space(name)
        rows.append({"name": name, "size": f"{space.size():.3g}", "description": space.description})
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["name", "size", "description"])
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    from ghostnas.space import describe_space

    info = describe_space(args.space)
    if args.json:
        print_json(info)
        return 0
    size = info["size"]
    print(f"space        {info['name']}  ({info['source']})")
    if info["description"]:
        print(f"description  {info['description']}")
    print(f"size         {size:.4g} distinct configs" + (f" ({size:,})" if size < 10**12 else ""))
    print(f"parameters   {len(info['parameters'])} (e.g. {', '.join(info['parameters'][:4])}, ...)")
    widths = info["width"]
    print(f"width        {widths[0]:g}..{widths[-1]:g} ({len(widths)} values)")
    per = " per stage" if info["ghost_per_stage"] else ""
    print(f"s / d        {info['s']} / {info['d']}{per}")
    print(f"depths       {' '.join('/'.join(map(str, d)) for d in info['depth'])}")
    gg = info["g_ghost_stages"]
    print(
        f"block kinds  {', '.join(info['block_kinds'])}"
        + (f"; G-Ghost stage choice in stages {gg}" if gg else "")
    )
    lo, hi = info["macs"]
    print(f"MACs         {lo:,} .. {hi:,}  ({lo / 1e6:.1f}M .. {hi / 1e6:.1f}M at 224x224, 1000 classes)")
    lo, hi = info["params"]
    print(f"params       {lo:,} .. {hi:,}  ({lo / 1e6:.2f}M .. {hi / 1e6:.2f}M)")
    if "reference" in info:
        ref = info["reference"]
        print(f"reference    {ref['macs'] / 1e6:.1f}M MACs, {ref['params'] / 1e6:.2f}M params: {ref['arch']}")
    print("MACs: conv+linear multiply-accumulates (the GhostNet paper's FLOPs)")
    return 0
