"""The search's objective: one Optuna trial from proposal to score, cheapest check first.

:func:`make_objective` composes the plan's parts for one trial: the space turns the trial into a
config, the plan prices it (closed-form cost, microseconds), the budget accepts or rejects it,
:mod:`ghostnas.workers` lets it take one of the study's ``--trials`` slots, and only then the
evaluator scores it (once, or rung by rung with promotion, :mod:`ghostnas.promotion`; the
reference network also gets its noise probes, :mod:`ghostnas.noise`). Every outcome is recorded
on the trial in words (user attribute ``outcome`` and ``reason``); a failed candidate is FAIL
with its reason (:class:`CandidateFailed`), never an invented score.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ghostnas import noise, promotion, workers
from ghostnas._fs import is_write_fault
from ghostnas.config import GhostNetConfig, config_to_dict
from ghostnas.evaluators import EvalResult, EvaluationFailed, Evaluator, MultiFidelityEvaluator, ReportFn
from ghostnas.front import cost_key as front_cost_key
from ghostnas.records import ATTR_ARCH, ATTR_CONFIG
from ghostnas.search_plan import SearchPlan, candidate_costs_of
from ghostnas.search_settings import SearchSettings

if TYPE_CHECKING:
    import optuna

__all__ = ["CandidateFailed", "Clock", "make_objective"]

logger = logging.getLogger(__name__)


class CandidateFailed(Exception):
    """Raised out of the objective so that Optuna records the trial as FAIL (reason kept)."""


@dataclass
class Clock:
    """Where this run's wall time went."""

    evaluation: float = 0.0
    noise: float = 0.0
    cost_model: float = 0.0
    objective_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # --parallel: candidates per batch


def make_objective(
    plan: SearchPlan,
    evaluator: Evaluator,
    clock: Clock,
    reference: GhostNetConfig | None,
    me: workers.WorkerId,
    direct: Evaluator | None = None,
) -> Callable[[optuna.Trial], Any]:
    """The search's objective. ``direct``: the evaluator the reference's noise probes call
    (with ``--parallel`` ``evaluator`` is the batching stand-in, and the probes, which run after
    the reference's batch, go to the real evaluator instead); default ``evaluator``."""
    import optuna

    budget = plan.settings.budget
    single = len(plan.objectives) == 1

    def objective(trial: optuna.Trial) -> Any:
        clock.objective_calls += 1
        trial.set_user_attr("worker", me.as_dict())
        cfg = plan.space.suggest(trial)
        t0 = time.perf_counter()
        costs = candidate_costs_of(plan, cfg)
        clock.cost_model += time.perf_counter() - t0
        for key, value in costs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(ATTR_ARCH, cfg.short())  # for logs and the dashboard
        trial.set_user_attr(ATTR_CONFIG, config_to_dict(cfg))  # what the run folder records and export reads
        if reference is not None and cfg == reference:
            trial.set_user_attr("reference", True)
        excess = budget.excess(costs)
        trial.set_constraint(budget.metric, excess)
        if excess > 0:
            reason = f"over budget: {_fmt(costs[budget.metric], budget.metric)} > {budget.describe()}"
            trial.set_user_attr("outcome", "over_budget")
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        trial.set_user_attr("outcome", "evaluating")
        if not workers.claim_slot(trial.study, trial.number, plan.settings.trials, me):
            trial.set_user_attr("outcome", "surplus")
            trial.set_user_attr("reason", "not counted: the study's other trials fill --trials")
            raise optuna.TrialPruned("surplus")

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                trial.set_user_attr("outcome", "pruned")
                trial.set_user_attr("reason", f"pruned by the pruner at step {step} (value {value:.4g})")
                raise optuna.TrialPruned(f"pruned at step {step}")

        t0 = time.perf_counter()
        noise_s = [0.0]
        try:
            result = _score(
                trial, cfg, costs, evaluator, plan, report if single else None, noise_s, direct or evaluator
            )
            score = float(result.score)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("outcome", "interrupted")
            trial.set_user_attr("reason", "interrupted by the user; not counted, rerun to resume")
            raise
        except EvaluationFailed as exc:
            _record_failure(trial, str(exc) or "evaluation failed")
        except Exception as exc:  # MemoryError, CUDA OOM, NaN checks, plug-in bugs: a failed trial
            if is_write_fault(exc):
                raise  # a full disk (e.g. a data cache) is the machine's fault: end the run, it resumes
            _record_failure(trial, f"{type(exc).__name__}: {exc}")
        finally:
            elapsed = time.perf_counter() - t0
            clock.evaluation += elapsed
            clock.noise += noise_s[0]
            trial.set_user_attr("seconds", round(elapsed - noise_s[0], 4))
        if not math.isfinite(score):
            _record_failure(trial, f"evaluator returned a non-finite score {score!r}")
        trial.set_user_attr("outcome", "ok")
        trial.set_user_attr("accuracy", score)
        trial.set_user_attr("evaluator", getattr(evaluator, "name", type(evaluator).__name__))
        for key, value in result.metrics.items():
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                trial.set_user_attr(f"metric_{key}", value)
        values = [score if o.name == "accuracy" else costs[o.name] for o in plan.objectives]
        return values[0] if single else values

    return objective


