"""Contract tests every registered evaluator must pass, on the CPU, with synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

import ghostnas
from ghostnas.data import DatasetError
from ghostnas.evaluators import (
    DEFAULT_EVALUATOR,
    EvalResult,
    EvalSettings,
    EvaluationFailed,
    Evaluator,
    list_evaluators,
    make_evaluator,
)
from ghostnas.evaluators.proxy import TrainEvaluator
from ghostnas.train import Recipe

TINY = ghostnas.resolve_config("ghostnet_tiny")
SYNTHETIC = EvalSettings(data="synthetic", seed=0)


@pytest.mark.parametrize("name", list_evaluators())
def test_contract(name: str) -> None:
    ev = make_evaluator(name, SYNTHETIC)
    assert isinstance(ev, Evaluator) and ev.name == name
    res = ev.evaluate(TINY)
    assert isinstance(res, EvalResult)
    assert isinstance(res.score, float) and math.isfinite(res.score)
    assert res.seconds >= 0
    json.dumps(dict(res.metrics))  # JSON-ready


def test_all_proxies_and_baselines_are_registered() -> None:
    assert {"train", "trainloss", "synflow", "naswot", "zen", "params", "macs", "fake"} <= set(
        list_evaluators()
    )
    assert DEFAULT_EVALUATOR in list_evaluators()


def test_train_evaluator_is_deterministic_and_labels_synthetic() -> None:
    a = make_evaluator("train", SYNTHETIC).evaluate(TINY)
    b = make_evaluator("train", SYNTHETIC).evaluate(TINY)
    assert a.score == b.score and 0 <= a.score <= 1
    assert a.metrics["data"].startswith("synthetic")
    assert a.metrics["val_acc_1"] <= 1 and a.metrics["images"] > 0


def test_trainloss_scores_minus_mean_loss() -> None:
    res = make_evaluator("trainloss", SYNTHETIC).evaluate(TINY)
    assert res.score == -res.metrics["train_loss_mean"] < 0


def test_epochs_setting_is_the_budget() -> None:
    ev = make_evaluator("train", EvalSettings(data="synthetic", epochs=0.5))
    assert ev.recipe.epochs == 0.5
    res = ev.evaluate(TINY)
    assert res.metrics["steps"] == ev.recipe.train_images // ev.recipe.batch_size // 2


def test_pruning_propagates() -> None:
    def report(step: int, value: float) -> None:
        raise optuna.TrialPruned(f"pruned at {step}")

    with pytest.raises(optuna.TrialPruned, match="pruned at 1"):
        make_evaluator("train", SYNTHETIC).evaluate(TINY, report=report)


def test_divergence_is_a_failed_evaluation_not_a_score() -> None:
    ev = TrainEvaluator(
        "synthetic", recipe=Recipe(epochs=1, train_images=128, val_images=64, batch_size=32, lr=1e9)
    )
    with pytest.raises(EvaluationFailed, match=r"^diverged: loss is .* at step \d+"):
        ev.evaluate(TINY)


def test_threads_are_restored() -> None:
    import torch

    before = torch.get_num_threads()
    ev = TrainEvaluator(
        "synthetic", recipe=Recipe(epochs=1, train_images=64, val_images=32, batch_size=32), threads=1
    )
    ev.evaluate(TINY)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("name", ["train", "trainloss", "naswot"])
def test_missing_data_fails_when_the_evaluator_is_made(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Fashion-MNIST not found"):
        make_evaluator(name, EvalSettings(data="fashion-mnist", data_dir=str(tmp_path)))


def test_unknown_dataset_fails_when_the_evaluator_is_made() -> None:
    with pytest.raises(DatasetError, match="unknown dataset"):
        make_evaluator("synflow", EvalSettings(data="imagenet"))


def test_evaluate_many_equals_evaluate_alone() -> None:
    from dataclasses import replace

    from ghostnas.evaluators import BatchEvaluator

    ev = make_evaluator("trainloss", SYNTHETIC)
    assert isinstance(ev, BatchEvaluator)
    ev = TrainEvaluator("synthetic", recipe=replace(ev.recipe, train_images=128), score=ev.score)
    cfgs = [TINY, TINY.with_width(0.5)]
    seen: list[int] = []

    def prune(step: int, value: float) -> None:
        seen.append(step)
        raise optuna.TrialPruned(f"at {step}")

    together = ev.evaluate_many([*cfgs, TINY], [None, None, prune])
    for cfg, res in zip(cfgs, together, strict=False):
        alone = ev.evaluate(cfg)
        assert isinstance(res, EvalResult) and res.score == alone.score
        assert res.metrics["concurrent"] == 3
    assert isinstance(together[2], optuna.TrialPruned) and seen == [1]
