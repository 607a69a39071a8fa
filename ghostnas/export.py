"""Turning a search result into a named model: ``ghostnas export``.

A trial of a finished run (the best under budget, or any scored trial by number) is written as a
config JSON file with its provenance into the user's model library (``$GHOSTNAS_HOME/models``,
default ``~/.ghostnas/models``) or another folder. From then on ``ghostnas.create_model(NAME)``,
``ghostnas profile NAME`` and ``ghostnas models`` know it. Optionally the same architecture is
written as a checked ONNX file (:func:`ghostnas.onnx_export.export_onnx`).

Where the config comes from. The run folder records each trial's full config (``trials.csv``,
:mod:`ghostnas.run_folder`), and that is what is exported: no replay through the search space.
A folder written before trials carried their config holds the front's and the best's configs
(``pareto.json``, ``best.json``); any other trial of such a folder is read from the run's study,
in the storage ``run.json`` names (SQLite, PostgreSQL or a journal file; ``storage=`` overrides it,
e.g. to give the password ``run.json`` leaves out). Either way the config must reproduce the
architecture string and the params and MACs the run recorded, or nothing is written: an export
never silently differs from what was searched.

Every check runs before anything is written, so a bad request leaves no file behind.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas._fs import as_write_failed, check_output_dir
from ghostnas.config import BuildSpec, GhostNetConfig, save_config
from ghostnas.cost import PAPER_SHAPE, count_cost
from ghostnas.errors import GhostnasError
from ghostnas.front import best_record
from ghostnas.records import ATTR_CONFIG, TrialRecord, config_or_none
from ghostnas.registry import model_entries, user_model_dir, valid_model_name
from ghostnas.run_folder import RunFolder, open_run
from ghostnas.version import VERSION

__all__ = [
    "ExportError",
    "ExportResult",
    "OnnxOptions",
    "export_trial",
    "run_input_shape",
    "select_trial",
    "study_storage",
    "trial_config",
]

log = logging.getLogger(__name__)

_NOT_SCORED = {
    "over_budget": "was over budget: rejected by the cost model, never trained",
    "failed": "failed",
    "pruned": "was stopped early by the pruner (no final accuracy)",
    "interrupted": "was interrupted",
    "running": "is still running or was killed",
}


class ExportError(GhostnasError):
    """The export request cannot be met: bad name, missing trial, name clash."""


@dataclass(frozen=True)
class OnnxOptions:
    """How to write the ONNX file alongside the config (see :func:`ghostnas.onnx_export.export_onnx`).

    A field left None takes the value the run's data implies (:func:`run_input_shape`), so by
    default the ONNX graph has the input and classifier the network was searched and trains for.
    """

    path: Path
    input_size: int | None = None
    num_classes: int | None = None
    in_chans: int | None = None
    stem_stride: int | None = None
    weights: Path | None = None
    dynamic_batch: bool = False


def run_input_shape(run: RunFolder) -> BuildSpec:
    """The shape the run's data implies (:func:`ghostnas.data.input_shape`, recorded in run.json
    as ``build`` and ``image_size``); the papers' 224x224 / 1000 classes for runs that predate it."""
    s = run.settings
    build, size = s.get("build"), s.get("image_size")
    if not build or not size:
        return PAPER_SHAPE
    return BuildSpec(input_size=int(size), **{k: int(v) for k, v in build.items()})


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        name: The model name.
        path: The config JSON file.
        trial: The exported trial's number.
        config: The exported architecture.
        meta: The provenance written with it.
        onnx: The ONNX check result (``path``, ``max_abs_diff``, ``onnxruntime``), or None.
    """

    name: str
    path: Path
    trial: int
    config: GhostNetConfig
    meta: dict[str, Any]
    onnx: dict[str, Any] | None = None


def select_trial(run: RunFolder, trial: int | None) -> TrialRecord:
    """The record to export: trial ``trial``, or the best under budget when None.

    Raises:
        ExportError: no such trial, or the trial has no accuracy (failed, over budget, pruned).
    """
    if trial is None:
        best = best_record(run.records, run.budget)
        if best is None:
            raise ExportError(f"{run.path}: no trial was scored under budget; nothing to export")
        return best
    record = run.record(trial)
    if record is None:
        numbers = [r.number for r in run.records]
        span = f"trials {min(numbers)}..{max(numbers)}" if numbers else "no trials"
        raise ExportError(f"{run.path}: no trial {trial} (the run has {span}); see trials.csv")
    if not record.scored:
        why = _NOT_SCORED.get(record.outcome, f"has outcome {record.outcome!r}")
        reason = f" ({record.reason})" if record.reason else ""
        raise ExportError(f"trial {trial} {why}{reason}; export a scored trial (see trials.csv or --best)")
    limit = run.budget.limit
    cost = record.cost(run.budget.metric)
    if cost is None or cost > limit:
        raise ExportError(f"trial {trial} is over the run's budget {run.budget.describe()}; pick another")
    return record


def study_storage(run: RunFolder, storage: str | None = None) -> str | None:
    """The storage URL of the run's study: ``storage`` when given, else the one ``run.json``
    records. A SQLite or journal file that is not where it was recorded is looked for in the run
    folder (a folder moved with its study). None when the study's file is nowhere to be found."""
    url = storage or run.settings.get("storage")
    if not url:
        return None
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            path = Path(url[len(prefix) :]).expanduser()
            if path.is_file():
                return url
            moved = run.path / path.name
            return f"{prefix}{moved}" if moved.is_file() else None
    return url


