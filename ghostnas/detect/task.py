"""What a detection study needs from the search: its space, cost, budget, data and records.

``ghostnas search --task detect`` runs the same study, resume, workers, run folder, plots,
summary and export code as a classification search; :func:`open_detect_task` checks every
detection input before anything is written and returns the :class:`DetectTask` the search asks
for the parts that differ:

- the space (:class:`~ghostnas.detect.space.DetectSpace`, bound to the data's classes),
- the cost of a candidate (:func:`~ghostnas.detect.cost.detect_costs`: ``gflops``, ``macs``,
  ``params``) and the budget in Ultralytics' GFLOPs (:func:`detect_budget`),
- the data (:class:`~ghostnas.data.detect.DetectData`, checked once),
- what ``run.json`` and ``summary.md`` say about the cost convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas.budget import GFLOPS_CONVENTION, Budget, BudgetError
from ghostnas.data.detect import DetectData, read_detect_data
from ghostnas.detect.config import DetectConfig
from ghostnas.detect.cost import detect_costs
from ghostnas.detect.space import DEFAULT_DETECT_SPACE, DetectSpace, load_detect_space
from ghostnas.errors import GhostnasError

__all__ = ["DEFAULT_DETECT_BUDGET", "DetectTask", "detect_budget", "open_detect_task"]

DEFAULT_DETECT_BUDGET = Budget("gflops", 6.5)


def detect_budget(budget: Budget) -> Budget:
    """A budget read by :func:`ghostnas.budget.parse_budget` (``6.5GFLOPs`` is 6.5e9 "MACs"
    there, the classification papers' FLOPs) as a detector budget: the same number of
    GFLOPs in Ultralytics' convention (:data:`~ghostnas.budget.GFLOPS_CONVENTION`)."""
    if budget.metric == "gflops":
        return budget
    if budget.metric != "macs":
        raise BudgetError(
            f"--budget {budget.describe()}: a detection search is budgeted in GFLOPs (Ultralytics' count), "
            "e.g. --budget 6.5GFLOPs"
        )
    return Budget("gflops", budget.limit / 1e9)


@dataclass(frozen=True)
class DetectTask:
    """A checked detection study: the bound space and the data.

    Attributes:
        space: The space, bound to the data's class count and the cost's imgsz.
        data: The checked Ultralytics dataset.
    """

    space: DetectSpace
    data: DetectData

    @property
    def nc(self) -> int:
        return self.data.nc

    def costs(self, cfg: DetectConfig) -> dict[str, float]:
        """Every cost of a candidate, in closed form (nothing is built)."""
        return detect_costs(cfg, self.nc, self.space.imgsz)

    def convention(self) -> str:
        return f"{GFLOPS_CONVENTION}; counted at {self.space.imgsz}x{self.space.imgsz}, nc={self.nc}"

    def fingerprint(self) -> dict[str, Any]:
        """Settings that change what a trial means; a study made with others is not resumed."""
        return {
            "task": "detect",
            "data": str(self.data.yaml_path),
            "data_digest": self.data.digest,
            "cost_at": f"detect: {self.space.base} at {self.space.imgsz}, nc={self.nc}",
        }

    def run_fields(self) -> dict[str, Any]:
        """What ``run.json`` records about the data and the cost convention."""
        rng = self.space.gflops_range()
        return {
            "task": "detect",
            "data": str(self.data.yaml_path),
            "data_digest": self.data.digest,
            "classes": list(self.data.names),
            "splits": dict(self.data.images),
            "boxes": dict(self.data.boxes),
            "base": self.space.base,
            "cost_at": "detect",
            "cost_imgsz": self.space.imgsz,
            "cost_convention": self.convention(),
            "cost_sentence": (
                f"Costs follow Ultralytics: GFLOPs = 2 x conv multiply-accumulates at {self.space.imgsz}x"
                f"{self.space.imgsz} with nc={self.nc} (what Ultralytics prints for the fused model); "
                "MACs are those multiply-accumulates, params the unfused model's. The space's detectors "
                f"span {rng.min_gflops:.2f} to {rng.max_gflops:.2f} GFLOPs."
            ),
            "space_gflops": [round(rng.min_gflops, 4), round(rng.max_gflops, 4)],
        }

    def out_dir_name(self, budget: Budget, evaluator: str, sampler: str, seed: int) -> str:
        """``search-detect-<space>-<data folder>-<budget>-<evaluator>-<sampler>-seed<seed>``."""
        data = self.data.yaml_path.parent.name or "data"
        parts = ["search-detect", self.space.name, data, budget.slug(), evaluator, sampler, f"seed{seed}"]
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", "-".join(parts))


def open_detect_task(
    space: str | None, data: Any, budget: Budget, base: str | None = None, imgsz: int | None = None
) -> DetectTask:
    """Check a detection study's inputs; one-line errors, nothing written.

    Args:
        space: A detection space name or path (None: :data:`DEFAULT_DETECT_SPACE`).
        data: The Ultralytics ``data.yaml`` path.
        budget: A ``gflops`` budget (:func:`detect_budget`).
        base: Another base detector than the space's (``yolov8s``...).
        imgsz: Where GFLOPs are counted, if not the space's (640).

    Raises:
        GhostnasError: missing or malformed data, no val split, labels out of range, an unknown
            space or base, or a budget below the space's smallest detector.
    """
    if not isinstance(data, (str, Path)):
        raise GhostnasError("--task detect takes --data PATH/data.yaml (an Ultralytics dataset)")
    if str(data) == "fashion-mnist":
        raise GhostnasError(
            "--task detect needs detection data: --data PATH/data.yaml "
            "(make one offline with `ghostnas data make-detect --out DIR`)"
        )
    dataset = read_detect_data(data)
    bound = load_detect_space(space or DEFAULT_DETECT_SPACE).bind(dataset.nc, imgsz, base)
    if budget.metric != "gflops":
        raise BudgetError(f"budget {budget.describe()}: a detection search is budgeted in GFLOPs")
    rng = bound.gflops_range()
    if rng.min_gflops > budget.limit:
        raise GhostnasError(
            f"budget {budget.describe()} is below the smallest detector of space {bound.name} "
            f"({rng.min_gflops:.3f} GFLOPs at {bound.imgsz}x{bound.imgsz}, nc={dataset.nc}, "
            f"{bound.base}); raise the budget or use a smaller space"
        )
    return DetectTask(bound, dataset)
