"""``ghostnas train``: the full recipe on the proxy's loop, weights and metrics (synthetic data, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ghostnas
from ghostnas.cli import main
from ghostnas.data import load_dataset
from ghostnas.full_training import TrainError, TrainSettings, train_model, training_recipe
from ghostnas.train import evaluate_accuracy, normalise
from ghostnas.weights import load_weights


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    argv = [
        "train",
        "ghostnet_tiny",
        "--data",
        "synthetic",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    return out


def test_train_writes_weights_metrics_and_provenance(trained):
    for name in ("weights.pt", "metrics.json", "config.json", "run.json"):
        assert (trained / name).is_file(), name
    state = torch.load(trained / "weights.pt", map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    m = json.loads((trained / "metrics.json").read_text())
    assert 0.0 <= m["val_acc"] <= 1.0 and 0.0 <= m["test_acc"] <= 1.0
    assert m["data"].startswith("synthetic")
    cost = ghostnas.count_cost(ghostnas.resolve_config("ghostnet_tiny"))
    assert (m["params"], m["macs"]) == (cost.params, cost.macs)
    assert m["epochs"] == 1 and m["recipe"]["schedule"] == "cosine" and m["recipe"]["flip"] is True
    run = json.loads((trained / "run.json").read_text())
    assert run["command"][:3] == ["ghostnas", "train", "ghostnet_tiny"]
    for key in ("git", "machine", "versions", "ghostnas_version", "started", "ended"):
        assert key in run
    assert ghostnas.load_config(trained / "config.json") == ghostnas.resolve_config("ghostnet_tiny")


def test_saved_weights_reproduce_the_reported_test_accuracy(trained):
    m = json.loads((trained / "metrics.json").read_text())
    b = m["build"]
    model = ghostnas.create_model(trained / "config.json", b["num_classes"], b["in_chans"], b["stem_stride"])
    load_weights(model, trained / "weights.pt")
    ds = load_dataset("synthetic")
    acc, _ = evaluate_accuracy(model, normalise(ds.test_x, ds.mean, ds.std), ds.test_y)
    assert acc == pytest.approx(m["test_acc"])


def test_an_existing_run_is_not_replaced_without_force(trained, capsys):
    before = (trained / "metrics.json").read_text()
    argv = ["train", "ghostnet_tiny", "--data", "synthetic", "--epochs", "1", "--out", str(trained)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert (trained / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "argv",
    [
        ["no_such_model", "--data", "synthetic"],
        ["ghostnet_tiny", "--data", "mnist-of-doom"],
        ["ghostnet_tiny", "--data", "synthetic", "--device", "tpu"],
        ["ghostnet_tiny", "--data", "synthetic", "--epochs", "0"],
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, argv):
    out = tmp_path / "run"
    try:
        code = main(["train", *argv, "--out", str(out)])
    except SystemExit as exc:  # argparse rejects some values itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not out.exists()


def test_recipe_choices():
    r = training_recipe("fashion-mnist", 30)
    assert (r.flip, r.crop_padding, r.label_smoothing, r.schedule, r.train_images) == (
        True,
        2,
        0.1,
        "cosine",
        0,
    )
    assert training_recipe("fashion-mnist", 30, flip=False).flip is False
    assert training_recipe("cifar10", 5, train_images=1000).crop_padding == 4


def test_library_refuses_a_bad_epoch_count(tmp_path):
    with pytest.raises(TrainError, match="epochs"):
        train_model(
            TrainSettings("ghostnet_tiny", data="synthetic", epochs=float("nan"), out=str(tmp_path / "x"))
        )
