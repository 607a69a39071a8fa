"""The closed-form cost model must equal an independent count on the built model, to the unit."""

from __future__ import annotations

import copy
import random

import pytest
import thop
import torch
from torch import nn

import ghostnas
from ghostnas.cost import conv_out_size, count_cost, measure_cost
from ghostnas.errors import GhostnasError
from tests.conftest import random_config

# The GhostNet paper's "FLOPs" (MACs) and timm's parameter counts at 224x224, 1000 classes.
PAPER = {
    "ghostnet_050": (2_587_292, 42_328_152),
    "ghostnet_100": (5_182_508, 141_150_512),
    "ghostnet_130": (7_358_820, 227_003_256),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_published_counts_exactly(name: str) -> None:
    params, macs = PAPER[name]
    cost = count_cost(ghostnas.resolve_config(name))
    assert (cost.params, cost.macs) == (params, macs)
    model = ghostnas.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name", ghostnas.list_models())
def test_closed_form_matches_hooks_for_registered_models(name: str) -> None:
    cfg = ghostnas.resolve_config(name)
    model = ghostnas.create_model(cfg)
    # The built model is the form that is trained; re-parameterisable kinds (ghost_v3) deploy
    # another, which is what count_cost counts by default.
    assert measure_cost(model, 224) == count_cost(cfg, 224, training=True)
    assert measure_cost(model.reparameterize(), 224) == count_cost(cfg, 224)


def test_closed_form_matches_hooks_for_random_configs() -> None:
    """Hundreds of random configs: any s in 2..4, d in 1/3/5, kernels 1-7, SE, strides, overrides,
    odd channel counts, stem stride 1 or 2, input sizes down to 1 pixel, with and without classifier."""
    rng = random.Random(1234)
    for i in range(300):
        cfg = random_config(rng)
        size = rng.choice([1, 7, 15, 28, 32, 33, 64])
        classes = rng.choice([0, 10, 1000])
        in_chans = rng.choice([1, 3])
        stem_stride = rng.choice([1, 2])
        model = ghostnas.create_model(cfg, num_classes=classes, in_chans=in_chans, stem_stride=stem_stride)
        expected = count_cost(cfg, size, classes, in_chans=in_chans, stem_stride=stem_stride)
        measured = measure_cost(model, size, in_chans)
        assert (measured.params, measured.macs) == (expected.params, expected.macs), (i, cfg.short(), size)


def _zero(module: nn.Module, inputs: object, output: object) -> None:
    module.total_ops += torch.zeros(1, dtype=torch.float64)


# thop counts batch-norm, activations and pooling too; zeroing those rules leaves conv + linear.
_NOT_COUNTED = {
    nn.BatchNorm2d: _zero,
    nn.ReLU: _zero,
    nn.Hardswish: _zero,
    nn.SiLU: _zero,
    nn.Dropout: _zero,
    nn.Identity: _zero,
}


@pytest.mark.parametrize("name", ["ghostnet_100", "ghostnet_tiny"])
def test_thop_agrees_on_conv_and_linear_and_counts_more_by_default(name: str) -> None:
    cfg = ghostnas.resolve_config(name)
    model = ghostnas.create_model(cfg).eval()
    x = torch.zeros(1, 3, 224, 224)
    ours = count_cost(cfg).macs
    conv_linear, _ = thop.profile(copy.deepcopy(model), (x,), custom_ops=_NOT_COUNTED, verbose=False)
    everything, _ = thop.profile(copy.deepcopy(model), (x,), verbose=False)
    assert int(conv_linear) == ours
    assert everything > ours  # batch-norm and activations on top


def test_ghost_module_dropped_channels_are_counted() -> None:
    """With s=3 and 16 outputs, ceil(16/3)=6 primary + 12 cheap channels are computed, 16 kept."""
    base = ghostnas.resolve_config("ghostnet_100")
    s3 = count_cost(base.__class__(**{**base.__dict__, "s": 3}))
    s4 = count_cost(base.__class__(**{**base.__dict__, "s": 4}))
    # REFERENCE.md: 112.6M MACs at s=3, 96.7M at s=4; d=1 130.1M, d=5 163.2M.
    assert round(s3.macs / 1e6, 1) == 112.6
    assert round(s4.macs / 1e6, 1) == 96.7
    d1 = count_cost(base.__class__(**{**base.__dict__, "d": 1}))
    d5 = count_cost(base.__class__(**{**base.__dict__, "d": 5}))
    assert (round(d1.macs / 1e6, 1), round(d5.macs / 1e6, 1)) == (130.1, 163.2)


@pytest.mark.parametrize(
    ("size", "k", "stride", "out"), [(224, 3, 2, 112), (7, 5, 2, 4), (1, 3, 2, 1), (28, 1, 1, 28)]
)
def test_conv_out_size(size: int, k: int, stride: int, out: int) -> None:
    assert conv_out_size(size, k, stride) == out
    conv = nn.Conv2d(1, 1, k, stride, k // 2)
    assert conv(torch.zeros(1, 1, size, size)).shape[-1] == out


@pytest.mark.parametrize("bad", [0, -1, 5000, 2.5, True])
def test_bad_input_size(bad: object) -> None:
    with pytest.raises(GhostnasError, match="input size"):
        count_cost(ghostnas.resolve_config("ghostnet_tiny"), bad)  # type: ignore[arg-type]
