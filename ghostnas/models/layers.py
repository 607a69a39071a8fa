"""The layers of Ghost networks: activations, the Ghost module, squeeze-excite and the V1
Ghost bottleneck that block kind ``ghost`` builds (:meth:`ghostnas.blocks.ghost.ResolvedBlock.build`).

A layer takes the resolved block's shape (:class:`BottleneckShape`), not the block record's class:
the block kinds import these layers to build themselves, so the layers must not import the kinds
(the import graph stays one way: ``blocks`` -> ``models.layers``). Module names follow the
reference code and timm, so weights map one to one.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BottleneckShape",
    "GhostBottleneck",
    "GhostModule",
    "SqueezeExcite",
    "bottleneck_shortcut",
    "make_activation",
]


class BottleneckShape(Protocol):
    """What a Ghost bottleneck reads of its resolved block (:class:`ghostnas.blocks.ghost.ResolvedBlock`
    and the kinds derived from it have it): channels, kernel, stride, Ghost ratio and SE width."""

    in_chs: int
    mid_chs: int
    out_chs: int
    k: int
    stride: int
    s: int
    d: int

    @property
    def se_chs(self) -> int: ...

    @property
    def identity_shortcut(self) -> bool: ...


_ACT_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hard_swish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """Activation module by config name (see :data:`ghostnas.config.ACTIVATIONS`)."""
    layer = _ACT_LAYERS[name]
    return layer(inplace=True) if layer in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else layer()


class GhostModule(nn.Module):
    """A cheap replacement for a 1x1 conv.

    A primary 1x1 conv makes ``ceil(out / s)`` intrinsic channels; a depthwise ``d x d`` conv makes
    ``s - 1`` "ghost" channels from each; the concatenation is sliced to ``out``. With ``s > 2``
    or odd ``out`` a few ghost channels are computed and dropped: they are counted as real cost.
    """

    def __init__(self, in_chs: int, out_chs: int, s: int = 2, d: int = 3, act: str | None = "relu") -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / s)
        new_chs = init_chs * (s - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, 1, 1, 0, bias=False),
            nn.BatchNorm2d(init_chs),
            make_activation(act) if act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, d, 1, d // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            make_activation(act) if act else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return torch.cat([x1, x2], dim=1)[:, : self.out_chs]


class SqueezeExcite(nn.Module):
    """Channel attention: pool, reduce, activation, expand, hard-sigmoid gate."""

    def __init__(self, chs: int, reduced_chs: int, act: str = "relu") -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, reduced_chs, 1, bias=True)
        self.act = make_activation(act)
        self.conv_expand = nn.Conv2d(reduced_chs, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        w = self.conv_expand(self.act(self.conv_reduce(w)))
        return x * F.hardsigmoid(w)


def bottleneck_shortcut(rb: BottleneckShape) -> nn.Module:
    """The Ghost bottleneck's shortcut: identity when shapes match, else depthwise k x k (stride)
    + BN + 1x1 conv + BN (the reference code's layout, so timm's keys map one to one)."""
    if rb.identity_shortcut:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(rb.in_chs, rb.in_chs, rb.k, rb.stride, rb.k // 2, groups=rb.in_chs, bias=False),
        nn.BatchNorm2d(rb.in_chs),
        nn.Conv2d(rb.in_chs, rb.out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(rb.out_chs),
    )


class GhostBottleneck(nn.Module):
    """Ghost module (expand, act) -> [depthwise stride-2] -> [SE] -> Ghost module (project) + shortcut."""

    def __init__(self, rb: BottleneckShape, act: str = "relu") -> None:
        super().__init__()
        self.stride = rb.stride
        self.ghost1 = GhostModule(rb.in_chs, rb.mid_chs, rb.s, rb.d, act=act)
        if rb.stride > 1:
            self.conv_dw: nn.Module = nn.Conv2d(
                rb.mid_chs, rb.mid_chs, rb.k, rb.stride, rb.k // 2, groups=rb.mid_chs, bias=False
            )
            self.bn_dw: nn.Module = nn.BatchNorm2d(rb.mid_chs)
        else:
            self.conv_dw = nn.Identity()
            self.bn_dw = nn.Identity()
        self.se: nn.Module = SqueezeExcite(rb.mid_chs, rb.se_chs, act) if rb.se_chs else nn.Identity()
        self.ghost2 = GhostModule(rb.mid_chs, rb.out_chs, rb.s, rb.d, act=None)
        self.shortcut = bottleneck_shortcut(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        out = self.bn_dw(self.conv_dw(out))
        out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)
