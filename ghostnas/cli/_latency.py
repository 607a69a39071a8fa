"""``ghostnas latency``: build the lookup table, measure a model, predict a model's latency."""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

from ghostnas.cli._format import print_json
from ghostnas.cli._models import _positive

DEFAULT_SAMPLES = 50
DEFAULT_FIT = 6


def _add_device_args(p: argparse.ArgumentParser, table: bool = True) -> None:
    from ghostnas.latency import DEFAULT_THREADS

    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time (default cpu)")
    p.add_argument(
        "--threads",
        type=_positive,
        default=DEFAULT_THREADS,
        help=f"intra-op CPU threads, part of the table's device key (default {DEFAULT_THREADS})",
    )
    p.add_argument("--input-size", type=_positive, default=224, help="input side in pixels (default 224)")
    p.add_argument("--batch", type=_positive, default=1, help="images per forward pass (default 1)")
    p.add_argument("--num-classes", type=_positive, default=1000, help="classifier width (default 1000)")
    if table:
        p.add_argument(
            "--table", default=None, help="table file (default $GHOSTNAS_HOME/latency/<device>.json)"
        )
        p.add_argument(
            "--force-table", action="store_true", help="use a table measured on another device anyway"
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "latency",
        help="measure and predict deploy latency (lookup table per device)",
        description="Latency of deploy models (eval, BN folded, batch 1, fixed threads): a per-block "
        "lookup table per device, a predictor built on it, and direct measurement.",
    )
    lsub = p.add_subparsers(dest="latency_command", metavar="ACTION", parser_class=type(p))
    lsub.required = True

    b = lsub.add_parser(
        "build-table",
        help="time every block shape of a search space (or of given models) on this device",
        description="Time each distinct block shape once and fit the whole-network correction. "
        "Shapes already in the table are kept; only missing ones are measured. Run it under the "
        "CPU lock on a shared machine.",
    )
    b.add_argument("--space", default=None, help="search space name or YAML file to sample block shapes from")
    b.add_argument(
        "--samples",
        type=_positive,
        default=DEFAULT_SAMPLES,
        help=f"configs sampled from the space (default {DEFAULT_SAMPLES}); shapes outside them are "
        "measured on demand later",
    )
    b.add_argument("--model", action="append", default=[], help="also cover this model name or config .json")
    b.add_argument(
        "--fit",
        type=_positive,
        default=DEFAULT_FIT,
        help=f"whole networks timed to fit the correction (default {DEFAULT_FIT})",
    )
    b.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    b.add_argument(
        "--rounds",
        type=_positive,
        default=2,
        help="round-robin timings per new block shape, lowest kept (default 2)",
    )
    _add_device_args(b)
    b.set_defaults(func=cmd_build_table)

    m = lsub.add_parser("measure", help="time a model's deploy form on this device")
    m.add_argument("model", help="registered name or config .json")
    m.add_argument("--json", action="store_true", help="print JSON")
    _add_device_args(m, table=False)
    m.set_defaults(func=cmd_measure)

    q = lsub.add_parser("predict", help="predict a model's latency from the table")
    q.add_argument("model", help="registered name or config .json")
    q.add_argument(
        "--measure-missing",
        action="store_true",
        help="time block shapes missing from the table and save them",
    )
    q.add_argument("--blocks", action="store_true", help="also show each part's table latency")
    q.add_argument("--json", action="store_true", help="print JSON")
    _add_device_args(q)
    q.set_defaults(func=cmd_predict)


def _spec(args: argparse.Namespace) -> Any:
    from ghostnas.latency import NetworkSpec

    return NetworkSpec(input_size=args.input_size, batch=args.batch, num_classes=args.num_classes)


