"""Pareto extraction, hypervolume, over-budget shares, and the plot (extract, then render)."""

from __future__ import annotations

import pytest

from ghostnas.budget import parse_budget
from ghostnas.plots import pareto_plot_data, reference_costs, render_pareto
from ghostnas.results import hypervolume_2d, over_budget_fractions, pareto_front


def rec(number, outcome, macs, accuracy=None, reference=False):
    return {
        "number": number,
        "outcome": outcome,
        "macs": macs,
        "params": 1000 + number,
        "accuracy": accuracy,
        "reference": reference,
        "config": f"cfg{number}",
        "trial_params": {},
    }


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
    ok = [r for r in RECORDS if r["outcome"] == "ok"]
    assert [r["number"] for r in pareto_front(ok, "macs")] == [2, 0, 8, 6]
    dup = [rec(1, "ok", 10, 0.5), rec(0, "ok", 10, 0.5)]
    assert [r["number"] for r in pareto_front(dup, "macs")] == [0]


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
