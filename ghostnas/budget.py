"""Cost budgets (``150MFLOPs``, ``5Mparams``, ``12ms``) and the cost metrics a search checks.

A :class:`Budget` is a limit on one metric. MACs are counted the way the GhostNet and mobile-NAS
papers count "FLOPs": multiply-accumulates of conv and linear layers, by default at 224x224 and
1000 classes (:data:`ghostnas.cost.PAPER_SHAPE`) whatever resolution the proxy trains at. So
``150MFLOPs``, ``150MMACs``, ``150M`` and ``0.15GFLOPs`` are the same budget, comparable with the
papers' tables. ``--cost-at data`` counts MACs, params and the budget at the data's own shape
instead (:func:`ghostnas.data.input_shape`); every output says which.

:func:`candidate_costs` is the one place that computes every metric a budget or an objective can
name; a latency predictor plugs in there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ghostnas.config import BuildSpec, GhostNetConfig
from ghostnas.cost import PAPER_SHAPE, count_cost
from ghostnas.errors import GhostnasError

__all__ = [
    "COST_METRICS",
    "GFLOPS_CONVENTION",
    "OBJECTIVES",
    "Budget",
    "BudgetError",
    "Objective",
    "candidate_costs",
    "default_objectives",
    "parse_budget",
    "parse_objectives",
]

COST_METRICS = ("macs", "params", "latency_ms", "gflops")
"""Metrics a budget may limit: MACs and params at 224x224/1000 classes, latency in milliseconds,
and for detectors Ultralytics' GFLOPs (:data:`GFLOPS_CONVENTION`)."""

GFLOPS_CONVENTION = (
    "Ultralytics GFLOPs: 2 x conv multiply-accumulates at imgsz x imgsz (default 640), nc from the data; "
    "Ultralytics' count of the fused model (exact for its own layers; Ghost blocks keep their BN there, "
    "which it counts too: +0.3%)"
)
"""How a detector's ``gflops`` are counted (``ghostnas search --task detect``): the number
detection users compare, not the classification papers' MACs."""

BUDGET_INPUT_SIZE = 224
BUDGET_NUM_CLASSES = 1000

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "g": 1e9}
_UNITS = {
    "flops": "macs",
    "flop": "macs",
    "macs": "macs",
    "mac": "macs",
    "params": "params",
    "param": "params",
}
_TIME_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_BUDGET_RE = re.compile(
    r"^\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<prefix>[kKMGg]?)\s*(?P<unit>[A-Za-zµ]*)\s*$"
)


class BudgetError(GhostnasError, ValueError):
    """A budget or objective string cannot be understood."""


@dataclass(frozen=True)
class Budget:
    """A limit on one cost metric.

    Attributes:
        metric: ``macs``, ``params`` or ``latency_ms``.
        limit: The largest allowed value, in MACs, parameters or milliseconds.
    """

    metric: str
    limit: float

    def __post_init__(self) -> None:
        if self.metric not in COST_METRICS:
            raise BudgetError(
                f"unknown budget metric {self.metric!r}; choose one of {', '.join(COST_METRICS)}"
            )
        if not math.isfinite(self.limit) or self.limit <= 0:
            raise BudgetError(f"budget limit {self.limit!r} must be a positive finite number")

    def excess(self, costs: Mapping[str, float]) -> float:
        """Relative overshoot ``(cost - limit) / limit``: positive means over budget.

        This is the constraint value given to Optuna (feasible when at most 0); being relative,
        it is on the same scale whatever the metric.
        """
        return (float(costs[self.metric]) - self.limit) / self.limit

    def fits(self, costs: Mapping[str, float]) -> bool:
        return costs[self.metric] <= self.limit

    def describe(self) -> str:
        """Human form: ``150M MACs``, ``5M params``, ``12 ms``, ``6.5 GFLOPs``."""
        if self.metric == "latency_ms":
            return f"{self.limit:g} ms"
        if self.metric == "gflops":
            return f"{self.limit:g} GFLOPs"
        unit = "MACs" if self.metric == "macs" else "params"
        return f"{_si(self.limit)} {unit}"

    def convention(self) -> str:
        """How the limited metric is counted, for every output that shows the budget."""
        if self.metric == "latency_ms":
            return "predicted latency, batch 1, 224x224, from the latency table"
        if self.metric == "gflops":
            return GFLOPS_CONVENTION
        if self.metric == "macs":
            return "conv+linear multiply-accumulates at 224x224, 1000 classes; the paper's FLOPs"
        return "trainable parameters at 1000 classes"

    def slug(self) -> str:
        """Short file-name-safe form: ``150MMACs``, ``5Mparams``, ``12ms``, ``6p5GFLOPs``."""
        if self.metric == "latency_ms":
            return f"{self.limit:g}ms"
        if self.metric == "gflops":
            return f"{self.limit:g}".replace(".", "p") + "GFLOPs"
        return _si(self.limit).replace(".", "p") + ("MACs" if self.metric == "macs" else "params")


