"""Latency: a network as parts with stable keys (:mod:`ghostnas.latency._parts`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import torch

from ghostnas.latency import (
    NetworkSpec,
    network_parts,
)
from ghostnas.models.ghostnet import GhostNet
from tests.latency.stubs import SMALL, TINY, randomize_bn

# ------------------------------------------------------------------------------------------
# parts and keys


def test_parts_cover_the_network_and_keys_are_stable() -> None:
    parts = network_parts(TINY, SMALL)
    assert len(parts) == TINY.num_blocks + 2
    assert [p.key for p in parts] == [p.key for p in network_parts(TINY, SMALL)]
    # The key format is a stored contract: tables written by earlier runs must still match.
    assert parts[0].key == "stem|b1|r32|i3|o8|st2|relu"
    assert parts[1].key == "ghost|b1|r16|i8|m8|o8|k3|st1|se0|s2|d3|relu"
    assert parts[-1].key == "head|b1|r4|i20|f48|h64|c1000|relu"
    assert network_parts(TINY, NetworkSpec(input_size=64))[1].key != parts[1].key


def test_parts_chained_reproduce_the_network() -> None:
    """Each part, built on its own, takes the shape the previous one produced; with the model's
    weights copied in, the chain computes exactly what the network computes."""
    net = GhostNet(TINY, num_classes=1000).eval()
    randomize_bn(net)
    parts = network_parts(TINY, SMALL)
    modules = [p.build().eval() for p in parts]
    blocks = [b for st in net.stages for b in st]
    for module, block in zip(modules[1:-1], blocks, strict=True):
        module.load_state_dict(block.state_dict())
    modules[0].load_state_dict(
        {k: v for k, v in net.state_dict().items() if k.startswith(("conv_stem", "bn1"))}
    )
    modules[-1].net.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = x
        for part, module in zip(parts, modules, strict=True):
            assert tuple(y.shape) == part.input_shape
            y = module(y)
        assert torch.allclose(y, net(x), atol=1e-5)
