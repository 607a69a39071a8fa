from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ghostnas
from ghostnas.evaluators import EvaluationFailed
from ghostnas.evaluators.zero_cost import (
    CostEvaluator,
    NaswotEvaluator,
    SynflowEvaluator,
    ZenEvaluator,
    naswot_score,
    synflow_score,
    zen_score,
)

TINY = ghostnas.resolve_config("ghostnet_tiny")


def test_synflow_matches_hand_computation() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    # with |w| and input ones: R = 1 * (1 + 2) + 2 * (3 + 0.5) = 10; each layer's sum of
    # |w dR/dw| is R for a bias-free linear chain, so synflow = 2 R = 20
    assert synflow_score(net, (2,)) == pytest.approx(math.log(20.0))


def test_synflow_dead_network_fails() -> None:
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    nn.init.zeros_(net[0].weight)
    with pytest.raises(EvaluationFailed, match="synflow"):
        synflow_score(net, (2,))


def test_naswot_matches_hand_computation() -> None:
    x = torch.tensor([[1.0, -1.0, 2.0], [-1.0, -1.0, 1.0], [1.0, 1.0, -3.0]])
    codes = (x > 0).double()
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T  # agreements: diag 3, off-diag counts
    assert naswot_score(nn.Sequential(nn.ReLU()), x) == pytest.approx(float(torch.linalg.slogdet(k)[1]))


def test_naswot_identical_patterns_fail() -> None:
    with pytest.raises(EvaluationFailed, match="singular"):
        naswot_score(nn.Sequential(nn.ReLU()), torch.ones(3, 4))


def test_zen_of_identity_features() -> None:
    # no BN layers: the score is just log E||gamma * noise||_1
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Identity())
    value = zen_score(net, (1, 2, 2), batch_size=4, gamma=0.5, generator=gen)
    gen = torch.Generator().manual_seed(0)
    torch.randn((4, 1, 2, 2), generator=gen)
    noise = torch.randn((4, 1, 2, 2), generator=gen)
    assert value == pytest.approx(math.log(float((0.5 * noise).abs().sum((1, 2, 3)).mean())), rel=1e-5)


@pytest.mark.parametrize("cls", [SynflowEvaluator, ZenEvaluator, NaswotEvaluator])
def test_proxies_on_tiny_model(cls) -> None:
    ev = cls("synthetic", seed=1)
    a, b = ev.evaluate(TINY), ev.evaluate(TINY)
    assert math.isfinite(a.score) and a.score == b.score  # seeded: same config, same score
    assert a.metrics[ev.name] == a.score and "synthetic" in str(a.metrics["data"])


def test_proxies_rank_wider_net_higher() -> None:
    narrow, wide = TINY.with_width(0.5), TINY.with_width(2.0)
    for cls in (SynflowEvaluator, ZenEvaluator):
        ev = cls("synthetic")
        assert ev.evaluate(wide).score > ev.evaluate(narrow).score, cls.name


def test_cost_baselines_are_the_closed_form() -> None:
    cost = ghostnas.count_cost(TINY, 28, 10, in_chans=1, stem_stride=1)
    assert CostEvaluator("params", "fashion-mnist").evaluate(TINY).score == cost.params
    assert CostEvaluator("macs", "fashion-mnist").evaluate(TINY).score == cost.macs
    with pytest.raises(ValueError):
        CostEvaluator("latency")
