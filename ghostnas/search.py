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
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas import noise, promotion, run_history, workers
from ghostnas._fs import as_write_failed, check_output_dir, is_write_fault, repair_journal_tail, writing
from ghostnas.budget import (
    BUDGET_INPUT_SIZE,
    BUDGET_NUM_CLASSES,
    Budget,
    Objective,
    candidate_costs,
    default_objectives,
    front_metric,
    parse_objectives,
)
from ghostnas.config import BuildSpec, GhostNetConfig, config_to_dict
from ghostnas.cost import PAPER_SHAPE
from ghostnas.data import (
    DATASETS,
    DatasetSpec,
    check_input_size,
    data_label,
    input_shape,
    load_dataset,
    spec_of,
)
from ghostnas.errors import GhostnasError, WriteFailedError
from ghostnas.evaluators import (
    DEFAULT_EVALUATOR,
    EvalResult,
    EvalSettings,
    EvaluationFailed,
    Evaluator,
    MultiFidelityEvaluator,
    ReportFn,
    list_evaluators,
    make_evaluator,
    score_label,
)
from ghostnas.noise import DEFAULT_NOISE_SEEDS
from ghostnas.promotion import MAX_RUNGS
from ghostnas.space import SearchSpace, load_space, space_digest

if TYPE_CHECKING:
    import optuna

    from ghostnas.data import Dataset

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
RUNS_DIR = Path("ghostnas-runs")
"""Where run folders go by default, relative to the working directory (``--out`` overrides)."""

# Settings that change what a trial's score means; a study created with other values is not
# resumed (the user gets an error naming the difference).
_FINGERPRINT_KEYS = (
    "space",
    "budget",
    "objectives",
    "evaluator",
    "epochs",
    "data",
    "cost_at",
    "data_digest",
    "rungs",
    "task",
    "image_size",
)
COST_AT = ("paper", "data")


class SearchError(GhostnasError):
    """The search cannot start: bad settings, unreadable storage, a study made with other settings."""


class NoResultError(SearchError):
    """The run finished but no candidate was scored (every trial failed or was over budget)."""


@dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search run; the CLI fills it from its flags.

    Attributes:
        budget: The cost limit (MACs and params at the shape ``cost_at`` names).
        space: Shipped space name or path to a space YAML file.
        trials: Evaluated candidates wanted in the study in total (a resumed run adds only the
            missing ones); over-budget proposals do not count.
        timeout: Stop starting new trials after this many seconds of this run (None: no limit).
        sampler: ``tpe``, ``nsga2``, ``random`` or ``gp`` (ignored when a sampler object is given
            to :func:`run_search`).
        objectives: ``accuracy,macs`` (Pareto front), ``accuracy,params``, ``accuracy,latency``
            or ``accuracy`` (single objective; the only mode where pruning applies). None:
            :func:`ghostnas.budget.default_objectives`, accuracy against the budget's metric.
        evaluator: Evaluator name (see :func:`ghostnas.evaluators.list_evaluators`).
        epochs: Proxy training budget for training evaluators (None: the evaluator's default).
        data: Dataset the evaluator trains on: a name (``fashion-mnist``...), the path of an
            image folder or ``.npz`` file, or a :class:`ghostnas.data.Dataset` from
            :func:`ghostnas.data.from_arrays` (data already in memory).
        data_dir: Where a named dataset's files are.
        image_size: Resize the user's images to this side (None: their own size).
        cost_at: ``paper`` (default): MACs, params and the budget at 224x224, 1000 classes,
            comparable with published tables; ``data``: at the data's own shape
            (:func:`ghostnas.data.input_shape`). Outputs say which.
        seed: Seeds the sampler and the evaluator.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``.
        out: Run folder (None: :func:`default_out_dir`).
        storage: Optuna storage URL or ``journal:PATH`` (None: SQLite file in the run folder).
        study: Study name (None: the run folder's name).
        reference: Evaluate the space's reference network, width-scaled to the budget, first.
        command: The command line that started the run, recorded in ``run.json``.
        latency_table: Latency table for a latency budget or objective (None: this CPU's
            default table, see :mod:`ghostnas.latency`); block shapes it lacks are timed on
            this machine's CPU and added to it.
        latency_calibration: Before a latency search, time GhostNet 0.5x/1.0x/1.3x and rescale
            the table's predictions to this session's speed (:func:`ghostnas.latency.calibrate_session`,
            the same cached calibration ``latency predict`` uses; a few seconds). A shared machine
            drifts 10-15% between sessions; without this a stale table lets the front overshoot
            the budget by that much.
        latency_backend: ``torch`` (eager) or ``onnxruntime``: what the latency table and the
            calibration time (part of the table's device key).
        noise_seeds: Scores of the reference network, its own included, that measure the
            proxy's seed-to-seed noise (:mod:`ghostnas.noise`); 0 or 1 measures none. Needs
            ``reference``.
        rungs: Promotion rungs (:mod:`ghostnas.promotion`); 1 trains every candidate once, as
            before. Multi-objective searches with a training evaluator only.
        parallel: Trials in flight in this process, evaluated together (one CUDA graph and
            stream each on a GPU; see :mod:`ghostnas.search_batches`). 1: one at a time.
        task: ``classify`` (GhostNet classifiers, the default) or ``detect``: backbones inside
            a YOLO detector (:mod:`ghostnas.detect`), ``data`` an Ultralytics data.yaml, the
            budget in Ultralytics' GFLOPs, ``space`` a detection space, ``image_size`` the
            proxy's training side.
        base: ``detect`` only: another base detector than the space's (``yolov8s``...).
    """

    budget: Budget
    space: str = DEFAULT_SPACE
    trials: int = DEFAULT_TRIALS
    timeout: float | None = None
    sampler: str = "tpe"
    objectives: str | None = None
    evaluator: str = DEFAULT_EVALUATOR
    epochs: float | None = None
    data: str | Dataset = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | None = None
    cost_at: str = "paper"
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    storage: str | None = None
    study: str | None = None
    reference: bool = True
    latency_table: str | None = None
    latency_calibration: bool = True
    latency_backend: str = "torch"
    noise_seeds: int = DEFAULT_NOISE_SEEDS
    rungs: int = 1
    command: Sequence[str] | None = None
    parallel: int = 1
    task: str = "classify"
    base: str | None = None


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each trial.

    Attributes:
        evaluated, target: Evaluated trials in the study and the number wanted.
        proposals, over_budget: This run's proposals and how many were over budget.
        best_accuracy: The best score so far (the evaluator's own scale, see ``score_label``).
        pareto_size: Size of the front in (score, ``cost_key``).
        last_state: Outcome of the trial that just finished (``ok``, ``failed``, ``over_budget``...).
        trial: Its number.
        score: Its score, when it was scored.
        costs: Its ``macs`` and ``params`` at 224x224 (and ``latency_ms`` when predicted).
        seconds: Its evaluation time (None when it never reached the evaluator).
        cost_key: The front's cost axis (:func:`ghostnas.budget.front_metric`).
    """

    evaluated: int
    target: int
    proposals: int
    over_budget: int
    best_accuracy: float | None
    pareto_size: int
    last_state: str
    trial: int | None = None
    score: float | None = None
    costs: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    cost_key: str = "macs"


@dataclass(frozen=True)
class SearchStart:
    """What a run is about to do, once every input has been checked (for a start line).

    Attributes:
        space, sampler: The space's name and the sampler's.
        budget: The budget (``describe()`` and ``convention()`` say it in words).
        objectives: Objective names, e.g. ``("accuracy", "macs")``.
        evaluator, score_label: The evaluator's name and what its score is called.
        data, device: What the evaluator reads and runs on.
        trials, evaluated_before: Evaluated trials wanted in the study, and already there.
        out_dir, study, storage: Where the outputs and the study go (storage without password).
        command: The command line, when the CLI started the run.
    """

    space: str
    sampler: str
    budget: Budget
    objectives: tuple[str, ...]
    evaluator: str
    score_label: str
    data: str
    device: str
    trials: int
    evaluated_before: int
    out_dir: Path
    study: str
    storage: str
    command: tuple[str, ...] | None


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
    """``ghostnas-runs/search-<space>[-<data>]-<budget>-<evaluator>-<sampler>-seed<seed>``: the same
    command gives the same folder, which is what makes re-running it resume. Objectives other
    than the budget's default (:func:`ghostnas.budget.default_objectives`) are named too."""
    sampler = settings.sampler if isinstance(settings.sampler, str) else "custom"
    default = default_objectives(settings.budget).replace(",", "+")
    objectives = (settings.objectives or default).replace(",", "+")
    parts = [
        "search",
        space_name,
        settings.budget.slug(),
        settings.evaluator,
        sampler,
        f"seed{settings.seed}",
    ]
    if objectives != default:
        parts.insert(3, objectives)
    data = settings.data
    name = data.spec.name.split(":")[-1] if not isinstance(data, str) else Path(data).stem
    if name != "fashion-mnist":  # another dataset is another study, in another folder
        parts.insert(2, name)
    if settings.cost_at != "paper":
        parts.insert(3, f"costat{settings.cost_at}")
    return RUNS_DIR / re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))


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

            if repair_journal_tail(path):  # an append that failed part-way (disk full, kill -9)
                logger.warning("%s: dropped an unfinished last line left by a failed write", path)
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
        fault = as_write_failed(exc, _storage_path(url), "the study storage")
        if fault is not None:  # a full disk is not a bad URL
            raise fault from exc
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
    data: Any = "fashion-mnist"  # a name (read lazily by the evaluator) or a loaded Dataset
    shape: BuildSpec = PAPER_SHAPE  # where MACs and params are counted (--cost-at)
    task: Any = None  # a ghostnas.detect.task.DetectTask for --task detect (space, cost, data)


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
    if settings.objectives is None:
        settings = replace(settings, objectives=default_objectives(budget))
    for name, value, lo, hi in (
        ("noise_seeds", settings.noise_seeds, 0, 20),
        ("rungs", settings.rungs, 1, MAX_RUNGS),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SearchError(f"{name} = {value!r}: must be an integer from {lo} to {hi}")
    objectives = parse_objectives(settings.objectives)
    if settings.rungs > 1 and settings.parallel > 1:
        raise SearchError(
            "rungs > 1 (promotion) trains candidates one at a time and cannot be combined with "
            "parallel > 1 yet: use --rungs 1 or --parallel 1"
        )
    if settings.rungs > 1 and len(objectives) == 1:
        raise SearchError(
            "rungs > 1 (promotion) is for multi-objective searches; a single-objective search "
            "prunes with Optuna's pruner instead: use --rungs 1 or --objectives accuracy,macs"
        )
    if len(objectives) > 1 and objectives[1].name != budget.metric:
        logger.info("objective %s differs from the budget metric %s", objectives[1].name, budget.metric)
    if settings.evaluator not in list_evaluators():
        raise SearchError(
            f"unknown evaluator {settings.evaluator!r}; choose one of {', '.join(list_evaluators())}"
        )
    from ghostnas.device import resolve_device

    settings = replace(settings, device=resolve_device(settings.device))
    if settings.task == "detect":
        return _validate_detect(settings, objectives)
    if settings.task != "classify":
        raise SearchError(f"task {settings.task!r}: choose classify or detect")
    if settings.cost_at not in COST_AT:
        raise SearchError(f"--cost-at {settings.cost_at!r}: choose paper (224x224, 1000 classes) or data")
    latency, latency_path, calibration = None, None, None
    if budget.metric == "latency_ms" or any(o.name == "latency_ms" for o in objectives):
        if settings.cost_at == "data":
            raise SearchError(
                "--cost-at data counts MACs and params at the data's shape, but latency tables are timed "
                "at 224x224; use --cost-at paper with a latency budget or objective"
            )
        latency, latency_path = _open_latency(settings.latency_table, settings.latency_backend)
    space = load_space(settings.space)
    data, spec = _resolve_data(settings, space)
    shape = input_shape(spec) if settings.cost_at == "data" else PAPER_SHAPE
    lo = space.cost_range(shape.input_size, shape.num_classes, shape.in_chans, shape.stem_stride)
    smallest = lo.min_macs if budget.metric == "macs" else lo.min_params
    if budget.metric != "latency_ms" and smallest > budget.limit:
        unit = "MACs" if budget.metric == "macs" else "params"
        raise SearchError(
            f"budget {budget.describe()} is below the smallest config of space {space.name} "
            f"({smallest:,} {unit} at {shape.describe()}); raise the budget or use a smaller space"
        )
    out_dir = Path(settings.out) if settings.out else default_out_dir(settings, space.name)
    storage_url, study_name = _run_place(settings, out_dir)
    fingerprint = {
        "space": space.name,
        "budget": budget.describe(),
        "objectives": ",".join(o.name for o in objectives),
        "evaluator": settings.evaluator,
        "epochs": settings.epochs,
        "data": data_label(data),
        "rungs": settings.rungs,
    }
    fingerprint["cost_at"] = "paper" if settings.cost_at == "paper" else f"data: {shape.describe()}"
    if getattr(data, "digest", None):
        fingerprint["data_digest"] = data.digest
    if latency is not None:
        fingerprint["latency_device"] = latency.table.device
        if settings.latency_calibration:  # a measurement: only once every input has passed
            calibration = _calibrate_latency(latency, latency_path)
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
        data,
        shape,
    )


def _run_place(settings: SearchSettings, out_dir: Path) -> tuple[str, str]:
    """Check the run folder and storage can be written; the storage URL and the study name."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SearchError(f"--out {out_dir}: exists and is not a folder")
    check_output_dir(out_dir, "--out")
    if settings.storage and settings.storage.startswith(("journal:", "sqlite:///")):
        folder = Path(_storage_path(settings.storage)).expanduser().parent
        if folder.is_dir():  # (a missing folder is open_storage's one-line error)
            check_output_dir(folder, "--storage", name=_redact(settings.storage))
    study_name = settings.study or out_dir.name
    if not study_name or len(study_name) > 500:
        raise SearchError("study name must be 1 to 500 characters")
    return settings.storage or f"sqlite:///{out_dir / 'study.db'}", study_name


def _validate_detect(settings: SearchSettings, objectives: tuple[Objective, ...]) -> _Plan:
    """``--task detect``: the detection space, data, cost and budget (:mod:`ghostnas.detect.task`),
    checked before anything is written; the rest of the run is the classification search's."""
    from ghostnas.detect.task import detect_budget, open_detect_task

    if settings.cost_at != "paper" or settings.latency_table is not None:
        raise SearchError(
            "--task detect counts Ultralytics GFLOPs; --cost-at and latency budgets do not apply"
        )
    budget = detect_budget(settings.budget)
    objectives = parse_objectives(str(settings.objectives).replace("macs", "gflops"))  # FLOPs: Ultralytics'
    if any(o.name not in ("accuracy", "gflops", "params") for o in objectives):
        raise SearchError("--task detect optimises accuracy against gflops or params")
    evaluator = "detect" if settings.evaluator == DEFAULT_EVALUATOR else settings.evaluator
    settings = replace(
        settings, budget=budget, evaluator=evaluator, objectives=",".join(o.name for o in objectives)
    )
    task = open_detect_task(
        None if settings.space == DEFAULT_SPACE else settings.space, settings.data, budget, settings.base
    )
    sampler = settings.sampler if isinstance(settings.sampler, str) else "custom"
    out_dir = (
        Path(settings.out)
        if settings.out
        else RUNS_DIR / task.out_dir_name(budget, settings.evaluator, sampler, settings.seed)
    )
    storage_url, study_name = _run_place(settings, out_dir)
    fingerprint = {
        "space": task.space.name,
        "budget": budget.describe(),
        "objectives": settings.objectives,
        "evaluator": settings.evaluator,
        "epochs": settings.epochs,
        "rungs": settings.rungs,
        "image_size": settings.image_size,
        **task.fingerprint(),
    }
    data = str(task.data.yaml_path)
    return _Plan(
        settings, task.space, objectives, out_dir, storage_url, study_name, fingerprint, data=data, task=task
    )


def _resolve_data(settings: SearchSettings, space: SearchSpace) -> tuple[Any, DatasetSpec]:
    """The data and its shape, checked against the space's downsampling.

    A named dataset stays a name (the evaluator reads it when, and if, it needs it); the user's
    folder or ``.npz`` is read now, once (decoded or from the cache), so that a bad image is a
    one-line error before the run folder exists and every evaluator shares the same tensors.
    """
    downsamples = sum(st.blocks[0].stride == 2 for st in space.stages)

    def check(spec: DatasetSpec) -> None:
        check_input_size(spec, downsamples, f"space {space.name}")

    if isinstance(settings.data, str) and settings.data in DATASETS:
        if settings.image_size is not None:
            load_dataset(settings.data, settings.data_dir, settings.image_size)  # raises: not resized
        spec = spec_of(settings.data)
        check(spec)
        return settings.data, spec
    dataset = load_dataset(settings.data, settings.data_dir, settings.image_size, check=check)
    return dataset, dataset.spec


def _data_fields(plan: _Plan) -> dict[str, Any]:
    """What ``run.json`` records about the data and the cost convention."""
    if plan.task is not None:
        return plan.task.run_fields()
    data, shape = plan.data, plan.shape
    fields: dict[str, Any] = {
        "data": data_label(data),
        "data_dir": plan.settings.data_dir,
        "cost_at": plan.settings.cost_at,
        "cost_shape": asdict(shape),
        "cost_convention": (
            "conv+linear multiply-accumulates and params at 224x224, 1000 classes"
            if shape == PAPER_SHAPE
            else f"conv+linear multiply-accumulates and params at the data's shape, {shape.describe()}"
        ),
    }
    spec = spec_of(data)
    fields.update(
        image_size=spec.size,
        data_shape={"in_chans": spec.in_chans, "size": spec.size, "num_classes": spec.num_classes},
        build=input_shape(spec).build_args(),
    )
    if not isinstance(data, str):
        fields.update(
            data_source=data.source,
            data_digest=data.digest,
            classes=list(data.classes) if data.classes is not None else None,
            splits={
                "train": len(data.train_x),
                "val": None if data.val_x is None else len(data.val_x),
                "test": len(data.test_x),
            },
        )
    return fields


def _calibrate_latency(predictor: Any, table_path: Path) -> Any:
    """Rescale the predictor to this session's speed with the three published GhostNets
    (the one cached calibration every latency caller uses)."""
    from ghostnas.latency import calibrate_session, calibration_cache_path

    return calibrate_session(predictor, calibration_cache_path(table_path))


def _open_latency(table: str | None, backend: str = "torch") -> tuple[Any, Path]:
    """This CPU's latency predictor (1 thread, 224x224, batch 1), or a one-line error telling
    the user to run ``ghostnas latency build-table``."""
    from ghostnas.latency import NetworkSpec, open_predictor

    return open_predictor(
        "cpu",
        table=table,
        spec=NetworkSpec(input_size=BUDGET_INPUT_SIZE, num_classes=BUDGET_NUM_CLASSES),
        backend=backend,
    )


def _costs(plan: _Plan, cfg: GhostNetConfig) -> dict[str, float]:
    """Every cost of a candidate; with a latency predictor, newly timed blocks are saved."""
    if plan.task is not None:
        return plan.task.costs(cfg)
    if plan.latency is None:
        return candidate_costs(cfg, shape=plan.shape)
    before = len(plan.latency.table.entries)
    costs = candidate_costs(cfg, latency=plan.latency.predict, shape=plan.shape)
    if len(plan.latency.table.entries) != before and plan.latency_path is not None:
        from ghostnas.latency import save_table

        with writing(plan.latency_path, "the latency table"):
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
    noise: float = 0.0
    cost_model: float = 0.0
    objective_calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # --parallel: candidates per batch


def _make_objective(
    plan: _Plan,
    evaluator: Evaluator,
    clock: _Clock,
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
    plan: _Plan,
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
    cost_key = plan.objectives[1].name

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
    raise _CandidateFailed(reason)


def _fmt(value: float, metric: str) -> str:
    if metric == "latency_ms":
        return f"{value:.3g} ms"
    if metric == "gflops":
        return f"{value:.3f} GFLOPs"
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
    import optuna

    from ghostnas import results

    if sampler is None and settings.sampler not in SAMPLERS:
        raise SearchError(f"unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler is not None and settings.sampler in SAMPLERS:
        settings = replace(settings, sampler=type(sampler).__name__)
    plan = _validate(settings)
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
        cost_key = front_metric(settings.budget, plan.objectives)
        tracker = results.FrontTracker(cost_key)
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
                ua = trial.user_attrs
                progress(
                    Progress(
                        evaluated=state["evaluated"],
                        target=settings.trials,
                        proposals=state["proposals"],
                        over_budget=state["over"],
                        best_accuracy=tracker.best_accuracy,
                        pareto_size=tracker.pareto_size,
                        last_state=ua.get("outcome", trial.state.name.lower()),
                        trial=trial.number,
                        score=ua.get("accuracy") if ua.get("outcome") == "ok" else None,
                        costs={k: float(ua[k]) for k in ("macs", "params", "latency_ms", "gflops") if k in ua},
                        seconds=ua.get("seconds"),
                        cost_key=cost_key,
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
        label = score_label(evaluator)
        if on_start is not None:
            on_start(
                SearchStart(
                    space=plan.space.name,
                    sampler=settings.sampler if isinstance(settings.sampler, str) else type(sampler).__name__,
                    budget=settings.budget,
                    objectives=tuple(o.name for o in plan.objectives),
                    evaluator=settings.evaluator,
                    score_label=label,
                    data=settings.data,
                    device=settings.device,
                    trials=settings.trials,
                    evaluated_before=evaluated_before,
                    out_dir=plan.out_dir,
                    study=plan.study_name,
                    storage=_redact(plan.storage_url),
                    command=tuple(settings.command) if settings.command is not None else None,
                )
            )
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
            "noise_probe_seconds": round(clock.noise, 3),
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
        history = run_history.extend_history(
            plan.out_dir / "run.json",
            run_history.invocation(
                command=settings.command,
                started=started.isoformat(timespec="seconds"),
                ended=ended.isoformat(timespec="seconds"),
                interrupted=interrupted,
                evaluated=workers.count_evaluated(trials) - evaluated_before,
                timing=timing,
            ),
        )
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
                "score_label": label,
                "front_metric": cost_key,
                **_data_fields(plan),
                "noise_seeds": settings.noise_seeds,
                "rungs": settings.rungs,
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
            history=history,
        )
        run_info["noise"] = noise.run_record(trials, settings.noise_seeds, settings.reference)
        run_info["promotion"] = promotion.run_record(trials, settings.rungs)
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
    except Exception as exc:
        fault = as_write_failed(exc, _storage_path(plan.storage_url), "the study storage")
        if fault is None:
            raise
        raise _resumable(fault, storage, plan) from exc
    finally:
        close_storage(storage)


def _storage_path(url: str) -> str:
    """The file behind a SQLite or journal storage URL; the (redacted) URL for a server."""
    if url.startswith("journal:"):
        return url[len("journal:") :]
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return url[len("sqlite:///") :]
    return _redact(url)


def _resumable(fault: WriteFailedError, storage: Any, plan: _Plan) -> WriteFailedError:
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
    objective = _make_objective(plan, batcher, clock, reference, me, direct=evaluator)
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
        if key in old and old[key] != plan.fingerprint.get(key):
            raise SearchError(
                f"study {plan.study_name!r} was created with {key} {old[key]!r}, not {plan.fingerprint.get(key)!r}; "
                "resume with the same settings or choose another --out/--study"
            )
