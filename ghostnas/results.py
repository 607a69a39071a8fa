"""What a search run's outputs say, and the order they are written in.

:func:`write_outputs` turns the study's trials into :class:`~ghostnas.records.TrialRecord` objects
once and writes, through :mod:`ghostnas.run_folder` (the one owner of the files' formats),
``trials.csv``, ``pareto.json`` (the front of score against cost, under budget, with full configs)
and ``best.json``; then the figures (:mod:`ghostnas.plots`) and ``summary.md``, whose text is
made here. :func:`run_record` is the content of ``run.json``: the provenance
(:mod:`ghostnas.provenance`), the settings, the counts and where the time went.

The configs in ``pareto.json`` and ``best.json`` are the ones the trials evaluated, as the
objective recorded them in the study (user attribute ``config``): no replay through the space.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas import plots, run_folder, run_history
from ghostnas._io import atomic_write_text
from ghostnas.budget import Budget, Objective
from ghostnas.config import BuildSpec
from ghostnas.cost import PAPER_SHAPE
from ghostnas.front import best_record, cost_key, hypervolume_2d, pareto_front, scored_in_budget
from ghostnas.noise import summary_lines as noise_summary_lines
from ghostnas.promotion import summary_lines as promotion_summary_lines
from ghostnas.provenance import provenance
from ghostnas.records import TrialRecord, trial_records
from ghostnas.space import SearchSpace

if TYPE_CHECKING:
    import optuna

__all__ = [
    "over_budget_fractions",
    "run_record",
    "write_outputs",
]

logger = logging.getLogger(__name__)


def over_budget_fractions(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """Share of proposals over budget in the first and second half of the run.

    The enqueued reference is not a proposal and is left out. A sampler that learns the boundary
    shows a lower share in the second half.
    """
    proposals = [r for r in records if not r.reference and r.outcome != "running"]
    n = len(proposals)
    half = (n + 1) // 2

    def share(rows: Sequence[TrialRecord]) -> float | None:
        return round(sum(r.outcome == "over_budget" for r in rows) / len(rows), 4) if rows else None

    return {
        "proposals": n,
        "over_budget": sum(r.outcome == "over_budget" for r in proposals),
        "share_all": share(proposals),
        "share_first_half": share(proposals[:half]),
        "share_second_half": share(proposals[half:]),
    }


def _counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    keys = ("ok", "failed", "pruned", "over_budget", "running", "worker_died", "surplus")
    out = {k: sum(r.outcome == k for r in records) for k in keys}
    out["evaluated"] = out["ok"] + out["failed"] + out["pruned"]
    out["trials"] = len(records)
    return out


# --------------------------------------------------------------------------------------------
# run.json


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
    records = trial_records(trials)
    return {
        **provenance(settings.command),
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


def write_outputs(
    out_dir: Path,
    trials: Iterable[optuna.trial.FrozenTrial],
    space: SearchSpace,
    budget: Budget,
    objectives: Sequence[Objective],
    run_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write trials.csv, pareto.json, best.json, the plots (see :func:`ghostnas.plots.write_plots`)
    and summary.md (``run.json`` is the caller's last write, see :func:`run_folder.write_run_json`).

    Returns:
        ``{"best": TrialRecord or None, "pareto": [pareto.json entries], "files": [names],
        "hypervolume": value or None}``.
    """
    records = trial_records(trials)
    key = cost_key(budget, objectives)
    s = run_info["settings"]
    label = run_folder.run_score_label(s)
    front = pareto_front(scored_in_budget(records, budget), key)
    files = ["trials.csv", "pareto.json"]
    run_folder.write_trials_csv(out_dir, records)
    pareto = run_folder.write_pareto_json(out_dir, front)

    best = best_record(records, budget)
    if best is not None:
        meta = {
            "source": "ghostnas search",
            "trial": best.number,
            "accuracy": best.accuracy,
            "evaluator": s["evaluator"],
            "score_label": label,
            "macs": best.macs,
            "params": best.params,
            **({"gflops": best.gflops} if best.gflops is not None else {}),
            "budget": budget.describe(),
            "cost_convention": s["cost_convention"],
            "space": space.name,
            "study": s["study"],
        }
        run_folder.write_best_json(out_dir, best, meta)
        files.append("best.json")
    else:
        run_folder.remove_best_json(out_dir)

    title = f"{space.name} under {budget.describe()}, evaluator {s['evaluator']}"
    shape = s.get("cost_shape")
    floor = run_info.get("noise") or {}
    files += plots.write_plots(
        out_dir,
        records,
        budget,
        key,
        title=title,
        score_label=label,
        shape=BuildSpec(**shape) if shape else PAPER_SHAPE,
        noise_sd=floor.get("sd"),
    )
    hv = hypervolume_2d(front, key, budget.limit) if key == budget.metric else None
    atomic_write_text(
        out_dir / "summary.md", _summary(records, front, best, budget, space, key, hv, run_info)
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


def _time_lines(records: Sequence[TrialRecord], run_info: Mapping[str, Any]) -> list[str]:
    """The study's time over every invocation, then this invocation's, then the history."""
    timing = run_info["timing"]
    tot = run_info.get("totals") or {}
    runs = run_info.get("runs") or []
    trial_s = sum(float(r.seconds or 0.0) for r in records if r.outcome in ("ok", "failed", "pruned"))
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
    records: Sequence[TrialRecord],
    front: Sequence[TrialRecord],
    best: TrialRecord | None,
    budget: Budget,
    space: SearchSpace,
    cost_key: str,
    hv: float | None,
    run_info: Mapping[str, Any],
) -> str:
    s = run_info["settings"]
    counts = run_info["counts"]
    ob = run_info["over_budget"]
    label = run_folder.run_score_label(s)
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
            f"Trial {best.number}: {label} {_score(best.accuracy)}, "
            + (f"{best.gflops:.3f} GFLOPs, " if best.gflops is not None else "")
            + f"{_m(best.macs)} MACs, "
            f"{_m(best.params)} params{' (the reference network)' if best.reference else ''}. "
            + (
                "Config: `best.json`; `ghostnas export RUN --best --name NAME --yolo-yaml FILE` writes it as an "
                "Ultralytics model YAML."
                if s.get("task") == "detect"
                else "Config: `best.json` (`ghostnas.create_model('best.json')`)."
            ),
            "",
            f"`{best.arch}`",
            "",
        ]
    ref = [r for r in records if r.reference]
    if ref:
        r = ref[0]
        score = f"{label} {_score(r.accuracy)}" if r.accuracy is not None else r.outcome
        lines += [
            f"Reference ({'the space reference, widest width in budget' if s.get('task') == 'detect' else 'width-scaled GhostNet'}, "
            f"trial {r.number}): {score}, {_m(r.macs)} MACs.",
            "",
        ]
    lines += noise_summary_lines(
        run_info.get("noise"),
        [_scored(r) for r in front],
        _scored(ref[0]) if ref else None,
        None if best is None else _scored(best),
        label,
    )
    lines += promotion_summary_lines(run_info.get("promotion"))
    latency_col = cost_key in ("latency_ms", "gflops")  # a cost the MACs/params columns do not show
    lines += [
        f"## Pareto front ({len(front)} configs; {label} against {_AXIS_NAMES.get(cost_key, cost_key)})",
        "",
        "| trial | score | MACs | params |"
        + (f" {'latency' if cost_key == 'latency_ms' else 'GFLOPs'} |" if latency_col else "")
        + " config |",
        "|---:|---:|---:|---:|" + ("---:|" if latency_col else "") + "---|",
    ]
    lines += [
        f"| {r.number} | {_score(r.accuracy)} | {_m(r.macs)} | {_m(r.params)} |"
        + (f" {_cost_text(r.cost(cost_key), cost_key)} |" if latency_col else "")
        + f" `{r.arch}` |"
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


def _scored(r: TrialRecord) -> dict[str, Any]:
    """What :func:`ghostnas.noise.summary_lines` compares: a record's number and score."""
    return {"number": r.number, "accuracy": r.accuracy}


# Cost metrics in words, for prose and table headings.
_AXIS_NAMES = {"macs": "MACs", "params": "params", "latency_ms": "predicted latency", "gflops": "GFLOPs"}
