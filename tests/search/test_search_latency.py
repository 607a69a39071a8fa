"""The search under a latency budget or objective, on stub timings so nothing real is timed.

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghostnas.config import config_from_dict
from ghostnas.latency import (
    LatencyError,
    LatencyPredictor,
    LatencyTable,
    Timing,
    default_table_path,
    device_fingerprint,
    load_table,
    save_table,
)
from tests.latency.stubs import TINY, run_cli, stub_part_timer

# ------------------------------------------------------------------------------------------
# the search: latency budgets and objectives (stub timings, so nothing real is timed)


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

    monkeypatch.setattr(predict_mod, "part_timer", stub_part_timer)
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
    rc, out, err = run_cli(["search", "--budget", "20ms", "--evaluator", "fake", "--trials", "2"], capsys)
    assert rc == 2 and out == "" and "build-table" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    bad = tmp_path / "t.json"
    bad.write_text("{")
    rc, _, err = run_cli(["search", "--budget", "20ms", "--latency-table", str(bad), "--trials", "2"], capsys)
    assert rc == 2 and "corrupt" in err
    for budget in ("20", "-1ms", "0us", "20 minutes", "infms"):
        rc, _, err = run_cli(["search", "--budget", budget, "--trials", "2"], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, budget


def test_calibration_rescales_predictions_for_the_session_only(tmp_path: Path) -> None:
    from ghostnas.latency import calibrate

    fp = device_fingerprint("cpu", 1)
    table = LatencyTable(device=fp, constant_ms=0.25)
    pred = LatencyPredictor(table, measure=stub_part_timer())
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

    monkeypatch.setattr(predict_mod, "part_timer", stub_part_timer)
    fp = device_fingerprint("cpu", 1)
    save_table(LatencyTable(device=fp, constant_ms=0.25), default_table_path(fp))
    probe = LatencyPredictor(LatencyTable(device=fp, constant_ms=0.25), measure=stub_part_timer())

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
