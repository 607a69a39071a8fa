"""The Pareto front of score against cost, its hypervolume, and the best trial under budget.

One cost axis per run, decided once by :func:`cost_key`: the second objective, or with a single
objective the budget's metric. The front in ``pareto.json``, the plots, the hypervolume, the
progress display (:class:`FrontTracker`) and a run folder read back all use it, so a search
under a params or latency budget never shows a front drawn in MACs.

The functions take :class:`~ghostnas.records.TrialRecord` objects (or anything with the same
attributes: ``number``, ``accuracy``, ``outcome`` and the costs), so they serve a live search, a
run folder read back, and the benchmarks alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ghostnas.budget import Budget, Objective
from ghostnas.records import TrialRecord

if TYPE_CHECKING:
    import optuna

__all__ = [
    "FrontTracker",
    "best_record",
    "cost_key",
    "hypervolume_2d",
    "pareto_front",
    "scored_in_budget",
]


def cost_key(budget: Budget, objectives: Sequence[Objective] | Sequence[str] = ()) -> str:
    """The cost axis of a search's Pareto front: its second objective, or with a single
    objective (or none given) the budget's metric."""
    names = [o if isinstance(o, str) else o.name for o in objectives]
    return names[1] if len(names) > 1 else budget.metric


def _cost(record: Any, key: str) -> float:
    return float(getattr(record, key))


def pareto_front(points: Sequence[TrialRecord], key: str) -> list[TrialRecord]:
    """Scored records not dominated in (higher ``accuracy``, lower cost ``key``), by cost.

    A record dominates another when it is at least as good in both and better in one; exact
    duplicates keep the earliest trial only.
    """
    ordered = sorted(points, key=lambda r: (_cost(r, key), -r.accuracy, r.number))
    front: list[TrialRecord] = []
    best_acc = -math.inf
    for r in ordered:
        if r.accuracy > best_acc:
            front.append(r)
            best_acc = r.accuracy
    return front


def hypervolume_2d(front: Sequence[TrialRecord], key: str, limit: float) -> float:
    """Area dominated by the front in (cost in [0, limit], accuracy in [0, acc]), over ``limit``.

    The reference point is (cost = budget, accuracy = 0), so the value is the mean best accuracy
    reachable over the budget axis: a single number that grows as the front improves.
    """
    pts = sorted((_cost(r, key), float(r.accuracy)) for r in front if _cost(r, key) <= limit)
    area = 0.0
    for i, (cost, acc) in enumerate(pts):
        nxt = pts[i + 1][0] if i + 1 < len(pts) else limit
        area += max(acc, 0.0) * (nxt - cost)
    return area / limit


def scored_in_budget(records: Sequence[TrialRecord], budget: Budget) -> list[TrialRecord]:
    """Records with a score whose cost is within ``budget``: the candidates a front or a best
    pick may come from."""
    out = []
    for r in records:
        cost = getattr(r, budget.metric)
        if r.outcome == "ok" and r.accuracy is not None and cost is not None and cost <= budget.limit:
            out.append(r)
    return out


def best_record(records: Sequence[TrialRecord], budget: Budget) -> TrialRecord | None:
    """The best trial under budget: highest accuracy, then lowest cost, then earliest."""
    return max(
        scored_in_budget(records, budget),
        key=lambda r: (r.accuracy, -_cost(r, budget.metric), -r.number),
        default=None,
    )


class FrontTracker:
    """Best score and Pareto size as trials arrive (for the progress display).

    Counts the same front as the run's outputs: scored trials within the budget, on the axis
    :func:`cost_key` gives.

    Args:
        budget: The run's budget.
        key: The front's cost axis (:func:`cost_key`).
    """

    def __init__(self, budget: Budget, key: str) -> None:
        self.budget = budget
        self.cost_key = key
        self.points: list[TrialRecord] = []
        self.best_accuracy: float | None = None
        self.pareto_size = 0

    def add(self, trial: optuna.trial.FrozenTrial) -> None:
        """Take a finished trial into account (trials without a score are ignored)."""
        if trial.state.name != "COMPLETE" or trial.user_attrs.get("outcome") != "ok":
            return
        record = TrialRecord.from_trial(trial)
        if record.accuracy is None:
            return
        self.best_accuracy = (
            record.accuracy if self.best_accuracy is None else max(self.best_accuracy, record.accuracy)
        )
        if getattr(record, self.cost_key) is None:
            return
        self.points.append(record)
        self.pareto_size = len(pareto_front(scored_in_budget(self.points, self.budget), self.cost_key))