def _score(
    trial: optuna.Trial,
    cfg: GhostNetConfig,
    costs: dict[str, float],
    evaluator: Evaluator,
    plan: SearchPlan,
    report: ReportFn | None,
    noise_s: list[float],
    direct: Evaluator,
) -> EvalResult:
    """Score a candidate: once, or rung by rung with promotion; the reference also gets its noise
    probes (scored by ``direct``) after its first score. ``noise_s[0]`` receives the seconds the
    probes took."""
    settings = plan.settings

    def probe(first: EvalResult) -> None:
        if not trial.user_attrs.get("reference") or settings.noise_seeds < 2:
            return
        if noise.floor_from_trials(trial.study.get_trials(deepcopy=False)) is not None:
            return  # measured already (by an earlier run or a worker that died after measuring)
        t0 = time.perf_counter()
        _noise_probes(trial, direct, cfg, first, settings)
        noise_s[0] = time.perf_counter() - t0

    if settings.rungs == 1:
        result = evaluator.evaluate(cfg, report=report)
        probe(result)
        return result
    cost_key = front_cost_key(settings.budget, plan.objectives)

    def promote(rung: int, res: EvalResult) -> bool:
        trial.set_user_attr(promotion.rung_attr(rung), float(res.score))
        if rung == 0:
            probe(res)
        trials = trial.study.get_trials(deepcopy=False)
        margin = promotion.promotion_margin(noise.floor_from_trials(trials))
        others = promotion.others_at_rung(trials, rung, cost_key, trial.number)
        go = promotion.should_promote(float(res.score), costs[cost_key], others, margin)
        go = go and promotion.quota_allows(trials, rung, trial.number, promotion.DEFAULT_FACTOR)
        if go:
            trial.set_user_attr(promotion.promoted_attr(rung + 1), True)
        return go

    if not isinstance(evaluator, MultiFidelityEvaluator):
        raise TypeError(f"evaluator {evaluator.name!r} cannot train further")  # checked by run_search
    scored = evaluator.evaluate_rungs(cfg, settings.rungs, promotion.DEFAULT_FACTOR, promote)
    top = len(scored) - 1
    trial.set_user_attr(promotion.rung_attr(top), float(scored[-1].score))
    trial.set_user_attr("rung", top)
    return scored[-1]


def _noise_probes(
    trial: optuna.Trial,
    evaluator: Evaluator,
    cfg: GhostNetConfig,
    first: EvalResult,
    settings: SearchSettings,
) -> None:
    """Score the reference with the extra seeds and store the scores on its trial (once for the
    study: a resumed run or another worker reads them back instead of measuring again)."""
    own = int(getattr(evaluator, "seed", settings.seed))
    seeds, scores, images = [own], [float(first.score)], 0
    t0 = time.perf_counter()
    for seed in noise.probe_seeds(own, settings.noise_seeds):
        other = noise.reseed(evaluator, seed)
        if other is None:
            trial.set_user_attr("noise_skipped", f"evaluator {evaluator.name!r} has no seed to vary")
            return
        try:
            res = other.evaluate(cfg)
        except EvaluationFailed as exc:
            trial.set_user_attr("noise_skipped", f"seed {seed} failed: {exc}"[:300])
            return
        seeds.append(seed)
        scores.append(float(res.score))
        images += int(res.metrics.get("images", 0))
    trial.set_user_attr("noise_seeds", seeds)
    trial.set_user_attr("noise_scores", scores)
    trial.set_user_attr("noise_images", images)
    trial.set_user_attr("noise_seconds", round(time.perf_counter() - t0, 4))
    floor = noise.noise_floor(scores, seeds)
    logger.info("noise floor: reference scores %s over seeds %s, SD %.4g", scores, seeds, floor.sd)


def _record_failure(trial: optuna.Trial, reason: str) -> None:
    reason = " ".join(reason.split())[:500]
    logger.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr("outcome", "failed")
    trial.set_user_attr("reason", reason)
    raise CandidateFailed(reason)


def _fmt(value: float, metric: str) -> str:
    if metric == "latency_ms":
        return f"{value:.3g} ms"
    if metric == "gflops":
        return f"{value:.3f} GFLOPs"
    return f"{value / 1e6:.2f}M {'MACs' if metric == 'macs' else 'params'}"
