"""The Pareto plot, as "extract, then render".

:func:`pareto_plot_data` turns trial records into a plain, tested record of what the figure shows
(every scored trial, the front, the budget line, rejected proposals, the GhostNet reference
networks' costs); :func:`render_pareto` draws that record with matplotlib and knows nothing about
studies or trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostnas.budget import Budget
from ghostnas.results import pareto_front

__all__ = ["ParetoPlotData", "pareto_plot_data", "reference_costs", "render_pareto"]

REFERENCE_MODELS = ("ghostnet_050", "ghostnet_100", "ghostnet_130")


@dataclass(frozen=True)
class ParetoPlotData:
    """Everything the Pareto figure shows, in plain numbers.

    Attributes:
        cost_key: ``macs`` or ``params``: the x axis.
        points: ``(cost, accuracy, trial)`` of every scored trial.
        front: ``(cost, accuracy, trial)`` of the front, by increasing cost.
        reference_trial: ``(cost, accuracy, trial)`` of the width-scaled reference, if scored.
        rejected: Costs of proposals rejected as over budget (never trained, no accuracy).
        failed: Number of failed trials (no accuracy).
        budget: The budget line on the x axis, when it limits ``cost_key``.
        references: ``name -> cost`` of the GhostNet table networks (paper convention).
    """

    cost_key: str
    points: list[tuple[float, float, int]]
    front: list[tuple[float, float, int]]
    reference_trial: tuple[float, float, int] | None
    rejected: list[float]
    failed: int
    budget: float | None
    references: dict[str, float] = field(default_factory=dict)


def reference_costs(cost_key: str) -> dict[str, float]:
    """Cost of ghostnet_050/100/130 at 224x224, 1000 classes."""
    from ghostnas.cost import count_cost
    from ghostnas.registry import resolve_config

    out = {}
    for name in REFERENCE_MODELS:
        cost = count_cost(resolve_config(name))
        out[name] = float(cost.macs if cost_key == "macs" else cost.params)
    return out


def pareto_plot_data(records: Sequence[Mapping[str, Any]], budget: Budget, cost_key: str) -> ParetoPlotData:
    """Extract the figure's data from trial records (see :func:`ghostnas.results.trial_records`)."""
    scored = [r for r in records if r["outcome"] == "ok" and r.get(cost_key) is not None]
    in_budget = [r for r in scored if r[budget.metric] <= budget.limit]
    front = pareto_front(in_budget, cost_key)
    ref = next((r for r in scored if r["reference"]), None)
    return ParetoPlotData(
        cost_key=cost_key,
        points=[(float(r[cost_key]), float(r["accuracy"]), int(r["number"])) for r in scored],
        front=[(float(r[cost_key]), float(r["accuracy"]), int(r["number"])) for r in front],
        reference_trial=None
        if ref is None
        else (float(ref[cost_key]), float(ref["accuracy"]), int(ref["number"])),
        rejected=[
            float(r[cost_key])
            for r in records
            if r["outcome"] == "over_budget" and r.get(cost_key) is not None
        ],
        failed=sum(r["outcome"] == "failed" for r in records),
        budget=budget.limit if budget.metric == cost_key else None,
        references=reference_costs(cost_key),
    )


def render_pareto(data: ParetoPlotData, path: str | Path, title: str = "") -> None:
    """Draw ``data`` to a PNG file (matplotlib, Agg backend; written atomically)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from ghostnas._io import atomic_write_bytes

    scale, unit = (1e6, "M MACs") if data.cost_key == "macs" else (1e6, "M params")
    fig = Figure(figsize=(7.5, 5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    if data.points:
        ax.scatter(
            [p[0] / scale for p in data.points],
            [p[1] for p in data.points],
            s=18,
            color="0.6",
            label=f"scored trials ({len(data.points)})",
            zorder=2,
        )
    if data.front:
        ax.step(
            [p[0] / scale for p in data.front],
            [p[1] for p in data.front],
            where="post",
            color="C0",
            zorder=3,
        )
        ax.scatter(
            [p[0] / scale for p in data.front],
            [p[1] for p in data.front],
            s=36,
            color="C0",
            label=f"Pareto front ({len(data.front)})",
            zorder=4,
        )
    if data.reference_trial is not None:
        x, y, n = data.reference_trial
        ax.scatter(
            [x / scale],
            [y],
            marker="*",
            s=160,
            color="C3",
            zorder=5,
            label=f"width-scaled GhostNet (trial {n})",
        )
    if data.rejected:
        ax.plot(
            [c / scale for c in data.rejected],
            [0] * len(data.rejected),
            "|",
            color="C1",
            markersize=10,
            transform=ax.get_xaxis_transform(),
            label=f"over budget, not trained ({len(data.rejected)})",
        )
    if data.budget is not None:
        ax.axvline(data.budget / scale, color="k", linestyle="--", linewidth=1, label="budget")
    span = max([c for c, _, _ in data.points] + data.rejected + [data.budget or 0.0])
    for name, cost in data.references.items():
        if cost > 1.6 * span:  # keep the axis on the searched range
            continue
        ax.axvline(cost / scale, color="C2", linestyle=":", linewidth=1)
        ax.text(
            cost / scale,
            0.98,
            f" {name}",
            rotation=90,
            va="top",
            ha="left",
            fontsize=7,
            color="C2",
            transform=ax.get_xaxis_transform(),
        )
    ax.set_xlim(left=0)
    ax.set_xlabel(f"cost at 224x224, 1000 classes ({unit}; conv+linear MACs, the paper's FLOPs)")
    ax.set_ylabel("proxy accuracy")
    if title:
        suffix = f"; {data.failed} failed" if data.failed else ""
        ax.set_title(title + suffix, fontsize=10)
    ax.grid(True, alpha=0.3)
    if data.points or data.rejected or data.budget is not None:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
