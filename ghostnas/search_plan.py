"""Planning a search: every input checked and resolved before anything is written.

:func:`plan_search` turns :class:`~ghostnas.search_settings.SearchSettings` into a
:class:`SearchPlan`: the loaded space, the objectives, the data (a name, or the user's images read
once), where MACs and params are counted (``--cost-at``), the run folder, the storage URL and
study name, the resume fingerprint (:mod:`ghostnas.resume`), and for a latency budget or
objective the latency predictor, calibrated to this session (:mod:`ghostnas.latency`). A bad
input is a one-line :class:`~ghostnas.search_settings.SearchError` with nothing written.

The plan also prices a candidate (:func:`candidate_costs_of`, saving newly timed latency blocks)
and picks the width of the reference network that fits the budget (:func:`reference_params`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ghostnas._fs import check_output_dir, writing
from ghostnas.budget import (
    BUDGET_INPUT_SIZE,
    BUDGET_NUM_CLASSES,
    Objective,
    candidate_costs,
    default_objectives,
    parse_objectives,
)
from ghostnas.config import BuildSpec, GhostNetConfig
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
from ghostnas.evaluators import DEFAULT_EVALUATOR, list_evaluators
from ghostnas.promotion import MAX_RUNGS
from ghostnas.search_settings import (
    COST_AT,
    DEFAULT_SPACE,
    RUNS_DIR,
    SearchError,
    SearchSettings,
    default_out_dir,
)
from ghostnas.space import SearchSpace, load_space
from ghostnas.storage import check_retry_s, default_storage_url, redact, storage_path

__all__ = [
    "SearchPlan",
    "calibrate_latency",
    "candidate_costs_of",
    "data_fields",
    "open_latency",
    "plan_detect",
    "plan_search",
    "reference_params",
    "resolve_data",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPlan:
    """Validated settings, resolved into the objects a run needs (made by :func:`plan_search`)."""

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


def plan_search(settings: SearchSettings) -> SearchPlan:
    """Check every input before anything is written (one-line :class:`SearchError` otherwise) and
    resolve the settings into a plan: the space, objectives, data, cost shape, run folder,
    storage, study name, resume fingerprint and (for latency) the calibrated predictor."""
    budget = settings.budget
    if isinstance(settings.trials, bool) or not isinstance(settings.trials, int) or settings.trials < 1:
        raise SearchError(f"trials = {settings.trials!r}: must be an integer of at least 1")
    if settings.timeout is not None and (not math.isfinite(settings.timeout) or settings.timeout <= 0):
        raise SearchError(f"timeout = {settings.timeout!r}: must be a positive number of seconds")
    if isinstance(settings.parallel, bool) or not isinstance(settings.parallel, int) or settings.parallel < 1:
        raise SearchError(f"parallel = {settings.parallel!r}: must be an integer of at least 1")
    check_retry_s(settings.storage_retry_s)
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
    if settings.task == "detect" and settings.evaluator == DEFAULT_EVALUATOR:
        settings = replace(settings, evaluator="detect")  # the detection proxy is the default there
    if settings.evaluator not in list_evaluators(settings.task):
        raise SearchError(
            f"unknown evaluator {settings.evaluator!r}; choose one of {', '.join(list_evaluators(settings.task))}"
        )
    from ghostnas.device import resolve_device

    settings = replace(settings, device=resolve_device(settings.device))
    if settings.task == "detect":
        return plan_detect(settings)
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
        latency, latency_path = open_latency(settings.latency_table, settings.latency_backend)
    space = load_space(settings.space)
    data, spec = resolve_data(settings, space)
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
            calibration = calibrate_latency(latency, latency_path)
    return SearchPlan(
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
    """Check the run folder and the storage's folder take files; the storage URL and study name."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SearchError(f"--out {out_dir}: exists and is not a folder")
    check_output_dir(out_dir, "--out")
    if settings.storage and settings.storage.startswith(("journal:", "sqlite:///")):
        folder = Path(storage_path(settings.storage)).expanduser().parent
        if folder.is_dir():  # (a missing folder is open_storage's one-line error)
            check_output_dir(folder, "--storage", name=redact(settings.storage))
    study_name = settings.study or out_dir.name
    if not study_name or len(study_name) > 500:
        raise SearchError("study name must be 1 to 500 characters")
    return settings.storage or default_storage_url(out_dir), study_name


def plan_detect(settings: SearchSettings) -> SearchPlan:
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
    settings = replace(settings, budget=budget, objectives=",".join(o.name for o in objectives))
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
    return SearchPlan(
        settings,
        task.space,
        objectives,
        out_dir,
        storage_url,
        study_name,
        fingerprint,
        data=str(task.data.yaml_path),
        task=task,
    )


def resolve_data(settings: SearchSettings, space: SearchSpace) -> tuple[Any, DatasetSpec]:
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


def data_fields(plan: SearchPlan) -> dict[str, Any]:
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


def calibrate_latency(predictor: Any, table_path: Path) -> Any:
    """Rescale the predictor to this session's speed with the three published GhostNets
    (the one cached calibration every latency caller uses)."""
    from ghostnas.latency import calibrate_session, calibration_cache_path

    return calibrate_session(predictor, calibration_cache_path(table_path))


def open_latency(table: str | None, backend: str = "torch") -> tuple[Any, Path]:
    """This CPU's latency predictor (1 thread, 224x224, batch 1), or a one-line error telling
    the user to run ``ghostnas latency build-table``."""
    from ghostnas.latency import NetworkSpec, open_predictor

    return open_predictor(
        "cpu",
        table=table,
        spec=NetworkSpec(input_size=BUDGET_INPUT_SIZE, num_classes=BUDGET_NUM_CLASSES),
        backend=backend,
    )


def candidate_costs_of(plan: SearchPlan, cfg: GhostNetConfig) -> dict[str, float]:
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


def reference_params(plan: SearchPlan) -> tuple[GhostNetConfig | None, dict[str, Any] | None]:
    """The reference network at the widest grid width that fits the budget."""
    space, budget = plan.space, plan.settings.budget
    if space.reference is None:
        return None, None
    for width in reversed(space.width.values()):
        cfg = space.reference.with_width(width)
        if budget.fits(candidate_costs_of(plan, cfg)):
            return cfg, space.config_to_params(cfg)
    logger.warning("no width of the reference network fits %s; starting without it", budget.describe())
    return None, None
