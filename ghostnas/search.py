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
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas import workers
from ghostnas.budget import (
    BUDGET_INPUT_SIZE,
    BUDGET_NUM_CLASSES,
    Budget,
    Objective,
    candidate_costs,
    parse_objectives,
)
from ghostnas.config import GhostNetConfig, config_to_dict
from ghostnas.errors import GhostnasError
from ghostnas.evaluators import (
    DEFAULT_EVALUATOR,
    EvalSettings,
    EvaluationFailed,
    Evaluator,
    list_evaluators,
    make_evaluator,
)
from ghostnas.space import SearchSpace, load_space, space_digest

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_TRIALS",
    "MAX_PROPOSALS_PER_TRIAL",
    "SAMPLERS",
    "NoResultError",
    "Progress",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "close_storage",
    "default_out_dir",
    "make_sampler",
    "open_storage",
    "run_search",
]

logger = logging.getLogger(__name__)

DEFAULT_SPACE = "ghostnet_v1"
DEFAULT_TRIALS = 30
MAX_PROPOSALS_PER_TRIAL = 50
SAMPLERS = ("tpe", "nsga2", "random", "gp")

# Settings that change what a trial's score means; a study created with other values is not
# resumed (the user gets an error naming the difference).
_FINGERPRINT_KEYS = ("space", "budget", "objectives", "evaluator", "epochs", "data")


class SearchError(GhostnasError):
    """The search cannot start: bad settings, unreadable storage, a study made with other settings."""


class NoResultError(SearchError):
    """The run finished but no candidate was scored (every trial failed or was over budget)."""


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search run; the CLI fills it from its flags.

    Attributes:
        budget: The cost limit (MACs and params at 224x224 / 1000 classes).
        space: Shipped space name or path to a space YAML file.
        trials: Evaluated candidates wanted in the study in total (a resumed run adds only the
            missing ones); over-budget proposals do not count.
        timeout: Stop starting new trials after this many seconds of this run (None: no limit).
        sampler: ``tpe``, ``nsga2``, ``random`` or ``gp`` (ignored when a sampler object is given
            to :func:`run_search`).
        objectives: ``accuracy,macs`` (Pareto front, default), ``accuracy,params`` or
            ``accuracy`` (single objective; the only mode where pruning applies).
        evaluator: Evaluator name (see :func:`ghostnas.evaluators.list_evaluators`).
        epochs: Proxy training budget for training evaluators (None: the evaluator's default).
        data, data_dir: Dataset the evaluator trains on and where its files are.
        seed: Seeds the sampler and the evaluator.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        out: Run folder (None: :func:`default_out_dir`).
        storage: Optuna storage URL or ``journal:PATH`` (None: SQLite file in the run folder).
        study: Study name (None: the run folder's name).
        reference: Evaluate the space's reference network, width-scaled to the budget, first.
        command: The command line that started the run, recorded in ``run.json``.
        latency_table: Latency table for a latency budget or objective (None: this CPU's
            default table, see :mod:`ghostnas.latency`); block shapes it lacks are timed on
            this machine's CPU and added to it.
        latency_calibration: Before a latency search, time GhostNet 0.5x/1.0x/1.3x and rescale
            the table's predictions to this session's speed (:func:`ghostnas.latency.calibrate`;
            a few seconds). A shared machine drifts 10-15% between sessions; without this a
            stale table lets the front overshoot the budget by that much.
        parallel: Trials in flight in this process, evaluated together (one CUDA graph and
            stream each on a GPU; see :mod:`ghostnas.search_batches`). 1: one at a time.
    """

    budget: Budget
    space: str = DEFAULT_SPACE
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    sampler: str = "tpe"
    objectives: str = "accuracy,macs"
    evaluator: str = DEFAULT_EVALUATOR
    epochs: float | None = None
    data: str = "fashion-mnist"
    data_dir: str | None = None
    seed: int = 0
    device: str = "cpu"
    out: str | None = None
    storage: str | None = None
    study: str | None = None
    reference: bool = True
    latency_table: str | None = None
    latency_calibration: bool = True
    command: Sequence[str] | None = None
    parallel: int = 1


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each trial."""

    evaluated: int
    target: int
    proposals: int
    over_budget: int
    best_accuracy: float | None
    pareto_size: int
    last_state: str


@dataclass
class SearchResult:
    """What a finished (or interrupted) run produced.

    Attributes:
        out_dir: The run folder with all outputs.
        study_name, storage_url: Where the study lives (the URL without any password).
        evaluated: Evaluated candidates in the study (all runs).
        evaluated_this_run: Of those, how many this run added.
        best: Best trial record under budget (see :mod:`ghostnas.results`), or None.
        pareto: The Pareto front records.
        run_info: The content of ``run.json``.
        files: Output file names written.
    """

    out_dir: Path
    study_name: str
    storage_url: str
    evaluated: int
    evaluated_this_run: int
    best: dict[str, Any] | None
    pareto: list[dict[str, Any]]
    run_info: dict[str, Any]
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# validation and construction of the parts


def default_out_dir(settings: SearchSettings, space_name: str) -> Path:
    """``results/search-<space>-<budget>-<evaluator>-<sampler>-seed<seed>``: the same command
    gives the same folder, which is what makes re-running it resume."""
    sampler = settings.sampler if isinstance(settings.sampler, str) else "custom"
    objectives = settings.objectives.replace(",", "+")
    parts = [
        "search",
        space_name,
        settings.budget.slug(),
        settings.evaluator,
        sampler,
        f"seed{settings.seed}",
    ]
    if objectives != "accuracy+macs":
        parts.insert(3, objectives)
    return Path("results") / re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))