def _si(value: float) -> str:
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if value >= factor:
            return f"{value / factor:g}{prefix}"
    return f"{value:g}"


def parse_budget(text: str) -> Budget:
    """Parse a budget string.

    ``150MFLOPs``, ``150MMACs``, ``150M``, ``0.15GFLOPs``, ``150000000`` are MAC budgets (the
    papers' FLOPs are multiply-accumulates); ``5Mparams`` limits parameters; ``12ms``, ``800us``
    limit latency in milliseconds. Prefixes: k/K, M, G. Units are case-insensitive.

    Raises:
        BudgetError: unknown unit or prefix, non-positive or non-finite value.
    """
    m = _BUDGET_RE.match(text or "")
    hint = "write e.g. 150MFLOPs, 0.15GFLOPs, 150M (MACs), 5Mparams or 12ms"
    if not m:
        raise BudgetError(f"cannot read budget {text!r}; {hint}")
    value = float(m["num"])
    prefix, unit = m["prefix"], m["unit"]
    if unit.lower() in _TIME_UNITS or unit in _TIME_UNITS:
        if prefix:
            raise BudgetError(f"budget {text!r}: a time takes no {prefix!r} prefix; {hint}")
        metric, value = (
            "latency_ms",
            value * _TIME_UNITS[unit.lower() if unit.lower() in _TIME_UNITS else unit],
        )
    elif unit.lower() in _UNITS or unit == "":
        metric, value = _UNITS.get(unit.lower(), "macs"), value * _PREFIX[prefix]
    else:
        raise BudgetError(f"budget {text!r}: unknown unit {unit!r}; {hint}")
    if not math.isfinite(value):
        raise BudgetError(f"budget {text!r} is not a finite number; {hint}")
    if value <= 0:
        raise BudgetError(f"budget {text!r} must be positive; {hint}")
    return Budget(metric, value)


def candidate_costs(
    cfg: GhostNetConfig,
    latency: Callable[[GhostNetConfig], float] | None = None,
    shape: BuildSpec = PAPER_SHAPE,
) -> dict[str, float]:
    """Every cost metric of a candidate that the search can budget or optimise.

    MACs and params come from the closed-form cost model at ``shape``, by default the paper's
    224x224 / 1000 classes (microseconds per config). ``latency_ms`` is there when a latency predictor is given (e.g.
    :meth:`ghostnas.latency.LatencyPredictor.predict`, a table lookup, timing only block shapes
    the table lacks).
    """
    cost = count_cost(cfg, spec=shape)
    out = {"macs": float(cost.macs), "params": float(cost.params)}
    if latency is not None:
        out["latency_ms"] = float(latency(cfg))
    return out


@dataclass(frozen=True)
class Objective:
    """One thing the study optimises: ``accuracy`` (maximised) or a cost metric (minimised)."""

    name: str
    maximize: bool

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("accuracy", True),
    "macs": Objective("macs", False),
    "params": Objective("params", False),
    "latency_ms": Objective("latency_ms", False),
    "gflops": Objective("gflops", False),
}
_OBJECTIVE_ALIASES = {"latency": "latency_ms"}


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """``accuracy,macs`` (the default: a Pareto front) or ``accuracy`` (single objective).

    Accuracy must come first and be present; cost objectives come from :func:`candidate_costs`.
    """
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    names = [_OBJECTIVE_ALIASES.get(n, n) for n in names]
    if not names:
        raise BudgetError("no objectives given; write e.g. accuracy,macs or accuracy")
    for n in names:
        if n not in OBJECTIVES:
            raise BudgetError(f"unknown objective {n!r}; choose from {', '.join(OBJECTIVES)} (or latency)")
    if len(set(names)) != len(names):
        raise BudgetError(f"objective listed twice in {text!r}")
    if names[0] != "accuracy":
        raise BudgetError(f"objectives {text!r}: accuracy must come first, e.g. accuracy,macs")
    return tuple(OBJECTIVES[n] for n in names)


def default_objectives(budget: Budget) -> str:
    """``accuracy,<the budget's metric>``: what a search optimises when not told otherwise.

    A search under a params budget trades accuracy against params and one under a latency
    budget against latency, so that the front, its plot and its hypervolume are drawn in the
    metric the user limited (the budget line and the hypervolume's reference point lie on that
    axis). ``150MFLOPs`` gives ``accuracy,macs``.
    """
    return f"accuracy,{budget.metric}"
