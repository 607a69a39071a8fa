"""Lookup-table latency predictor: the sum of a network's parts, corrected by a fitted line,
rescaled to today's speed of the machine, with an uncertainty.

Timing every candidate of a search takes a second each and needs the target device; looking its
parts up in a table takes microseconds. The parts are timed once each in isolation, so the sum
misses what happens between them (Python dispatch of the containers, cache state left by the
previous part); a straight line ``measured = scale * sum + constant`` fitted by least squares on a
few whole networks absorbs most of that. The networks used for fitting must not be the ones used
to judge the predictor (``benchmarks/bench_latency.py`` keeps them apart).

Two things move between building a table and using it, and both are handled here, once, for
every caller (``latency predict``, ``profile --latency``, the search, Python code):

* *The state of the machine.* A shared VM runs the same code 5-15% faster or slower from one
  session to the next, in one direction for every network. :func:`calibrate_session` re-times
  three reference networks (GhostNet 0.5x/1.0x/1.3x, a few seconds), rescales predictions by the
  median measured/predicted ratio, and caches those timings next to the table for
  :data:`CALIBRATION_MAX_AGE_S` seconds so that a run of ``predict`` commands pays once. A
  prediction made without it says so (:attr:`Estimate.calibration`).
* *The state the table's own timing leaves.* Whole networks timed right after a thousand
  blocks ran slower than the same networks timed later in fresh processes (issue 19). So
  :func:`build_table` spreads the fitting networks' timings through the block timing
  (interleaved, lowest kept, like the blocks' own rounds), and the line sees the same mix of
  machine states as the parts it corrects.

Each prediction carries an uncertainty (one standard deviation, relative error): the fit's
relative residual on its networks combined with the calibration factor's standard error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostnas.config import GhostNetConfig
from ghostnas.latency._backend import DEFAULT_BACKEND, check_backend, time_deployed
from ghostnas.latency._measure import (
    DEFAULT_THREADS,
    LatencyError,
    MeasureSettings,
    Timing,
    fold_bn,
)
from ghostnas.latency._parts import NetworkSpec, Part, deploy_model, network_parts
from ghostnas.latency._table import LatencyTable

__all__ = [
    "CALIBRATION_MAX_AGE_S",
    "REFERENCE_NETWORKS",
    "Calibration",
    "Estimate",
    "Fit",
    "LatencyPredictor",
    "MeasureFn",
    "build_table",
    "calibrate",
    "calibrate_session",
    "calibration_cache_path",
    "fit_correction",
    "fit_table",
    "measure_network",
    "open_predictor",
    "parse_latency_ms",
    "part_timer",
    "try_calibrate",
]

logger = logging.getLogger(__name__)

MeasureFn = Callable[[Part], Timing]
ProgressFn = Callable[[int, int, str], None]

REFERENCE_NETWORKS = ("ghostnet_050", "ghostnet_100", "ghostnet_130")
CALIBRATION_MAX_AGE_S = 600.0  # ten minutes: drift between sessions is slow, within a session small
CALIBRATION_TOLERANCE = 0.03  # measurement noise of a factor from three networks
_CALIBRATION_FORMAT = 1


def part_timer(
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    settings: MeasureSettings | None = None,
    backend: str = DEFAULT_BACKEND,
) -> MeasureFn:
    """A function that builds one part in deploy form (BN folded, eval) and times it on ``backend``."""

    settings = settings or MeasureSettings()
    check_backend(backend, device)

    def measure(part: Part) -> Timing:
        return time_deployed(fold_bn(part.build()), part.input_shape, device, threads, settings, backend)

    return measure


def measure_network(
    cfg: GhostNetConfig,
    spec: NetworkSpec | None = None,
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    settings: MeasureSettings | None = None,
    backend: str = DEFAULT_BACKEND,
) -> Timing:
    """Measured latency of the whole deploy model (eval, BN folded) of ``cfg`` on ``backend``."""
    spec = spec or NetworkSpec()
    shape = (spec.batch, spec.in_chans, spec.input_size, spec.input_size)
    return time_deployed(
        deploy_model(cfg, spec), shape, device, threads, settings or MeasureSettings(), backend
    )


@dataclass(frozen=True)
class Calibration:
    """How fast this machine runs now compared with what its table predicts.

    Attributes:
        factor: Median of measured / predicted over the reference networks.
        ratios: measured / predicted of each reference network, by name.
        applied: Whether it differs from 1 by more than the tolerance, so that predictions are
            multiplied by it for this session (otherwise they are used as they are).
        measured_ms: The reference networks' measured latencies, by name.
        spread: Relative standard error of the factor (from the ratios' spread; 0 with one network).
        measured_at: Unix time the reference networks were timed.
        max_age_s: How long those timings are reused (:func:`calibrate_session`).
        from_cache: Whether the timings were read from the cache rather than measured now.
    """

    factor: float
    ratios: dict[str, float]
    applied: bool
    measured_ms: dict[str, float] = field(default_factory=dict)
    spread: float = 0.0
    measured_at: float = 0.0
    max_age_s: float = CALIBRATION_MAX_AGE_S
    from_cache: bool = False

    @property
    def used_factor(self) -> float:
        """The multiplier predictions get: ``factor`` when applied, else 1."""
        return self.factor if self.applied else 1.0

    def describe(self) -> str:
        """One line for a console: factor, whether applied, the timings' age and reuse period."""
        age = max(0.0, time.time() - self.measured_at) if self.measured_at else 0.0
        how = "applied" if self.applied else f"within {CALIBRATION_TOLERANCE:.0%} of 1, not applied"
        src = f"cached {age:.0f} s ago" if self.from_cache else "measured now"
        return (
            f"calibrated: factor {self.factor:.3f} ({how}; {len(self.ratios)} reference networks "
            f"{src}, reused for {self.max_age_s:.0f} s)"
        )


@dataclass(frozen=True)
class Estimate:
    """A prediction as a user gets it.

    Attributes:
        latency_ms: The prediction: calibrated when a calibration was made, else the table's line.
        uncertainty_ms: One standard deviation of ``latency_ms``'s error: the fit's relative
            residual and the calibration factor's standard error, combined in quadrature.
        uncalibrated_ms: The table's line alone, ``scale * sum + constant``.
        sum_of_parts_ms: The plain sum of the parts' table latencies.
        calibration: The calibration used, or None (then ``latency_ms`` is uncalibrated and the
            uncertainty leaves out session drift, typically 5-15% on a shared VM).
    """

    latency_ms: float
    uncertainty_ms: float
    uncalibrated_ms: float
    sum_of_parts_ms: float
    calibration: Calibration | None

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: prediction, uncertainty, uncalibrated value and the calibration record."""
        cal = self.calibration
        return {
            "latency_ms_predicted": self.latency_ms,
            "uncertainty_ms": self.uncertainty_ms,
            "uncertainty_is": "one standard deviation: fit residual and calibration spread in quadrature",
            "latency_ms_uncalibrated": self.uncalibrated_ms,
            "sum_of_parts_ms": self.sum_of_parts_ms,
            "calibrated": cal is not None,
            "calibration": None
            if cal is None
            else dataclasses.asdict(cal) | {"used_factor": cal.used_factor},
        }


class LatencyPredictor:
    """Predicts a network's latency from a :class:`LatencyTable`.

    Args:
        table: The table; :meth:`fill` adds to it in place (the caller saves it).
        spec: Input size, batch, channels and classes the table's keys are made for.
        measure: Times a part that is not in the table; None makes a missing part an error.
        device, threads, backend: Where the table's timings were taken; used to time whole
            networks for calibration (:func:`calibrate_session`).
    """

    def __init__(
        self,
        table: LatencyTable,
        spec: NetworkSpec | None = None,
        measure: MeasureFn | None = None,
        *,
        device: str = "cpu",
        threads: int = DEFAULT_THREADS,
        backend: str = DEFAULT_BACKEND,
    ) -> None:
        self.table = table
        self.spec = spec or NetworkSpec()
        self.measure = measure
        self.device, self.threads, self.backend = device, threads, backend
        self.calibration: Calibration | None = None  # set by calibrate(); never written to the table

    @property
    def session_factor(self) -> float:
        """The multiplier this session's predictions get (1 until a calibration applies one)."""
        return 1.0 if self.calibration is None else self.calibration.used_factor

    def missing(self, cfgs: Iterable[GhostNetConfig]) -> list[Part]:
        """Distinct parts of ``cfgs`` that the table lacks, in first-seen order."""
        seen: dict[str, Part] = {}
        for cfg in cfgs:
            for part in network_parts(cfg, self.spec):
                if part.key not in self.table.entries and part.key not in seen:
                    seen[part.key] = part
        return list(seen.values())

    def fill(
        self,
        cfgs: Iterable[GhostNetConfig],
        progress: ProgressFn | None = None,
        rounds: int = 1,
        between: Callable[[int, int], None] | None = None,
    ) -> int:
        """Measure every missing part of ``cfgs``; returns how many were measured.

        With ``rounds > 1`` the new parts are timed again in later round-robin passes and each
        keeps its lowest latency: a part timed during a burst of load gets another chance at a
        quiet moment, which is what makes a table built on a shared machine repeatable.
        ``between(done, total)`` is called before each timing (and once at the end); the table
        builder uses it to interleave whole-network timings.
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
                if between:
                    between(done, total)
                if progress:
                    progress(done, total, part.key)
                t = self.measure(part)  # type: ignore[misc]
                old = self.table.entries.get(part.key)
                if r == 0 or old is None or t.latency_ms < old.latency_ms:
                    self.table.entries[part.key] = t
                done += 1
        if between:
            between(total, total)
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

    def predict_uncalibrated(self, cfg: GhostNetConfig) -> float:
        """The table's line alone: ``scale * sum of parts + constant_ms``."""
        return self.table.scale * self.sum_parts(cfg) + self.table.constant_ms

    def predict(self, cfg: GhostNetConfig) -> float:
        """Predicted latency in ms: ``session_factor * (scale * sum of parts + constant_ms)``."""
        return self.session_factor * self.predict_uncalibrated(cfg)

    def fit_relative_error(self, at_ms: float) -> float:
        """The fit's relative residual (RMS of (line - measured) / measured on its networks).

        Tables fitted before it was recorded only have the residual in ms; it is then taken
        relative to the prediction at hand.
        """
        fit = self.table.fit
        rel = fit.get("rel_rms")
        if isinstance(rel, (int, float)) and math.isfinite(rel) and rel >= 0:
            return float(rel)
        rms = fit.get("rms_ms")
        if isinstance(rms, (int, float)) and math.isfinite(rms) and rms >= 0 and at_ms > 0:
            return float(rms) / at_ms
        return 0.0

    def estimate(self, cfg: GhostNetConfig) -> Estimate:
        """The prediction with its uncertainty and how it was calibrated (see :class:`Estimate`)."""
        total = self.sum_parts(cfg)
        raw = self.table.scale * total + self.table.constant_ms
        cal = self.calibration
        value = raw * self.session_factor
        rel = math.hypot(self.fit_relative_error(raw), cal.spread if cal is not None else 0.0)
        return Estimate(value, rel * value, raw, total, cal)


def calibrate(
    predictor: LatencyPredictor,
    networks: Mapping[str, GhostNetConfig],
    device: str | None = None,
    threads: int | None = None,
    tolerance: float = CALIBRATION_TOLERANCE,
    measure: Callable[[GhostNetConfig], float] | None = None,
    *,
    measured_ms: Mapping[str, float] | None = None,
) -> Calibration:
    """Compare a few whole networks' latency now with the predictor's and rescale its output.

    A shared virtual machine runs the same code 10-15% faster or slower from one session to the
    next (neighbours, frequency, placement), and a table measured yesterday then predicts every
    network off by that much, in the same direction: exactly what a budget cannot afford. The
    median ratio of measured to predicted latency becomes the predictor's session factor (only
    in memory: the table keeps what was measured). Within ``tolerance`` of 1 (the measurement
    noise) nothing is changed. The networks are timed first, before any missing block of theirs
    is, so they see the process as fresh as it is.

    Args:
        predictor: The predictor to rescale.
        networks: Reference networks by name.
        device, threads: Where to time (default: the predictor's).
        tolerance: Largest ``|factor - 1|`` treated as noise.
        measure: Times a network (ms); default :func:`measure_network` on the predictor's backend.
        measured_ms: The networks' latencies when already known (a cache); nothing is timed.
    """
    if not networks:
        raise LatencyError("latency calibration needs at least one reference network")
    device = device or predictor.device
    threads = threads or predictor.threads

    def default_timer(cfg: GhostNetConfig) -> float:
        return measure_network(cfg, predictor.spec, device, threads, backend=predictor.backend).latency_ms

    timer = measure or default_timer
    if measured_ms is None:
        measured = {name: timer(cfg) for name, cfg in networks.items()}
        at = time.time()
    else:
        measured = {name: float(measured_ms[name]) for name in networks}
        at = 0.0
    ratios = {name: measured[name] / predictor.predict_uncalibrated(cfg) for name, cfg in networks.items()}
    factor = statistics.median(ratios.values())
    spread = 0.0
    if len(ratios) >= 2:
        # standard error of a median: about 1.25 sd / sqrt(n)
        spread = 1.2533 * statistics.stdev(ratios.values()) / math.sqrt(len(ratios)) / factor
    applied = abs(factor - 1) > tolerance
    cal = Calibration(
        factor=factor, ratios=ratios, applied=applied, measured_ms=measured, spread=spread, measured_at=at
    )
    predictor.calibration = cal
    logger.info(
        "latency calibration: measured/predicted %s -> factor %.3f (%s)",
        ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()),
        factor,
        "applied" if applied else f"within {tolerance:.0%}, not applied",
    )
    return cal


