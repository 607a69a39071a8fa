"""Lookup-table latency predictor: the sum of a network's parts, corrected by a fitted line.

Timing every candidate of a search takes a second each and needs the target device; looking its
parts up in a table takes microseconds. The parts are timed once each in isolation, so the sum
misses what happens between them (Python dispatch of the containers, cache state left by the
previous part); a straight line ``measured = scale * sum + constant`` fitted by least squares on a
few whole networks absorbs most of that. The networks used for fitting must not be the ones used
to judge the predictor (``benchmarks/bench_latency.py`` keeps them apart).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ghostnas.config import GhostNetConfig
from ghostnas.latency._measure import (
    DEFAULT_THREADS,
    LatencyError,
    MeasureSettings,
    Timing,
    fold_bn,
    time_module,
)
from ghostnas.latency._parts import NetworkSpec, Part, deploy_model, network_parts
from ghostnas.latency._table import LatencyTable

__all__ = [
    "Fit",
    "LatencyPredictor",
    "MeasureFn",
    "fit_correction",
    "fit_table",
    "measure_network",
    "open_predictor",
    "parse_latency_ms",
    "part_timer",
]

logger = logging.getLogger(__name__)

MeasureFn = Callable[[Part], Timing]
ProgressFn = Callable[[int, int, str], None]


def part_timer(
    device: str = "cpu", threads: int = DEFAULT_THREADS, settings: MeasureSettings | None = None
) -> MeasureFn:
    """A function that builds one part in deploy form (BN folded, eval) and times it."""

    settings = settings or MeasureSettings()

    def measure(part: Part) -> Timing:
        return time_module(fold_bn(part.build()), part.input_shape, device, threads, settings)

    return measure


def measure_network(
    cfg: GhostNetConfig,
    spec: NetworkSpec | None = None,
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    settings: MeasureSettings | None = None,
) -> Timing:
    """Measured latency of the whole deploy model (eval, BN folded) of ``cfg``."""
    spec = spec or NetworkSpec()
    shape = (spec.batch, spec.in_chans, spec.input_size, spec.input_size)
    return time_module(deploy_model(cfg, spec), shape, device, threads, settings or MeasureSettings())


class LatencyPredictor:
    """Predicts a network's latency from a :class:`LatencyTable`.

    Args:
        table: The table; :meth:`fill` adds to it in place (the caller saves it).
        spec: Input size, batch, channels and classes the table's keys are made for.
        measure: Times a part that is not in the table; None makes a missing part an error.
    """

    def __init__(
        self, table: LatencyTable, spec: NetworkSpec | None = None, measure: MeasureFn | None = None
    ) -> None:
        self.table = table
        self.spec = spec or NetworkSpec()
        self.measure = measure
        self.session_factor = 1.0  # set by calibrate(); never written to the table

    def missing(self, cfgs: Iterable[GhostNetConfig]) -> list[Part]:
        """Distinct parts of ``cfgs`` that the table lacks, in first-seen order."""
        seen: dict[str, Part] = {}
        for cfg in cfgs:
            for part in network_parts(cfg, self.spec):
                if part.key not in self.table.entries and part.key not in seen:
                    seen[part.key] = part
        return list(seen.values())

    def fill(
        self, cfgs: Iterable[GhostNetConfig], progress: ProgressFn | None = None, rounds: int = 1
    ) -> int:
        """Measure every missing part of ``cfgs``; returns how many were measured.

        With ``rounds > 1`` the new parts are timed again in later round-robin passes and each
        keeps its lowest latency: a part timed during a burst of load gets another chance at a
        quiet moment, which is what makes a table built on a shared machine repeatable.
        """
        todo = self.missing(cfgs)
        if todo and self.measure is None:
            raise LatencyError(
                f"latency table lacks {len(todo)} block shape(s) (e.g. {todo[0].key}); run "
                "`ghostnas latency build-table` (or `ghostnas latency predict --measure-missing`)"
            )
        assert self.measure is not None or not todo
        total = len(todo) * max(1, rounds)
        done = 0
        for r in range(max(1, rounds)):
            for part in todo:
                if progress:
                    progress(done, total, part.key)
                t = self.measure(part)  # type: ignore[misc]
                old = self.table.entries.get(part.key)
                if r == 0 or old is None or t.latency_ms < old.latency_ms:
                    self.table.entries[part.key] = t
                done += 1
        if progress and todo:
            progress(total, total, "")
        return len(todo)

    def breakdown(self, cfg: GhostNetConfig) -> list[tuple[str, float]]:
        """(key, table latency in ms) for each part of ``cfg``, measuring missing ones if allowed."""
        self.fill([cfg])
        return [(p.key, self.table.entries[p.key].latency_ms) for p in network_parts(cfg, self.spec)]

    def sum_parts(self, cfg: GhostNetConfig) -> float:
        """Plain sum of the parts' table latencies in ms, without the fitted correction."""
        return math.fsum(ms for _, ms in self.breakdown(cfg))

    def predict(self, cfg: GhostNetConfig) -> float:
        """Predicted latency in ms: ``session_factor * (scale * sum of parts + constant_ms)``."""
        return self.session_factor * (self.table.scale * self.sum_parts(cfg) + self.table.constant_ms)


