"""The search: an Optuna study over a space, under a cost budget, scored by an evaluator.

:func:`run_search` composes four injected parts and owns none of them: the space turns a trial
into a config, the cost model prices it, the budget accepts or rejects it, and the evaluator
scores it. The order is cheapest first: a candidate over budget is rejected by the closed-form
cost (microseconds) and never reaches the evaluator.

How an over-budget proposal is recorded. It gets ``trial.set_constraint(metric, excess)`` (the
relative overshoot, > 0) and ends PRUNED with ``outcome = over_budget`` and the reason in its user
attributes. It is never given an accuracy: none was measured, and an invented one would enter the
Pareto front and every sampler's model of the objective. Optuna's TPE sampler reads COMPLETE and
PRUNED trials and puts any trial whose constraint is positive in its "infeasible" group (ranked
below every feasible trial, by overshoot), so TPE learns where the boundary is from these trials.
NSGA-II and GP read only COMPLETE trials: they do not see the rejected proposals (NSGA-II then
breeds only from feasible parents, which is what constraint-domination would do anyway; GP gets
no boundary model). ``run.json`` records the fraction of proposals over budget in the first and
second half of the run, which shows whether the sampler learned.

``--trials N`` counts *evaluated* candidates in the whole study (trials that reached the
evaluator: completed, failed or pruned by the pruner). Over-budget proposals are free and do not
count, up to a cap of :data:`MAX_PROPOSALS_PER_TRIAL` per wanted trial.

Every run is a study in a storage (SQLite in the run folder by default); running the same
settings again loads the study and runs only the remaining trials. Any number of processes may
run one study at once (``--storage`` and ``--study``); :mod:`ghostnas.workers` keeps the count
exact across them and recovers the trials of workers that died.

How the code is laid out. :func:`run_search` is four named steps: plan (every input checked,
:mod:`ghostnas.search_plan`), open (the storage and the study, resumed when it exists,
:mod:`ghostnas.storage` and :mod:`ghostnas.resume`), loop (Optuna drives
:func:`ghostnas.objective.make_objective`'s objective; :mod:`ghostnas.workers` keeps the count
exact) and write (the run folder, :mod:`ghostnas.results`). The settings and result records are
in :mod:`ghostnas.search_settings`, the sampler factory in :mod:`ghostnas.samplers`; this module
re-exports their public names.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ghostnas import noise, promotion, results, run_folder, run_history, workers
from ghostnas._fs import as_write_failed
from ghostnas.config import GhostNetConfig
from ghostnas.errors import WriteFailedError
from ghostnas.evaluators import EvalSettings, Evaluator, MultiFidelityEvaluator, make_evaluator, score_label
from ghostnas.front import FrontTracker
from ghostnas.front import cost_key as front_cost_key
from ghostnas.objective import CandidateFailed, Clock, make_objective
from ghostnas.resume import FINGERPRINT_ATTR, load_existing
from ghostnas.samplers import SAMPLERS, make_sampler
from ghostnas.search_plan import SearchPlan, data_fields, plan_search, reference_params
from ghostnas.search_settings import (
    COST_AT,
    DEFAULT_SPACE,
    DEFAULT_TRIALS,
    MAX_PROPOSALS_PER_TRIAL,
    RUNS_DIR,
    NoResultError,
    Progress,
    SearchError,
    SearchResult,
    SearchSettings,
    SearchStart,
    default_out_dir,
)
from ghostnas.space import space_digest
from ghostnas.storage import close_storage, open_storage, redact, storage_path

if TYPE_CHECKING:
    import optuna

__all__ = [
    "COST_AT",
    "DEFAULT_SPACE",
    "DEFAULT_TRIALS",
    "MAX_PROPOSALS_PER_TRIAL",
    "RUNS_DIR",
    "SAMPLERS",
    "NoResultError",
    "Progress",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "SearchStart",
    "default_out_dir",
    "make_sampler",
    "run_search",
]

logger = logging.getLogger(__name__)


@dataclass
class _Run:
    """One invocation's state, filled step by step (what the error path needs is here too)."""

    plan: SearchPlan
    evaluator: Evaluator
    sampler: Any = None
    storage: Any = None
    study: Any = None
    me: workers.WorkerId | None = None
    reference: GhostNetConfig | None = None
    started: _dt.datetime | None = None
    evaluated_before: int = 0
    clock: Clock = field(default_factory=Clock)
    proposals: int = 0
    over_budget: int = 0
    interrupted: bool = False
    loop_seconds: float = 0.0

    @property
    def sampler_name(self) -> str:
        s = self.plan.settings.sampler
        return s if isinstance(s, str) else type(self.sampler).__name__


