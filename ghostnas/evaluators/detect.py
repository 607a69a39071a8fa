"""The detection proxy: a short Ultralytics training run per candidate, scored by val mAP50-95.

One recipe trains every candidate (:class:`DetectRecipe` of this module: a few epochs at a small
imgsz, SGD with Ultralytics' defaults, no pretrained weights, a fixed seed with Ultralytics'
deterministic mode), so the scores rank architectures, not luck or settings. The score is
mAP50-95 of the boxes on the dataset's **val** split (the test split is never read here).

Offline by construction: Ultralytics is told there is no network before it is imported
(``YOLO_OFFLINE``, no auto-install), ``amp=False`` (its AMP check downloads a model), ``plots=False``
(plots fetch a font), no pretrained weights, ``workers=0``; its dataset check's font lookup (a
web request for Arial.ttf) is switched off for the duration of the run. Everything Ultralytics
writes (checkpoints, results.csv) goes to a temporary folder that is removed afterwards.

A candidate that cannot be scored is a failed trial with its reason, never a score: a loss or
metric that is not finite, CUDA or CPU out of memory, a model Ultralytics cannot build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas.detect.config import DetectConfig
from ghostnas.detect.cost import ultralytics_offline
from ghostnas.detect.model_yaml import model_yaml_text
from ghostnas.evaluators.base import EvalResult, EvaluationFailed, ReportFn

__all__ = ["DetectProxyEvaluator", "DetectRecipe", "from_settings", "offline_ultralytics"]

logger = logging.getLogger(__name__)

SCORE_LABEL = "proxy mAP50-95 (val)"


@dataclass(frozen=True)
class DetectRecipe:
    """How every candidate is trained for its score.

    Attributes:
        epochs: Full passes over the train split (whole epochs: Ultralytics counts no less).
        imgsz: Training and validation side in pixels (a multiple of 32); small, for speed.
        batch: Images per step.
        seed: Ultralytics' seed (init, data order, augmentation), with its deterministic mode.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        workers: Dataloader processes; 0 loads in the training process (no forks).
    """

    epochs: int = 5
    imgsz: int = 160
    batch: int = 16
    seed: int = 0
    device: str = "cpu"
    workers: int = 0

    def train_args(self) -> dict[str, Any]:
        """The arguments of Ultralytics' trainer that this recipe fixes."""
        device = self.device
        if device.startswith("cuda"):
            device = device.split(":", 1)[1] if ":" in device else "0"
        return {
            "epochs": self.epochs,
            "imgsz": self.imgsz,
            "batch": self.batch,
            "seed": self.seed,
            "deterministic": True,
            "device": device,
            "workers": self.workers,
            "amp": False,
            "plots": False,
            "pretrained": False,
            "val": True,
            "verbose": False,
            "cache": False,
            "exist_ok": True,
        }


@contextlib.contextmanager
def offline_ultralytics() -> Iterator[None]:
    """Ultralytics with no network attempts: its dataset check asks the web for a font it only
    needs for plots (which are off); that lookup is replaced by a no-op while this is open."""
    ultralytics_offline()
    import ultralytics.data.utils as data_utils

    import ghostnas.yolo  # noqa: F401 -- makes GhostnasC2f resolvable in the model YAML

    saved = data_utils.check_font
    data_utils.check_font = lambda *_a, **_k: None
    try:
        yield
    finally:
        data_utils.check_font = saved


class DetectProxyEvaluator:
    """Scores a :class:`~ghostnas.detect.config.DetectConfig` by a short training run.

    Args:
        data: The Ultralytics ``data.yaml``.
        nc: Its class count (the head's width).
        recipe: How to train (see :class:`DetectRecipe`).
    """

    name = "detect"
    score_label = SCORE_LABEL

    def __init__(self, data: str, nc: int, recipe: DetectRecipe | None = None) -> None:
        self.data = str(data)
        self.nc = nc
        self.recipe = recipe or DetectRecipe()

    @property
    def seed(self) -> int:
        return self.recipe.seed

    def with_seed(self, seed: int) -> DetectProxyEvaluator:
        """The same proxy with another seed (the noise floor's probes)."""
        return DetectProxyEvaluator(self.data, self.nc, dataclasses.replace(self.recipe, seed=seed))

    def evaluate(self, cfg: DetectConfig, report: ReportFn | None = None) -> EvalResult:
        """Train ``cfg`` with the recipe and score it; :class:`EvaluationFailed` when it cannot."""
        del report  # Ultralytics trains its epochs in one call; nothing to report part-way
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ghostnas-detect-") as tmp:
            model_path = Path(tmp) / "model.yaml"
            model_path.write_text(model_yaml_text(cfg, self.nc), encoding="utf-8")
            metrics = self._train(model_path, Path(tmp))
        score = metrics.get("metrics/mAP50-95(B)")
        if score is None or not math.isfinite(float(score)):
            raise EvaluationFailed(f"validation mAP50-95 is {score!r} (training diverged?)")
        losses = {
            k: float(v) for k, v in metrics.items() if k.startswith("val/") and isinstance(v, (int, float))
        }
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise EvaluationFailed(f"non-finite {bad[0]} ({losses[bad[0]]}); the training diverged")
        return EvalResult(
            score=float(score),
            metrics={
                "map50": float(metrics.get("metrics/mAP50(B)", float("nan"))),
                "precision": float(metrics.get("metrics/precision(B)", float("nan"))),
                "recall": float(metrics.get("metrics/recall(B)", float("nan"))),
                "epochs": self.recipe.epochs,
                "imgsz": self.recipe.imgsz,
                **{k.replace("/", "_"): v for k, v in losses.items()},
            },
            seconds=time.perf_counter() - t0,
        )

    def _train(self, model_path: Path, project: Path) -> dict[str, Any]:
        import torch

        with offline_ultralytics():
            from ultralytics.models.yolo.detect import DetectionTrainer

            args = {
                **self.recipe.train_args(),
                "model": str(model_path),
                "data": self.data,
                "project": str(project),
                "name": "train",
            }
            try:
                trainer = DetectionTrainer(overrides=args)
                trainer.train()
            except torch.OutOfMemoryError as exc:
                raise EvaluationFailed(f"out of memory: {' '.join(str(exc).split())[:200]}") from None
            except MemoryError:
                raise EvaluationFailed("out of memory (host RAM)") from None
        metrics = dict(getattr(trainer, "metrics", None) or {})
        if not metrics:
            raise EvaluationFailed("Ultralytics returned no validation metrics")
        return metrics


def from_settings(settings: Any) -> DetectProxyEvaluator:
    """The ``detect`` evaluator from the search's :class:`~ghostnas.evaluators.EvalSettings`:
    ``data`` is the data.yaml, ``epochs`` rounds up to whole epochs, ``image_size`` is the
    training imgsz."""
    from ghostnas.data.detect import read_detect_data

    data = read_detect_data(settings.data)
    recipe = DetectRecipe(
        epochs=max(1, math.ceil(settings.epochs)) if settings.epochs is not None else DetectRecipe.epochs,
        imgsz=getattr(settings, "image_size", None) or DetectRecipe.imgsz,
        seed=settings.seed,
        device=settings.device,
    )
    return DetectProxyEvaluator(str(data.yaml_path), data.nc, recipe)
