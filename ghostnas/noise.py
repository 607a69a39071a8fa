"""The proxy's noise floor: how far one network's score moves when only the seed changes.

A search ranks candidates by one proxy score each. If the same network scored with another seed
moves by as much as two candidates differ, the ranking is luck. So a search scores its reference
network (the width-scaled GhostNet it evaluates first) with a few extra seeds, and everything
it reports about differences is judged against the spread of those scores:

- ``sd``: the sample standard deviation of the reference's scores over ``n`` seeds
  (``dof = n - 1`` degrees of freedom). It is also the standard error of any single score: one
  trial's score is one draw with that spread around the network's expected score. With few
  seeds the SD is itself uncertain; its standard error is about ``sd / sqrt(2 dof)``.
- Two scores are *distinguishable* when they differ by more than ``k * sd * sqrt(2)`` with
  ``k = 2``: the difference of two independent scores has SD ``sd * sqrt(2)``, and 2 of those is
  the usual two-sided 95% line for a normal difference. With an SD estimated from 2-4 degrees of
  freedom this rule is optimistic (a t quantile would be 2.8-4.3, not 2); the summary says so.

The SD is measured on one network (the reference) and assumed to hold for its neighbours in the
space; it is a property of the data, recipe and device, which are the same for every candidate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ghostnas.stats import mean_sd_se

__all__ = [
    "DEFAULT_NOISE_SEEDS",
    "DISTINGUISH_K",
    "NoiseFloor",
    "distinguishable",
    "floor_from_trials",
    "mark_front",
    "noise_floor",
    "probe_seeds",
    "reseed",
    "run_record",
    "summary_lines",
]

DEFAULT_NOISE_SEEDS = 3
"""Scores of the reference per search, its own first score included (2 extra evaluations)."""

DISTINGUISH_K = 2.0
"""Two scores differ beyond noise when ``|a - b| > DISTINGUISH_K * sd * sqrt(2)``."""


@dataclass(frozen=True)
class NoiseFloor:
    """The reference's scores over several seeds and what they say about noise.

    Attributes:
        scores: One score per seed, the search's own seed first.
        seeds: The seeds, in the same order.
        seconds: Evaluation seconds spent on the extra seeds (the first score is the reference
            trial itself, which the search runs anyway).
    """

    scores: tuple[float, ...]
    seeds: tuple[int, ...]
    seconds: float

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def dof(self) -> int:
        return max(self.n - 1, 0)

    @property
    def mean(self) -> float:
        return mean_sd_se(self.scores)[0]

    @property
    def sd(self) -> float:
        """Seed-to-seed SD of one score (NaN with fewer than two seeds)."""
        return mean_sd_se(self.scores)[1]

    @property
    def sd_se(self) -> float:
        """Approximate standard error of :attr:`sd` itself, ``sd / sqrt(2 dof)`` (normal scores)."""
        return self.sd / math.sqrt(2 * self.dof) if self.dof else math.nan

    @property
    def threshold(self) -> float:
        """The smallest difference of two scores called distinguishable."""
        return DISTINGUISH_K * self.sd * math.sqrt(2)

    def as_dict(self, search_seconds: float | None = None) -> dict[str, Any]:
        """The record written to ``run.json`` (``share_of_search`` when the search time is known)."""
        share = (
            round(self.seconds / search_seconds, 4)
            if search_seconds is not None and search_seconds > 0
            else None
        )
        return {
            "what": "seed-to-seed spread of the reference network's proxy score",
            "seeds": list(self.seeds),
            "scores": list(self.scores),
            "n": self.n,
            "dof": self.dof,
            "mean": _r(self.mean),
            "sd": _r(self.sd),
            "sd_standard_error": _r(self.sd_se),
            "single_score_standard_error": _r(self.sd),
            "distinguishable_if_difference_over": _r(self.threshold),
            "rule": f"|a - b| > {DISTINGUISH_K:g} * sd * sqrt(2)",
            "seconds": round(self.seconds, 3),
            "share_of_search": share,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseFloor:
        return cls(
            tuple(float(v) for v in d["scores"]), tuple(int(s) for s in d["seeds"]), float(d["seconds"])
        )


def _r(v: float) -> float | None:
    return None if math.isnan(v) else round(v, 6)


def noise_floor(scores: Sequence[float], seeds: Sequence[int], seconds: float = 0.0) -> NoiseFloor:
    """A :class:`NoiseFloor` from the reference's per-seed scores."""
    if len(scores) != len(seeds) or not scores:
        raise ValueError(f"need one score per seed, got {len(scores)} scores and {len(seeds)} seeds")
    if any(not math.isfinite(s) for s in scores):
        raise ValueError("noise-floor scores must be finite")
    return NoiseFloor(tuple(float(s) for s in scores), tuple(int(s) for s in seeds), float(seconds))