def run_search(
    settings: SearchSettings,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    evaluator: Evaluator | None = None,
    progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[SearchStart], None] | None = None,
) -> SearchResult:
    """Run (or resume) a search and write its outputs to the run folder.

    Args:
        settings: What to search and how.
        sampler: Any Optuna sampler; overrides ``settings.sampler``.
        evaluator: An evaluator object; overrides ``settings.evaluator`` (the name is still
            recorded).
        progress: Called after every trial with counts for a progress display.
        on_start: Called once every input has been checked and the study is open, just before
            the first trial (a start line: what runs, where the outputs go, how to resume).

    Returns:
        The run's result; the same facts are in the run folder.

    Raises:
        GhostnasError: bad settings (nothing is written), or no trial could be evaluated.
        WriteFailedError: a write failed mid-run (a full disk under the study, an output, the
            latency table or the evaluator's files); it says which, how many evaluated trials
            are safe in the study, and the command that resumes.
    """
    plan = _plan(settings, sampler)
    run = _Run(plan, _evaluator(plan, evaluator), sampler=sampler)
    try:
        _open(run)
        if on_start is not None:
            on_start(_start_record(run))
        _loop(run, progress)
        return _write(run)
    except Exception as exc:
        fault = as_write_failed(exc, storage_path(plan.storage_url), "the study storage")
        if fault is None:
            raise
        raise _resumable(fault, run.storage, plan) from exc
    finally:
        close_storage(run.storage)


# --------------------------------------------------------------------------------------------
# step 1: plan


def _plan(settings: SearchSettings, sampler: optuna.samplers.BaseSampler | None) -> SearchPlan:
    """Every input checked (nothing is written before this returns)."""
    if sampler is None and settings.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler is not None and settings.sampler in SAMPLERS:
        settings = replace(settings, sampler=type(sampler).__name__)
    return plan_search(settings)


def _evaluator(plan: SearchPlan, evaluator: Evaluator | None) -> Evaluator:
    """The given evaluator, or the one ``settings.evaluator`` names; checked against the rungs."""
    settings = plan.settings  # objectives and device resolved
    if evaluator is None:
        evaluator = make_evaluator(
            settings.evaluator,
            EvalSettings(
                data=plan.data,
                data_dir=settings.data_dir,
                epochs=settings.epochs,
                seed=settings.seed,
                device=settings.device,
                image_size=settings.image_size,
            ),
        )
    if settings.rungs > 1 and not isinstance(evaluator, MultiFidelityEvaluator):
        raise SearchError(
            f"evaluator {settings.evaluator!r} cannot train a candidate further, so it cannot promote; "
            "use --rungs 1 or a training evaluator (train, trainloss)"
        )
    return evaluator


# --------------------------------------------------------------------------------------------
# step 2: open