@dataclass(frozen=True)
class Calibration:
    """How fast this machine runs today compared with when its table was measured.

    Attributes:
        factor: Median of measured / predicted over the reference networks.
        ratios: measured / predicted of each reference network, by name.
        applied: Whether it differs from 1 by more than the tolerance, so that predictions are
            multiplied by it for this session.
    """

    factor: float
    ratios: dict[str, float]
    applied: bool


def calibrate(
    predictor: LatencyPredictor,
    networks: Mapping[str, GhostNetConfig],
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    tolerance: float = 0.03,
    measure: Callable[[GhostNetConfig], float] | None = None,
) -> Calibration:
    """Re-time a few whole networks now and rescale the predictor's output to today's speed.

    A shared virtual machine runs the same code 10-15% faster or slower from one session to the
    next (neighbours, frequency, placement), and a table measured yesterday then predicts every
    network off by that much, in the same direction: exactly what a budget cannot afford. Timing
    the reference networks takes a few seconds; the median ratio of measured to predicted latency
    becomes :attr:`LatencyPredictor.session_factor` (only in memory: the table keeps what was
    measured). Within ``tolerance`` of 1 (the measurement noise) nothing is changed.
    """
    if not networks:
        raise LatencyError("latency calibration needs at least one reference network")
    timer = measure or (lambda cfg: measure_network(cfg, predictor.spec, device, threads).latency_ms)
    before = predictor.session_factor
    predictor.session_factor = 1.0
    try:
        ratios = {name: timer(cfg) / predictor.predict(cfg) for name, cfg in networks.items()}
    finally:
        predictor.session_factor = before
    factor = statistics.median(ratios.values())
    applied = abs(factor - 1) > tolerance
    predictor.session_factor = factor if applied else 1.0
    logger.info(
        "latency calibration: measured/predicted %s -> factor %.3f (%s)",
        ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()),
        factor,
        "applied" if applied else f"within {tolerance:.0%}, not applied",
    )
    return Calibration(factor=factor, ratios=ratios, applied=applied)


