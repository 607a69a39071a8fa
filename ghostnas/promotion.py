"""Multi-fidelity promotion for a multi-objective search (asynchronous successive halving).

Optuna's pruners compare intermediate values of one objective; they do not apply to a Pareto
search. So ghostnas promotes inside the trial instead:

1. Every candidate trains the cheap rung 0 (the evaluator's normal recipe).
2. Its rung-0 score is compared with the rung-0 scores of every other candidate in the study
   that costs no more than it does (the current front, read from the storage, so several
   workers share it). If no cheaper candidate beats it by more than the promotion margin, it
   is on or near the front, and it is promoted if the rung's quota allows: as in successive
   halving, at most ``ceil(n / factor)`` of the ``n`` candidates scored at a rung go on to the
   next. (In a Pareto search most new candidates that cost more than the current best and beat
   it are "on the front", so without the quota nearly every candidate would be promoted.)
   A promoted candidate trains on to rung 1: ``factor`` times rung 0's epochs in total,
   continuing from its in-memory weights (a warm restart of the learning-rate schedule over the
   extra epochs, so rung 1 costs ``factor - 1`` rung-0 units, not ``factor``).
3. The same test at rung 1 against rung-1 scores decides rung 2, and so on up to ``rungs - 1``.

Scores are compared within a rung only: a rung-1 score has had three times the training and is
not comparable with other candidates' rung-0 scores. The trial's value (what the sampler, the
front and ``best.json`` see) is the score at the highest rung it reached; every rung's score is
kept in its user attributes (``score_r0``, ``score_r1``...) and in ``trials.csv``.

The margin is the measured noise (see :mod:`ghostnas.noise`): :data:`PROMOTE_MARGIN_SD` standard
deviations of a difference of two scores, ``PROMOTE_MARGIN_SD * sd * sqrt(2)``. Before the noise
is known (no probes, or another worker still measuring them) the margin is 0: only candidates on
the front are promoted.

A candidate killed mid-trial is failed as ``worker_died`` and its config retried from rung 0
(training is deterministic, so the retry reproduces the lost rungs' scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ghostnas.noise import NoiseFloor

__all__ = [
    "DEFAULT_FACTOR",
    "MAX_RUNGS",
    "PROMOTE_MARGIN_SD",
    "others_at_rung",
    "promoted_attr",
    "promotion_margin",
    "quota_allows",
    "run_record",
    "rung_attr",
    "rung_scores",
    "rung_units",
    "should_promote",
    "summary_lines",
]

DEFAULT_FACTOR = 3.0
"""Each rung trains this many times the previous rung's total epochs."""

MAX_RUNGS = 4

PROMOTE_MARGIN_SD = 1.0
"""Promotion margin in SDs of a difference of two scores (1: within one SD of the front)."""


def rung_attr(rung: int) -> str:
    """The user attribute holding a trial's score at ``rung``."""
    return f"score_r{rung}"


def rung_units(rung: int, factor: float = DEFAULT_FACTOR) -> float:
    """Total training at ``rung`` in rung-0 units (``factor ** rung``)."""
    return factor**rung


def rung_scores(user_attrs: Mapping[str, Any]) -> list[float]:
    """A trial's scores at rungs 0, 1, ... as far as it got."""
    out = []
    for r in range(MAX_RUNGS):
        v = user_attrs.get(rung_attr(r))
        if v is None:
            break
        out.append(float(v))
    return out


def promotion_margin(floor: NoiseFloor | None) -> float:
    """How far below the front a candidate may score and still be promoted."""
    if floor is None or math.isnan(floor.sd):
        return 0.0
    return PROMOTE_MARGIN_SD * floor.sd * math.sqrt(2)


