"""Pareto extraction, hypervolume, over-budget shares, and the plot (extract, then render)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.front import hypervolume_2d, pareto_front
from ghostnas.plots import hypervolume_history, pareto_plot_data, reference_costs, render_pareto, write_plots
from ghostnas.records import TrialRecord
from ghostnas.results import over_budget_fractions
from tests._runs import make_run


def rec(number, outcome, macs, accuracy=None, reference=False):
    return TrialRecord(
        number=number,
        state="COMPLETE" if outcome == "ok" else "PRUNED",
        outcome=outcome,
        macs=macs,
        params=1000 + number,
        accuracy=accuracy,
        reference=reference,
        arch=f"cfg{number}",
    )


RECORDS = [
    rec(0, "ok", 90e6, 0.80, reference=True),
    rec(1, "over_budget", 160e6),
    rec(2, "ok", 50e6, 0.70),
    rec(3, "ok", 60e6, 0.65),  # dominated by 2
    rec(4, "failed", 70e6),
    rec(5, "ok", 95e6, 0.80),  # ties 0 on accuracy but costs more: dominated
    rec(6, "ok", 120e6, 0.90),
    rec(7, "over_budget", 170e6),
    rec(8, "ok", 100e6, 0.85),
]


def test_pareto_front_keeps_only_non_dominated_by_cost():
    ok = [r for r in RECORDS if r.outcome == "ok"]
    assert [r.number for r in pareto_front(ok, "macs")] == [2, 0, 8, 6]
    dup = [rec(1, "ok", 10, 0.5), rec(0, "ok", 10, 0.5)]
    assert [r.number for r in pareto_front(dup, "macs")] == [0]


def test_hypervolume_2d_is_the_area_under_the_front():
    front = [rec(0, "ok", 50, 0.5), rec(1, "ok", 100, 0.8)]
    # 0.5 over [50, 100) and 0.8 over [100, 150), normalised by 150.
    assert hypervolume_2d(front, "macs", 150) == pytest.approx((0.5 * 50 + 0.8 * 50) / 150)
    assert hypervolume_2d([], "macs", 150) == 0.0


def test_over_budget_shares_split_proposals_in_halves():
    shares = over_budget_fractions(RECORDS)
    # Reference left out: 8 proposals; first half 1..5 has one over budget (trial 1) of 4.
    assert shares["proposals"] == 8 and shares["over_budget"] == 2
    assert shares["share_first_half"] == 0.25 and shares["share_second_half"] == 0.25


def test_plot_data_extraction():
    budget = parse_budget("150MFLOPs")
    data = pareto_plot_data(RECORDS, budget, "macs")
    assert [p[2] for p in data.front] == [2, 0, 8, 6]
    assert len(data.points) == 6
    assert data.reference_trial == (90e6, 0.80, 0)
    assert data.rejected == [160e6, 170e6]
    assert data.failed == 1
    assert data.budget == 150e6
    assert data.references == reference_costs("macs")
    assert data.references["ghostnet_100"] == 141_150_512
    # A params budget does not draw a MACs budget line, and off-budget trials leave the front.
    data = pareto_plot_data(RECORDS, parse_budget("0.001005Mparams"), "macs")
    assert data.budget is None and [p[2] for p in data.front] == [2, 0]


def test_render_writes_a_png(tmp_path):
    data = pareto_plot_data(RECORDS, parse_budget("150MFLOPs"), "macs")
    render_pareto(data, tmp_path / "p.png", title="test")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    empty = pareto_plot_data([rec(0, "failed", 1e6)], parse_budget("150MFLOPs"), "macs")
    render_pareto(empty, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------
# hypervolume history, latency plot, `ghostnas plot`


def test_hypervolume_history_is_monotone_and_ends_at_the_run_value():
    budget = parse_budget("150MFLOPs")
    hist = hypervolume_history(RECORDS, budget, "macs")
    assert hist.trials == [r.number for r in RECORDS]
    assert all(b >= a for a, b in zip(hist.values, hist.values[1:], strict=False))
    ok = [r for r in RECORDS if r.outcome == "ok"]
    assert hist.values[-1] == pytest.approx(hypervolume_2d(pareto_front(ok, "macs"), "macs", 150e6))
    # Trial 0 alone: 0.80 over [90M, 150M) of 150M; the rejected trial 1 changes nothing.
    assert hist.values[0] == pytest.approx(0.80 * 60 / 150) == hist.values[1]
    # The dominated trial 3 does not move it; trial 2 (cheaper) does.
    assert hist.values[2] > hist.values[1] and hist.values[3] == hist.values[2]
    assert hist.reference_cost == 150e6


def test_hypervolume_2d_agrees_with_optuna():
    hv = pytest.importorskip("optuna._hypervolume")
    import numpy as np

    ok = [r for r in RECORDS if r.outcome == "ok"]
    # Optuna minimises: losses are (-accuracy, macs); reference point (0, budget).
    losses = np.array([[-r.accuracy, r.macs] for r in ok])
    expected = hv.compute_hypervolume(losses, np.array([0.0, 150e6])) / 150e6
    assert hypervolume_2d(pareto_front(ok, "macs"), "macs", 150e6) == pytest.approx(expected)


def test_latency_plot_only_when_latency_was_predicted(tmp_path):
    budget = parse_budget("150MFLOPs")
    assert write_plots(tmp_path / "a", RECORDS, budget, "macs") == ["pareto.png", "hypervolume.png"]
    assert not (tmp_path / "a" / "latency.png").exists()
    with_latency = [replace(r, latency_ms=(r.macs or 0) / 1e7) for r in RECORDS]
    files = write_plots(tmp_path / "b", with_latency, budget, "macs")
    assert files == ["pareto.png", "hypervolume.png", "latency.png"]
    data = pareto_plot_data(with_latency, budget, "latency_ms")
    assert [p[2] for p in data.front] == [2, 0, 8, 6] and data.budget is None and data.references == {}
    for name in files:
        assert (tmp_path / "b" / name).read_bytes()[:4] == b"\x89PNG"


def test_ghostnas_plot_run_dir(tmp_path, capsys):
    run = make_run(tmp_path / "run", trials=5)
    for name in ("pareto.png", "hypervolume.png"):
        assert (run / name).is_file()  # the search draws them at its end
        (run / name).unlink()
    assert main(["plot", str(run)]) == 0
    out = capsys.readouterr().out
    for name in ("pareto.png", "hypervolume.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG" and name in out
    assert not (run / "latency.png").exists()


@pytest.mark.parametrize("what", ["missing", "not a run folder", "broken run.json"])
def test_ghostnas_plot_bad_folder(tmp_path, capsys, what):
    target = tmp_path / "x"
    if what != "missing":
        target.mkdir()
    if what == "broken run.json":
        (target / "run.json").write_text("{not json")
    assert main(["plot", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not list(tmp_path.rglob("*.png"))
