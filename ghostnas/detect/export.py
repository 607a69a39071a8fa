"""Exporting a detection search's winner as an Ultralytics model YAML (``ghostnas export --yolo-yaml``).

The trial is chosen as for classification (:func:`ghostnas.export.select_trial`: the best under
budget, or trial N), its config is recovered from the study (or replayed through the run's
detection space) and checked against what the run recorded (the architecture string, GFLOPs and
params), and the YAML is written atomically with the provenance under a ``ghostnas:`` key
(Ultralytics ignores it). ``import ghostnas.yolo; YOLO(FILE).train(data=...)`` trains it.

Every check runs before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas._fs import check_output_dir
from ghostnas._io import atomic_write_text
from ghostnas.detect.config import DetectConfig
from ghostnas.detect.cost import detect_costs
from ghostnas.detect.model_yaml import model_yaml_text
from ghostnas.errors import GhostnasError
from ghostnas.records import TrialRecord
from ghostnas.run_folder import RunFolder, open_run

__all__ = ["DetectExport", "export_detector", "is_detect_run"]


@dataclass(frozen=True)
class DetectExport:
    """What :func:`export_detector` wrote.

    Attributes:
        path: The model YAML.
        trial: The exported trial.
        config: The detector.
        meta: The provenance written under the YAML's ``ghostnas:`` key.
    """

    path: Path
    trial: int
    config: DetectConfig
    meta: dict[str, Any]


def is_detect_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a detection search's run folder (its run.json says task: detect)."""
    try:
        info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and (info.get("settings") or {}).get("task") == "detect"


def _config(run: RunFolder, record: TrialRecord) -> DetectConfig:
    """The detector trial ``record`` evaluated (recorded in trials.csv), checked against the
    run's architecture string, GFLOPs and params."""
    s = run.settings
    cfg = record.config
    n = record.number
    if not isinstance(cfg, DetectConfig):
        raise GhostnasError(
            f"trial {n}: no detector config recorded in {run.path / 'trials.csv'}; not exported"
        )
    costs = detect_costs(cfg, len(s.get("classes") or []), int(s.get("cost_imgsz") or 640))
    if record.arch and cfg.short() != record.arch:
        raise GhostnasError(f"trial {n}: the recorded detector is not the one trials.csv names; not exported")
    for key in ("params", "gflops"):
        value = record.cost(key)
        if value is not None and abs(float(value) - costs[key]) > 1e-6 * max(1.0, costs[key]):
            raise GhostnasError(
                f"trial {n}: the recorded detector has {costs[key]:,} {key}, the run recorded {value:,}; not exported"
            )
    return cfg


def export_detector(
    run_dir: str | Path, name: str, *, trial: int | None, yolo_yaml: str | Path | None, force: bool = False
) -> DetectExport:
    """Write the chosen trial of a detection run as an Ultralytics model YAML.

    Raises:
        GhostnasError: not a detection run, no ``yolo_yaml``, a bad trial, an existing file
            without ``force``; nothing is written.
    """
    from ghostnas.export import ExportError, select_trial
    from ghostnas.registry import valid_model_name

    if yolo_yaml is None:
        raise ExportError(
            f"{run_dir} is a detection run: add --yolo-yaml FILE (the Ultralytics model YAML to write)"
        )
    if not valid_model_name(name):
        raise ExportError(
            f"bad model name {name!r}: use lower-case letters, digits, '_', '.', '-' (e.g. yolo_ghost_6g)"
        )
    path = Path(yolo_yaml)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise ExportError(f"--yolo-yaml {path}: give a .yaml file name")
    if path.is_dir():
        raise ExportError(f"--yolo-yaml {path}: is a folder; give the .yaml file to write")
    if path.exists() and not force:
        raise ExportError(f"--yolo-yaml {path} already exists; pass --force to replace it")
    run = open_run(run_dir)
    if run.settings.get("task") != "detect":
        raise ExportError(
            f"{run_dir} is not a detection run (--yolo-yaml exports a `search --task detect` winner)"
        )
    check_output_dir(path.parent if str(path.parent) else Path("."), "--yolo-yaml")
    record = select_trial(run, trial)
    cfg = _config(run, record)
    s = run.settings
    nc = len(s["classes"])
    from ghostnas import __version__

    meta = {
        "name": name,
        "source": "ghostnas export",
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "ghostnas_version": __version__,
        "run_dir": str(run.path.resolve()),
        "trial": record.number,
        "selected": "best" if trial is None else "trial",
        "score": record.accuracy,
        "score_label": s.get("score_label"),
        "gflops": record.gflops,
        "params": record.params,
        "budget": run.budget.describe(),
        "cost_convention": s.get("cost_convention"),
        "data": s.get("data"),
        "arch": cfg.short(),
        "config": cfg.to_dict(),
    }
    header = (
        f"exported as {name} from trial {record.number} of {run.path} ({s.get('score_label')} "
        f"{record.accuracy:.4f}; {record.gflops} GFLOPs, Ultralytics' count at {s.get('cost_imgsz')})"
    )
    text = model_yaml_text(cfg, nc, header=header)
    text += "ghostnas: " + json.dumps(meta, sort_keys=False) + "\n"
    atomic_write_text(path, text)
    return DetectExport(path=path, trial=record.number, config=cfg, meta=meta)
