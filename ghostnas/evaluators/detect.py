"""The detection proxy: a short Ultralytics training run per candidate, scored by val mAP50-95.

One recipe trains every candidate (:class:`DetectRecipe` of this module: a few epochs at a small
imgsz, no pretrained weights, a fixed seed with Ultralytics' deterministic mode), so the scores
rank architectures, not luck or settings. Ultralytics' defaults are made for hundreds of epochs
(three warm-up epochs, mosaic augmentation); a short run needs neither. Trial runs while choosing
the recipe, on a 400-canvas ``make-detect`` set (320 train images) with the seed's Ghost YOLOv8n:
Ultralytics' defaults (optimizer ``auto``, warm-up, mosaic) gave val mAP50-95 0.000 after 5 epochs
at 160 px; without warm-up or mosaic, SGD at lr 0.01 gave 0.028 and AdamW at lr 0.002 0.074 after
10 epochs at 128 px (the last is re-measured in ``results/detect-proxy-cpu-2026-11-29``), so the
recipe is the last. The score is
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

__all__ = ["DetectProxyEvaluator", "DetectRecipe", "from_settings", "offline_ultralytics", "train_detector"]

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
        optimizer, lr0: AdamW at 0.002 (see the module docstring).
        warmup_epochs, mosaic: Off: a short run has no epochs to spare for either.
    """

    epochs: int = 10
    imgsz: int = 128
    batch: int = 16
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    optimizer: str = "AdamW"
    lr0: float = 0.002
    warmup_epochs: float = 0.0
    mosaic: float = 0.0

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
            "optimizer": self.optimizer,
            "lr0": self.lr0,
            "warmup_epochs": self.warmup_epochs,
            "mosaic": self.mosaic,
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
        scores = train_detector(cfg, self.data, self.nc, self.recipe)
        return EvalResult(
            score=scores["val"]["map"],
            metrics=_flat(scores["val"], self.recipe),
            seconds=time.perf_counter() - t0,
        )


def _flat(metrics: dict[str, float], recipe: DetectRecipe) -> dict[str, float | int]:
    return {
        **{k: v for k, v in metrics.items() if k != "map"},
        "epochs": recipe.epochs,
        "imgsz": recipe.imgsz,
    }


_KEYS = {
    "metrics/mAP50-95(B)": "map",
    "metrics/mAP50(B)": "map50",
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
}


def _scores(metrics: dict[str, Any], split: str) -> dict[str, float]:
    out = {short: float(metrics[key]) for key, short in _KEYS.items() if key in metrics}
    if "map" not in out:
        raise EvaluationFailed(f"Ultralytics returned no {split} mAP50-95")
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise EvaluationFailed(f"{split} {bad[0]} is {out[bad[0]]} (training diverged?)")
    return out


def train_detector(
    cfg: DetectConfig, data: str, nc: int, recipe: DetectRecipe, *, test: bool = False
) -> dict[str, dict[str, float]]:
    """Train ``cfg`` on ``data`` with ``recipe``; mAP50-95 (``map``), mAP50, precision and recall
    of the best epoch's weights on the val split, and on the test split too when ``test``.

    The search only ever reads ``val``; ``test`` is for the final comparison of a benchmark.

    Raises:
        EvaluationFailed: non-finite metrics, out of memory, no metrics.
    """
    import torch

    with tempfile.TemporaryDirectory(prefix="ghostnas-detect-") as tmp, offline_ultralytics():
        from ultralytics.models.yolo.detect import DetectionTrainer, DetectionValidator

        model_path = Path(tmp) / "model.yaml"
        model_path.write_text(model_yaml_text(cfg, nc), encoding="utf-8")
        args = {
            **recipe.train_args(),
            "model": str(model_path),
            "data": str(data),
            "project": tmp,
            "name": "train",
        }
        try:
            trainer = DetectionTrainer(overrides=args)
            trainer.train()
            out = {"val": _scores(dict(getattr(trainer, "metrics", None) or {}), "val")}
            if test:
                # The checkpoint is the one this call just wrote in its own temporary folder.
                validator = DetectionValidator(
                    args={**args, "split": "test", "mode": "val", "model": str(trainer.best)}
                )
                out["test"] = _scores(dict(validator(model=str(trainer.best))), "test")
        except torch.OutOfMemoryError as exc:
            raise EvaluationFailed(f"out of memory: {' '.join(str(exc).split())[:200]}") from None
        except MemoryError:
            raise EvaluationFailed("out of memory (host RAM)") from None
    return out


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