def _study_config(run: RunFolder, number: int, storage: str | None) -> GhostNetConfig:
    """Trial ``number``'s full config, read from the run's study (old-format folders only)."""
    url = study_storage(run, storage)
    if url is None:
        raise ExportError(
            f"{run.path}: trial {number}'s config is not in the run folder (written before trials "
            "carried their config) and the study's storage file is gone; pass --storage URL"
        )
    import optuna

    from ghostnas.storage import close_storage, open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    opened = None
    try:
        opened = open_storage(url)
        study = optuna.load_study(study_name=run.settings["study"], storage=opened)
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    except GhostnasError as exc:
        raise ExportError(f"{run.path}: cannot read trial {number}'s config from its study: {exc}") from None
    except Exception as exc:  # sqlalchemy, drivers and Optuna raise many kinds: all mean "cannot read"
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ExportError(
            f"{run.path}: cannot read trial {number}'s config from study {run.settings.get('study')!r} "
            f"({reason}); pass --storage URL"
        ) from None
    finally:
        close_storage(opened)
    cfg = None if trial is None else config_or_none(trial.user_attrs.get(ATTR_CONFIG))
    if cfg is None:
        raise ExportError(f"{run.path}: the study holds no config for trial {number}; not exported")
    return cfg


def trial_config(run: RunFolder, record: TrialRecord, storage: str | None = None) -> GhostNetConfig:
    """The config trial ``record`` evaluated, checked against what the run recorded.

    Args:
        run: The run folder.
        record: One of its records.
        storage: The study's storage URL, for an old-format folder whose ``run.json`` URL does not
            reach it (None: the recorded one).

    Raises:
        ExportError: the config cannot be recovered, or its architecture string, params or MACs
            differ from the run's records.
    """
    n = record.number
    cfg = record.config if record.config is not None else _study_config(run, n, storage)
    if record.arch and cfg.short() != record.arch:
        raise ExportError(f"trial {n}: the recorded config is not the one trials.csv names; not exported")
    cost = count_cost(cfg, spec=run.cost_shape)
    for key, value in (("macs", cost.macs), ("params", cost.params)):
        recorded = record.cost(key)
        if recorded is not None and int(recorded) != value:
            raise ExportError(
                f"trial {n}: the recorded config has {value:,} {key}, the run recorded {int(recorded):,}; "
                "not exported"
            )
    return cfg


def _check_name(name: str, folder: Path, force: bool) -> Path:
    if not isinstance(name, str) or not valid_model_name(name):
        raise ExportError(
            f"bad model name {name!r}: use lower-case letters, digits, '_', '.', '-', starting with a "
            "letter, at most 64 characters (e.g. ghostnas_150m)"
        )
    entry = model_entries().get(name)
    if entry is not None and entry.source == "builtin":
        raise ExportError(f"{name!r} is a shipped model and shipped names always win; choose another --name")
    path = folder / f"{name}.json"
    if path.exists() and not force:
        raise ExportError(f"{path} already exists; choose another --name or pass --force to replace it")
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder; give another --to")
    check_output_dir(folder, "--to")
    return path


def _provenance(
    run: RunFolder, record: TrialRecord, cfg: GhostNetConfig, name: str, how: str
) -> dict[str, Any]:
    from ghostnas.space import load_space, space_digest

    s = run.settings
    shape = run_input_shape(run)
    metrics: dict[str, Any] = {
        "accuracy": record.accuracy,
        "macs": record.macs,
        "params": record.params,
        "evaluator": s.get("evaluator"),
        "score_label": run.score_label,
        "data": s.get("data"),
        "epochs": s.get("epochs"),
        "seconds": record.seconds,
    }
    if record.latency_ms is not None:
        metrics["latency_ms"] = record.latency_ms
    digest = s.get("space_sha256")
    if digest is None:  # runs from before the digest was recorded
        try:
            digest = space_digest(load_space(s["space"]))
        except (GhostnasError, KeyError):
            digest = None
    return {
        "source": "ghostnas export",
        "name": name,
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ghostnas_version": VERSION,
        "run_dir": str(run.path.resolve()),
        "study": s.get("study"),
        "storage": s.get("storage"),
        "trial": record.number,
        "selected": how,
        "reference": record.reference,
        "metrics": metrics,
        "cost_convention": s.get(
            "cost_convention", "conv+linear multiply-accumulates and params at 224x224, 1000 classes"
        ),
        "budget": run.budget.describe(),
        "data": {
            "name": s.get("data"),
            "source": s.get("data_source"),
            "digest": s.get("data_digest"),
            "classes": s.get("classes"),
        },
        "build": {"input_size": shape.input_size, **shape.build_args()},
        "search_space": {"name": s.get("space"), "source": s.get("space_source"), "sha256": digest},
        "search_command": run.info.get("command"),
        "search_git": run.info.get("git"),
        "arch": cfg.short(),
    }


