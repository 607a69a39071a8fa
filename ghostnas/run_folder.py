"""A search's run folder: the one module that writes and reads its record files.

The files and who decides their content:

- ``trials.csv``: one row per :class:`~ghostnas.records.TrialRecord`, full config included
  (the ``config`` column, JSON), so the folder alone says what every trial evaluated.
- ``pareto.json``: the front, one entry per trial with its ``config`` and ``arch``.
- ``best.json``: the best config under budget, a config file :func:`ghostnas.create_model` loads.
- ``run.json``: command, provenance, settings, counts and timing (its content is
  :func:`ghostnas.results.run_record`'s).

Writing and reading live together here, so that a format and its reader change in one place;
:mod:`ghostnas.results` decides what a run's outputs say and in which order they are written,
and ``ghostnas plot``, ``ghostnas export`` and the benchmarks read folders through
:func:`open_run`, needing neither the study's storage nor the machine the search ran on.

Folders written before trials carried their config (``trials.csv`` whose ``config`` column is
the short display string, ``pareto.json`` entries with ``cfg``) still read: their records get
the configs that ``pareto.json`` and ``best.json`` hold (the front and the best), and the others'
``config`` is None (:mod:`ghostnas.export` then asks the study).

Every problem with the folder is a one-line :class:`RunFolderError` naming the file and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ghostnas._io import atomic_write_text
from ghostnas.budget import Budget
from ghostnas.config import BuildSpec, GhostNetConfig, config_to_dict, save_config
from ghostnas.cost import PAPER_SHAPE
from ghostnas.errors import GhostnasError
from ghostnas.evaluators import score_label
from ghostnas.front import cost_key
from ghostnas.promotion import rung_attr
from ghostnas.records import TrialRecord, config_or_none

__all__ = [
    "CSV_COLUMNS",
    "RunFolder",
    "RunFolderError",
    "csv_columns",
    "open_run",
    "pareto_entry",
    "read_pareto_json",
    "read_trials_csv",
    "remove_best_json",
    "run_score_label",
    "trials_csv_text",
    "write_best_json",
    "write_pareto_json",
    "write_run_json",
    "write_trials_csv",
]

_HINT = "give the folder a `ghostnas search` run wrote (its --out)"

CSV_COLUMNS = (
    "number",
    "state",
    "outcome",
    "macs",
    "params",
    "latency_ms",
    "accuracy",
    "seconds",
    "reason",
    "reference",
    "arch",
    "config",
    "trial_params",
)


class RunFolderError(GhostnasError):
    """A run folder is missing, incomplete or unreadable."""


# --------------------------------------------------------------------------------------------
# writing


def csv_columns(records: Sequence[TrialRecord]) -> list[str]:
    """The columns of ``trials.csv`` (:data:`CSV_COLUMNS`; ``latency_ms`` is empty without a
    latency predictor), then ``score_r0``, ``score_r1``... when candidates were promoted
    through rungs (:mod:`ghostnas.promotion`)."""
    n_rungs = max((len(r.rung_scores) for r in records), default=0)
    columns = list(CSV_COLUMNS)
    if any(r.gflops is not None for r in records):  # a detection search (Ultralytics' GFLOPs)
        columns.insert(columns.index("latency_ms") + 1, "gflops")
    return columns + [rung_attr(i) for i in range(n_rungs)]


def _csv_row(r: TrialRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "number": r.number,
        "state": r.state,
        "outcome": r.outcome,
        "macs": r.macs,
        "params": r.params,
        "latency_ms": r.latency_ms,
        "gflops": r.gflops,
        "accuracy": r.accuracy,
        "seconds": r.seconds,
        "reason": r.reason,
        "reference": int(r.reference),
        "arch": r.arch,
        "config": None if r.config is None else json.dumps(config_to_dict(r.config), sort_keys=True),
        "trial_params": json.dumps(dict(r.trial_params), sort_keys=True),
    }
    for i, v in enumerate(r.rung_scores):
        row[rung_attr(i)] = v
    return row


def trials_csv_text(records: Sequence[TrialRecord]) -> str:
    """The content of ``trials.csv``: a header and one row per record."""
    columns = csv_columns(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = _csv_row(r)
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buf.getvalue()


def write_trials_csv(out_dir: Path, records: Sequence[TrialRecord]) -> None:
    atomic_write_text(out_dir / "trials.csv", trials_csv_text(records))


def pareto_entry(r: TrialRecord) -> dict[str, Any]:
    """A front record as ``pareto.json`` holds it (the trial's full ``config`` included)."""
    if r.config is None:
        raise RunFolderError(f"trial {r.number} has no recorded config; it cannot enter pareto.json")
    return {
        "trial": r.number,
        "macs": r.macs,
        "params": r.params,
        **({"latency_ms_predicted": r.latency_ms} if r.latency_ms is not None else {}),
        **({"gflops": r.gflops} if r.gflops is not None else {}),
        "accuracy": r.accuracy,
        "reference": r.reference,
        "arch": r.arch,
        "trial_params": dict(r.trial_params),
        "config": config_to_dict(r.config),
    }


def write_pareto_json(out_dir: Path, front: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """Write ``pareto.json`` and return its entries."""
    entries = [pareto_entry(r) for r in front]
    atomic_write_text(out_dir / "pareto.json", json.dumps(entries, indent=2) + "\n")
    return entries


def write_best_json(out_dir: Path, best: TrialRecord, meta: Mapping[str, Any]) -> None:
    """Write ``best.json``: the best config under budget with ``meta`` (a loadable config file)."""
    if best.config is None:
        raise RunFolderError(f"trial {best.number} has no recorded config; best.json not written")
    save_config(best.config, out_dir / "best.json", meta=meta)


def remove_best_json(out_dir: Path) -> None:
    """Take away a stale ``best.json`` (a re-run in which nothing is scored under budget)."""
    (out_dir / "best.json").unlink(missing_ok=True)


def write_run_json(out_dir: Path, run_info: Mapping[str, Any]) -> None:
    atomic_write_text(out_dir / "run.json", json.dumps(run_info, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# reading


def run_score_label(settings: Mapping[str, Any]) -> str:
    """What a run's score is called, from its ``run.json`` settings (runs written before the
    label was recorded get it from their evaluator's name)."""
    label = settings.get("score_label")
    return label if isinstance(label, str) and label else score_label(str(settings.get("evaluator", "?")))


@dataclass(frozen=True)
class RunFolder:
    """A search's run folder, read.

    Attributes:
        path: The folder.
        info: The content of ``run.json`` (command, settings, versions, machine, counts).
        records: One record per trial, in trial order.
        budget: The run's budget.
        cost_key: The front's cost axis (:func:`ghostnas.front.cost_key`).
    """

    path: Path
    info: dict[str, Any]
    records: list[TrialRecord]
    budget: Budget
    cost_key: str

    @property
    def settings(self) -> dict[str, Any]:
        return self.info["settings"]

    @property
    def score_label(self) -> str:
        """What the run's score is called (:func:`run_score_label`)."""
        return run_score_label(self.settings)

    @property
    def cost_shape(self) -> BuildSpec:
        """Where the run counted MACs and params (``--cost-at``; the papers' shape by default)."""
        shape = self.settings.get("cost_shape")
        return BuildSpec(**shape) if shape else PAPER_SHAPE

    def record(self, number: int) -> TrialRecord | None:
        """Trial ``number``'s record, or None when the run has no such trial."""
        return next((r for r in self.records if r.number == number), None)


def _opt(cast: Any, text: str | None) -> Any:
    return None if text is None or text == "" else cast(text)


def _rung_scores(row: Mapping[str, str]) -> tuple[float, ...]:
    """``score_r0``, ``score_r1``... as far as the row has them (promotion searches only)."""
    out: list[float] = []
    while row.get(rung_attr(len(out))):
        out.append(float(row[rung_attr(len(out))]))
    return tuple(out)


def _parse_row(row: Mapping[str, str], where: str) -> TrialRecord:
    try:
        if "arch" in row:
            arch, config = row["arch"], config_or_none(json.loads(row["config"]) if row["config"] else None)
        else:  # written before trials carried their config: "config" was the display string
            arch, config = row["config"], None
        return TrialRecord(
            number=int(row["number"]),
            state=row["state"],
            outcome=row["outcome"],
            macs=_opt(int, row["macs"]),
            params=_opt(int, row["params"]),
            latency_ms=_opt(float, row.get("latency_ms")),
            gflops=_opt(float, row.get("gflops")),
            accuracy=_opt(float, row["accuracy"]),
            seconds=_opt(float, row["seconds"]),
            reason=row["reason"],
            reference=row["reference"] in ("1", "True", "true"),
            arch=arch,
            config=config,
            trial_params=json.loads(row["trial_params"]) if row["trial_params"] else {},
            rung_scores=_rung_scores(row),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{where}: malformed row ({type(exc).__name__}: {exc}); {_HINT}") from None


def read_trials_csv(path: str | Path) -> list[TrialRecord]:
    """Trial records from a run's ``trials.csv``, in trial order."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing; {_HINT}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc}); {_HINT}") from None
    records = [_parse_row(row, f"{path} line {i + 2}") for i, row in enumerate(rows)]
    return sorted(records, key=lambda r: r.number)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing; {_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: not readable JSON ({exc}); {_HINT}") from None


def read_pareto_json(path: str | Path) -> list[dict[str, Any]]:
    """The entries of ``pareto.json``, each with its full config under ``config`` (folders
    written before the rename held it under ``cfg``; those entries are read the same way)."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list) or not all(isinstance(e, Mapping) for e in data):
        raise RunFolderError(f"{path}: not a list of front entries; {_HINT}")
    out = []
    for e in data:
        entry = dict(e)
        if "config" not in entry and "cfg" in entry:
            entry["config"] = entry.pop("cfg")
        out.append(entry)
    return out


def _recorded_configs(path: Path) -> dict[int, GhostNetConfig]:
    """Configs an old-format folder holds outside ``trials.csv``: the front's (``pareto.json``)
    and the best's (``best.json``), by trial number. Unreadable files add nothing."""
    found: dict[int, GhostNetConfig] = {}
    try:
        entries = read_pareto_json(path / "pareto.json") if (path / "pareto.json").is_file() else []
    except RunFolderError:
        entries = []
    for e in entries:
        cfg = config_or_none(e.get("config"))
        if cfg is not None and isinstance(e.get("trial"), int):
            found[e["trial"]] = cfg
    if (path / "best.json").is_file():
        try:
            best = _read_json(path / "best.json")
        except RunFolderError:
            best = None
        if isinstance(best, Mapping):
            cfg = config_or_none(best.get("config"))
            trial = (best.get("meta") or {}).get("trial")
            if cfg is not None and isinstance(trial, int):
                found.setdefault(trial, cfg)
    return found


def open_run(path: str | Path) -> RunFolder:
    """Read a run folder's ``run.json`` and ``trials.csv`` (and, for a folder written before
    trials carried their config, the configs in ``pareto.json`` and ``best.json``).

    Raises:
        RunFolderError: the folder does not exist, is not a run folder, or a file is malformed.
    """
    path = Path(path)
    if not path.exists():
        raise RunFolderError(f"{path}: no such run folder; {_HINT}")
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a folder; {_HINT}")
    if not (path / "run.json").is_file():
        raise RunFolderError(f"{path}: not a run folder (no run.json); {_HINT}")
    info = _read_json(path / "run.json")
    try:
        settings = info["settings"]
        budget = Budget(str(settings["budget_metric"]), float(settings["budget_limit"]))
        objectives = list(settings.get("objectives") or ["accuracy"])
    except (KeyError, TypeError, ValueError, GhostnasError) as exc:
        raise RunFolderError(
            f"{path / 'run.json'}: lacks the run settings ({type(exc).__name__}: {exc}); {_HINT}"
        ) from None
    records = read_trials_csv(path / "trials.csv")
    if any(r.config is None for r in records):
        known = _recorded_configs(path)
        records = [
            replace(r, config=known[r.number])
            if r.config is None and r.number in known and known[r.number].short() in (r.arch, "")
            else r
            for r in records
        ]
    return RunFolder(
        path=path, info=info, records=records, budget=budget, cost_key=cost_key(budget, objectives)
    )