def open_predictor(
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    table: str | os.PathLike[str] | None = None,
    *,
    spec: NetworkSpec | None = None,
    force: bool = False,
    measure_missing: bool = True,
) -> tuple[LatencyPredictor, Path]:
    """The predictor for this device, from its table (default location unless ``table``).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        threads: Intra-op CPU threads (part of the table's device key).
        table: Table file; None means this device's default table under ``$GHOSTNAS_HOME``.
        spec: Input size, batch and classes to predict for.
        force: Use a table measured on another device.
        measure_missing: Time block shapes the table lacks (the caller saves the table);
            otherwise a missing shape is a one-line error.

    Returns:
        The predictor and the table's path.

    Raises:
        LatencyError: no table for this device (the message says to run ``ghostnas latency
            build-table``), a corrupt table, or one from another device.
    """
    from ghostnas.latency._measure import resolve_device
    from ghostnas.latency._table import open_table

    resolve_device(device)
    lut, path = open_table(device, threads, table, force=force)
    return LatencyPredictor(lut, spec, part_timer(device, threads) if measure_missing else None), path


@dataclass(frozen=True)
class Fit:
    """A fitted correction ``measured = scale * sum + constant_ms`` and its residual."""

    scale: float
    constant_ms: float
    rms_ms: float
    networks: int


def fit_correction(sums: Sequence[float], measured: Sequence[float]) -> Fit:
    """Least-squares line through (sum of parts, measured) pairs.

    With one network (or all sums equal) only the constant is fitted and the scale stays 1.
    """
    n = len(sums)
    if n == 0 or n != len(measured):
        raise LatencyError("fitting the latency correction needs at least one measured network")
    mx, my = math.fsum(sums) / n, math.fsum(measured) / n
    sxx = math.fsum((x - mx) ** 2 for x in sums)
    if n >= 3 and sxx > 1e-12:
        scale = math.fsum((x - mx) * (y - my) for x, y in zip(sums, measured, strict=True)) / sxx
        if scale <= 0:
            scale = 1.0
    else:
        scale = 1.0
    constant = my - scale * mx
    rms = math.sqrt(
        math.fsum((scale * x + constant - y) ** 2 for x, y in zip(sums, measured, strict=True)) / n
    )
    return Fit(scale=scale, constant_ms=constant, rms_ms=rms, networks=n)


def fit_table(
    predictor: LatencyPredictor,
    cfgs: Sequence[GhostNetConfig],
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    passes: int = 2,
    settings: MeasureSettings | None = None,
) -> Fit:
    """Time whole networks and fit the predictor table's correction to them, in place.

    Each network is timed in ``passes`` interleaved passes (A B C A B C) and its lowest latency
    kept, so a burst of load during one pass does not bend the line.
    """
    if not cfgs:
        raise LatencyError("fitting the latency correction needs at least one network")
    best = [math.inf] * len(cfgs)
    for _ in range(max(1, passes)):
        for i, cfg in enumerate(cfgs):
            t = measure_network(cfg, predictor.spec, device, threads, settings)
            best[i] = min(best[i], t.latency_ms)
    sums = [predictor.sum_parts(cfg) for cfg in cfgs]
    fit = fit_correction(sums, best)
    table = predictor.table
    table.scale, table.constant_ms = fit.scale, fit.constant_ms
    table.fit = {
        "networks": fit.networks,
        "passes": passes,
        "rms_ms": fit.rms_ms,
        "spec": dataclasses.asdict(predictor.spec),
        "models": [c.short() for c in cfgs],
    }
    logger.info(
        "latency fit: measured = %.4f x sum + %.3f ms (rms %.3f ms)", fit.scale, fit.constant_ms, fit.rms_ms
    )
    return fit


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)\s*$")
_UNIT_MS = {"s": 1e3, "ms": 1.0, "us": 1e-3, "µs": 1e-3}


def parse_latency_ms(text: str) -> float:
    """``"20ms"``, ``"500us"``, ``"0.02s"`` to milliseconds; anything else is a one-line error.

    A bare number is refused: ``20`` could mean milliseconds or seconds.
    """
    m = _DURATION.match(text)
    if not m:
        raise LatencyError(
            f"latency {text!r}: expected a positive number with a unit, e.g. 20ms, 500us or 0.02s"
        )
    value = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise LatencyError(f"latency {text!r}: must be a positive, finite duration")
    return value