def export_trial(
    run_dir: str | Path,
    name: str,
    *,
    trial: int | None = None,
    to: str | Path | None = None,
    force: bool = False,
    onnx: OnnxOptions | None = None,
    storage: str | None = None,
) -> ExportResult:
    """Export a run's trial as the named model ``name``.

    Args:
        run_dir: The search's run folder.
        name: Model name (lower-case letters, digits, ``_ . -``; not a shipped name).
        trial: Trial number; None exports the best trial under budget.
        to: Folder to write ``NAME.json`` into; default the user's model library
            (:func:`ghostnas.user_model_dir`), where ``create_model(NAME)`` finds it.
        force: Replace an existing export of the same name (and an existing ONNX file).
        onnx: Also write a checked ONNX file.
        storage: The study's storage URL, needed only for a folder written before trials carried
            their config whose ``run.json`` URL does not reach the study (None: that URL).

    Returns:
        What was written.

    Raises:
        GhostnasError: bad run folder, trial or name, or a folder that cannot be written;
            nothing is written.
        WriteFailedError: a write failed (a full disk); no partial file is left.
    """
    folder = Path(to).expanduser() if to is not None else user_model_dir()
    path = _check_name(name, folder, force)
    run = open_run(run_dir)
    record = select_trial(run, trial)
    cfg = trial_config(run, record, storage)
    if onnx is not None:
        if onnx.path.is_dir():
            raise ExportError(f"--onnx {onnx.path}: is a folder; give the .onnx file to write")
        if onnx.path.exists() and not force:
            raise ExportError(f"--onnx {onnx.path} already exists; pass --force to replace it")
        check_output_dir(onnx.path.parent, "--onnx")
    meta = _provenance(run, record, cfg, name, "best" if trial is None else "trial")
    try:
        onnx_info = _write(cfg, path, meta, onnx, run_input_shape(run))
    except Exception as exc:
        fault = (
            as_write_failed(exc, onnx.path, "the ONNX file")
            if onnx is not None
            else as_write_failed(exc, path, "the exported config")
        )
        if fault is None:
            raise
        fault.kept = "nothing was exported (no partial file is left; the run folder is untouched)"
        raise fault from exc
    log.info("exported trial %d of %s as %s (%s)", record.number, run.path, name, path)
    return ExportResult(name=name, path=path, trial=record.number, config=cfg, meta=meta, onnx=onnx_info)


def _write(
    cfg: GhostNetConfig, path: Path, meta: dict[str, Any], onnx: OnnxOptions | None, data_shape: BuildSpec
) -> dict[str, Any] | None:
    """Write the ONNX file (if asked; unset ONNX options take ``data_shape``'s values) and then the
    config; each is replaced atomically."""
    onnx_info = None
    if onnx is not None:  # first: it is the step that can still fail, and it writes atomically
        from ghostnas.onnx_export import export_onnx

        shape = BuildSpec(
            input_size=onnx.input_size or data_shape.input_size,
            num_classes=onnx.num_classes if onnx.num_classes is not None else data_shape.num_classes,
            in_chans=onnx.in_chans or data_shape.in_chans,
            stem_stride=onnx.stem_stride or data_shape.stem_stride,
        )
        onnx_info = export_onnx(
            cfg,
            onnx.path,
            input_size=shape.input_size,
            **shape.build_args(),
            weights=onnx.weights,
            dynamic_batch=onnx.dynamic_batch,
        )
        meta["onnx"] = {
            "path": str(Path(onnx_info["path"]).resolve()),
            "input_size": shape.input_size,
            **shape.build_args(),
            "max_abs_diff": onnx_info["max_abs_diff"],
            "weights": onnx_info["weights"],
            # no weights file: the ONNX model is the untrained network (fine for timing, not for use)
            "random_weights": onnx_info["random_weights"],
            "batch": "dynamic" if onnx.dynamic_batch else 1,
        }
    try:
        save_config(cfg, path, meta=meta)
    except BaseException:
        if onnx is not None:  # an ONNX file without its config is not an export: take it back
            onnx.path.unlink(missing_ok=True)
        raise
    return onnx_info
