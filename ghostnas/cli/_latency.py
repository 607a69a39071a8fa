"""``ghostnas latency``: build the lookup table, measure a model, predict a model's latency."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from ghostnas.cli._format import positive_int, print_json

DEFAULT_SAMPLES = 50
DEFAULT_FIT = 6


def _add_device_args(p: argparse.ArgumentParser, table: bool = True) -> None:
    from ghostnas.latency import DEFAULT_THREADS

    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time (default cpu)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the deploy model in eager PyTorch or ONNX Runtime (the onnx extra), part of the "
        "table's device key (default torch)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help=f"intra-op CPU threads, part of the table's device key (default {DEFAULT_THREADS})",
    )
    p.add_argument("--input-size", type=positive_int, default=224, help="input side in pixels (default 224)")
    p.add_argument("--batch", type=positive_int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--num-classes", type=positive_int, default=1000, help="classifier width (default 1000)")
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
        type=positive_int,
        default=DEFAULT_SAMPLES,
        help=f"configs sampled from the space (default {DEFAULT_SAMPLES}); shapes outside them are "
        "measured on demand later",
    )
    b.add_argument("--model", action="append", default=[], help="also cover this model name or config .json")
    b.add_argument(
        "--fit",
        type=positive_int,
        default=DEFAULT_FIT,
        help=f"whole networks timed to fit the correction (default {DEFAULT_FIT})",
    )
    b.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    b.add_argument(
        "--rounds",
        type=positive_int,
        default=2,
        help="round-robin timings per new block shape, lowest kept (default 2)",
    )
    b.add_argument(
        "--fit-passes",
        type=positive_int,
        default=3,
        help="timings per fitting network, spread through the block timing, lowest kept (default 3)",
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
    _add_calibration_args(q)
    _add_device_args(q)
    q.set_defaults(func=cmd_predict)


def _add_calibration_args(p: argparse.ArgumentParser) -> None:
    from ghostnas.latency import CALIBRATION_MAX_AGE_S

    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--no-calibration",
        action="store_true",
        help="print the table's line as it is (marked uncalibrated) instead of rescaling it to "
        "this machine's speed now",
    )
    g.add_argument(
        "--recalibrate",
        action="store_true",
        help=f"re-time the reference networks even if timings younger than "
        f"{CALIBRATION_MAX_AGE_S:.0f} s are cached beside the table",
    )


def _spec(args: argparse.Namespace) -> Any:
    from ghostnas.latency import NetworkSpec

    return NetworkSpec(input_size=args.input_size, batch=args.batch, num_classes=args.num_classes)


class _LogProgress:
    """Progress for a log file: one line per ``interval_s`` seconds (and at the start and end).

    A tqdm bar redirected to a file writes every update as a carriage return (thousands in one
    line for a table); a log wants a line now and then. A stand-in until the CLI has one shared
    progress helper (the search's is being written for issue 13): replace this class with it.
    """

    def __init__(self, desc: str, interval_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.desc, self.interval_s, self.stream = desc, interval_s, stream or sys.stderr
        self.start = self.last = -1.0

    def __call__(self, done: int, total: int, _key: str) -> None:
        now = time.monotonic()
        if self.start < 0:
            self.start = now
        elif done < total and now - self.last < self.interval_s:
            return
        self.last = now
        elapsed = now - self.start
        eta = f", about {elapsed / done * (total - done):.0f} s left" if 0 < done < total else ""
        pct = 100 * done / total if total else 100
        print(f"{self.desc}: {done}/{total} ({pct:.0f}%), {elapsed:.0f} s{eta}", file=self.stream, flush=True)


def _progress(desc: str) -> Any:
    """A tqdm bar on a terminal, a line every 30 s in a log, driven by (done, total, key)."""
    if not sys.stderr.isatty():
        return _LogProgress(desc)
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


def cmd_build_table(args: argparse.Namespace) -> int:
    from ghostnas.latency import (
        LatencyPredictor,
        build_table,
        check_backend,
        open_table,
        part_timer,
        resolve_device,
        save_table,
        table_networks,
    )

    resolve_device(args.device)
    check_backend(args.backend, args.device)
    networks = table_networks(args.model, args.space, args.samples, args.fit, args.seed)
    table, path = open_table(
        args.device, args.threads, args.table, force=args.force_table, create=True, backend=args.backend
    )
    predictor = LatencyPredictor(
        table,
        _spec(args),
        part_timer(args.device, args.threads, backend=args.backend),
        device=args.device,
        threads=args.threads,
        backend=args.backend,
    )
    before = len(table.entries)
    measured, fit = build_table(
        predictor,
        networks.covered,
        networks.fitted,
        rounds=args.rounds,
        passes=args.fit_passes,
        progress=_progress("timing blocks"),
        checkpoint=lambda: save_table(table, path),  # keep the blocks even if the fit is interrupted
    )
    save_table(table, path)
    print(f"table       {path}")
    print(f"backend     {table.device.get('backend')}")
    print(f"blocks      {len(table.entries)} ({measured} measured now, {before} already there)")
    print(
        f"correction  measured = {fit.scale:.4f} x sum + {fit.constant_ms:.3f} ms "
        f"(fitted on {fit.networks} networks timed {table.fit.get('timed')}, "
        f"rms {fit.rms_ms:.3f} ms, {fit.rel_rms:.1%})"
    )
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from ghostnas.latency import check_backend, device_fingerprint, measure_network, resolve_device
    from ghostnas.registry import resolve_config

    resolve_device(args.device)
    check_backend(args.backend, args.device)
    cfg = resolve_config(args.model)
    t = measure_network(cfg, _spec(args), args.device, args.threads, backend=args.backend)
    info = {
        "model": args.model,
        "latency_ms": t.latency_ms,
        "median_ms": t.median_ms,
        "iqr_ms": t.iqr_ms,
        "calls": t.n,
        "backend": args.backend,
        "device": device_fingerprint(args.device, args.threads, args.backend),
    }
    if args.json:
        print_json(info)
    else:
        print(
            f"{args.model}: {t.latency_ms:.3f} ms (20th percentile; median {t.median_ms:.3f}, "
            f"IQR {t.iqr_ms:.3f}, {t.n} calls, {args.backend} on {args.device}, {args.threads} thread(s), "
            f"batch {args.batch}, {args.input_size}px)"
        )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ghostnas.latency import open_predictor, save_table, try_calibrate
    from ghostnas.registry import resolve_config

    cfg = resolve_config(args.model)
    predictor, path = open_predictor(
        args.device,
        args.threads,
        args.table,
        spec=_spec(args),
        force=args.force_table,
        measure_missing=args.measure_missing,
        backend=args.backend,
    )
    table = predictor.table
    before = len(table.entries)
    # Calibrate first: its reference networks are timed before any block, in a fresh process.
    cal, why = try_calibrate(predictor, path, enabled=not args.no_calibration, refresh=args.recalibrate)
    predictor.fill([cfg], progress=_progress("missing blocks") if args.measure_missing else None)
    if len(table.entries) != before:
        save_table(table, path)
    est = predictor.estimate(cfg)
    parts = predictor.breakdown(cfg)
    info = {
        "model": args.model,
        **est.to_dict(),
        "uncalibrated_reason": why,
        "scale": table.scale,
        "constant_ms": table.constant_ms,
        "backend": args.backend,
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
    line = (
        f"{args.model}: {est.latency_ms:.3f} +- {est.uncertainty_ms:.3f} ms predicted "
        f"({table.scale:.4f} x {est.sum_of_parts_ms:.3f} ms + {table.constant_ms:.3f} ms"
    )
    if cal is not None:
        print(
            f"{line} = {est.uncalibrated_ms:.3f} ms, x {cal.used_factor:.3f}; {args.backend}; table {path})"
        )
        print(f"  {cal.describe()}")
    else:
        print(f"{line}; {args.backend}; table {path})")
        print(f"  UNCALIBRATED: {why}; session drift (5-15% on a shared VM) is not in the +-")
    return 0