def _progress(desc: str) -> Any:
    """A tqdm bar on stderr driven by the predictor's (done, total, key) callback."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int, _key: str) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, unit="block", file=sys.stderr, leave=True)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done == total:
            bar.close()

    return update


def _space_configs(name: str, samples: int, seed: int) -> list[Any]:
    """``samples`` random configs of a search space (a fixed seed makes the table reproducible)."""
    from ghostnas.space import load_space

    space = load_space(name)
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(samples)]


def _space_extremes(name: str) -> list[Any]:
    """The space's reference network at its smallest and largest width, when it has one.

    Random samples cluster in the middle of the latency range; a line fitted on them alone
    overestimates the small networks a latency-seeking search ends up proposing.
    """
    from ghostnas.space import load_space

    space = load_space(name)
    widths = space.width.values()
    out = [space.reference_at_width(w) for w in (widths[0], widths[-1])]
    return [c for c in out if c is not None]


def cmd_build_table(args: argparse.Namespace) -> int:
    from ghostnas.latency import (
        LatencyError,
        LatencyPredictor,
        fit_table,
        open_table,
        part_timer,
        resolve_device,
        save_table,
    )
    from ghostnas.registry import resolve_config

    resolve_device(args.device)
    if args.space is None and not args.model:
        raise LatencyError("build-table: nothing to cover; give --space NAME and/or --model NAME")
    cfgs = [resolve_config(m) for m in args.model]
    fit_cfgs = list(cfgs)
    if args.space is not None:
        cfgs += _space_configs(args.space, args.samples, args.seed)
        # Fitting networks come from another seed, so they are not the covered sample itself,
        # plus the space's extremes so that the line spans the whole latency range.
        fit_cfgs += _space_configs(args.space, args.fit, args.seed + 1_000_003)
        fit_cfgs = fit_cfgs[: max(args.fit, 1)] + _space_extremes(args.space)
    else:
        fit_cfgs = fit_cfgs[: max(args.fit, 1)]
    table, path = open_table(args.device, args.threads, args.table, force=args.force_table, create=True)
    spec = _spec(args)
    predictor = LatencyPredictor(table, spec, part_timer(args.device, args.threads))
    before = len(table.entries)
    measured = predictor.fill(cfgs + fit_cfgs, progress=_progress("timing blocks"), rounds=args.rounds)
    save_table(table, path)  # keep the blocks even if the fit below is interrupted
    fit = fit_table(predictor, fit_cfgs, args.device, args.threads)
    save_table(table, path)
    print(f"table       {path}")
    print(f"blocks      {len(table.entries)} ({measured} measured now, {before} already there)")
    print(
        f"correction  measured = {fit.scale:.4f} x sum + {fit.constant_ms:.3f} ms "
        f"(fitted on {fit.networks} networks, rms {fit.rms_ms:.3f} ms)"
    )
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from ghostnas.latency import device_fingerprint, measure_network, resolve_device
    from ghostnas.registry import resolve_config

    resolve_device(args.device)
    cfg = resolve_config(args.model)
    t = measure_network(cfg, _spec(args), args.device, args.threads)
    info = {
        "model": args.model,
        "latency_ms": t.latency_ms,
        "median_ms": t.median_ms,
        "iqr_ms": t.iqr_ms,
        "calls": t.n,
        "device": device_fingerprint(args.device, args.threads),
    }
    if args.json:
        print_json(info)
    else:
        print(
            f"{args.model}: {t.latency_ms:.3f} ms (20th percentile; median {t.median_ms:.3f}, "
            f"IQR {t.iqr_ms:.3f}, {t.n} calls, {args.device}, {args.threads} thread(s), "
            f"batch {args.batch}, {args.input_size}px)"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ghostnas.latency import open_predictor, save_table
    from ghostnas.registry import resolve_config

    cfg = resolve_config(args.model)
    predictor, path = open_predictor(
        args.device,
        args.threads,
        args.table,
        spec=_spec(args),
        force=args.force_table,
        measure_missing=args.measure_missing,
    )
    table = predictor.table
    if predictor.fill([cfg], progress=_progress("missing blocks") if args.measure_missing else None):
        save_table(table, path)
    parts = predictor.breakdown(cfg)
    info = {
        "model": args.model,
        "latency_ms_predicted": predictor.predict(cfg),
        "sum_of_parts_ms": predictor.sum_parts(cfg),
        "scale": table.scale,
        "constant_ms": table.constant_ms,
        "table": str(path),
    }
    if args.blocks:
        info["parts"] = [{"key": k, "ms": ms} for k, ms in parts]
    if args.json:
        print_json(info)
        return 0
    if args.blocks:
        for k, ms in parts:
            print(f"{ms:9.4f} ms  {k}")
    print(
        f"{args.model}: {info['latency_ms_predicted']:.3f} ms predicted "
        f"({table.scale:.4f} x {info['sum_of_parts_ms']:.3f} ms + {table.constant_ms:.3f} ms; table {path})"
    )
    return 0
