"""Latency: BN folding, part keys, the JSON table, the predictor and the CLI's error paths.

Nothing here asserts a timing: the predictor is driven by a stub measurement function and the
timer by a fake clock, so the tests are fast and deterministic.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from ghostnas.cli import main
from ghostnas.config import config_from_dict
from ghostnas.latency import (
    LatencyError,
    LatencyPredictor,
    LatencyTable,
    MeasureSettings,
    NetworkSpec,
    Timing,
    accuracy_report,
    clock_name,
    default_table_path,
    device_fingerprint,
    fit_correction,
    fold_bn,
    kendall_tau,
    load_table,
    network_parts,
    open_table,
    parse_latency_ms,
    resolve_device,
    save_table,
    thread_count,
    time_callable,
)
from ghostnas.models.ghostnet import GhostNet
from ghostnas.registry import resolve_config

TINY = resolve_config("ghostnet_tiny")
SMALL = NetworkSpec(input_size=32)


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


# ------------------------------------------------------------------------------------------
# measurement


@pytest.mark.parametrize("name", ["ghostnet_tiny", "ghostnet_050"])
def test_fold_bn_preserves_outputs(name: str) -> None:
    model = GhostNet(resolve_config(name), num_classes=10).eval()
    _randomize_bn(model)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original is untouched"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()


def test_time_callable_uses_the_injected_clock() -> None:
    now = [0.0]
    durations = iter([0.001] * 3 + [0.002] * 1000)  # warm-up calls 1 ms, then 2 ms each

    def fn() -> None:
        now[0] += next(durations)

    t = time_callable(fn, MeasureSettings(warmup_s=0.0, blocks=5, min_block_s=0.004), clock=lambda: now[0])
    # blocks are sized from the fastest warm-up call: 4 calls per block
    assert t.n == 20
    assert t.median_ms == pytest.approx(2.0)
    assert t.p20_ms == pytest.approx(2.0)
    assert t.iqr_ms == pytest.approx(0.0)
    assert t.latency_ms == t.p20_ms


def test_time_callable_low_quantile_ignores_slow_blocks() -> None:
    now = [0.0]
    costs = iter([0.001] * 3 + [0.001, 0.001, 0.001, 0.001, 0.009, 0.001, 0.009, 0.001, 0.001, 0.009])

    def fn() -> None:
        now[0] += next(costs)

    t = time_callable(fn, MeasureSettings(warmup_s=0.0, blocks=10, min_block_s=0.0005), clock=lambda: now[0])
    assert t.latency_ms == pytest.approx(1.0)
    assert t.iqr_ms > 0


def test_thread_count_is_restored() -> None:
    before = torch.get_num_threads()
    with thread_count(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_measure_settings_are_checked() -> None:
    with pytest.raises(LatencyError):
        MeasureSettings(blocks=1)


def test_clock_and_device_choice() -> None:
    assert clock_name("cpu", 1) == "thread-cpu"
    assert clock_name("cpu", 2) == "wall"
    assert clock_name("cuda", 1) == "wall"
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(LatencyError, match="unknown"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LatencyError, match="CUDA is not available"):
            resolve_device("cuda")


# ------------------------------------------------------------------------------------------
# parts and keys


def test_parts_cover_the_network_and_keys_are_stable() -> None:
    parts = network_parts(TINY, SMALL)
    assert len(parts) == TINY.num_blocks + 2
    assert [p.key for p in parts] == [p.key for p in network_parts(TINY, SMALL)]
    # The key format is a stored contract: tables written by earlier runs must still match.
    assert parts[0].key == "stem|b1|r32|i3|o8|st2|relu"
    assert parts[1].key == "ghost|b1|r16|i8|m8|o8|k3|st1|se0|s2|d3|relu"
    assert parts[-1].key == "head|b1|r4|i20|f48|h64|c1000|relu"
    assert network_parts(TINY, NetworkSpec(input_size=64))[1].key != parts[1].key


def test_parts_chained_reproduce_the_network() -> None:
    """Each part, built on its own, takes the shape the previous one produced; with the model's
    weights copied in, the chain computes exactly what the network computes."""
    net = GhostNet(TINY, num_classes=1000).eval()
    _randomize_bn(net)
    parts = network_parts(TINY, SMALL)
    modules = [p.build().eval() for p in parts]
    blocks = [b for st in net.stages for b in st]
    for module, block in zip(modules[1:-1], blocks, strict=True):
        module.load_state_dict(block.state_dict())
    modules[0].load_state_dict(
        {k: v for k, v in net.state_dict().items() if k.startswith(("conv_stem", "bn1"))}
    )
    modules[-1].net.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = x
        for part, module in zip(parts, modules, strict=True):
            assert tuple(y.shape) == part.input_shape
            y = module(y)
        assert torch.allclose(y, net(x), atol=1e-5)


# ------------------------------------------------------------------------------------------
# the table


def _table(**device: object) -> LatencyTable:
    fp = device_fingerprint("cpu", 1) | device
    return LatencyTable(
        device=fp,
        entries={"ghost|x": Timing(1.5, 0.1, 30, 1.4), "stem|y": Timing(0.25, 0.01, 100, None)},
        constant_ms=0.5,
        scale=1.1,
        fit={"networks": 3},
    )


def test_table_round_trip(tmp_path: Path) -> None:
    table = _table()
    save_table(table, tmp_path / "t.json")
    back = load_table(tmp_path / "t.json", device_fingerprint("cpu", 1))
    assert back == table
    assert back.entries["stem|y"].latency_ms == 0.25  # no p20 recorded: falls back to the median
    assert list(json.loads((tmp_path / "t.json").read_text())["entries"]) == sorted(table.entries)


def test_table_from_another_device_is_refused(tmp_path: Path) -> None:
    save_table(_table(threads=2), tmp_path / "t.json")
    with pytest.raises(LatencyError, match="another device") as info:
        load_table(tmp_path / "t.json", device_fingerprint("cpu", 1))
    assert "threads" in str(info.value) and "\n" not in str(info.value)
    assert load_table(tmp_path / "t.json", device_fingerprint("cpu", 1), force=True).scale == 1.1


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": 1',  # truncated
        "[1, 2]",
        '{"format": 2, "device": {"a": 1}, "entries": {}}',
        '{"format": 1, "device": {}, "entries": {}}',
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": NaN, "iqr_ms": 0, "n": 1}}}',
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": "1", "iqr_ms": 0, "n": 1}}}',
        '{"format": 1, "device": {"a": 1}, "entries": {}, "scale": 0}',
    ],
)
def test_corrupt_tables_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(LatencyError) as info:
        load_table(path)
    assert "\n" not in str(info.value)


def test_missing_table_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    fp = device_fingerprint("cpu", 1)
    assert default_table_path(fp).parent == tmp_path / "latency"
    assert default_table_path(fp) != default_table_path(device_fingerprint("cpu", 2))
    with pytest.raises(LatencyError, match="build-table"):
        open_table("cpu", 1)
    table, path = open_table("cpu", 1, create=True)
    assert table.entries == {} and path == default_table_path(fp)


# ------------------------------------------------------------------------------------------
# the predictor


class _StubTimer:
    """Deterministic 'measurement': latency from the key's text; records what was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, part: object) -> Timing:
        key = part.key  # type: ignore[attr-defined]
        self.calls.append(key)
        ms = 0.01 * (len(key) % 17 + 1)
        return Timing(ms, 0.0, 1, ms)


