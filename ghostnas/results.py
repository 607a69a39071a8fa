"""A search run's outputs, computed from the study's trials and written atomically.

Files in the run folder: ``trials.csv`` (every trial), ``pareto.json`` (the front of accuracy
against cost, under budget, with full configs), ``best.json`` (the best config under budget, a
config file :func:`ghostnas.create_model` loads), ``pareto.png`` and ``hypervolume.png`` (and
``latency.png`` when the search predicted latency), ``summary.md`` and ``run.json``
(command, versions, git commit, machine, times, counts, where the time went).

Configs in ``pareto.json`` and ``best.json`` are rebuilt by replaying each trial's stored
parameters through the space, the same path any user can take from the storage.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas import run_history
from ghostnas._io import atomic_write_text
from ghostnas._machine import cpu_model
from ghostnas.budget import Budget, Objective, front_metric
from ghostnas.config import BuildSpec, config_to_dict, save_config
from ghostnas.cost import PAPER_SHAPE
from ghostnas.errors import GhostnasError
from ghostnas.evaluators import score_label
from ghostnas.noise import summary_lines as noise_summary_lines
from ghostnas.promotion import rung_attr, rung_scores
from ghostnas.promotion import summary_lines as promotion_summary_lines
from ghostnas.space import SearchSpace, SpaceError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "CSV_COLUMNS",
    "FrontTracker",
    "best_record",
    "csv_columns",
    "hypervolume_2d",
    "over_budget_fractions",
    "pareto_front",
    "provenance",
    "run_record",
    "run_score_label",
    "scored_in_budget",
    "trial_records",
    "write_outputs",
    "write_run_json",
]

logger = logging.getLogger(__name__)

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
    "config",
    "trial_params",
)


# --------------------------------------------------------------------------------------------
# records and the front


def trial_records(trials: Iterable[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """One plain record per trial, in trial order (the rows of ``trials.csv``)."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        ua = t.user_attrs
        outcome = ua.get("outcome") or ("running" if t.state.name == "RUNNING" else t.state.name.lower())
        reason = ua.get("reason", "")
        if t.state.name == "FAIL" and outcome in ("evaluating", "fail"):
            # failed by Optuna's heartbeat check: its worker stopped beating (see ghostnas.workers)
            outcome, reason = "worker_died", "not counted: its worker stopped sending heartbeats"
        elif t.state.name == "RUNNING":
            outcome = "running"
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "outcome": outcome,
                "macs": _int_or_none(ua.get("macs")),
                "params": _int_or_none(ua.get("params")),
                "latency_ms": _float_or_none(ua.get("latency_ms")),
                "gflops": _float_or_none(ua.get("gflops")),
                "accuracy": ua.get("accuracy") if outcome == "ok" else None,
                "seconds": ua.get("seconds"),
                "reason": reason,
                "reference": bool(ua.get("reference", False)),
                "config": ua.get("cfg", ""),
                "full_config": ua.get("config"),
                "trial_params": dict(t.params),
                "rung_scores": rung_scores(ua),
            }
        )
    return rows


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def pareto_front(points: Sequence[Mapping[str, Any]], cost_key: str) -> list[dict[str, Any]]:
    """Records not dominated in (higher ``accuracy``, lower ``cost_key``), sorted by cost.

    A record dominates another when it is at least as good in both and better in one; exact
    duplicates keep the earliest trial only.
    """
    ordered = sorted(points, key=lambda r: (r[cost_key], -r["accuracy"], r["number"]))
    front: list[dict[str, Any]] = []
    best_acc = -math.inf
    for r in ordered:
        if r["accuracy"] > best_acc:
            front.append(dict(r))
            best_acc = r["accuracy"]
    return front