def floor_from_trials(trials: Sequence[Any]) -> NoiseFloor | None:
    """The noise floor stored on a study's trials (the reference trial's ``noise_scores``), or
    None when none was measured. Trials are Optuna trials or anything with ``user_attrs``."""
    for t in sorted(trials, key=lambda t: t.number):
        ua = t.user_attrs
        if ua.get("noise_scores") and ua.get("noise_seeds"):
            return noise_floor(ua["noise_scores"], ua["noise_seeds"], float(ua.get("noise_seconds", 0.0)))
    return None


def probe_seeds(seed: int, k: int) -> list[int]:
    """The extra seeds a search scores its reference with: ``k - 1`` seeds after its own.

    Far from the search's seed (``seed + 1000 i``) so that a user running seeds 0, 1, 2 does not
    re-use one search's probe as another's main seed.
    """
    return [seed + 1000 * i for i in range(1, max(k, 1))]


def distinguishable(a: float, b: float, floor: NoiseFloor | None) -> bool | None:
    """Whether scores ``a`` and ``b`` differ beyond noise; None when no SD was measured."""
    if floor is None or math.isnan(floor.sd):
        return None
    return abs(a - b) > floor.threshold


def mark_front(
    front: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
    floor: NoiseFloor | None,
) -> list[dict[str, Any]]:
    """Each front record (by increasing cost) with how it compares, beyond noise or not.

    Adds ``delta_reference`` (accuracy minus the reference's, None without a scored reference),
    ``vs_reference`` (``better``, ``worse``, ``within noise``, or ``unknown`` when there is no SD
    or no reference) and ``vs_previous``: the same judgement of the accuracy gained over the
    previous (cheaper) front point, ``first`` for the cheapest.
    """

    def judge(a: float, b: float) -> str:
        d = distinguishable(a, b, floor)
        if d is None:
            return "unknown"
        return ("better" if a > b else "worse") if d else "within noise"

    ref_acc = None if reference is None or reference.get("accuracy") is None else float(reference["accuracy"])
    out = []
    prev: float | None = None
    for r in front:
        acc = float(r["accuracy"])
        row = dict(r)
        row["delta_reference"] = None if ref_acc is None else acc - ref_acc
        row["vs_reference"] = "unknown" if ref_acc is None else judge(acc, ref_acc)
        row["vs_previous"] = "first" if prev is None else judge(acc, prev)
        out.append(row)
        prev = acc
    return out


def reseed(evaluator: Any, seed: int) -> Any | None:
    """A copy of ``evaluator`` that scores with ``seed``, or None if it has no seed to change.

    Uses the evaluator's ``with_seed(seed)`` when it has one, else a shallow copy with its
    ``seed`` attribute replaced (data caches are shared, not reloaded).
    """
    if hasattr(evaluator, "with_seed"):
        return evaluator.with_seed(seed)
    if hasattr(evaluator, "seed"):
        other = copy.copy(evaluator)
        other.seed = seed
        return other
    return None