def _open(run: _Run) -> None:
    """Open the storage and the study (resumed when it exists), enqueue the reference network."""
    import optuna

    plan = run.plan
    settings = plan.settings
    directions = [o.direction for o in plan.objectives]
    objective_names = [o.name for o in plan.objectives]
    # Open an existing study before creating anything, so that a bad URL or a study created with
    # other settings stops the run with nothing written.
    fresh_default = settings.storage is None and not (plan.out_dir / "study.db").exists()
    if not fresh_default:
        run.storage = open_storage(plan.storage_url, settings.storage_retry_s)
    existing = (
        load_existing(run.storage, plan.study_name, plan.fingerprint, objective_names, directions)
        if run.storage is not None
        else []
    )

    # Inputs are valid: from here on the run folder may be created.
    run.started = _dt.datetime.now(_dt.timezone.utc)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    if run.storage is None:
        run.storage = open_storage(plan.storage_url, settings.storage_retry_s)
    n_objectives = len(plan.objectives)
    if run.sampler is None:
        # Re-seed by history length so a resumed run does not replay the first run's draws.
        run.sampler = make_sampler(
            settings.sampler, settings.seed + 7919 * len(existing), settings.trials, n_objectives
        )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1) if n_objectives == 1 else None
    study = optuna.create_study(
        study_name=plan.study_name,
        storage=run.storage,
        directions=directions,
        sampler=run.sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    run.study = study
    run.me = workers.WorkerId.current()
    workers.sweep_stale(study, run.storage, run.me)
    run.reference, ref_params = reference_params(plan) if settings.reference else (None, None)
    if ref_params is not None and not existing:
        # skip_if_exists: workers that start together on a new study enqueue it once between them
        study.enqueue_trial(ref_params, user_attrs={"reference": True}, skip_if_exists=True)
    if FINGERPRINT_ATTR not in study.user_attrs:
        study.set_user_attr(FINGERPRINT_ATTR, plan.fingerprint)
    run.evaluated_before = workers.count_evaluated(study.get_trials(deepcopy=False))


def _start_record(run: _Run) -> SearchStart:
    settings, plan = run.plan.settings, run.plan
    return SearchStart(
        space=plan.space.name,
        sampler=run.sampler_name,
        budget=settings.budget,
        objectives=tuple(o.name for o in plan.objectives),
        evaluator=settings.evaluator,
        score_label=score_label(run.evaluator),
        data=settings.data,
        device=settings.device,
        trials=settings.trials,
        evaluated_before=run.evaluated_before,
        out_dir=plan.out_dir,
        study=plan.study_name,
        storage=redact(plan.storage_url),
        command=tuple(settings.command) if settings.command is not None else None,
    )


# --------------------------------------------------------------------------------------------
# step 3: loop


def _loop(run: _Run, progress: Callable[[Progress], None] | None) -> None:
    """Run trials until the study has ``--trials`` evaluated ones (or the timeout, or Ctrl-C,
    which ends the loop with ``run.interrupted`` set)."""
    plan, study = run.plan, run.study
    settings = plan.settings
    remaining = settings.trials - run.evaluated_before
    t_start = time.perf_counter()
    try:
        if remaining <= 0:
            logger.info(
                "study %s already has %d evaluated trial(s); writing outputs only",
                plan.study_name,
                run.evaluated_before,
            )
            return
        logger.info(
            "study %s: %d evaluated trial(s) so far, running %d more",
            plan.study_name,
            run.evaluated_before,
            remaining,
        )
        after_trial = _after_trial(run, progress, t_start, MAX_PROPOSALS_PER_TRIAL * max(remaining, 1))
        if settings.parallel > 1:
            _optimize_in_batches(run, after_trial)
        else:
            study.optimize(
                make_objective(plan, run.evaluator, run.clock, run.reference, run.me),
                timeout=settings.timeout,
                catch=(CandidateFailed,),
                callbacks=[after_trial],
                gc_after_trial=False,
            )
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        run.loop_seconds = time.perf_counter() - t_start


def _after_trial(
    run: _Run, progress: Callable[[Progress], None] | None, t_start: float, max_proposals: int
) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """The callback after each trial: counts, the front tracker, waiting for other workers'
    last trials, the progress record, and stopping at ``--trials`` or too many proposals."""
    settings = run.plan.settings
    key = front_cost_key(settings.budget, run.plan.objectives)
    tracker = FrontTracker(settings.budget, key)
    for t in run.study.get_trials(deepcopy=False):
        tracker.add(t)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run.proposals += 1
        ua = trial.user_attrs
        if ua.get("outcome") == "over_budget":
            run.over_budget += 1
        tracker.add(trial)
        if ua.get("outcome") == "surplus":
            deadline = None if settings.timeout is None else t_start + settings.timeout
            workers.wait_for_others(study, run.storage, run.me, settings.trials, deadline)
        evaluated = workers.count_evaluated(study.get_trials(deepcopy=False))
        if progress is not None:
            progress(
                Progress(
                    evaluated=evaluated,
                    target=settings.trials,
                    proposals=run.proposals,
                    over_budget=run.over_budget,
                    best_accuracy=tracker.best_accuracy,
                    pareto_size=tracker.pareto_size,
                    last_state=ua.get("outcome", trial.state.name.lower()),
                    trial=trial.number,
                    score=ua.get("accuracy") if ua.get("outcome") == "ok" else None,
                    costs={k: float(ua[k]) for k in ("macs", "params", "latency_ms", "gflops") if k in ua},
                    seconds=ua.get("seconds"),
                    cost_key=key,
                )
            )
        if evaluated >= settings.trials:
            study.stop()
        elif run.proposals >= max_proposals:
            logger.warning(
                "stopping after %d proposals, %d of them over budget: the budget may be too tight for the space",
                run.proposals,
                run.over_budget,
            )
            study.stop()

    return after_trial


def _optimize_in_batches(run: _Run, after_trial: Callable[[Any, optuna.trial.FrozenTrial], None]) -> None:
    """``--parallel N``: the same objective, N trials in flight, evaluated together
    (:mod:`ghostnas.search_batches`); the evaluation clock counts each batch once."""
    from ghostnas.search_batches import BatchingEvaluator, optimize_in_batches

    plan, clock = run.plan, run.clock
    batcher = BatchingEvaluator(run.evaluator)
    objective = make_objective(plan, batcher, clock, run.reference, run.me, direct=run.evaluator)
    settings = plan.settings
    try:
        optimize_in_batches(
            run.study,
            run.storage,
            objective,
            batcher,
            settings.parallel,
            settings.trials,
            timeout=settings.timeout,
            catch=(CandidateFailed,),
            callbacks=[after_trial],
        )
    finally:
        clock.evaluation = batcher.evaluation_seconds
        clock.batch_sizes = list(batcher.batch_sizes)


# --------------------------------------------------------------------------------------------
# step 4: write


def _write(run: _Run) -> SearchResult:
    """Write the run folder (run.json last) and return the result; raise ``KeyboardInterrupt``
    after writing when the loop was interrupted, :class:`NoResultError` when nothing scored."""
    plan = run.plan
    settings = plan.settings
    t_out = time.perf_counter()
    trials = run.study.get_trials(deepcopy=False)
    ended = _dt.datetime.now(_dt.timezone.utc)
    timing = _timing(run)
    assert run.started is not None
    history = run_history.extend_history(
        plan.out_dir / "run.json",
        run_history.invocation(
            command=settings.command,
            started=run.started.isoformat(timespec="seconds"),
            ended=ended.isoformat(timespec="seconds"),
            interrupted=run.interrupted,
            evaluated=workers.count_evaluated(trials) - run.evaluated_before,
            timing=timing,
        ),
    )
    run_info = results.run_record(
        settings=settings,
        plan_fields=_plan_fields(run),
        trials=trials,
        started=run.started,
        ended=ended,
        timing=timing,
        interrupted=run.interrupted,
        history=history,
    )
    run_info["noise"] = noise.run_record(trials, settings.noise_seeds, settings.reference)
    run_info["promotion"] = promotion.run_record(trials, settings.rungs)
    outputs = results.write_outputs(
        plan.out_dir, trials, plan.space, settings.budget, plan.objectives, run_info
    )
    run_info["timing"]["outputs_seconds"] = round(time.perf_counter() - t_out, 3)
    run_folder.write_run_json(plan.out_dir, run_info)
    evaluated = workers.count_evaluated(trials)
    result = SearchResult(
        out_dir=plan.out_dir,
        study_name=plan.study_name,
        storage_url=redact(plan.storage_url),
        evaluated=evaluated,
        evaluated_this_run=evaluated - run.evaluated_before,
        best=outputs["best"],
        pareto=outputs["pareto"],
        run_info=run_info,
        files=outputs["files"],
    )
    if run.interrupted:
        raise KeyboardInterrupt
    if outputs["best"] is None:
        counts = run_info["counts"]
        raise NoResultError(
            f"no candidate was evaluated successfully ({counts['failed']} failed, "
            f"{counts['over_budget']} over budget); see the reasons in {plan.out_dir / 'trials.csv'}"
        )
    return result


def _timing(run: _Run) -> dict[str, Any]:
    """Where this invocation's time went (``run.json``'s ``timing``)."""
    clock, loop_seconds, settings = run.clock, run.loop_seconds, run.plan.settings
    return {
        "loop_seconds": round(loop_seconds, 3),
        "evaluation_seconds": round(clock.evaluation, 3),
        "cost_model_seconds": round(clock.cost_model, 4),
        "optuna_seconds": round(max(loop_seconds - clock.evaluation - clock.cost_model, 0.0), 3),
        "noise_probe_seconds": round(clock.noise, 3),
        "optuna_share": round((loop_seconds - clock.evaluation - clock.cost_model) / loop_seconds, 4)
        if loop_seconds > 0
        else None,
        "proposals_this_run": run.proposals,
        **(
            {"parallel": settings.parallel, "batch_sizes": clock.batch_sizes} if settings.parallel > 1 else {}
        ),
    }


def _plan_fields(run: _Run) -> dict[str, Any]:
    """What ``run.json``'s settings record beyond :class:`SearchSettings`: the plan's choices."""
    plan = run.plan
    settings = plan.settings
    return {
        "space": plan.space.name,
        "space_source": plan.space.source,
        "space_sha256": space_digest(plan.space),
        "study": plan.study_name,
        "storage": redact(plan.storage_url),
        "out": str(plan.out_dir),
        "sampler": run.sampler_name,
        "sampler_class": type(run.sampler).__name__,
        "objectives": [o.name for o in plan.objectives],
        "evaluator_class": type(run.evaluator).__name__,
        "score_label": score_label(run.evaluator),
        "front_metric": front_cost_key(settings.budget, plan.objectives),
        **data_fields(plan),
        "noise_seeds": settings.noise_seeds,
        "rungs": settings.rungs,
        **(
            {"latency_calibration": asdict(plan.latency_calibration)}
            if plan.latency_calibration is not None
            else {}
        ),
    }


def _resumable(fault: WriteFailedError, storage: Any, plan: SearchPlan) -> WriteFailedError:
    """Add to a write fault what is safe and the command that resumes the search."""
    import optuna

    name = plan.study_name
    fault.kept = (
        f"the trials completed so far are safe in study {name!r}"
        if storage is not None
        else f"study {name!r} could not be opened, so nothing in it changed"
    )
    try:
        if storage is not None:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
            n = workers.count_evaluated(trials)
            fault.kept = (
                f"{n} of {plan.settings.trials} trials were evaluated and are safe in study {name!r}"
                if n
                else f"no trial of study {name!r} had been evaluated yet, so nothing is lost"
            )
    except Exception:  # the study may not exist yet, or the storage may not answer: say less
        pass
    fault.rerun = "resume"
    if fault.command is None and plan.settings.command:
        fault.command = shlex.join(plan.settings.command)
    return fault
