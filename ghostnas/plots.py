"""The run's figures, as "extract, then render".

Each figure has a function that turns trial records into a plain, tested record of what the
figure shows, and a function that draws that record with matplotlib and knows nothing about
studies or trials:

- :func:`pareto_plot_data` / :func:`render_pareto`: accuracy against cost (MACs, params, or
  latency when the search predicted it): every scored trial faint, the front highlighted and
  labelled by trial, the budget line, rejected proposals, the GhostNet reference networks.
- :func:`hypervolume_history` / :func:`render_hypervolume`: how the front improved, trial by
  trial.

:func:`write_plots` draws all that apply into a run folder; the search calls it at its end and
``ghostnas plot RUN_DIR`` calls it on any finished run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostnas._io import atomic_write_bytes
from ghostnas.budget import Budget
from ghostnas.config import BuildSpec
from ghostnas.cost import PAPER_SHAPE, count_cost
from ghostnas.front import hypervolume_2d, pareto_front, scored_in_budget
from ghostnas.records import TrialRecord
from ghostnas.run_folder import open_run

__all__ = [
    "HypervolumeHistory",
    "ParetoPlotData",
    "cost_axis_label",
    "hypervolume_history",
    "pareto_plot_data",
    "plot_run",
    "reference_costs",
    "render_hypervolume",
    "render_pareto",
    "write_plots",
]

REFERENCE_MODELS = ("ghostnet_050", "ghostnet_100", "ghostnet_130")

# x-axis scale and label per cost metric
_AXES = {
    "macs": (1e6, "MACs at 224x224, 1000 classes (millions; conv+linear, the paper's FLOPs)"),
    "params": (1e6, "params at 1000 classes (millions)"),
    "latency_ms": (1.0, "predicted latency (ms, batch 1, 224x224)"),
    "gflops": (1.0, "GFLOPs (Ultralytics: 2 x conv MACs at 640x640, nc from the data)"),
}


@dataclass(frozen=True)
class ParetoPlotData:
    """Everything the Pareto figure shows, in plain numbers.

    Attributes:
        cost_key: ``macs``, ``params`` or ``latency_ms``: the x axis.
        points: ``(cost, accuracy, trial)`` of every scored trial.
        front: ``(cost, accuracy, trial)`` of the front, by increasing cost.
        reference_trial: ``(cost, accuracy, trial)`` of the width-scaled reference, if scored.
        rejected: Costs of proposals rejected as over budget (never trained, no accuracy).
        failed: Number of failed trials (no accuracy).
        budget: The budget line on the x axis, when it limits ``cost_key``.
        references: ``name -> cost`` of the GhostNet table networks (at the run's cost shape);
            empty for latency (the figure does not time networks).
        score_label: What the y axis is (the evaluator's score, e.g. ``proxy accuracy``).
        xlabel: The x-axis label, naming the shape costs were counted at (None: the default
            label of ``cost_key``, the papers' 224x224 / 1000 classes).
        noise_sd: The measured seed-to-seed SD of one score (:mod:`ghostnas.noise`), or None:
            drawn as error bars of one SD on the front and a band of scores within noise of the
            reference.
    """

    cost_key: str
    points: list[tuple[float, float, int]]
    front: list[tuple[float, float, int]]
    reference_trial: tuple[float, float, int] | None
    rejected: list[float]
    failed: int
    budget: float | None
    references: dict[str, float] = field(default_factory=dict)
    score_label: str = "proxy accuracy"
    xlabel: str | None = None
    noise_sd: float | None = None


@dataclass(frozen=True)
class HypervolumeHistory:
    """The front's hypervolume after each trial, in trial order.

    Attributes:
        trials: Trial numbers, every trial of the run in order.
        values: Hypervolume of the front of scored, in-budget trials up to and including each
            trial (see :func:`ghostnas.front.hypervolume_2d`): non-decreasing by construction.
        cost_key: The front's cost axis.
        reference_cost: The cost coordinate of the reference point (the budget when it limits
            ``cost_key``; otherwise the largest scored cost).
    """

    trials: list[int]
    values: list[float]
    cost_key: str
    reference_cost: float


def reference_costs(cost_key: str, shape: BuildSpec = PAPER_SHAPE) -> dict[str, float]:
    """Cost of ghostnet_050/100/130 at ``shape`` (default 224x224, 1000 classes; empty for latency)."""
    from ghostnas.registry import resolve_config

    out: dict[str, float] = {}
    if cost_key not in ("macs", "params"):
        return out  # latency of the table networks depends on the device: not drawn
    for name in REFERENCE_MODELS:
        cost = count_cost(resolve_config(name), spec=shape)
        out[name] = float(cost.macs if cost_key == "macs" else cost.params)
    return out


def _scored_in_budget(records: Sequence[TrialRecord], budget: Budget, cost_key: str) -> list[TrialRecord]:
    return [r for r in scored_in_budget(records, budget) if r.cost(cost_key) is not None]


def _point(r: TrialRecord, cost_key: str) -> tuple[float, float, int]:
    return (float(r.cost(cost_key)), float(r.accuracy), int(r.number))


def cost_axis_label(cost_key: str, shape: BuildSpec = PAPER_SHAPE) -> str:
    """The axis label of a cost metric, saying at which shape it was counted."""
    if shape == PAPER_SHAPE or cost_key not in ("macs", "params"):
        return _AXES.get(cost_key, (1.0, cost_key))[1]
    what = "MACs (millions; conv+linear)" if cost_key == "macs" else "params (millions)"
    return f"{what} at the data's shape, {shape.describe()}"


def pareto_plot_data(
    records: Sequence[TrialRecord],
    budget: Budget,
    cost_key: str,
    score_label: str = "proxy accuracy",
    shape: BuildSpec = PAPER_SHAPE,
    noise_sd: float | None = None,
) -> ParetoPlotData:
    """Extract the figure's data from trial records (:class:`ghostnas.records.TrialRecord`).

    ``cost_key`` is the x axis (a search passes :func:`ghostnas.front.cost_key`, the
    budget's metric unless a second objective says otherwise); the budget line is drawn when
    the budget limits that axis. ``shape`` is where the run counted MACs and params (``--cost-at``);
    ``noise_sd`` the measured seed-to-seed SD of one score, drawn when given.
    """
    scored = [r for r in records if r.scored and r.cost(cost_key) is not None]
    front = pareto_front(_scored_in_budget(records, budget, cost_key), cost_key)
    ref = next((r for r in scored if r.reference), None)
    return ParetoPlotData(
        cost_key=cost_key,
        points=[_point(r, cost_key) for r in scored],
        front=[_point(r, cost_key) for r in front],
        reference_trial=None if ref is None else _point(ref, cost_key),
        rejected=[
            float(r.cost(cost_key))
            for r in records
            if r.outcome == "over_budget" and r.cost(cost_key) is not None
        ],
        failed=sum(r.outcome == "failed" for r in records),
        budget=budget.limit if budget.metric == cost_key else None,
        references=reference_costs(cost_key, shape),
        score_label=score_label,
        xlabel=cost_axis_label(cost_key, shape),
        noise_sd=noise_sd,
    )


def hypervolume_history(records: Sequence[TrialRecord], budget: Budget, cost_key: str) -> HypervolumeHistory:
    """The hypervolume of the front after each trial (extract step of the history figure).

    The reference point is (cost = budget, accuracy = 0) when the budget limits ``cost_key``,
    the same as ``summary.md``'s figure, so the last value equals the run's hypervolume. Otherwise
    it is the largest cost of any scored in-budget trial, so values compare only within the run.
    """
    ordered = sorted(records, key=lambda r: r.number)
    eligible = _scored_in_budget(ordered, budget, cost_key)
    if budget.metric == cost_key:
        ref = float(budget.limit)
    else:
        ref = max((float(r.cost(cost_key)) for r in eligible), default=1.0)
    eligible_ids = {r.number for r in eligible}
    seen: list[TrialRecord] = []
    trials, values = [], []
    value = 0.0
    for r in ordered:
        if r.number in eligible_ids:
            seen.append(r)
            value = hypervolume_2d(pareto_front(seen, cost_key), cost_key, ref) if ref > 0 else 0.0
        trials.append(int(r.number))
        values.append(value)
    return HypervolumeHistory(trials=trials, values=values, cost_key=cost_key, reference_cost=ref)


# --------------------------------------------------------------------------------------------
# rendering


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(7.5, 5), dpi=120)


def _save(fig: Any, path: str | Path) -> None:

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def render_pareto(data: ParetoPlotData, path: str | Path, title: str = "") -> None:
    """Draw ``data`` to a PNG file (matplotlib, Agg backend; written atomically)."""
    scale, xlabel = _AXES.get(data.cost_key, (1.0, data.cost_key))
    xlabel = data.xlabel or xlabel
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if data.points:
        ax.scatter(
            [p[0] / scale for p in data.points],
            [p[1] for p in data.points],
            s=16,
            color="0.55",
            alpha=0.45,
            label=f"scored trials ({len(data.points)})",
            zorder=2,
        )
    if data.front:
        xs = [p[0] / scale for p in data.front]
        ys = [p[1] for p in data.front]
        ax.step(xs, ys, where="post", color="C0", zorder=3)
        ax.scatter(xs, ys, s=36, color="C0", label=f"Pareto front ({len(data.front)})", zorder=4)
        for x, y, n in data.front:
            ax.annotate(
                f"#{n}",
                (x / scale, y),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color="C0",
            )
    if data.noise_sd:
        _draw_noise(ax, data, scale)
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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(data.score_label)
    if title:
        suffix = f"; {data.failed} failed" if data.failed else ""
        ax.set_title(title + suffix, fontsize=10)
    ax.grid(True, alpha=0.3)
    if data.points or data.rejected or data.budget is not None:
        ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def _draw_noise(ax: Any, data: ParetoPlotData, scale: float) -> None:
    """One-SD error bars on the front; a band of scores within noise of the reference."""
    from ghostnas.noise import DISTINGUISH_K

    sd = float(data.noise_sd or 0.0)
    if data.front:
        ax.errorbar(
            [p[0] / scale for p in data.front],
            [p[1] for p in data.front],
            yerr=sd,
            fmt="none",
            ecolor="C0",
            elinewidth=1,
            capsize=2,
            zorder=3,
        )
    if data.reference_trial is not None:
        half = DISTINGUISH_K * sd * 2**0.5
        y = data.reference_trial[1]
        ax.axhspan(
            y - half,
            y + half,
            color="C3",
            alpha=0.1,
            zorder=1,
            label=f"within noise of the reference (+-{half:.3f}; seed SD {sd:.3f})",
        )


def render_hypervolume(history: HypervolumeHistory, path: str | Path, title: str = "") -> None:
    """Draw the hypervolume history as a step line over trial numbers."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if history.trials:
        ax.step(history.trials, history.values, where="post", color="C0")
        ax.scatter(history.trials[-1:], history.values[-1:], color="C0", zorder=3)
        ax.annotate(
            f"{history.values[-1]:.4f}",
            (history.trials[-1], history.values[-1]),
            textcoords="offset points",
            xytext=(-10, 6),
            fontsize=8,
            ha="right",
        )
    scale, _ = _AXES.get(history.cost_key, (1.0, history.cost_key))
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume of the front (normalised)")
    ax.set_title(
        (title + "\n" if title else "")
        + f"reference point: score 0, {history.cost_key} {history.reference_cost / scale:g}"
        + ("M" if scale == 1e6 else ""),
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    _save(fig, path)


def write_plots(
    out_dir: str | Path,
    records: Sequence[TrialRecord],
    budget: Budget,
    cost_key: str,
    title: str = "",
    score_label: str = "proxy accuracy",
    shape: BuildSpec = PAPER_SHAPE,
    noise_sd: float | None = None,
) -> list[str]:
    """Write ``pareto.png``, ``hypervolume.png`` and, when the trials carry a predicted latency,
    ``latency.png`` into ``out_dir``. ``noise_sd`` is the measured seed-to-seed SD, if any.

    Returns:
        The file names written.
    """
    out_dir = Path(out_dir)
    render_pareto(
        pareto_plot_data(records, budget, cost_key, score_label, shape, noise_sd),
        out_dir / "pareto.png",
        title=title,
    )
    render_hypervolume(
        hypervolume_history(records, budget, cost_key), out_dir / "hypervolume.png", title=title
    )
    files = ["pareto.png", "hypervolume.png"]
    if cost_key != "latency_ms" and any(r.scored and r.latency_ms is not None for r in records):
        render_pareto(
            pareto_plot_data(records, budget, "latency_ms", score_label, shape),
            out_dir / "latency.png",
            title=title,
        )
        files.append("latency.png")
    return files


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw a finished run's figures from its ``run.json`` and ``trials.csv`` (``ghostnas plot``).

    Returns:
        The PNG files written (into the run folder).

    Raises:
        ghostnas.run_folder.RunFolderError: not a readable run folder (nothing is written).
    """
    run = open_run(run_dir)
    s = run.settings
    title = f"{s.get('space', '?')} under {run.budget.describe()}, evaluator {s.get('evaluator', '?')}"
    names = write_plots(
        run.path,
        run.records,
        run.budget,
        run.cost_key,
        title=title,
        score_label=run.score_label,
        shape=run.cost_shape,
        noise_sd=(run.info.get("noise") or {}).get("sd"),
    )
    return [run.path / n for n in names]