def calibration_cache_path(table_path: str | os.PathLike[str]) -> Path:
    """Where :func:`calibrate_session` keeps its reference timings: beside the table."""
    p = Path(table_path)
    return p.with_name(p.stem + ".calibration.json")


def _read_cache(
    path: Path, key: dict[str, Any], names: Sequence[str], max_age_s: float, now: float
) -> tuple[dict[str, float], float] | None:
    """The cached reference timings when they exist, match ``key`` and are younger than ``max_age_s``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None  # a missing or damaged cache is simply re-measured
    if not isinstance(data, dict) or data.get("format") != _CALIBRATION_FORMAT or data.get("key") != key:
        return None
    at, ms = data.get("measured_at"), data.get("measured_ms")
    if not isinstance(at, (int, float)) or not isinstance(ms, dict) or not 0 <= now - at <= max_age_s:
        return None
    if not all(isinstance(ms.get(n), (int, float)) and math.isfinite(ms[n]) and ms[n] > 0 for n in names):
        return None
    return {n: float(ms[n]) for n in names}, float(at)


def calibrate_session(
    predictor: LatencyPredictor,
    cache: str | os.PathLike[str] | None = None,
    *,
    networks: Mapping[str, GhostNetConfig] | None = None,
    max_age_s: float = CALIBRATION_MAX_AGE_S,
    tolerance: float = CALIBRATION_TOLERANCE,
    now: float | None = None,
) -> Calibration:
    """The one calibration every caller uses: reference timings reused for ``max_age_s`` seconds.

    Args:
        predictor: The predictor to rescale (its device, threads, backend and spec are used).
        cache: JSON file for the reference timings (see :func:`calibration_cache_path`); None
            measures every time.
        networks: Reference networks (default GhostNet 0.5x/1.0x/1.3x, :data:`REFERENCE_NETWORKS`).
        max_age_s: How long cached timings are reused; 0 always measures.
        tolerance: See :func:`calibrate`.
        now: The current Unix time (tests).

    Returns:
        The calibration, also stored on the predictor.
    """
    from ghostnas.latency._table import device_fingerprint

    if networks is None:
        from ghostnas.registry import resolve_config

        networks = {n: resolve_config(n) for n in REFERENCE_NETWORKS}
    now = time.time() if now is None else now
    key = {
        "device": device_fingerprint(predictor.device, predictor.threads, predictor.backend),
        "spec": dataclasses.asdict(predictor.spec),
    }
    path = Path(cache) if cache is not None else None
    hit = (
        _read_cache(path, key, list(networks), max_age_s, now) if path is not None and max_age_s > 0 else None
    )
    if hit is not None:
        cal = calibrate(predictor, networks, tolerance=tolerance, measured_ms=hit[0])
        cal = dataclasses.replace(cal, measured_at=hit[1], max_age_s=max_age_s, from_cache=True)
    else:
        cal = calibrate(predictor, networks, tolerance=tolerance)
        cal = dataclasses.replace(cal, measured_at=now, max_age_s=max_age_s)
        if path is not None:
            from ghostnas._io import atomic_write_text

            record = {
                "format": _CALIBRATION_FORMAT,
                "key": key,
                "measured_at": now,
                "measured_ms": cal.measured_ms,
            }
            try:
                atomic_write_text(path, json.dumps(record, indent=1) + "\n")
            except OSError as exc:  # a read-only table folder only costs the next caller a re-timing
                logger.warning("latency calibration: cannot cache timings in %s (%s)", path, exc)
    predictor.calibration = cal
    return cal


def try_calibrate(
    predictor: LatencyPredictor,
    table_path: str | os.PathLike[str] | None,
    *,
    enabled: bool = True,
    refresh: bool = False,
) -> tuple[Calibration | None, str | None]:
    """:func:`calibrate_session` with the cache beside the table, or the reason it was not done.

    For callers that print a prediction either way (``latency predict``, ``profile --latency``):
    a calibration that cannot be made (the table lacks the reference networks' blocks and may not
    time them) leaves the predictor uncalibrated and says why instead of failing.

    Returns:
        The calibration, or None and a one-line reason.
    """
    if not enabled:
        predictor.calibration = None
        return None, "calibration turned off"
    cache = calibration_cache_path(table_path) if table_path is not None else None
    try:
        cal = calibrate_session(predictor, cache, max_age_s=0.0 if refresh else CALIBRATION_MAX_AGE_S)
    except LatencyError as exc:
        predictor.calibration = None
        return None, f"cannot calibrate: {exc}"
    return cal, None


def open_predictor(
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    table: str | os.PathLike[str] | None = None,
    *,
    spec: NetworkSpec | None = None,
    force: bool = False,
    measure_missing: bool = True,
    backend: str = DEFAULT_BACKEND,
) -> tuple[LatencyPredictor, Path]:
    """The predictor for this device and backend, from its table (default location unless ``table``).

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        threads: Intra-op CPU threads (part of the table's device key).
        table: Table file; None means this device's default table under ``$GHOSTNAS_HOME``.
        spec: Input size, batch and classes to predict for.
        force: Use a table measured on another device.
        measure_missing: Time block shapes the table lacks (the caller saves the table);
            otherwise a missing shape is a one-line error.
        backend: ``"torch"`` or ``"onnxruntime"`` (part of the table's device key).

    Returns:
        The predictor (uncalibrated: call :func:`calibrate_session`) and the table's path.

    Raises:
        LatencyError: no table for this device (the message says to run ``ghostnas latency
            build-table``), a corrupt table, or one from another device.
    """
    from ghostnas.latency._measure import resolve_device
    from ghostnas.latency._table import open_table

    resolve_device(device)
    check_backend(backend, device)
    lut, path = open_table(device, threads, table, force=force, backend=backend)
    timer = part_timer(device, threads, backend=backend) if measure_missing else None
    return LatencyPredictor(lut, spec, timer, device=device, threads=threads, backend=backend), path


@dataclass(frozen=True)
class Fit:
    """A fitted correction ``measured = scale * sum + constant_ms`` and its residuals."""

    scale: float
    constant_ms: float
    rms_ms: float
    networks: int
    rel_rms: float = 0.0


def fit_correction(sums: Sequence[float], measured: Sequence[float]) -> Fit:
    """Least-squares line through (sum of parts, measured) pairs.

    With one network (or all sums equal) only the constant is fitted and the scale stays 1.
    ``rel_rms`` is the RMS of the relative residuals ``(line - measured) / measured``, with
    ``n - 2`` degrees of freedom when the slope is fitted (``n - 1`` otherwise) so that a line
    through few networks does not look better than it is.
    """
    n = len(sums)
    if n == 0 or n != len(measured):
        raise LatencyError("fitting the latency correction needs at least one measured network")
    mx, my = math.fsum(sums) / n, math.fsum(measured) / n
    sxx = math.fsum((x - mx) ** 2 for x in sums)
    fitted_slope = n >= 3 and sxx > 1e-12
    if fitted_slope:
        scale = math.fsum((x - mx) * (y - my) for x, y in zip(sums, measured, strict=True)) / sxx
        if scale <= 0:
            scale = 1.0
    else:
        scale = 1.0
    constant = my - scale * mx
    pairs = list(zip(sums, measured, strict=True))
    rms = math.sqrt(math.fsum((scale * x + constant - y) ** 2 for x, y in pairs) / n)
    dof = max(1, n - (2 if fitted_slope else 1))
    rel = math.sqrt(math.fsum(((scale * x + constant - y) / y) ** 2 for x, y in pairs if y > 0) / dof)
    return Fit(scale=scale, constant_ms=constant, rms_ms=rms, networks=n, rel_rms=rel)


def _apply_fit(
    predictor: LatencyPredictor, cfgs: Sequence[GhostNetConfig], best: Sequence[float], passes: int, how: str
) -> Fit:
    sums = [predictor.sum_parts(cfg) for cfg in cfgs]
    fit = fit_correction(sums, best)
    table = predictor.table
    table.scale, table.constant_ms = fit.scale, fit.constant_ms
    table.fit = {
        "networks": fit.networks,
        "passes": passes,
        "timed": how,
        "rms_ms": fit.rms_ms,
        "rel_rms": fit.rel_rms,
        "spec": dataclasses.asdict(predictor.spec),
        "models": [c.short() for c in cfgs],
        "sum_of_parts_ms": sums,
        "measured_ms": list(best),
    }
    logger.info(
        "latency fit: measured = %.4f x sum + %.3f ms (rms %.3f ms, %.1f%%)",
        fit.scale,
        fit.constant_ms,
        fit.rms_ms,
        100 * fit.rel_rms,
    )
    return fit


def fit_table(
    predictor: LatencyPredictor,
    cfgs: Sequence[GhostNetConfig],
    device: str | None = None,
    threads: int | None = None,
    passes: int = 2,
    settings: MeasureSettings | None = None,
) -> Fit:
    """Time whole networks now and fit the predictor table's correction to them, in place.

    Each network is timed in ``passes`` interleaved passes (A B C A B C) and its lowest latency
    kept, so a burst of load during one pass does not bend the line. :func:`build_table` instead
    spreads these timings through the block timing.
    """
    if not cfgs:
        raise LatencyError("fitting the latency correction needs at least one network")
    device = device or predictor.device
    threads = threads or predictor.threads
    best = [math.inf] * len(cfgs)
    for _ in range(max(1, passes)):
        for i, cfg in enumerate(cfgs):
            t = measure_network(cfg, predictor.spec, device, threads, settings, predictor.backend)
            best[i] = min(best[i], t.latency_ms)
    return _apply_fit(predictor, cfgs, best, passes, "after the blocks, interleaved passes")


def build_table(
    predictor: LatencyPredictor,
    cfgs: Sequence[GhostNetConfig],
    fit_cfgs: Sequence[GhostNetConfig],
    *,
    rounds: int = 2,
    passes: int = 3,
    settings: MeasureSettings | None = None,
    progress: ProgressFn | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> tuple[int, Fit]:
    """Time the missing parts of ``cfgs`` and ``fit_cfgs`` and fit the line, with the fitting
    networks' timings spread through the block timing.

    The whole networks are timed ``passes`` times each, round-robin, at evenly spaced moments
    between the part timings (the first pass before any part, the last after all of them), and
    each keeps its lowest latency, as each part keeps its lowest over ``rounds``. Both sides of
    the line thus come from the same stretch of time and the same process state. With no part
    to time, the networks are timed in ``passes`` passes in a row.

    Args:
        predictor: Its table is filled and fitted in place; its device, threads and backend are used.
        cfgs: Networks whose parts to cover.
        fit_cfgs: Networks to fit the line on (their parts are covered too).
        rounds: Timings per new part, lowest kept.
        passes: Timings per fitting network, lowest kept.
        settings: Measurement settings for the whole networks.
        progress: ``(done, total, key)`` after each part timing.
        checkpoint: Called once the parts are timed, before the fit (the CLI saves the table).

    Returns:
        How many parts were measured, and the fit.
    """
    if not fit_cfgs:
        raise LatencyError("fitting the latency correction needs at least one network")
    passes = max(1, passes)
    schedule = [(p, i) for p in range(passes) for i in range(len(fit_cfgs))]
    best = [math.inf] * len(fit_cfgs)
    state = {"next": 0}

    def time_fit_network() -> None:
        i = schedule[state["next"]][1]
        state["next"] += 1
        t = measure_network(
            fit_cfgs[i], predictor.spec, predictor.device, predictor.threads, settings, predictor.backend
        )
        best[i] = min(best[i], t.latency_ms)

    def between(done: int, total: int) -> None:
        # timing j of S is due after j * total / (S - 1) part timings: the first before any
        # part, the last after all of them, the others evenly spaced in between
        n = len(schedule)
        while state["next"] < n:
            due = total if n == 1 else state["next"] * total / (n - 1)
            if due > done:
                break
            time_fit_network()

    measured = predictor.fill(list(cfgs) + list(fit_cfgs), progress=progress, rounds=rounds, between=between)
    while state["next"] < len(schedule):  # nothing was missing: time the passes now
        time_fit_network()
    if checkpoint:
        checkpoint()
    how = "interleaved with the block timing" if measured else "in a row (no block was missing)"
    return measured, _apply_fit(predictor, fit_cfgs, best, passes, how)


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