def should_promote(score: float, cost: float, others: Iterable[tuple[float, float]], margin: float) -> bool:
    """Whether a candidate with ``score`` at some rung and ``cost`` trains on to the next rung.

    Args:
        score: The candidate's score at the rung.
        cost: Its cost on the front's axis (MACs, params or latency).
        others: ``(cost, score)`` of the other candidates at the same rung.
        margin: Scores up to this much below the best cheaper-or-equal candidate still count as
            on the front (the measured noise).

    Returns:
        True when no candidate costing at most ``cost`` beats ``score`` by more than ``margin``.
    """
    best = max((s for c, s in others if c <= cost), default=None)
    return best is None or score >= best - margin


def promoted_attr(rung: int) -> str:
    """The user attribute marking a trial promoted to ``rung`` (set before it trains on)."""
    return f"promoted_r{rung}"


def quota_allows(
    trials: Sequence[Any], rung: int, exclude_number: int, factor: float = DEFAULT_FACTOR
) -> bool:
    """Whether one more candidate scored at ``rung`` may be promoted: fewer than
    ``ceil(n / factor)`` of the ``n`` candidates with a score at ``rung`` (this one included)
    have been promoted so far. Two workers deciding at the same moment may both pass (a small
    overshoot, never a lost candidate)."""
    key, promoted = rung_attr(rung), promoted_attr(rung + 1)
    live = [t for t in trials if t.state.name != "FAIL"]
    n = 1 + sum(1 for t in live if t.number != exclude_number and t.user_attrs.get(key) is not None)
    done = sum(1 for t in live if t.number != exclude_number and t.user_attrs.get(promoted))
    return done < math.ceil(n / factor)


def others_at_rung(
    trials: Sequence[Any], rung: int, cost_key: str, exclude_number: int
) -> list[tuple[float, float]]:
    """``(cost, score)`` at ``rung`` of every other trial that has one (running trials included:
    a score is written the moment its rung ends, so concurrent workers see each other)."""
    key = rung_attr(rung)
    out = []
    for t in trials:
        ua = t.user_attrs
        if t.number == exclude_number or ua.get(key) is None or ua.get(cost_key) is None:
            continue
        if t.state.name == "FAIL":  # failed, or its worker died (the retry writes its scores again)
            continue
        out.append((float(ua[cost_key]), float(ua[key])))
    return out


def run_record(trials: Sequence[Any], rungs: int, factor: float = DEFAULT_FACTOR) -> dict[str, Any]:
    """The ``promotion`` entry of ``run.json``: the schedule and how many candidates reached
    each rung, and the training images the study used (rungs and noise probes included)."""
    scored = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get("outcome") == "ok"]
    reached = [0] * rungs
    for t in scored:
        top = len(rung_scores(t.user_attrs)) - 1 if rungs > 1 else 0
        for r in range(max(top, 0) + 1):
            if r < rungs:
                reached[r] += 1
    images = sum(int(t.user_attrs.get("metric_images") or 0) for t in trials)
    images += sum(int(t.user_attrs.get("noise_images") or 0) for t in trials)
    return {
        "rungs": rungs,
        "factor": factor,
        "rung_epochs_in_rung0_units": [rung_units(r, factor) for r in range(rungs)],
        "margin": f"{PROMOTE_MARGIN_SD:g} x noise SD x sqrt(2) (0 before the noise is measured)",
        "scored_reaching_rung": reached,
        "training_images": images,
    }


def summary_lines(record: Mapping[str, Any] | None) -> list[str]:
    """The ``summary.md`` section on promotion (nothing when the search did not promote)."""
    if not record or record.get("rungs", 1) <= 1:
        return []
    units = ", ".join(f"{u:g}x" for u in record["rung_epochs_in_rung0_units"])
    return [
        "## Promotion",
        "",
        f"{record['rungs']} rungs ({units} the proxy's epochs); scored candidates reaching each rung: "
        f"{', '.join(str(n) for n in record['scored_reaching_rung'])}; {record['training_images']:,} "
        "training images in all (rungs and noise probes). A trial's accuracy is its highest rung's "
        "score (`score_r0`, `score_r1`... in `trials.csv`): points that stopped at different rungs had "
        "different training, so compare scores within a rung. The noise floor is measured at rung 0.",
        "",
    ]
