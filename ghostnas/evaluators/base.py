"""The evaluator interface: a config goes in, a score and metrics come out.

The search composes space, cost model, budget and an evaluator, and never looks inside the
evaluator. Every scorer (the short-training proxy, each zero-cost proxy, the fake used by tests)
implements :class:`Evaluator`.

Failures are never scores. An evaluator that cannot score a candidate (divergence, NaN, out of
memory) raises :class:`EvaluationFailed` with a reason; the search records the trial as failed
with that reason. Intermediate values go to the ``report`` callback, which may raise (for example
``optuna.TrialPruned``) to stop the evaluation early: evaluators let that exception through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ghostnas.config import GhostNetConfig

__all__ = [
    "BatchEvaluator",
    "EvalResult",
    "EvaluationFailed",
    "Evaluator",
    "MultiFidelityEvaluator",
    "PromoteFn",
    "ReportFn",
]

ReportFn = Callable[[int, float], None]
"""``report(step, value)``: an intermediate score (higher is better) after ``step`` epochs/steps."""


PromoteFn = Callable[[int, "EvalResult"], bool]
"""``promote(rung, result)``: called when ``rung`` has been scored; True to train on to the next."""


class EvaluationFailed(Exception):
    """The candidate could not be scored; ``str(exc)`` is the reason recorded with the trial."""


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator says about one candidate.

    Attributes:
        score: The value the search maximises (validation accuracy in [0, 1] for trainers, the
            proxy's own scale for zero-cost proxies). Always finite.
        metrics: Extra named figures (loss, per-epoch accuracy, throughput...), JSON-ready.
        seconds: Wall time the evaluation took.
    """

    score: float
    metrics: Mapping[str, float | int | str] = field(default_factory=dict)
    seconds: float = 0.0


@runtime_checkable
class Evaluator(Protocol):
    """Scores a candidate architecture. ``name`` identifies it in results (e.g. ``"train"``)."""

    name: str

    def evaluate(self, cfg: GhostNetConfig, report: ReportFn | None = None) -> EvalResult:
        """Score ``cfg``; raise :class:`EvaluationFailed` when it cannot be scored."""
        ...


@runtime_checkable
class MultiFidelityEvaluator(Evaluator, Protocol):
    """An evaluator that can train a candidate further after scoring it (see
    :mod:`ghostnas.promotion`): rung ``r`` trains ``factor ** r`` times rung 0 in total."""

    def evaluate_rungs(
        self, cfg: GhostNetConfig, rungs: int, factor: float, promote: PromoteFn
    ) -> list[EvalResult]:
        """Score ``cfg`` at rung 0, then at each next rung while ``promote`` says so.

        Returns:
            One result per rung reached (at least one). A failure at any rung raises
            :class:`EvaluationFailed`; the scores of earlier rungs were already passed to
            ``promote``.
        """
        ...


@runtime_checkable
class BatchEvaluator(Evaluator, Protocol):
    """An evaluator that can also score several candidates together (faster on a GPU).

    ``ghostnas search --parallel N`` hands it N candidates at a time; an evaluator without
    ``evaluate_many`` is called once per candidate instead.
    """

    def evaluate_many(
        self, cfgs: Sequence[GhostNetConfig], reports: Sequence[ReportFn | None]
    ) -> list[EvalResult | Exception]:
        """Score every config; per config its result or the exception that stopped it
        (:class:`EvaluationFailed`, or whatever its ``report`` raised)."""
        ...
