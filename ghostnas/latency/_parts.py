"""A network as a sequence of latency *parts*: the stem, each bottleneck, the head.

Each part has a key naming every field that changes its computation, so two networks that share
a block shape share a table entry: the batch, the input resolution the part sees, its channel
widths, kernels, stride, SE width, Ghost ratio ``s``, cheap kernel ``d`` and activation. Widths
are the resolved ones from :func:`ghostnas.config.layout` (after the width multiplier and
rounding), so two different tables of ``k, exp, c`` that resolve to the same block share a key.

Keys are plain strings with fields in a fixed order (``block|b1|r56|i24|m72|o24|k3|st1|se0|s2|d3|relu``):
stable across runs and Python versions, readable in the JSON table, and greppable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ghostnas.config import GhostNetConfig, ResolvedBlock, layout
from ghostnas.cost import conv_out_size

__all__ = ["NetworkSpec", "Part", "block_key", "deploy_model", "network_parts"]


@dataclass(frozen=True)
class NetworkSpec:
    """What, besides the architecture, fixes a deployed network's computation.

    Attributes:
        input_size: Square input side in pixels.
        batch: Images per forward pass (1: the latency a user of a deployed model sees).
        in_chans: Input image channels.
        num_classes: Classifier width.
        stem_stride: 2 as in the paper, 1 for small inputs.
    """

    input_size: int = 224
    batch: int = 1
    in_chans: int = 3
    num_classes: int = 1000
    stem_stride: int = 2


@dataclass(frozen=True)
class Part:
    """One separately timed piece of a network.

    Attributes:
        key: Table key (see module docstring).
        input_shape: Shape of the tensor the part is timed on.
        build: Makes the part as an ``nn.Module`` (training form; fold it before timing).
    """

    key: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module]


def block_key(rb: ResolvedBlock, size: int, batch: int, act: str) -> str:
    """Key of a bottleneck seeing a ``size x size`` input (stage and index do not matter)."""
    return (
        f"block|b{batch}|r{size}|i{rb.in_chs}|m{rb.mid_chs}|o{rb.out_chs}|k{rb.k}|st{rb.stride}"
        f"|se{rb.se_chs}|s{rb.s}|d{rb.d}|{act}"
    )


class _Stem(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.conv_stem, self.bn1, self.act1 = net.conv_stem, net.bn1, net.act1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv_stem(x)))


class _Head(nn.Module):
    """Final 1x1 conv, pooling, head conv and classifier, taken from a built GhostNet."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.net.stages = nn.ModuleList()  # only the head's layers are kept alive
        self.net.conv_stem = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.conv_final(x))


def _build_net(cfg: GhostNetConfig, spec: NetworkSpec) -> nn.Module:
    from ghostnas.models.ghostnet import GhostNet

    return GhostNet(cfg, num_classes=spec.num_classes, in_chans=spec.in_chans, stem_stride=spec.stem_stride)


def deploy_model(cfg: GhostNetConfig, spec: NetworkSpec = NetworkSpec()) -> nn.Module:
    """The network as deployed: eval mode, batch-norm folded into the convolutions."""
    from ghostnas.latency._measure import fold_bn

    return fold_bn(_build_net(cfg, spec))


def network_parts(cfg: GhostNetConfig, spec: NetworkSpec = NetworkSpec()) -> list[Part]:
    """The stem, every bottleneck and the head, in order, with the input shape each one sees."""
    from ghostnas.models.ghostnet import GhostBottleneck

    lay = layout(cfg)
    b = spec.batch
    size = conv_out_size(spec.input_size, 3, spec.stem_stride)
    parts = [
        Part(
            f"stem|b{b}|r{spec.input_size}|i{spec.in_chans}|o{lay.stem_chs}|st{spec.stem_stride}|{cfg.act}",
            (b, spec.in_chans, spec.input_size, spec.input_size),
            lambda: _Stem(_build_net(cfg, spec)),
        )
    ]
    for rb in lay.blocks:
        parts.append(
            Part(
                block_key(rb, size, b, cfg.act),
                (b, rb.in_chs, size, size),
                lambda rb=rb: GhostBottleneck(rb, cfg.act),
            )
        )
        if rb.stride > 1:
            size = conv_out_size(size, rb.k, rb.stride)
    last = lay.blocks[-1].out_chs
    parts.append(
        Part(
            f"head|b{b}|r{size}|i{last}|f{lay.final_chs}|h{lay.head_chs}|c{spec.num_classes}|{cfg.act}",
            (b, last, size, size),
            lambda: _Head(_build_net(cfg, spec)),
        )
    )
    return parts