def test_predictor_sums_parts_plus_correction() -> None:
    stub = _StubTimer()
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
    stub = _StubTimer()
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


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # tau-b with a tie in y: concordant 2, discordant 0, ties_y 1 -> 2 / sqrt(3 * 2)
    assert kendall_tau([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1], [1, 2]))


def test_accuracy_report() -> None:
    rep = accuracy_report([1.05, 2.5, 2.9], [1.0, 2.0, 3.0])
    assert rep["within"] == pytest.approx(2 / 3)
    assert rep["mape"] == pytest.approx((0.05 + 0.25 + 0.1 / 3) / 3)
    assert rep["kendall_tau"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# the command line: bad input is one line on stderr and exit status 2


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["latency", "predict", "ghostnet_tiny"],  # no table yet
        ["latency", "predict", "ghostnet_tiny", "--table", "nowhere.json"],
        ["latency", "predict", "no_such_model"],
        ["latency", "build-table"],  # nothing to cover
        ["latency", "build-table", "--model", "ghostnet_tiny", "--threads", "0"],
        ["latency", "measure", "ghostnet_tiny", "--batch", "x"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(argv, capsys)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_corrupt_and_foreign_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "dev')
    rc, _, err = _run(["latency", "predict", "ghostnet_tiny", "--table", str(bad)], capsys)
    assert rc == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1

    foreign = tmp_path / "foreign.json"
    save_table(_table(cpu="Some Other CPU"), foreign)
    rc, _, err = _run(["latency", "predict", "ghostnet_tiny", "--table", str(foreign)], capsys)
    assert rc == 2 and "another device" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cli_cuda_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["latency", "measure", "ghostnet_tiny", "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA is not available" in err


def test_cli_build_then_predict_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end on ghostnet_tiny at 32px (about two seconds of real, unasserted timing)."""
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    rc, out, err = _run(
        ["latency", "build-table", "--model", "ghostnet_tiny", "--input-size", "32", "--fit", "1"], capsys
    )
    assert rc == 0 and "blocks      6 (6 measured now" in out
    # stderr is not a terminal here: progress is whole lines (first and last), no carriage returns
    assert "\r" not in err and "timing blocks: 0/12" in err and "timing blocks: 12/12" in err
    table = load_table(default_table_path(device_fingerprint("cpu", 1)), device_fingerprint("cpu", 1))
    assert set(table.entries) == {p.key for p in network_parts(TINY, SMALL)}
    rc, out, _ = _run(["latency", "predict", "ghostnet_tiny", "--input-size", "32", "--json"], capsys)
    info = json.loads(out)
    assert rc == 0
    assert info["latency_ms_predicted"] == pytest.approx(
        table.scale * info["sum_of_parts_ms"] + table.constant_ms
    )
    # a --model table lacks the reference networks' blocks: plainly uncalibrated, and why
    assert info["calibrated"] is False and info["calibration"] is None
    assert "lacks" in info["uncalibrated_reason"]
    assert info["latency_ms_predicted"] == info["latency_ms_uncalibrated"]
    # another input size has other keys: refused without --measure-missing
    rc, _, err = _run(["latency", "predict", "ghostnet_tiny", "--input-size", "64"], capsys)
    assert rc == 2 and "lacks" in err

    rc, out, _ = _run(
        ["profile", "ghostnet_tiny", "--input-size", "32", "--latency", "--no-calibration", "--json"], capsys
    )
    info = json.loads(out)
    assert rc == 0 and info["latency_ms_predicted"] > 0 and info["latency_ms_measured"] > 0
    assert info["latency_device"] == device_fingerprint("cpu", 1)
    assert not info["latency_calibrated"] and info["latency_uncalibrated_reason"]


def test_cli_build_table_from_a_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghostnas.space import load_space

    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    argv = ["latency", "build-table", "--space", "tiny", "--samples", "2", "--fit", "1", "--rounds", "1"]
    rc, out, _ = _run([*argv, "--input-size", "32", "--table", str(tmp_path / "t.json")], capsys)
    assert rc == 0, out
    table = load_table(tmp_path / "t.json")
    rng = random.Random(0)
    space = load_space("tiny")
    for cfg in (space.sample(rng), space.sample(rng)):
        assert {p.key for p in network_parts(cfg, SMALL)} <= set(table.entries)


def test_cli_profile_latency_without_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    rc, out, err = _run(["profile", "ghostnet_tiny", "--latency"], capsys)
    assert rc == 2 and out == "" and "build-table" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# the search: latency budgets and objectives (stub timings, so nothing real is timed)


def _stub_part_timer(*_args: object, **_kw: object) -> object:
    """Stands in for ``part_timer``: a part's 'latency' grows with its widths, 0.01 ms a channel."""
    import re

    def measure(part: object) -> Timing:
        widths = [int(v) for v in re.findall(r"\|[imof](\d+)", part.key)]  # type: ignore[attr-defined]
        ms = 0.01 * sum(widths)
        return Timing(ms, 0.0, 1, ms)

    return measure


def test_candidate_costs_and_objectives_take_latency() -> None:
    from ghostnas.budget import candidate_costs, parse_budget, parse_objectives

    costs = candidate_costs(TINY, latency=lambda cfg: 3.5)
    assert costs["latency_ms"] == 3.5 and costs["macs"] > 0
    assert "latency_ms" not in candidate_costs(TINY)
    assert [o.name for o in parse_objectives("accuracy,latency")] == ["accuracy", "latency_ms"]
    assert parse_budget("20ms").metric == "latency_ms" and parse_budget("500us").limit == 0.5


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_search_under_a_latency_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    import ghostnas.latency._predict as predict_mod
    from ghostnas.budget import parse_budget
    from ghostnas.search import SearchSettings, run_search

    monkeypatch.setattr(predict_mod, "part_timer", _stub_part_timer)
    fp = device_fingerprint("cpu", 1, backend)
    save_table(LatencyTable(device=fp, constant_ms=0.25), default_table_path(fp))
    budget = parse_budget("9ms")
    settings = SearchSettings(
        budget=budget,
        space="tiny",
        trials=6,
        evaluator="fake",
        objectives="accuracy,latency",
        out=str(tmp_path / "run"),
        latency_calibration=False,
        latency_backend=backend,
    )
    result = run_search(settings)
    assert result.evaluated == 6
    assert result.pareto and all(r["latency_ms_predicted"] <= 9.0 for r in result.pareto)
    rows = (tmp_path / "run" / "trials.csv").read_text().splitlines()
    assert "latency_ms" in rows[0]
    # blocks timed during the search were saved to the table for the next run
    assert load_table(default_table_path(fp), fp).entries


def test_search_latency_budget_without_a_table_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = _run(["search", "--budget", "20ms", "--evaluator", "fake", "--trials", "2"], capsys)
    assert rc == 2 and out == "" and "build-table" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    bad = tmp_path / "t.json"
    bad.write_text("{")
    rc, _, err = _run(["search", "--budget", "20ms", "--latency-table", str(bad), "--trials", "2"], capsys)
    assert rc == 2 and "corrupt" in err
    for budget in ("20", "-1ms", "0us", "20 minutes", "infms"):
        rc, _, err = _run(["search", "--budget", budget, "--trials", "2"], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, budget


def test_calibration_rescales_predictions_for_the_session_only(tmp_path: Path) -> None:
    from ghostnas.latency import calibrate

    fp = device_fingerprint("cpu", 1)
    table = LatencyTable(device=fp, constant_ms=0.25)
    pred = LatencyPredictor(table, measure=_stub_part_timer())
    base = pred.predict(TINY)
    nets = {"a": TINY, "b": TINY, "c": TINY}
    slower = calibrate(pred, nets, measure=lambda cfg: 1.2 * base)
    assert slower.applied and slower.factor == pytest.approx(1.2)
    assert pred.predict(TINY) == pytest.approx(1.2 * base)
    assert (table.scale, table.constant_ms) == (1.0, 0.25)  # the table keeps what was measured
    save_table(table, tmp_path / "t.json")
    assert load_table(tmp_path / "t.json", fp).constant_ms == 0.25
    # re-calibrating judges the table itself, not the previous session factor
    same = calibrate(pred, nets, measure=lambda cfg: 1.01 * base)
    assert not same.applied and same.factor == pytest.approx(1.01)
    assert pred.predict(TINY) == pytest.approx(base)
    with pytest.raises(LatencyError, match="reference network"):
        calibrate(pred, {})


def test_latency_search_calibrates_and_records_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ghostnas.latency._predict as predict_mod
    from ghostnas.budget import parse_budget
    from ghostnas.search import SearchSettings, run_search

    monkeypatch.setattr(predict_mod, "part_timer", _stub_part_timer)
    fp = device_fingerprint("cpu", 1)
    save_table(LatencyTable(device=fp, constant_ms=0.25), default_table_path(fp))
    probe = LatencyPredictor(LatencyTable(device=fp, constant_ms=0.25), measure=_stub_part_timer())

    def slow_machine(cfg: object, *_a: object, **_k: object) -> Timing:
        ms = 1.5 * probe.predict(cfg)  # today this machine runs 1.5x slower than its table says
        return Timing(ms, 0.0, 1, ms)

    monkeypatch.setattr(predict_mod, "measure_network", slow_machine)
    settings = SearchSettings(
        budget=parse_budget("9ms"),
        space="tiny",
        trials=4,
        evaluator="fake",
        objectives="accuracy,latency",
        out=str(tmp_path / "run"),
    )
    result = run_search(settings)
    cal = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["latency_calibration"]
    assert cal["applied"] and cal["factor"] == pytest.approx(1.5)
    assert set(cal["ratios"]) == {"ghostnet_050", "ghostnet_100", "ghostnet_130"}
    for row in result.pareto:
        assert row["latency_ms_predicted"] == pytest.approx(
            slow_machine(config_from_dict(row["config"])).median_ms
        )
        assert row["latency_ms_predicted"] <= 9.0


# ------------------------------------------------------------------------------------------
# one calibrated prediction path: cache, uncertainty, the table builder's interleaved fit


class _NetTimer:
    """Stands in for ``measure_network``: a 'machine' ``speed`` times slower than the stub table."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.calls: list[object] = []
        self.probe = LatencyPredictor(
            LatencyTable(device={"d": 1}, constant_ms=0.25), measure=_stub_part_timer()
        )

    def __call__(self, cfg: object, *_a: object, **_k: object) -> Timing:
        self.calls.append(cfg)
        ms = self.speed * self.probe.predict(cfg)
        return Timing(ms, 0.0, 1, ms)


def _stub_predictor(spec: NetworkSpec | None = None) -> LatencyPredictor:
    table = LatencyTable(device=device_fingerprint("cpu", 1), constant_ms=0.25, fit={"rel_rms": 0.04})
    return LatencyPredictor(table, spec, _stub_part_timer())


def test_calibrate_session_reuses_timings_for_max_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ghostnas.latency._predict as predict_mod
    from ghostnas.latency import calibrate_session

    timer = _NetTimer(1.2)
    monkeypatch.setattr(predict_mod, "measure_network", timer)
    nets = {"a": TINY, "b": TINY}
    cache = tmp_path / "t.calibration.json"
    pred = _stub_predictor()
    first = calibrate_session(pred, cache, networks=nets, max_age_s=600, now=1000.0)
    assert not first.from_cache and len(timer.calls) == 2 and first.measured_at == 1000.0
    assert first.applied and pred.predict(TINY) == pytest.approx(1.2 * pred.predict_uncalibrated(TINY))
    # a fresh process (new predictor) within the age: no timing, same factor, marked cached
    again = calibrate_session(_stub_predictor(), cache, networks=nets, max_age_s=600, now=1500.0)
    assert again.from_cache and len(timer.calls) == 2 and again.factor == pytest.approx(first.factor)
    # too old, another input size, a damaged file, or max age 0: timed again
    calibrate_session(_stub_predictor(), cache, networks=nets, max_age_s=600, now=1601.0)
    assert len(timer.calls) == 4
    calibrate_session(_stub_predictor(NetworkSpec(input_size=64)), cache, networks=nets, now=1602.0)
    assert len(timer.calls) == 6
    cache.write_text("{")
    calibrate_session(_stub_predictor(), cache, networks=nets, now=1603.0)
    assert len(timer.calls) == 8 and json.loads(cache.read_text())["measured_at"] == 1603.0
    calibrate_session(_stub_predictor(), cache, networks=nets, max_age_s=0, now=1604.0)
    assert len(timer.calls) == 10


def test_estimate_carries_uncertainty_and_calibration() -> None:
    from ghostnas.latency import calibrate

    pred = _stub_predictor()
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
    stub = _stub_part_timer()

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


def test_cli_predict_says_how_it_was_calibrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ghostnas.latency._predict as predict_mod

    monkeypatch.setattr(predict_mod, "part_timer", _stub_part_timer)
    monkeypatch.setattr(predict_mod, "measure_network", _NetTimer(1.5))
    fp = device_fingerprint("cpu", 1)
    save_table(LatencyTable(device=fp, constant_ms=0.25, fit={"rel_rms": 0.05}), default_table_path(fp))
    argv = ["latency", "predict", "ghostnet_tiny", "--measure-missing"]
    rc, out, _ = _run([*argv, "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["calibrated"] and not info["calibration"]["from_cache"]
    assert info["calibration"]["factor"] == pytest.approx(1.5) and info["calibration"]["max_age_s"] == 600
    assert info["latency_ms_predicted"] == pytest.approx(1.5 * info["latency_ms_uncalibrated"])
    # every reference network is exactly 1.5x: no calibration spread, only the fit residual
    assert info["uncertainty_ms"] == pytest.approx(0.05 * info["latency_ms_predicted"])
    rc, out, _ = _run(argv, capsys)
    assert rc == 0 and "x 1.500" in out and "cached" in out and "reused for 600 s" in out
    rc, out, _ = _run([*argv, "--no-calibration"], capsys)
    assert rc == 0 and "UNCALIBRATED" in out


# ------------------------------------------------------------------------------------------
# the ONNX Runtime backend (real, on tiny shapes)


def test_onnx_session_matches_torch() -> None:
    from ghostnas.latency import deploy_model, onnx_session

    model = deploy_model(TINY, SMALL)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    session = onnx_session(model, tuple(x.shape))
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(torch.from_numpy(out), ref, atol=1e-4)


def test_onnxruntime_backend_times_parts_and_has_its_own_table(tmp_path: Path) -> None:
    from ghostnas.latency import open_table, part_timer

    quick = MeasureSettings(warmup_s=0.0, blocks=3, min_block_s=0.0005)
    t = part_timer(settings=quick, backend="onnxruntime")(network_parts(TINY, SMALL)[1])
    assert t.latency_ms > 0 and t.n >= 3
    fp_ort, fp_torch = device_fingerprint("cpu", 1, "onnxruntime"), device_fingerprint("cpu", 1)
    assert fp_ort["backend"] == "onnxruntime" and fp_torch["backend"] == "torch-eager"
    assert default_table_path(fp_ort) != default_table_path(fp_torch)
    save_table(LatencyTable(device=fp_torch), tmp_path / "t.json")
    with pytest.raises(LatencyError, match="backend"):
        open_table("cpu", 1, tmp_path / "t.json", backend="onnxruntime")


@pytest.mark.parametrize(
    ("backend", "device", "match"), [("tvm", "cpu", "unknown"), ("onnxruntime", "cuda", "CPU only")]
)
def test_check_backend_errors(backend: str, device: str, match: str) -> None:
    from ghostnas.latency import check_backend

    with pytest.raises(LatencyError, match=match) as info:
        check_backend(backend, device)
    assert "\n" not in str(info.value)


def test_cli_measure_onnxruntime(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(
        ["latency", "measure", "ghostnet_tiny", "--input-size", "32", "--backend", "onnxruntime", "--json"],
        capsys,
    )
    info = json.loads(out)
    assert rc == 0 and info["latency_ms"] > 0 and info["device"]["backend"] == "onnxruntime"