def hypervolume_2d(front: Sequence[Mapping[str, Any]], cost_key: str, limit: float) -> float:
    """Area dominated by the front in (cost in [0, limit], accuracy in [0, acc]), over ``limit``.

    The reference point is (cost = budget, accuracy = 0), so the value is the mean best accuracy
    reachable over the budget axis: a single number that grows as the front improves.
    """
    pts = sorted((float(r[cost_key]), float(r["accuracy"])) for r in front if r[cost_key] <= limit)
    area = 0.0
    for i, (cost, acc) in enumerate(pts):
        nxt = pts[i + 1][0] if i + 1 < len(pts) else limit
        area += max(acc, 0.0) * (nxt - cost)
    return area / limit


def scored_in_budget(records: Sequence[Mapping[str, Any]], budget: Budget) -> list[Mapping[str, Any]]:
    """Records with an accuracy whose cost is within ``budget``: the candidates a front or a
    best pick may come from."""
    return [
        r
        for r in records
        if r["outcome"] == "ok" and r.get(budget.metric) is not None and r[budget.metric] <= budget.limit
    ]


def best_record(records: Sequence[Mapping[str, Any]], budget: Budget) -> Mapping[str, Any] | None:
    """The best trial under budget: highest accuracy, then lowest cost, then earliest."""
    return max(
        scored_in_budget(records, budget),
        key=lambda r: (r["accuracy"], -r[budget.metric], -r["number"]),
        default=None,
    )


class FrontTracker:
    """Best score and Pareto size as trials arrive (for the progress display).

    Args:
        cost_key: The front's cost axis, :func:`ghostnas.budget.front_metric`.
    """

    def __init__(self, cost_key: str) -> None:
        self.cost_key = cost_key
        self.points: list[dict[str, Any]] = []
        self.best_accuracy: float | None = None
        self.pareto_size = 0

    def add(self, trial: optuna.trial.FrozenTrial) -> None:
        ua = trial.user_attrs
        if trial.state.name != "COMPLETE" or ua.get("outcome") != "ok":
            return
        self.points.append(
            {"number": trial.number, "accuracy": ua["accuracy"], self.cost_key: ua[self.cost_key]}
        )
        acc = float(ua["accuracy"])
        self.best_accuracy = acc if self.best_accuracy is None else max(self.best_accuracy, acc)
        self.pareto_size = len(pareto_front(self.points, self.cost_key))


