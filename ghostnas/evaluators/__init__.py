"""Evaluators score candidate configs; see :mod:`ghostnas.evaluators.base` for the interface.

:func:`make_evaluator` builds one by name from the settings the search and the CLI share. Each
name maps to a factory in a private module, imported only when asked for, so that choosing the
fake evaluator never imports the training stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ghostnas.errors import GhostnasError
from ghostnas.evaluators.base import (
    BatchEvaluator,
    EvalResult,
    EvaluationFailed,
    Evaluator,
    MultiFidelityEvaluator,
    PromoteFn,
    ReportFn,
)
from ghostnas.evaluators.fake import FakeEvaluator

if TYPE_CHECKING:
    from ghostnas.data import Dataset

__all__ = [
    "DEFAULT_EVALUATOR",
    "BatchEvaluator",
    "EvalResult",
    "EvalSettings",
    "EvaluationFailed",
    "Evaluator",
    "FakeEvaluator",
    "MultiFidelityEvaluator",
    "PromoteFn",
    "ReportFn",
    "list_evaluators",
    "make_evaluator",
    "score_label",
]


@dataclass(frozen=True)
class EvalSettings:
    """Settings every evaluator factory receives; each uses the fields that concern it.

    Attributes:
        data: Dataset name (``fashion-mnist``, ``cifar10``, ``synthetic``), the path of an image
            folder or ``.npz`` file, or a loaded :class:`ghostnas.data.Dataset`.
        data_dir: Folder with the dataset files; None means the dataset's default location.
        epochs: Training budget of the short-training proxy in epochs (None: its default).
        seed: Seed for data subsets, initialisation and batch order.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        image_size: The side a detection proxy trains at (None: its default).
    """

    data: str | Dataset = "fashion-mnist"
    data_dir: str | None = None
    epochs: float | None = None
    seed: int = 0
    device: str = "cpu"
    image_size: int | None = None


# name -> "module:factory"; a factory takes an EvalSettings and returns an Evaluator.
_FACTORIES: dict[str, str] = {
    "fake": "ghostnas.evaluators.fake:from_settings",
    "detect": "ghostnas.evaluators.detect:from_settings",
    "train": "ghostnas.evaluators.proxy:from_settings",
    "trainloss": "ghostnas.evaluators.proxy:trainloss_from_settings",
    "synflow": "ghostnas.evaluators.zero_cost:synflow_from_settings",
    "naswot": "ghostnas.evaluators.zero_cost:naswot_from_settings",
    "zen": "ghostnas.evaluators.zero_cost:zen_from_settings",
    "params": "ghostnas.evaluators.zero_cost:params_from_settings",
    "macs": "ghostnas.evaluators.zero_cost:macs_from_settings",
}


# What `ghostnas search` uses when --evaluator is not given: the short-training proxy, the one
# the fidelity benchmark supports (results/fidelity-cpu-2026-11-23: it ranks configs by a 10x
# longer training far better than synflow, NASWOT, Zen-score, params or MACs, which are all
# near zero rank correlation on this space).
DEFAULT_EVALUATOR = "train"


# What each evaluator's score is, in the words every output uses (CLI, summary.md, plot axes):
# only `train` measures an accuracy; the zero-cost proxies have their own scales.
_SCORE_LABELS: dict[str, str] = {
    "fake": "fake score",
    "detect": "proxy mAP50-95 (val)",
    "train": "proxy accuracy",
    "trainloss": "minus mean training loss",
    "synflow": "synflow score (log)",
    "naswot": "NASWOT score (log |det K|)",
    "zen": "Zen score (log)",
    "params": "params at the training input size",
    "macs": "MACs at the training input size",
}


def score_label(evaluator: str | Evaluator) -> str:
    """What ``evaluator``'s score is called in outputs, by name or for an evaluator object.

    An evaluator object may say it itself with a ``score_label`` attribute (a plug-in's own
    scale); otherwise the label of its name, or ``"<name> score"`` for an unknown name.
    """
    if not isinstance(evaluator, str):
        own = getattr(evaluator, "score_label", None)
        if isinstance(own, str) and own:
            return own
        evaluator = str(getattr(evaluator, "name", type(evaluator).__name__))
    return _SCORE_LABELS.get(evaluator, f"{evaluator} score")


# Evaluators of detectors (``ghostnas search --task detect``); every other one scores classifiers.
_DETECT_EVALUATORS = frozenset({"detect"})


def list_evaluators(task: str = "classify") -> list[str]:
    """Names accepted by :func:`make_evaluator` and ``ghostnas search --evaluator`` for ``task``
    (``classify``: GhostNet configs; ``detect``: detectors, :mod:`ghostnas.detect`)."""
    return sorted(n for n in _FACTORIES if (n in _DETECT_EVALUATORS) == (task == "detect"))


def make_evaluator(name: str, settings: EvalSettings | None = None) -> Evaluator:
    """Build the evaluator called ``name`` with ``settings`` (defaults when None)."""
    if name not in _FACTORIES:
        raise GhostnasError(f"unknown evaluator {name!r}; choose one of {', '.join(sorted(_FACTORIES))}")
    module_name, attr = _FACTORIES[name].split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(settings or EvalSettings())
