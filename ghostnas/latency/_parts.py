"""A network as a sequence of latency *parts*: the stem, each block, the head.

Each part has a key naming every field that changes its computation, so two networks that share
a block shape share a table entry. A block's key is its kind's (:meth:`latency_key` of the
resolved record): the kind first, then the batch, the input resolution the part sees, and the
kind's own fields (for ``ghost``: channel widths, kernel, stride, SE width, Ghost ratio ``s``,
cheap kernel ``d``) and the activation. Widths are the resolved ones from
:func:`ghostnas.config.layout` (after the width multiplier and rounding), so two different tables
of ``k, exp, c`` that resolve to the same block share a key.

Keys are plain strings with fields in a fixed order (``ghost|b1|r56|i24|m72|o24|k3|st1|se0|s2|d3|relu``):
stable across runs and Python versions, readable in the JSON table, and greppable. Tables written
before block kinds used ``block|`` for the Ghost bottleneck; :func:`ghostnas.latency.load_table`
reads those entries as ``ghost|``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ghostnas.blocks.base import ResolvedBlockBase
from ghostnas.config import BuildSpec, GhostNetConfig, layout

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

    @property
    def build(self) -> BuildSpec:
        """The build this spec times (everything but the batch)."""
        return BuildSpec(self.input_size, self.in_chans, self.num_classes, self.stem_stride)


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


def block_key(rb: ResolvedBlockBase, size: int, batch: int, act: str) -> str:
    """Key of a block seeing a ``size x size`` input (stage and index do not matter)."""
    return rb.latency_key(size, batch, act)


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

    return GhostNet(cfg, spec=spec.build)


def deploy_model(cfg: GhostNetConfig, spec: NetworkSpec = NetworkSpec()) -> nn.Module:
    """The network as deployed: re-parameterised (kinds with a training form), eval mode,
    batch-norm folded into the convolutions."""
    from ghostnas.latency._measure import fold_bn

    return fold_bn(_build_net(cfg, spec).reparameterize())


def _deployed(block: nn.Module) -> nn.Module:
    """A block's deploy form: kinds with a training form fold it (the latency of the shipped
    network is what the table holds)."""
    reparameterize = getattr(block, "reparameterize", None)
    return reparameterize() if callable(reparameterize) else block


def network_parts(cfg: GhostNetConfig, spec: NetworkSpec = NetworkSpec()) -> list[Part]:
    """The stem, every block and the head, in order, with the input shape each one sees."""
    lay = layout(cfg)
    b = spec.batch
    sides, last_size = lay.sizes(spec.build)
    parts = [
        Part(
            f"stem|b{b}|r{spec.input_size}|i{spec.in_chans}|o{lay.stem_chs}|st{spec.stem_stride}|{cfg.act}",
            (b, spec.in_chans, spec.input_size, spec.input_size),
            lambda: _Stem(_build_net(cfg, spec)),
        )
    ]
    size = sides[0]
    for stage in lay.stages:
        for key, in_chs, side, build in stage.parts(size, b, cfg.act):
            parts.append(Part(key, (b, in_chs, side, side), lambda build=build: _deployed(build())))
        size = stage.out_size(size)
    assert size == last_size
    last = lay.blocks[-1].out_chs
    parts.append(
        Part(
            f"head|b{b}|r{size}|i{last}|f{lay.final_chs}|h{lay.head_chs}|c{spec.num_classes}|{cfg.act}"
            if lay.head == "ghostnet"
            else f"head_{lay.head}|b{b}|r{size}|i{last}|c{spec.num_classes}",
            (b, last, size, size),
            lambda: _Head(_build_net(cfg, spec)),
        )
    )
    return parts
