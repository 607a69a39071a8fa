from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import ghostnas
from ghostnas.errors import GhostnasError
from ghostnas.onnx_export import export_onnx
from ghostnas.weights import load_weights, save_weights

pytest.importorskip("onnx")


def test_weights_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a = ghostnas.create_model("ghostnet_tiny", num_classes=10)
    save_weights(a, tmp_path / "w.pt")
    b = load_weights(ghostnas.create_model("ghostnet_tiny", num_classes=10), tmp_path / "w.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # runs on a full unpickle
        return (Path.touch, (self.marker,))


def test_hostile_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps({"x": _Hostile(marker)}))
    with pytest.raises(GhostnasError, match="weights_only"):
        load_weights(ghostnas.create_model("ghostnet_tiny"), bad)
    assert not marker.exists()


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    save_weights(ghostnas.create_model("ghostnet_tiny", num_classes=10), tmp_path / "w.pt")
    with pytest.raises(GhostnasError, match="do not fit"):
        load_weights(ghostnas.create_model("ghostnet_tiny", num_classes=5), tmp_path / "w.pt")


def test_onnx_matches_pytorch_with_trained_weights(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    torch.manual_seed(1)
    model = ghostnas.create_model("ghostnet_tiny", num_classes=10, in_chans=1, stem_stride=1)
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    save_weights(model, tmp_path / "w.pt")
    info = export_onnx(
        "ghostnet_tiny",
        tmp_path / "m.onnx",
        input_size=28,
        num_classes=10,
        in_chans=1,
        stem_stride=1,
        weights=tmp_path / "w.pt",
    )
    assert info["onnxruntime"] and info["max_abs_diff"] < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "w.pt"]


def test_onnx_bad_weights_write_nothing(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GhostnasError):
        export_onnx("ghostnet_tiny", tmp_path / "m.onnx", input_size=32, weights=tmp_path / "junk.pt")
    assert not (tmp_path / "m.onnx").exists()
