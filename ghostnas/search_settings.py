"""What a search is asked to do, and what it reports: the settings record, the progress and
start records a display reads, and the result.

These are the search's public data types (re-exported by :mod:`ghostnas.search`). They sit in a
module of their own, below everything that plans, runs and scores a search, so that each of
those modules can name them without importing :mod:`ghostnas.search` (which imports them all).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas.budget import Budget, default_objectives
from ghostnas.errors import GhostnasError
from ghostnas.evaluators import DEFAULT_EVALUATOR
from ghostnas.noise import DEFAULT_NOISE_SEEDS
from ghostnas.records import TrialRecord
from ghostnas.storage import DEFAULT_RETRY_S

if TYPE_CHECKING:
    from ghostnas.data import Dataset

__all__ = [
    "COST_AT",
    "DEFAULT_SPACE",
    "DEFAULT_TRIALS",
    "MAX_PROPOSALS_PER_TRIAL",
    "RUNS_DIR",
    "NoResultError",
    "Progress",
    "SearchError",
    "SearchResult",
    "SearchSettings",
    "SearchStart",
    "default_out_dir",
]

DEFAULT_SPACE = "ghostnet_v1"
DEFAULT_TRIALS = 30
MAX_PROPOSALS_PER_TRIAL = 50
RUNS_DIR = Path("ghostnas-runs")
"""Where run folders go by default, relative to the working directory (``--out`` overrides)."""
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
        storage_retry_s: How long to wait for a database server (PostgreSQL, MySQL) that stopped
            answering mid-run before stopping with a one-line error (:mod:`ghostnas.storage`).
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
    storage_retry_s: float = DEFAULT_RETRY_S
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
        cost_key: The front's cost axis (:func:`ghostnas.front.cost_key`, the budget's metric
            unless a second objective names another; never a default).
    """

    evaluated: int
    target: int
    proposals: int
    over_budget: int
    best_accuracy: float | None
    pareto_size: int
    last_state: str
    cost_key: str
    trial: int | None = None
    score: float | None = None
    costs: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None


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
        best: Best trial under budget (:func:`ghostnas.front.best_record`), or None.
        pareto: The Pareto front, as ``pareto.json`` holds it.
        run_info: The content of ``run.json``.
        files: Output file names written.
    """

    out_dir: Path
    study_name: str
    storage_url: str
    evaluated: int
    evaluated_this_run: int
    best: TrialRecord | None
    pareto: list[dict[str, Any]]
    run_info: dict[str, Any]
    files: list[str] = field(default_factory=list)


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
