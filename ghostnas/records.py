"""One typed record per trial: what a search knows about a candidate after it ran.

:class:`TrialRecord` is the single shape every consumer reads: the front and its hypervolume
(:mod:`ghostnas.front`), the plots, the summary, export and the benchmarks. It is made from a
study's trial (:meth:`TrialRecord.from_trial`) or read back from a run folder's ``trials.csv``
(:mod:`ghostnas.run_folder`, the one module that writes and reads the run folder's files).

One name per value. A trial's architecture is ``config`` (the full, frozen
:class:`~ghostnas.config.GhostNetConfig`) and ``arch`` (its short display string, for logs and
tables only) everywhere: in the study's user attributes (:data:`ATTR_CONFIG`, :data:`ATTR_ARCH`),
in this record, in ``trials.csv`` and in ``pareto.json``. Studies and folders written before this
used ``cfg`` for the display string in user attributes and ``config`` for it in ``trials.csv``,
and ``cfg`` for the full config in ``pareto.json``; the readers here and in
:mod:`ghostnas.run_folder` still accept those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghostnas.config import GhostNetConfig, config_from_dict
from ghostnas.detect.config import DetectConfig, detect_config_from_dict
from ghostnas.errors import GhostnasError
from ghostnas.promotion import rung_scores

if TYPE_CHECKING:
    import optuna

__all__ = [
    "ATTR_ARCH",
    "ATTR_CONFIG",
    "COST_KEYS",
    "LEGACY_ATTR_ARCH",
    "TrialRecord",
    "config_or_none",
    "trial_records",
]

ATTR_CONFIG = "config"
"""User attribute holding a trial's full config (``config_to_dict``), set by the objective."""
ATTR_ARCH = "arch"
"""User attribute holding a trial's short display string (``GhostNetConfig.short()``)."""
LEGACY_ATTR_ARCH = "cfg"
"""What :data:`ATTR_ARCH` was called in studies written before the record had one name per value."""

COST_KEYS = ("macs", "params", "latency_ms", "gflops")
"""The costs a record may carry; a front's cost axis is one of them."""


@dataclass(frozen=True)
class TrialRecord:
    """What one trial of a search did.

    Attributes:
        number: The trial's number in its study.
        state: Optuna's state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``...).
        outcome: What happened in ghostnas' words: ``ok`` (scored), ``failed``, ``pruned``,
            ``over_budget`` (rejected by the closed-form cost, never trained), ``surplus``,
            ``worker_died``, ``running``, ``interrupted``.
        macs, params: Closed-form cost at the run's cost shape (None when never priced).
        latency_ms: Predicted latency when the search had a latency predictor.
        gflops: A detector's Ultralytics GFLOPs (``search --task detect``).
        accuracy: The evaluator's score, only when ``outcome`` is ``ok`` (never invented).
        seconds: Evaluation time (None when it never reached the evaluator).
        reason: Why it failed or was not counted ("" when it was scored).
        reference: Whether it is the space's reference network.
        arch: The short display string of its architecture (for logs and tables).
        config: The full config it evaluated; None only in run folders written before it was
            recorded (read their study, see :mod:`ghostnas.export`).
        trial_params: The sampler's parameters (Optuna's flat, labelled dict).
        rung_scores: Its score at each promotion rung (:mod:`ghostnas.promotion`).
    """

    number: int
    state: str
    outcome: str
    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    gflops: float | None = None
    accuracy: float | None = None
    seconds: float | None = None
    reason: str = ""
    reference: bool = False
    arch: str = ""
    config: GhostNetConfig | DetectConfig | None = None
    trial_params: Mapping[str, Any] = field(default_factory=dict)
    rung_scores: tuple[float, ...] = ()

    @property
    def scored(self) -> bool:
        """Whether the trial has a score: it completed with outcome ``ok``."""
        return self.outcome == "ok" and self.accuracy is not None

    def cost(self, key: str) -> float | None:
        """The cost named ``key`` (one of :data:`COST_KEYS`), or None when not recorded."""
        if key not in COST_KEYS:
            raise KeyError(f"unknown cost {key!r}; one of {', '.join(COST_KEYS)}")
        return getattr(self, key)

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial) -> TrialRecord:
        """The record of a study's trial, from its state and user attributes.

        A trial Optuna failed because its worker stopped sending heartbeats (see
        :mod:`ghostnas.workers`) is ``worker_died``, and one still RUNNING is ``running``.
        """
        ua = trial.user_attrs
        state = trial.state.name
        outcome = ua.get("outcome") or ("running" if state == "RUNNING" else state.lower())
        reason = ua.get("reason", "")
        if state == "FAIL" and outcome in ("evaluating", "fail"):
            outcome, reason = "worker_died", "not counted: its worker stopped sending heartbeats"
        elif state == "RUNNING":
            outcome = "running"
        return cls(
            number=trial.number,
            state=state,
            outcome=outcome,
            macs=_int_or_none(ua.get("macs")),
            params=_int_or_none(ua.get("params")),
            latency_ms=_float_or_none(ua.get("latency_ms")),
            gflops=_float_or_none(ua.get("gflops")),
            accuracy=_float_or_none(ua.get("accuracy")) if outcome == "ok" else None,
            seconds=_float_or_none(ua.get("seconds")),
            reason=reason,
            reference=bool(ua.get("reference", False)),
            arch=str(ua.get(ATTR_ARCH, ua.get(LEGACY_ATTR_ARCH, ""))),
            config=config_or_none(ua.get(ATTR_CONFIG)),
            trial_params=dict(trial.params),
            rung_scores=tuple(rung_scores(ua)),
        )


def config_or_none(data: Any) -> GhostNetConfig | DetectConfig | None:
    """``data`` (a ``config_to_dict`` mapping) as a config; None when absent or not a config.
    A detector's config (``task: detect``, :mod:`ghostnas.detect.config`) is read as one."""
    if not isinstance(data, Mapping):
        return None
    try:
        if data.get("task") == "detect":
            return detect_config_from_dict(data)
        return config_from_dict(dict(data))
    except (GhostnasError, TypeError, ValueError, KeyError):
        return None


def trial_records(trials: Iterable[optuna.trial.FrozenTrial]) -> list[TrialRecord]:
    """One record per trial, in trial order (the rows of ``trials.csv``)."""
    return [TrialRecord.from_trial(t) for t in sorted(trials, key=lambda t: t.number)]


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)
