"""The front module: one cost axis per run, and a progress tracker that counts the same front
the run's outputs write."""

from __future__ import annotations

import optuna
import pytest

from ghostnas.budget import parse_budget, parse_objectives
from ghostnas.front import FrontTracker, best_record, cost_key, pareto_front, scored_in_budget
from ghostnas.records import TrialRecord


def _trial(number: int, macs: int, params: int, acc: float | None) -> optuna.trial.FrozenTrial:
    ok = acc is not None
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.PRUNED,
        values=[acc, float(params)] if ok else None,
        user_attrs={"outcome": "ok" if ok else "over_budget", "macs": macs, "params": params}
        | ({"accuracy": acc} if ok else {}),
    )


@pytest.mark.parametrize(
    ("budget", "objectives", "want"),
    [
        ("150MFLOPs", None, "macs"),
        ("2Mparams", None, "params"),
        ("12ms", None, "latency_ms"),
        ("150MFLOPs", "accuracy,params", "params"),
        ("2Mparams", "accuracy", "params"),
    ],
)
def test_cost_key_is_the_second_objective_else_the_budgets_metric(budget, objectives, want):
    b = parse_budget(budget)
    assert cost_key(b, parse_objectives(objectives) if objectives else ()) == want


def test_tracker_under_a_params_budget_counts_the_params_front():
    """Trials cheap in params but dear in MACs: a MACs front has one point, the params front three.
    The tracker must count the params front, as pareto.json does, not a MACs one."""
    budget = parse_budget("2Mparams")
    trials = [
        _trial(0, macs=100, params=1_500_000, acc=0.9),
        _trial(1, macs=200, params=1_000_000, acc=0.8),
        _trial(2, macs=300, params=500_000, acc=0.7),
        _trial(3, macs=50, params=3_000_000, acc=None),  # over budget: never scored
    ]
    for i, t in enumerate(trials):
        t.number = i
    key = cost_key(budget, ())
    tracker = FrontTracker(budget, key)
    for t in trials:
        tracker.add(t)
    records = [TrialRecord.from_trial(t) for t in trials]
    front = pareto_front(scored_in_budget(records, budget), key)
    assert tracker.pareto_size == len(front) == 3
    assert len(pareto_front(scored_in_budget(records, budget), "macs")) == 1
    assert tracker.best_accuracy == 0.9 == best_record(records, budget).accuracy