def over_budget_fractions(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Share of proposals over budget in the first and second half of the run.

    The enqueued reference is not a proposal and is left out. A sampler that learns the boundary
    shows a lower share in the second half.
    """
    proposals = [r for r in records if not r["reference"] and r["outcome"] != "running"]
    n = len(proposals)
    half = (n + 1) // 2

    def share(rows: Sequence[Mapping[str, Any]]) -> float | None:
        return round(sum(r["outcome"] == "over_budget" for r in rows) / len(rows), 4) if rows else None

    return {
        "proposals": n,
        "over_budget": sum(r["outcome"] == "over_budget" for r in proposals),
        "share_all": share(proposals),
        "share_first_half": share(proposals[:half]),
        "share_second_half": share(proposals[half:]),
    }


def _counts(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    keys = ("ok", "failed", "pruned", "over_budget", "running", "worker_died", "surplus")
    out = {k: sum(r["outcome"] == k for r in records) for k in keys}
    out["evaluated"] = out["ok"] + out["failed"] + out["pruned"]
    out["trials"] = len(records)
    return out


# --------------------------------------------------------------------------------------------
# run.json


def _git_commit() -> dict[str, Any] | None:
    """The commit of the ghostnas checkout, if ghostnas runs from one; ``GHOSTNAS_GIT_COMMIT``
    when set (a copy of the tree run on another machine, where a stale ``.git`` may have come
    along: the same rule as ``benchmarks/_runinfo.py``)."""
    named = os.environ.get("GHOSTNAS_GIT_COMMIT")
    if named:
        return {"commit": named, "dirty": "unknown", "from": "GHOSTNAS_GIT_COMMIT"}
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, OS and Python: what a reader needs to compare timings."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def provenance() -> dict[str, Any]:
    """ghostnas version, git commit, machine and library versions: what any results file records."""
    from ghostnas import __version__

    return {
        "ghostnas_version": __version__,
        "git": _git_commit(),
        "machine": machine_info(),
        "versions": {"torch": _version("torch"), "optuna": _version("optuna"), "numpy": _version("numpy")},
    }


def run_record(
    *,
    settings: Any,
    plan_fields: Mapping[str, Any],
    trials: Sequence[optuna.trial.FrozenTrial],
    started: datetime,
    ended: datetime,
    timing: Mapping[str, Any],
    interrupted: bool,
    history: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The content of ``run.json``.

    ``started``, ``ended`` and ``timing`` describe this invocation; ``runs`` lists every
    invocation that wrote the folder (see :mod:`ghostnas.run_history`) and ``totals`` adds them
    up, so a resume or a re-run with nothing to do keeps the first run's record.
    """
    from ghostnas import __version__

    records = trial_records(trials)
    command = list(settings.command) if settings.command is not None else None
    return {
        "command": command,
        "ghostnas_version": __version__,
        "git": _git_commit(),
        "machine": machine_info(),
        "versions": {"torch": _version("torch"), "optuna": _version("optuna"), "numpy": _version("numpy")},
        "started": started.isoformat(timespec="seconds"),
        "ended": ended.isoformat(timespec="seconds"),
        "interrupted": interrupted,
        "settings": {
            "budget": settings.budget.describe(),
            "budget_metric": settings.budget.metric,
            "budget_limit": settings.budget.limit,
            "budget_convention": settings.budget.convention(),
            "cost_convention": "conv+linear multiply-accumulates and params at 224x224, 1000 classes",
            "trials": settings.trials,
            "timeout": settings.timeout,
            "evaluator": settings.evaluator,
            "epochs": settings.epochs,
            "data": settings.data,
            "data_dir": settings.data_dir,
            "seed": settings.seed,
            "device": settings.device,
            "reference": settings.reference,
            **plan_fields,
        },
        "counts": _counts(records),
        "over_budget": over_budget_fractions(records),
        "timing": dict(timing),
        "runs": [dict(r) for r in history],
        "totals": run_history.totals(history),
    }


def run_score_label(settings: Mapping[str, Any]) -> str:
    """What a run's score is called, from its ``run.json`` settings (runs written before the
    label was recorded get it from their evaluator's name)."""
    label = settings.get("score_label")
    return label if isinstance(label, str) and label else score_label(str(settings.get("evaluator", "?")))


def write_run_json(out_dir: Path, run_info: Mapping[str, Any]) -> None:
    atomic_write_text(out_dir / "run.json", json.dumps(run_info, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# all outputs


def csv_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of ``trials.csv`` (:data:`CSV_COLUMNS`; ``latency_ms`` is empty without a
    latency predictor), then ``score_r0``, ``score_r1``... when candidates were promoted
    through rungs (:mod:`ghostnas.promotion`)."""
    n_rungs = max((len(r.get("rung_scores") or ()) for r in records), default=0)
    columns = list(CSV_COLUMNS)
    if any(r.get("gflops") is not None for r in records):  # a detection search (Ultralytics' GFLOPs)
        columns.insert(columns.index("latency_ms") + 1, "gflops")
    return columns + [rung_attr(i) for i in range(n_rungs)]


def _csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    columns = csv_columns(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = dict(r)
        row["trial_params"] = json.dumps(r["trial_params"], sort_keys=True)
        row["reference"] = int(r["reference"])
        for i, v in enumerate(r.get("rung_scores") or ()):
            row[rung_attr(i)] = v
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buf.getvalue()


def _replay(space: SearchSpace, record: Mapping[str, Any]) -> Any:
    try:
        cfg = space.params_to_config(record["trial_params"])
    except SpaceError as exc:
        raise GhostnasError(
            f"trial {record['number']} does not replay through space {space.name} ({exc}); "
            "was the space file changed after the study started?"
        ) from None
    stored = record.get("full_config")
    if (stored is not None and config_to_dict(cfg) != stored) or (
        record["config"] and cfg.short() != record["config"]
    ):
        raise GhostnasError(
            f"trial {record['number']} replays to another config than it evaluated; "
            f"was space {space.name} changed after the study started?"
        )
    return cfg


def write_outputs(
    out_dir: Path,
    trials: Sequence[optuna.trial.FrozenTrial],
    space: SearchSpace,
    budget: Budget,
    objectives: Sequence[Objective],
    run_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write trials.csv, pareto.json, best.json, the plots (see :func:`ghostnas.plots.write_plots`)
    and summary.md.

    Returns:
        ``{"best": record or None, "pareto": [records], "files": [names]}``.
    """
    from ghostnas import plots

    records = trial_records(trials)
    cost_key = front_metric(budget, objectives)
    label = run_score_label(run_info["settings"])
    ok = scored_in_budget(records, budget)
    front = pareto_front(ok, cost_key)
    pareto = []
    for r in front:
        cfg = _replay(space, r)
        pareto.append(
            {
                "trial": r["number"],
                "macs": r["macs"],
                "params": r["params"],
                **({"latency_ms_predicted": r["latency_ms"]} if r["latency_ms"] is not None else {}),
                **({"gflops": r["gflops"]} if r.get("gflops") is not None else {}),
                "accuracy": r["accuracy"],
                "reference": r["reference"],
                "arch": r["config"],
                "trial_params": r["trial_params"],
                "cfg": config_to_dict(cfg),
            }
        )
    files = ["trials.csv", "pareto.json"]
    atomic_write_text(out_dir / "trials.csv", _csv_text(records))
    atomic_write_text(out_dir / "pareto.json", json.dumps(pareto, indent=2) + "\n")

    best = best_record(records, budget)
    if best is not None:
        meta = {
            "source": "ghostnas search",
            "trial": best["number"],
            "accuracy": best["accuracy"],
            "evaluator": run_info["settings"]["evaluator"],
            "score_label": label,
            "macs": best["macs"],
            "params": best["params"],
            **({"gflops": best["gflops"]} if best.get("gflops") is not None else {}),
            "budget": budget.describe(),
            "cost_convention": run_info["settings"]["cost_convention"],
            "space": space.name,
            "study": run_info["settings"]["study"],
        }
        save_config(_replay(space, best), out_dir / "best.json", meta=meta)
        files.append("best.json")
    elif (out_dir / "best.json").exists():
        (out_dir / "best.json").unlink()

    title = f"{space.name} under {budget.describe()}, evaluator {run_info['settings']['evaluator']}"
    shape = run_info["settings"].get("cost_shape")
    floor = run_info.get("noise") or {}
    files += plots.write_plots(
        out_dir,
        records,
        budget,
        cost_key,
        title=title,
        score_label=label,
        shape=BuildSpec(**shape) if shape else PAPER_SHAPE,
        noise_sd=floor.get("sd"),
    )
    hv = hypervolume_2d(front, cost_key, budget.limit) if cost_key == budget.metric else None
    atomic_write_text(
        out_dir / "summary.md", _summary(records, front, best, budget, space, cost_key, hv, run_info)
    )
    files += ["summary.md", "run.json"]
    return {"best": best, "pareto": pareto, "files": files, "hypervolume": hv}


def _m(v: float | None) -> str:
    return "" if v is None else f"{v / 1e6:.2f}M"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _score(v: float) -> str:
    """A score in the evaluator's own scale: 4 decimals, or 4 significant digits when large."""
    return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"


def _cost_text(value: float | None, metric: str) -> str:
    if value is None:
        return ""
    if metric == "gflops":
        return f"{value:.3g} GFLOPs"
    return f"{value:.3g} ms" if metric == "latency_ms" else _m(value)


def _time_lines(records: Sequence[Mapping[str, Any]], run_info: Mapping[str, Any]) -> list[str]:
    """The study's time over every invocation, then this invocation's, then the history."""
    timing = run_info["timing"]
    tot = run_info.get("totals") or {}
    runs = run_info.get("runs") or []
    trial_s = sum(float(r["seconds"] or 0.0) for r in records if r["outcome"] in ("ok", "failed", "pruned"))
    lines = ["## Time", ""]
    if tot.get("runs"):
        lines += [
            f"Whole study, over the {tot['runs']} invocation(s) that wrote this folder: "
            f"{tot['loop_seconds']:.1f} s in the search loop, {tot['evaluation_seconds']:.1f} s evaluating, "
            f"{tot['optuna_seconds']:.2f} s in Optuna (sampler and storage; {_pct(tot['optuna_share'])} of "
            f"the loop), {tot['proposals']} proposals; first started {tot['first_started']}, last ended "
            f"{tot['last_ended']}. The evaluated trials' own times add up to {trial_s:.1f} s (every "
            "worker's, when several share the study).",
            "",
        ]
    lines += [
        f"This invocation: {timing['loop_seconds']:.1f} s in the search loop, {timing['evaluation_seconds']:.1f} s "
        f"evaluating, {timing['optuna_seconds']:.2f} s in Optuna ({_pct(timing.get('optuna_share'))} of the "
        f"loop), {timing['proposals_this_run']} proposals.",
        "",
    ]
    if len(runs) > 1:
        lines += [
            "| run | started | ended | evaluated | loop s | Optuna s |",
            "|---:|---|---|---:|---:|---:|",
        ]
        for i, r in enumerate(runs, start=1):
            ev = "?" if r.get("evaluated") is None else str(r["evaluated"])
            lines.append(
                f"| {i} | {r.get('started', '')} | {r.get('ended', '')} | {ev} | "
                f"{float(r.get('loop_seconds') or 0):.1f} | {float(r.get('optuna_seconds') or 0):.2f} |"
            )
        lines.append("")
    return lines


def _cost_sentence(settings: Mapping[str, Any], label: str) -> str:
    if settings.get("cost_sentence"):  # a task with its own convention (detection: Ultralytics' GFLOPs)
        return f"{settings['cost_sentence']} The score is the evaluator's: {label}."
    if settings.get("cost_at", "paper") == "paper":
        return (
            "MACs and params are counted at 224x224 and 1000 classes (conv+linear multiply-accumulates, "
            "the GhostNet paper's FLOPs) whatever resolution the proxy trains at, so the budget compares "
            f"with published numbers. The score is the evaluator's: {label}."
        )
    return (
        f"MACs, params and the budget are counted at the data's shape (--cost-at data): "
        f"{BuildSpec(**settings['cost_shape']).describe()} (conv+linear multiply-accumulates), not at "
        "the papers' 224x224 and 1000 classes, so they do not compare with published numbers. "
        f"The score is the evaluator's: {label}."
    )


def _summary(
    records: Sequence[Mapping[str, Any]],
    front: Sequence[Mapping[str, Any]],
    best: Mapping[str, Any] | None,
    budget: Budget,
    space: SearchSpace,
    cost_key: str,
    hv: float | None,
    run_info: Mapping[str, Any],
) -> str:
    s = run_info["settings"]
    counts = run_info["counts"]
    ob = run_info["over_budget"]
    label = run_score_label(s)
    tot = run_info.get("totals") or {}
    started = tot.get("first_started") or run_info["started"]
    objectives = ", ".join(
        f"maximise {label}" if o == "accuracy" else f"minimise {_AXIS_NAMES.get(o, o)}"
        for o in s["objectives"]
    )
    lines = [
        f"# ghostnas search: {space.name} under {budget.describe()}",
        "",
        f"- command: `{' '.join(run_info['command'] or ['(Python API)'])}`",
        f"- study `{s['study']}` in `{s['storage']}` (run the same command again to resume; "
        f"`optuna-dashboard {s['storage']}` to browse)",
        f"- evaluator `{s['evaluator']}`, score: {label}"
        + (" (fake scores: a test evaluator, nothing measured)" if s["evaluator"] == "fake" else "")
        + f"; data `{s['data']}`, epochs {s['epochs'] if s['epochs'] is not None else 'default'}, seed {s['seed']}",
        f"- sampler `{s['sampler']}`, objectives: {objectives}",
        f"- budget {budget.describe()}: {budget.convention()}",
        f"- {started} to {run_info['ended']}"
        + (f" ({tot['runs']} invocations)" if tot.get("runs", 1) > 1 else "")
        + (" (interrupted; run again to resume)" if run_info["interrupted"] else ""),
        "",
        _cost_sentence(s, label),
        "",
        "## Trials",
        "",
        f"{counts['trials']} trials: {counts['evaluated']} evaluated ({counts['ok']} scored, "
        f"{counts['failed']} failed, {counts['pruned']} pruned), {counts['over_budget']} proposals over "
        "budget rejected by the closed-form cost before any training.",
        "",
        f"Share of proposals over budget: {_pct(ob['share_first_half'])} in the first half, "
        f"{_pct(ob['share_second_half'])} in the second half ({ob['proposals']} proposals).",
        "",
    ]
    if best is not None:
        lines += [
            "## Best under budget",
            "",
            f"Trial {best['number']}: {label} {_score(best['accuracy'])}, "
            + (f"{best['gflops']:.3f} GFLOPs, " if best.get("gflops") is not None else "")
            + f"{_m(best['macs'])} MACs, "
            f"{_m(best['params'])} params{' (the reference network)' if best['reference'] else ''}. "
            + (
                "Config: `best.json`; `ghostnas export RUN --best --name NAME --yolo-yaml FILE` writes it as an "
                "Ultralytics model YAML."
                if s.get("task") == "detect"
                else "Config: `best.json` (`ghostnas.create_model('best.json')`)."
            ),
            "",
            f"`{best['config']}`",
            "",
        ]
    ref = [r for r in records if r["reference"]]
    if ref:
        r = ref[0]
        score = f"{label} {_score(r['accuracy'])}" if r["accuracy"] is not None else r["outcome"]
        lines += [
            f"Reference ({'the space reference, widest width in budget' if s.get('task') == 'detect' else 'width-scaled GhostNet'}, "
            f"trial {r['number']}): {score}, {_m(r['macs'])} MACs.",
            "",
        ]
    lines += noise_summary_lines(run_info.get("noise"), front, ref[0] if ref else None, best, label)
    lines += promotion_summary_lines(run_info.get("promotion"))
    latency_col = cost_key in ("latency_ms", "gflops")  # a cost the MACs/params columns do not show
    lines += [
        f"## Pareto front ({len(front)} configs; {label} against {_AXIS_NAMES.get(cost_key, cost_key)})",
        "",
        "| trial | score | MACs | params |"
        + (f" {_AXIS_NAMES[cost_key]} |" if latency_col else "")
        + " config |",
        "|---:|---:|---:|---:|" + ("---:|" if latency_col else "") + "---|",
    ]
    lines += [
        f"| {r['number']} | {_score(r['accuracy'])} | {_m(r['macs'])} | {_m(r['params'])} |"
        + (f" {_cost_text(r.get(cost_key), cost_key)} |" if latency_col else "")
        + f" `{r['config']}` |"
        for r in front
    ]
    if hv is not None:
        lines += [
            "",
            f"Hypervolume (reference: score 0, {_AXIS_NAMES.get(cost_key, cost_key)} = the budget, "
            f"{_cost_text(budget.limit, budget.metric)}; normalised by the budget): {hv:.4f}",
        ]
    lines += ["", *_time_lines(records, run_info)]
    lines += [
        "Files: `trials.csv`, `pareto.json`, `best.json`, `pareto.png`, "
        "`hypervolume.png` (and `latency.png` when latency was predicted), `summary.md`, `run.json`.",
        "",
    ]
    return "\n".join(lines)


# Cost metrics in words, for prose and table headings.
_AXIS_NAMES = {"macs": "MACs", "params": "params", "latency_ms": "predicted latency", "gflops": "GFLOPs"}
