"""Reading a finished search's run folder back: its settings, budget and trial records.

``ghostnas plot`` and ``ghostnas export`` work on the files a search wrote (``run.json`` and
``trials.csv``), so they need neither the study's storage nor the machine the search ran on.
Every problem with the folder is a one-line :class:`RunFolderError` naming the file and the fix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas.budget import Budget, front_metric
from ghostnas.errors import GhostnasError

__all__ = ["RunFolder", "RunFolderError", "open_run", "read_trials_csv"]

_HINT = "give the folder a `ghostnas search` run wrote (its --out)"


class RunFolderError(GhostnasError):
    """A run folder is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class RunFolder:
    """A search's run folder, read.

    Attributes:
        path: The folder.
        info: The content of ``run.json`` (command, settings, versions, machine, counts).
        records: One record per trial, as :func:`ghostnas.results.trial_records` makes them
            (``full_config`` is None: the CSV does not hold full configs).
        budget: The run's budget.
        cost_key: The front's cost axis (the second objective, or the budget's metric).
    """

    path: Path
    info: dict[str, Any]
    records: list[dict[str, Any]]
    budget: Budget
    cost_key: str

    @property
    def settings(self) -> dict[str, Any]:
        return self.info["settings"]

    def record(self, number: int) -> dict[str, Any] | None:
        """Trial ``number``'s record, or None when the run has no such trial."""
        return next((r for r in self.records if r["number"] == number), None)


def _opt(cast: Any, text: str) -> Any:
    return None if text == "" else cast(text)


def _rung_scores(row: Mapping[str, str]) -> list[float]:
    """``score_r0``, ``score_r1``... as far as the row has them (promotion searches only)."""
    out = []
    while row.get(f"score_r{len(out)}"):
        out.append(float(row[f"score_r{len(out)}"]))
    return out


def _parse_row(row: Mapping[str, str], where: str) -> dict[str, Any]:
    try:
        return {
            "number": int(row["number"]),
            "state": row["state"],
            "outcome": row["outcome"],
            "macs": _opt(int, row["macs"]),
            "params": _opt(int, row["params"]),
            "latency_ms": _opt(float, row.get("latency_ms") or ""),
            "gflops": _opt(float, row.get("gflops") or ""),
            "accuracy": _opt(float, row["accuracy"]),
            "seconds": _opt(float, row["seconds"]),
            "reason": row["reason"],
            "reference": row["reference"] in ("1", "True", "true"),
            "config": row["config"],
            "full_config": None,
            "trial_params": json.loads(row["trial_params"]) if row["trial_params"] else {},
            "rung_scores": _rung_scores(row),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{where}: malformed row ({type(exc).__name__}: {exc}); {_HINT}") from None


def read_trials_csv(path: str | Path) -> list[dict[str, Any]]:
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
    return sorted(records, key=lambda r: r["number"])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing; {_HINT}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path}: not readable JSON ({exc}); {_HINT}") from None


def open_run(path: str | Path) -> RunFolder:
    """Read a run folder's ``run.json`` and ``trials.csv``.

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
    cost_key = front_metric(budget, objectives)
    records = read_trials_csv(path / "trials.csv")
    return RunFolder(path=path, info=info, records=records, budget=budget, cost_key=cost_key)
