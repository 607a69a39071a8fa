"""Every registered model builds, runs forward and backward on CPU, and exposes its stages."""

from __future__ import annotations

import pytest
import torch

import ghostnas
from ghostnas.models import GhostModule


@pytest.mark.parametrize("name", ghostnas.list_models())
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = ghostnas.create_model(name, num_classes=7, in_chans=2)
    x = torch.randn(2, 2, 64, 64)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ghostnas.list_models())
def test_stage_features_match_feature_info(name: str) -> None:
    model = ghostnas.create_model(name).eval()
    with torch.no_grad():
        feats = model.forward_stages(torch.zeros(1, 3, 64, 64))
    assert len(feats) == len(model.feature_info) == len(model.cfg.stages)
    for feat, info in zip(feats, model.feature_info, strict=True):
        assert feat.shape[1] == info["num_chs"]
        assert feat.shape[-1] == -(-64 // info["reduction"])  # ceil: padded convs round up


def test_feature_extractor_without_classifier() -> None:
    model = ghostnas.create_model("ghostnet_tiny", num_classes=0).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, ghostnas.resolve_config("ghostnet_tiny").head_chs)


def test_stem_stride_one_keeps_resolution_for_small_inputs() -> None:
    model = ghostnas.create_model("ghostnet_100", num_classes=10, in_chans=1, stem_stride=1).eval()
    with torch.no_grad():
        feats = model.forward_stages(torch.zeros(1, 1, 28, 28))
    assert feats[-1].shape[-1] == 2  # 28 / 16, against 1 with the paper's stride-2 stem


@pytest.mark.parametrize(("out", "s", "d"), [(16, 2, 3), (16, 3, 1), (15, 4, 5), (1, 2, 3)])
def test_ghost_module_slices_to_out_channels(out: int, s: int, d: int) -> None:
    module = GhostModule(8, out, s=s, d=d)
    assert module(torch.randn(1, 8, 5, 5)).shape == (1, out, 5, 5)
    primary = module.primary_conv[0]
    assert primary.out_channels == -(-out // s)
    assert module.cheap_operation[0].kernel_size == (d, d)


def test_models_are_deterministic_in_eval_mode() -> None:
    model = ghostnas.create_model("ghostnet_tiny").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
