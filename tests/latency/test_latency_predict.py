"""Latency: the predictor: sums of parts plus a fitted correction, calibration, uncertainty, the table builder, latency budgets parsed (:mod:`ghostnas.latency._predict`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ghostnas.latency import (
    LatencyError,
    LatencyPredictor,
    LatencyTable,
    NetworkSpec,
    Timing,
    device_fingerprint,
    fit_correction,
    network_parts,
    parse_latency_ms,
)
from ghostnas.registry import resolve_config
from tests.latency.stubs import SMALL, TINY, NetTimer, StubTimer, stub_part_timer, stub_predictor

# ------------------------------------------------------------------------------------------
# the predictor


def test_predictor_sums_parts_plus_correction() -> None:
    stub = StubTimer()
    table = LatencyTable(device={"d": 1}, constant_ms=0.7, scale=1.25)
    pred = LatencyPredictor(table, SMALL, stub)
    keys = [p.key for p in network_parts(TINY, SMALL)]
    expected_sum = math.fsum(stub(p).latency_ms for p in network_parts(TINY, SMALL))
    stub.calls.clear()
    assert pred.sum_parts(TINY) == pytest.approx(expected_sum)
    assert pred.predict(TINY) == pytest.approx(1.25 * expected_sum + 0.7)
    assert sorted(stub.calls) == sorted(set(keys))  # each distinct part measured once
    stub.calls.clear()
    pred.predict(TINY)
    assert stub.calls == []  # then served from the table


def test_predictor_measures_only_missing_parts() -> None:
    stub = StubTimer()
    parts = network_parts(TINY, SMALL)
    table = LatencyTable(device={"d": 1}, entries={parts[0].key: Timing(9.0, 0.0, 1, 9.0)})
    pred = LatencyPredictor(table, SMALL, stub)
    assert pred.fill([TINY, TINY]) == len({p.key for p in parts}) - 1
    assert parts[0].key not in stub.calls
    assert table.entries[parts[0].key].latency_ms == 9.0


def test_fill_rounds_keep_the_lowest_timing() -> None:
    values = iter([2.0, 1.0, 3.0])

    def timer(part: object) -> Timing:
        ms = next(values)
        return Timing(ms, 0.0, 1, ms)

    parts = network_parts(TINY, SMALL)
    known = {p.key: Timing(1.0, 0.0, 1, 1.0) for p in parts[1:]}
    pred = LatencyPredictor(LatencyTable(device={"d": 1}, entries=known), SMALL, timer)
    assert pred.fill([TINY], rounds=3) == 1
    assert pred.table.entries[parts[0].key].latency_ms == 1.0  # min of 2.0, 1.0, 3.0


def test_missing_parts_without_a_timer_is_a_one_line_error() -> None:
    pred = LatencyPredictor(LatencyTable(device={"d": 1}), SMALL, measure=None)
    with pytest.raises(LatencyError, match="build-table") as info:
        pred.predict(TINY)
    assert "\n" not in str(info.value)


def test_fit_correction_recovers_a_line() -> None:
    sums = [1.0, 2.0, 4.0, 8.0]
    fit = fit_correction(sums, [1.2 * s + 0.5 for s in sums])
    assert fit.scale == pytest.approx(1.2) and fit.constant_ms == pytest.approx(0.5)
    assert fit.rms_ms == pytest.approx(0.0, abs=1e-9)
    one = fit_correction([3.0], [4.0])
    assert one.scale == 1.0 and one.constant_ms == pytest.approx(1.0)
    with pytest.raises(LatencyError):
        fit_correction([], [])


# ------------------------------------------------------------------------------------------
# budgets and accuracy figures


@pytest.mark.parametrize(
    ("text", "ms"),
    [("20ms", 20.0), ("20 ms", 20.0), ("500us", 0.5), ("500µs", 0.5), ("0.02s", 20.0), ("1.5e1ms", 15.0)],
)
def test_parse_latency(text: str, ms: float) -> None:
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["20", "-5ms", "0ms", "abc", "20 mins", "ms", "1e999ms", ""])
def test_parse_latency_rejects(text: str) -> None:
    with pytest.raises(LatencyError) as info:
        parse_latency_ms(text)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------
# one calibrated prediction path: cache, uncertainty, the table builder's interleaved fit


def test_calibrate_session_reuses_timings_for_max_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghostnas.latency._predict as predict_mod
    from ghostnas.latency import calibrate_session

    timer = NetTimer(1.2)
    monkeypatch.setattr(predict_mod, "measure_network", timer)
    nets = {"a": TINY, "b": TINY}
    cache = tmp_path / "t.calibration.json"
    pred = stub_predictor()
    first = calibrate_session(pred, cache, networks=nets, max_age_s=600, now=1000.0)
    assert not first.from_cache and len(timer.calls) == 2 and first.measured_at == 1000.0
    assert first.applied and pred.predict(TINY) == pytest.approx(1.2 * pred.predict_uncalibrated(TINY))
    # a fresh process (new predictor) within the age: no timing, same factor, marked cached
    again = calibrate_session(stub_predictor(), cache, networks=nets, max_age_s=600, now=1500.0)
    assert again.from_cache and len(timer.calls) == 2 and again.factor == pytest.approx(first.factor)
    # too old, another input size, a damaged file, or max age 0: timed again
    calibrate_session(stub_predictor(), cache, networks=nets, max_age_s=600, now=1601.0)
    assert len(timer.calls) == 4
    calibrate_session(stub_predictor(NetworkSpec(input_size=64)), cache, networks=nets, now=1602.0)
    assert len(timer.calls) == 6
    cache.write_text("{")
    calibrate_session(stub_predictor(), cache, networks=nets, now=1603.0)
    assert len(timer.calls) == 8 and json.loads(cache.read_text())["measured_at"] == 1603.0
    calibrate_session(stub_predictor(), cache, networks=nets, max_age_s=0, now=1604.0)
    assert len(timer.calls) == 10


def test_estimate_carries_uncertainty_and_calibration() -> None:
    from ghostnas.latency import calibrate

    pred = stub_predictor()
    raw = pred.predict_uncalibrated(TINY)
    plain = pred.estimate(TINY)
    assert not plain.calibrated and plain.latency_ms == raw == plain.uncalibrated_ms
    assert plain.uncertainty_ms == pytest.approx(0.04 * raw)  # the fit's relative residual only
    assert plain.to_dict()["calibration"] is None
    measured = iter([1.10 * raw, 1.20 * raw, 1.30 * raw])
    cal = calibrate(pred, {"a": TINY, "b": TINY, "c": TINY}, measure=lambda cfg: next(measured))
    assert cal.factor == pytest.approx(1.2)
    assert cal.spread == pytest.approx(1.2533 * 0.1 / math.sqrt(3) / 1.2)
    est = pred.estimate(TINY)
    assert est.latency_ms == pytest.approx(1.2 * raw) and est.uncalibrated_ms == pytest.approx(raw)
    assert est.uncertainty_ms == pytest.approx(math.hypot(0.04, cal.spread) * 1.2 * raw)
    d = est.to_dict()
    assert d["calibrated"] and d["calibration"]["used_factor"] == pytest.approx(1.2)
    # an old table with only an rms in ms: relative to the prediction at hand
    pred.table.fit = {"rms_ms": 0.5}
    assert pred.fit_relative_error(10.0) == pytest.approx(0.05)


def test_fit_correction_relative_residual() -> None:
    sums, measured = [1.0, 2.0, 3.0, 4.0], [2.0, 2.9, 4.1, 5.0]
    fit = fit_correction(sums, measured)
    line = [fit.scale * x + fit.constant_ms for x in sums]
    rel = math.sqrt(sum(((p - m) / m) ** 2 for p, m in zip(line, measured, strict=True)) / 2)
    assert fit.rel_rms == pytest.approx(rel) and fit.rel_rms > 0


def test_try_calibrate_says_why_not() -> None:
    from ghostnas.latency import try_calibrate

    pred = LatencyPredictor(LatencyTable(device=device_fingerprint("cpu", 1)), measure=None)
    cal, why = try_calibrate(pred, None)
    assert cal is None and why is not None and "lacks" in why and "\n" not in why
    assert try_calibrate(pred, None, enabled=False) == (None, "calibration turned off")
    assert pred.session_factor == 1.0


def test_build_table_spreads_fit_timings_through_block_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ghostnas.latency._predict as predict_mod
    from ghostnas.latency import build_table

    events: list[str] = []
    stub = stub_part_timer()

    def part(p: object) -> Timing:
        events.append("part")
        return stub(p)

    values = iter([5.0, 7.0, 4.0, 8.0, 6.0, 9.0])  # pass 1: a, b; pass 2: a, b; pass 3: a, b

    def network(cfg: object, *_a: object, **_k: object) -> Timing:
        events.append("net")
        ms = next(values)
        return Timing(ms, 0.0, 1, ms)

    monkeypatch.setattr(predict_mod, "measure_network", network)
    other = resolve_config("ghostnet_tiny").with_width(1.5)
    pred = LatencyPredictor(LatencyTable(device={"d": 1}), SMALL, part)
    measured, fit = build_table(pred, [TINY], [TINY, other], rounds=2, passes=3)
    assert measured == len(pred.table.entries) and events.count("net") == 6
    assert events[0] == "net" and events[-1] == "net"  # before the first part, after the last
    parts_before = [events[:i].count("part") for i, e in enumerate(events) if e == "net"]
    assert len(set(parts_before)) >= 4  # spread, not bunched at the ends
    assert pred.table.fit["networks"] == 2 and pred.table.fit["passes"] == 3
    assert "interleaved" in pred.table.fit["timed"]
    # each network keeps its lowest timing: a = min(5, 4, 6), b = min(7, 8, 9)
    sums = [pred.sum_parts(TINY), pred.sum_parts(other)]
    assert fit == fit_correction(sums, [4.0, 7.0])
