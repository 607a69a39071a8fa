"""A run folder's history: one record per invocation of the search that wrote it.

A search is resumed by running its command again, so one run folder is written by several
invocations: the first run, a resume after a crash, a re-run with nothing left to do that only
refreshes the outputs. ``run.json`` keeps every invocation in its ``runs`` list (command, start
and end, trials evaluated, where the time went) and the study's totals in ``totals``; without
this, each re-run replaced the first run's timing with its own (0 s for a re-run with nothing
to do).

A ``run.json`` written before the history existed has no ``runs``: its one recorded invocation
is read from its top-level fields, marked ``reconstructed``, and kept as the first entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["extend_history", "invocation", "read_history", "totals"]

logger = logging.getLogger(__name__)

# Per-invocation timing fields that add up over a study's invocations.
_SUMMED = ("loop_seconds", "evaluation_seconds", "cost_model_seconds", "optuna_seconds")


def invocation(
    *,
    command: Sequence[str] | None,
    started: str,
    ended: str,
    interrupted: bool,
    evaluated: int | None,
    timing: Mapping[str, Any],
) -> dict[str, Any]:
    """One invocation's record.

    Args:
        command: The command line (None for the Python API).
        started, ended: ISO times of this invocation.
        interrupted: Whether it was stopped by Ctrl-C.
        evaluated: Candidates this invocation evaluated (None when unknown: a reconstructed entry).
        timing: Its ``timing`` record (loop, evaluation, cost model and Optuna seconds, proposals).
    """
    return {
        "command": list(command) if command is not None else None,
        "started": started,
        "ended": ended,
        "interrupted": interrupted,
        "evaluated": evaluated,
        "proposals": timing.get("proposals_this_run"),
        **{k: timing.get(k) for k in _SUMMED},
        "optuna_share": timing.get("optuna_share"),
    }


def read_history(run_json: Path) -> list[dict[str, Any]]:
    """The invocations recorded in an existing ``run.json`` (empty when there is none).

    A file that cannot be read as a run record does not stop the search that is about to replace
    it: its history is lost, and a warning says so.
    """
    if not run_json.is_file():
        return []
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s is not readable (%s); its run history starts again", run_json, exc)
        return []
    if not isinstance(info, dict):
        return []
    runs = info.get("runs")
    if isinstance(runs, list):
        return [dict(r) for r in runs if isinstance(r, dict)]
    timing = info.get("timing")
    if not isinstance(timing, dict) or "started" not in info:
        return []
    legacy = invocation(
        command=info.get("command"),
        started=str(info["started"]),
        ended=str(info.get("ended", "")),
        interrupted=bool(info.get("interrupted", False)),
        evaluated=None,
        timing=timing,
    )
    legacy["reconstructed"] = True  # read from a run.json written before the history existed
    return [legacy]


def extend_history(run_json: Path, this_run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The history in ``run_json`` followed by ``this_run``."""
    return [*read_history(run_json), dict(this_run)]


def totals(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over a folder's invocations: the study's time as this folder saw it.

    ``evaluated`` sums the invocations that know their count; ``optuna_share`` is Optuna's
    seconds over the loop's seconds, summed first (not a mean of shares).
    """
    out: dict[str, Any] = {"runs": len(runs)}
    for key in _SUMMED:
        out[key] = round(sum(float(r.get(key) or 0.0) for r in runs), 3)
    out["proposals"] = sum(int(r.get("proposals") or 0) for r in runs)
    out["evaluated"] = sum(int(r.get("evaluated") or 0) for r in runs)
    out["optuna_share"] = (
        round(out["optuna_seconds"] / out["loop_seconds"], 4) if out["loop_seconds"] > 0 else None
    )
    out["first_started"] = runs[0].get("started") if runs else None
    out["last_ended"] = runs[-1].get("ended") if runs else None
    return out