def run_record(trials: Sequence[Any], noise_seeds: int, reference: bool) -> dict[str, Any]:
    """The ``noise`` entry of ``run.json``: the measured floor with its cost, or why there is none.

    The cost is given in seconds and as a share of all evaluation seconds of the study (every
    trial's own seconds plus the probes'), so a resumed or multi-worker study reports the whole.
    """
    floor = floor_from_trials(trials)
    if floor is None:
        skipped = next(
            (t.user_attrs["noise_skipped"] for t in trials if t.user_attrs.get("noise_skipped")), None
        )
        if noise_seeds < 2:
            why = f"turned off (noise seeds {noise_seeds})"
        elif not reference:
            why = "no reference network was evaluated (it is what the probes score)"
        else:
            why = skipped or "the reference has not been scored yet"
        return {"measured": False, "reason": why}
    evaluated = sum(
        float(t.user_attrs.get("seconds") or 0.0)
        for t in trials
        if t.user_attrs.get("outcome") != "over_budget"
    )
    images = next(
        (int(t.user_attrs.get("noise_images", 0)) for t in trials if t.user_attrs.get("noise_scores")), 0
    )
    return {"measured": True, **floor.as_dict(evaluated + floor.seconds), "images": images}


def summary_lines(
    record: Mapping[str, Any] | None,
    front: Sequence[Mapping[str, Any]],
    reference: Mapping[str, Any] | None,
    best: Mapping[str, Any] | None,
    score_label: str = "score",
) -> list[str]:
    """The ``summary.md`` section on noise: the floor, its cost, and how the front and the best
    point compare with the reference and with each other beyond noise (``score_label`` names
    the evaluator's score, e.g. ``proxy accuracy``)."""
    lines = ["## Noise floor", ""]
    if not record or not record.get("measured"):
        why = (record or {}).get("reason", "not measured")
        lines += [
            f"Not measured ({why}): the differences below may be seed noise; `--noise-seeds 3` measures it.",
            "",
        ]
        return lines
    floor = NoiseFloor.from_dict(record)
    share = record.get("share_of_search")
    lines += [
        f"The reference scored {', '.join(f'{v:.4f}' for v in floor.scores)} with seeds "
        f"{', '.join(str(s) for s in floor.seeds)}: seed-to-seed SD {floor.sd:.4f} "
        f"({floor.dof} degrees of freedom; the SD itself is uncertain by about {floor.sd_se:.4f}). "
        f"One score's standard error is that SD. Two scores are called distinguishable when they "
        f"differ by more than {DISTINGUISH_K:g} x SD x sqrt(2) = {floor.threshold:.4f} (optimistic with so "
        f"few degrees of freedom). Cost: {floor.seconds:.1f} s"
        + (f", {100 * share:.1f}% of the search's evaluation time" if share is not None else "")
        + " (`--noise-seeds 0` turns it off).",
        "",
    ]
    if best is not None and reference is not None and reference.get("accuracy") is not None:
        d = float(best["accuracy"]) - float(reference["accuracy"])
        if best["number"] == reference["number"]:
            verdict = "The best point is the reference itself."
        elif abs(d) > floor.threshold:
            verdict = (
                f"The best point (trial {best['number']}) beats the reference by {d:+.4f}, "
                "beyond the noise floor."
            )
        else:
            verdict = (
                f"**The best point (trial {best['number']}) is within noise of the reference** "
                f"({d:+.4f}, threshold {floor.threshold:.4f}): this search has not shown a better network."
            )
        lines += [verdict, ""]
    marked = mark_front(front, reference, floor)
    if marked:
        lines += [
            f"| trial | {score_label} | minus reference | vs reference | vs cheaper front point |",
            "|---:|---:|---:|---|---|",
        ]
        for r in marked:
            dr = "" if r["delta_reference"] is None else f"{r['delta_reference']:+.4f}"
            lines.append(
                f"| {r['number']} | {r['accuracy']:.4f} | {dr} | {r['vs_reference']} | {r['vs_previous']} |"
            )
        lines.append("")
    return lines