def make_sampler(name: str, seed: int, trials: int, n_objectives: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``, seeded.

    TPE is multivariate and grouped (it models joint choices across the conditional block
    parameters, and is cheaper per trial than independent TPE on many parameters). NSGA-II's
    population is a third of the trial budget (between 4 and 50) so it breeds within short runs.
    """
    import optuna

    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, n_startup_trials=min(10, max(2, trials // 3))
            )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise SearchError(
                "the gp sampler needs scipy: pip install 'ghostnas[gp]' (or scipy), or use --sampler tpe"
            )
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(10, max(2, trials // 3)))
    raise SearchError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def _redact(url: str) -> str:
    """The storage URL without a password (it goes into run.json and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: an RDB URL (``sqlite:///...``, ``postgresql://...``) or
    ``journal:PATH`` for a journal file.

    RDB storages get Optuna's heartbeat (see :mod:`ghostnas.workers`): a trial whose worker
    stops beating for :data:`ghostnas.workers.GRACE_PERIOD` seconds is failed by a live worker
    and its config retried. A PostgreSQL or MySQL server that does not answer fails within
    10 seconds instead of hanging.

    Raises:
        SearchError: the URL cannot be opened; one line with the reason.
    """
    import optuna

    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:") :])
            if not path.parent.is_dir():
                raise SearchError(f"storage {url!r}: folder {path.parent} does not exist")
            if path.is_dir():
                raise SearchError(f"storage {url!r}: {path} is a folder; give a journal file path")
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            db = url[len("sqlite:///") :]
            if db and not Path(db).expanduser().parent.is_dir():
                raise SearchError(f"storage {_redact(url)!r}: folder {Path(db).parent} does not exist")
        if url.startswith("sqlite:"):
            return _fast_sqlite(url)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        return _rdb_with_retry(url, engine_kwargs)
    except SearchError:
        raise
    except Exception as exc:  # sqlalchemy and drivers raise many kinds; all mean "cannot open"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SearchError(
            f"cannot open storage {_redact(url)!r}: {reason}; give an Optuna storage URL such as "
            "sqlite:///path/study.db or journal:path/study.log"
        ) from None


def _rdb(url: str, engine_kwargs: dict[str, Any] | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage with the heartbeat on (Optuna marks the heartbeat experimental)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=workers.HEARTBEAT_INTERVAL,
            grace_period=workers.GRACE_PERIOD,
            heartbeat_stale_trial_callback=workers.on_heartbeat_stale,
        )


def _rdb_with_retry(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """:func:`_rdb`, tried again when it lost a race: workers that start together on an empty
    database all try to create Optuna's tables, and all but one see "already exists"."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(4):
        try:
            return _rdb(url, engine_kwargs)
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            lost_race = "already exists" in str(exc) or "database is locked" in str(exc)
            if attempt == 3 or not lost_race:
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def _fast_sqlite(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage on SQLite in WAL mode with ``synchronous=NORMAL``.

    Optuna commits once per suggested parameter and per attribute; with SQLite's default
    rollback journal every commit waits for an fsync (~7 ms here), which made the storage the
    largest cost of a trial. WAL with NORMAL sync still never corrupts the database on a crash
    (at worst the last commits before a power loss are lost, and a resumed run redoes them);
    readers such as optuna-dashboard can read while the search writes.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # A reader (optuna-dashboard, another worker) may hold SQLite's lock for a moment: wait for
    # it rather than failing the run.
    storage = _rdb_with_retry(url, {"connect_args": {"timeout": 30}})
    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened while creating the schema do not have the pragmas
    return storage


@dataclass(frozen=True)
class _Plan:
    """Validated settings, resolved into the objects a run needs."""

    settings: SearchSettings
    space: SearchSpace
    objectives: tuple[Objective, ...]
    out_dir: Path
    storage_url: str
    study_name: str
    fingerprint: dict[str, Any]
    latency: Any = None  # a ghostnas.latency.LatencyPredictor when latency is budgeted or optimised
    latency_path: Path | None = None
    latency_calibration: Any = None  # a ghostnas.latency.Calibration when one was made


def _validate(settings: SearchSettings) -> _Plan:
    """Check every input before anything is written; raise one-line errors."""
    budget = settings.budget
    if isinstance(settings.trials, bool) or not isinstance(settings.trials, int) or settings.trials < 1:
        raise SearchError(f"trials = {settings.trials!r}: must be an integer of at least 1")
    if settings.timeout is not None and (not math.isfinite(settings.timeout) or settings.timeout <= 0):
        raise SearchError(f"timeout = {settings.timeout!r}: must be a positive number of seconds")
    if isinstance(settings.parallel, bool) or not isinstance(settings.parallel, int) or settings.parallel < 1:
        raise SearchError(f"parallel = {settings.parallel!r}: must be an integer of at least 1")
    if settings.epochs is not None and (not math.isfinite(settings.epochs) or settings.epochs <= 0):
        raise SearchError(f"epochs = {settings.epochs!r}: must be a positive number")
    if settings.sampler == "gp":
        import importlib.util

        if importlib.util.find_spec("scipy") is None:
            raise SearchError(
                "the gp sampler needs scipy: pip install 'ghostnas[gp]' (or scipy), or use --sampler tpe"
            )
    objectives = parse_objectives(settings.objectives)
    if len(objectives) > 1 and objectives[1].name != budget.metric:
        logger.info("objective %s differs from the budget metric %s", objectives[1].name, budget.metric)
    if settings.evaluator not in list_evaluators():
        raise SearchError(
            f"unknown evaluator {settings.evaluator!r}; choose one of {', '.join(list_evaluators())}"
        )
    latency, latency_path, calibration = None, None, None
    if budget.metric == "latency_ms" or any(o.name == "latency_ms" for o in objectives):
        latency, latency_path = _open_latency(settings.latency_table)
    space = load_space(settings.space)
    lo = space.cost_range()
    smallest = lo.min_macs if budget.metric == "macs" else lo.min_params
    if budget.metric != "latency_ms" and smallest > budget.limit:
        unit = "MACs" if budget.metric == "macs" else "params"
        raise SearchError(
            f"budget {budget.describe()} is below the smallest config of space {space.name} "
            f"({smallest:,} {unit} at 224x224); raise the budget or use a smaller space"
        )
    out_dir = Path(settings.out) if settings.out else default_out_dir(settings, space.name)
    if out_dir.exists() and not out_dir.is_dir():
        raise SearchError(f"--out {out_dir}: exists and is not a folder")
    study_name = settings.study or out_dir.name
    if not study_name or len(study_name) > 500:
        raise SearchError("study name must be 1 to 500 characters")
    storage_url = settings.storage or f"sqlite:///{out_dir / 'study.db'}"
    fingerprint = {
        "space": space.name,
        "budget": budget.describe(),
        "objectives": ",".join(o.name for o in objectives),
        "evaluator": settings.evaluator,
        "epochs": settings.epochs,
        "data": settings.data,
    }
    if latency is not None:
        fingerprint["latency_device"] = latency.table.device
        if settings.latency_calibration:  # a measurement: only once every input has passed
            calibration = _calibrate_latency(latency)
    return _Plan(
        settings,
        space,
        objectives,
        out_dir,
        storage_url,
        study_name,
        fingerprint,
        latency,
        latency_path,
        calibration,
    )


def _calibrate_latency(predictor: Any) -> Any:
    """Rescale the predictor to this session's speed with the three published GhostNets."""
    from ghostnas.latency import calibrate
    from ghostnas.registry import resolve_config

    names = ("ghostnet_050", "ghostnet_100", "ghostnet_130")
    return calibrate(predictor, {n: resolve_config(n) for n in names})


def _open_latency(table: str | None) -> tuple[Any, Path]:
    """This CPU's latency predictor (1 thread, 224x224, batch 1), or a one-line error telling
    the user to run ``ghostnas latency build-table``."""
    from ghostnas.latency import NetworkSpec, open_predictor

    return open_predictor(
        "cpu", table=table, spec=NetworkSpec(input_size=BUDGET_INPUT_SIZE, num_classes=BUDGET_NUM_CLASSES)
    )


def _costs(plan: _Plan, cfg: GhostNetConfig) -> dict[str, float]:
    """Every cost of a candidate; with a latency predictor, newly timed blocks are saved."""
    if plan.latency is None:
        return candidate_costs(cfg)
    before = len(plan.latency.table.entries)
    costs = candidate_costs(cfg, latency=plan.latency.predict)
    if len(plan.latency.table.entries) != before and plan.latency_path is not None:
        from ghostnas.latency import save_table

        save_table(plan.latency.table, plan.latency_path)
    return costs


# --------------------------------------------------------------------------------------------
# the objective


class _CandidateFailed(Exception):
    """Raised out of the objective so that Optuna records the trial as FAIL (reason kept)."""


@dataclass
class _Clock:
    """Where this run's wall time went."""

    evaluation: float = 0.0
    cost_model: float = 0.0
    objective_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # --parallel: candidates per batch


def _make_objective(
    plan: _Plan,
    evaluator: Evaluator,
    clock: _Clock,
    reference: GhostNetConfig | None,
    me: workers.WorkerId,
) -> Callable[[optuna.Trial], Any]:
    import optuna

    budget = plan.settings.budget
    single = len(plan.objectives) == 1

    def objective(trial: optuna.Trial) -> Any:
        clock.objective_calls += 1
        trial.set_user_attr("worker", me.as_dict())
        cfg = plan.space.suggest(trial)
        t0 = time.perf_counter()
        costs = _costs(plan, cfg)
        clock.cost_model += time.perf_counter() - t0
        for key, value in costs.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("cfg", cfg.short())
        trial.set_user_attr("config", config_to_dict(cfg))  # the full config, to check replays against
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
        if not workers.claim_slot(trial.study, trial._trial_id, plan.settings.trials, me):
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
        try:
            result = evaluator.evaluate(cfg, report=report if single else None)
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
            _record_failure(trial, f"{type(exc).__name__}: {exc}")
        finally:
            elapsed = time.perf_counter() - t0
            clock.evaluation += elapsed
            trial.set_user_attr("seconds", round(elapsed, 4))
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


def _record_failure(trial: optuna.Trial, reason: str) -> None:
    reason = " ".join(reason.split())[:500]
    logger.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr("outcome", "failed")
    trial.set_user_attr("reason", reason)
    raise _CandidateFailed(reason)


def _fmt(value: float, metric: str) -> str:
    if metric == "latency_ms":
        return f"{value:.3g} ms"
    return f"{value / 1e6:.2f}M {'MACs' if metric == 'macs' else 'params'}"


# --------------------------------------------------------------------------------------------
# the run


def _reference_params(plan: _Plan) -> tuple[GhostNetConfig | None, dict[str, Any] | None]:
    """The reference network at the widest grid width that fits the budget."""
    space, budget = plan.space, plan.settings.budget
    if space.reference is None:
        return None, None
    for width in reversed(space.width.values()):
        cfg = space.reference.with_width(width)
        if budget.fits(_costs(plan, cfg)):
            return cfg, space.config_to_params(cfg)
    logger.warning("no width of the reference network fits %s; starting without it", budget.describe())
    return None, None


def run_search(
    settings: SearchSettings,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    evaluator: Evaluator | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> SearchResult:
    """Run (or resume) a search and write its outputs to the run folder.

    Args:
        settings: What to search and how.
        sampler: Any Optuna sampler; overrides ``settings.sampler``.
        evaluator: An evaluator object; overrides ``settings.evaluator`` (the name is still
            recorded).
        progress: Called after every trial with counts for a progress display.

    Returns:
        The run's result; the same facts are in the run folder.

    Raises:
        GhostnasError: bad settings (nothing is written), or no trial could be evaluated.
    """
    import optuna

    from ghostnas import results

    if sampler is None and settings.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler is not None and settings.sampler in SAMPLERS:
        settings = replace(settings, sampler=type(sampler).__name__)
    plan = _validate(settings)
    if evaluator is None:
        evaluator = make_evaluator(
            settings.evaluator,
            EvalSettings(
                data=settings.data,
                data_dir=settings.data_dir,
                epochs=settings.epochs,
                seed=settings.seed,
                device=settings.device,
            ),
        )
    # Open an existing study before creating anything, so that a bad URL or a study created with
    # other settings stops the run with nothing written.
    directions = [o.direction for o in plan.objectives]
    storage = None
    try:
        fresh_default = settings.storage is None and not (plan.out_dir / "study.db").exists()
        if not fresh_default:
            storage = open_storage(plan.storage_url)
        existing = _load_existing(storage, plan, directions) if storage is not None else []

        # Inputs are valid: from here on the run folder may be created.
        started = _dt.datetime.now(_dt.timezone.utc)
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        if storage is None:
            storage = open_storage(plan.storage_url)
        n_objectives = len(plan.objectives)
        if sampler is None:
            # Re-seed by history length so a resumed run does not replay the first run's draws.
            sampler = make_sampler(
                settings.sampler, settings.seed + 7919 * len(existing), settings.trials, n_objectives
            )
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1) if n_objectives == 1 else None
        )
        study = optuna.create_study(
            study_name=plan.study_name,
            storage=storage,
            directions=directions,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
        me = workers.WorkerId.current()
        workers.sweep_stale(study, storage, me)
        reference, ref_params = _reference_params(plan) if settings.reference else (None, None)
        if ref_params is not None and not existing:
            # skip_if_exists: workers that start together on a new study enqueue it once between them
            study.enqueue_trial(ref_params, user_attrs={"reference": True}, skip_if_exists=True)
        if "ghostnas" not in study.user_attrs:
            study.set_user_attr("ghostnas", plan.fingerprint)
        existing = study.get_trials(deepcopy=False)
        evaluated_before = workers.count_evaluated(existing)

        remaining = settings.trials - evaluated_before
        clock = _Clock()
        state = {"evaluated": evaluated_before, "proposals": 0, "over": 0}
        max_proposals = MAX_PROPOSALS_PER_TRIAL * max(remaining, 1)
        tracker = results.FrontTracker(plan.objectives)
        for t in existing:
            tracker.add(t)

        def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            state["proposals"] += 1
            if trial.user_attrs.get("outcome") == "over_budget":
                state["over"] += 1
            tracker.add(trial)
            if trial.user_attrs.get("outcome") == "surplus":
                deadline = None if settings.timeout is None else t_start + settings.timeout
                _wait_for_others(study, storage, me, settings.trials, deadline)
            state["evaluated"] = workers.count_evaluated(study.get_trials(deepcopy=False))
            if progress is not None:
                progress(
                    Progress(
                        evaluated=state["evaluated"],
                        target=settings.trials,
                        proposals=state["proposals"],
                        over_budget=state["over"],
                        best_accuracy=tracker.best_accuracy,
                        pareto_size=tracker.pareto_size,
                        last_state=trial.user_attrs.get("outcome", trial.state.name.lower()),
                    )
                )
            if state["evaluated"] >= settings.trials:
                study.stop()
            elif state["proposals"] >= max_proposals:
                logger.warning(
                    "stopping after %d proposals, %d of them over budget: the budget may be too tight for the space",
                    state["proposals"],
                    state["over"],
                )
                study.stop()

        objective = _make_objective(plan, evaluator, clock, reference, me)
        t_start = time.perf_counter()
        interrupted = False
        if remaining > 0:
            logger.info(
                "study %s: %d evaluated trial(s) so far, running %d more",
                plan.study_name,
                evaluated_before,
                remaining,
            )
            try:
                if settings.parallel > 1:
                    _optimize_in_batches(plan, study, storage, evaluator, clock, reference, me, after_trial)
                else:
                    study.optimize(
                        objective,
                        timeout=settings.timeout,
                        catch=(_CandidateFailed,),
                        callbacks=[after_trial],
                        gc_after_trial=False,
                    )
            except KeyboardInterrupt:
                interrupted = True
        else:
            logger.info(
                "study %s already has %d evaluated trial(s); writing outputs only",
                plan.study_name,
                evaluated_before,
            )
        loop_seconds = time.perf_counter() - t_start

        t_out = time.perf_counter()
        trials = study.get_trials(deepcopy=False)
        ended = _dt.datetime.now(_dt.timezone.utc)
        timing = {
            "loop_seconds": round(loop_seconds, 3),
            "evaluation_seconds": round(clock.evaluation, 3),
            "cost_model_seconds": round(clock.cost_model, 4),
            "optuna_seconds": round(max(loop_seconds - clock.evaluation - clock.cost_model, 0.0), 3),
            "optuna_share": round((loop_seconds - clock.evaluation - clock.cost_model) / loop_seconds, 4)
            if loop_seconds > 0
            else None,
            "proposals_this_run": state["proposals"],
            **(
                {"parallel": settings.parallel, "batch_sizes": clock.batch_sizes}
                if settings.parallel > 1
                else {}
            ),
        }
        run_info = results.run_record(
            settings=settings,
            plan_fields={
                "space": plan.space.name,
                "space_source": plan.space.source,
                "space_sha256": space_digest(plan.space),
                "study": plan.study_name,
                "storage": _redact(plan.storage_url),
                "out": str(plan.out_dir),
                "sampler": settings.sampler if isinstance(settings.sampler, str) else type(sampler).__name__,
                "sampler_class": type(sampler).__name__,
                "objectives": [o.name for o in plan.objectives],
                "evaluator_class": type(evaluator).__name__,
                **(
                    {"latency_calibration": asdict(plan.latency_calibration)}
                    if plan.latency_calibration is not None
                    else {}
                ),
            },
            trials=trials,
            started=started,
            ended=ended,
            timing=timing,
            interrupted=interrupted,
        )
        outputs = results.write_outputs(
            plan.out_dir, trials, plan.space, plan.settings.budget, plan.objectives, run_info
        )
        run_info["timing"]["outputs_seconds"] = round(time.perf_counter() - t_out, 3)
        results.write_run_json(plan.out_dir, run_info)
        evaluated = workers.count_evaluated(trials)
        result = SearchResult(
            out_dir=plan.out_dir,
            study_name=plan.study_name,
            storage_url=_redact(plan.storage_url),
            evaluated=evaluated,
            evaluated_this_run=evaluated - evaluated_before,
            best=outputs["best"],
            pareto=outputs["pareto"],
            run_info=run_info,
            files=outputs["files"],
        )
        if interrupted:
            raise KeyboardInterrupt
        if outputs["best"] is None:
            counts = run_info["counts"]
            raise NoResultError(
                f"no candidate was evaluated successfully ({counts['failed']} failed, "
                f"{counts['over_budget']} over budget); see the reasons in {plan.out_dir / 'trials.csv'}"
            )
        return result
    finally:
        close_storage(storage)


def _optimize_in_batches(
    plan: _Plan,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    evaluator: Evaluator,
    clock: _Clock,
    reference: GhostNetConfig | None,
    me: workers.WorkerId,
    after_trial: Callable[[Any, optuna.trial.FrozenTrial], None],
) -> None:
    """``--parallel N``: the same objective, N trials in flight, evaluated together
    (:mod:`ghostnas.search_batches`); the evaluation clock counts each batch once."""
    from ghostnas.search_batches import BatchingEvaluator, optimize_in_batches

    batcher = BatchingEvaluator(evaluator)
    objective = _make_objective(plan, batcher, clock, reference, me)
    settings = plan.settings
    try:
        optimize_in_batches(
            study,
            storage,
            objective,
            batcher,
            settings.parallel,
            settings.trials,
            timeout=settings.timeout,
            catch=(_CandidateFailed,),
            callbacks=[after_trial],
        )
    finally:
        clock.evaluation = batcher.evaluation_seconds
        clock.batch_sizes = list(batcher.batch_sizes)


def close_storage(storage: optuna.storages.BaseStorage | None) -> None:
    """Release an RDB storage's connections (SQLite then folds its WAL back into the database
    file, so the study is one self-contained file again)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _wait_for_others(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    me: workers.WorkerId,
    target: int,
    deadline: float | None,
) -> None:
    """After a surplus trial: wait while other workers' trials fill the remaining slots, so that
    a slot freed by a dying worker is taken by this one (its config retried) rather than lost.
    Stops at ``deadline`` (``--timeout``); Ctrl-C stops it safely too."""
    from optuna.storages import fail_stale_trials

    told = False
    while deadline is None or time.perf_counter() < deadline:
        trials = study.get_trials(deepcopy=False)
        running = workers.in_flight(trials)
        if workers.count_evaluated(trials) >= target or running == 0:
            return
        if not told:
            logger.warning(
                "the last %d slot(s) are taken by trials running in other workers; waiting for them "
                "(their configs are retried here if their workers die); Ctrl-C stops, rerun resumes",
                running,
            )
            told = True
        time.sleep(0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)  # heartbeat storages; a no-op for the others
        workers.sweep_stale(study, storage, me)


def _load_existing(
    storage: optuna.storages.BaseStorage, plan: _Plan, directions: list[str]
) -> list[optuna.trial.FrozenTrial]:
    """Trials of an existing study with this name (empty when there is none), after checking
    that it was created with the same settings."""
    import optuna

    try:
        probe = optuna.load_study(study_name=plan.study_name, storage=storage)
    except KeyError:
        return []
    _check_fingerprint(probe, plan)
    if [d.name.lower() for d in probe.directions] != directions:
        raise SearchError(
            f"study {plan.study_name!r} optimises {len(probe.directions)} objective(s), not "
            f"{','.join(o.name for o in plan.objectives)}; use the same --objectives or another --study"
        )
    return probe.get_trials(deepcopy=False)


def _check_fingerprint(study: optuna.Study, plan: _Plan) -> None:
    old = study.user_attrs.get("ghostnas")
    if not old:
        return
    for key in _FINGERPRINT_KEYS:
        if key in old and old[key] != plan.fingerprint[key]:
            raise SearchError(
                f"study {plan.study_name!r} was created with {key} {old[key]!r}, not {plan.fingerprint[key]!r}; "
                "resume with the same settings or choose another --out/--study"
            )
