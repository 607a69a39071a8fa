"""The RegNet bottleneck's layers (kind ``regnet``); names follow the G-Ghost RegNet code."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ghostnas.models.layers import make_activation

__all__ = ["RegNetBottleneck"]


class RegNetShape(Protocol):
    """What the layer reads of its resolved block (:class:`ghostnas.blocks.regnet.ResolvedRegNetBlock`
    has it; the layer does not import the kind that builds it)."""

    in_chs: int
    out_chs: int
    stride: int
    groups: int
    downsample: bool


class RegNetBottleneck(nn.Module):
    """1x1, grouped 3x3 (stride), 1x1, plus the (projected) input, then the activation."""

    def __init__(self, rb: RegNetShape, act: str = "relu") -> None:
        super().__init__()
        w = rb.out_chs
        self.conv1 = nn.Conv2d(rb.in_chs, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.conv2 = nn.Conv2d(w, w, 3, rb.stride, 1, groups=rb.groups, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.conv3 = nn.Conv2d(w, rb.out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(rb.out_chs)
        self.act = make_activation(act)
        self.downsample: nn.Module = (
            nn.Sequential(
                nn.Conv2d(rb.in_chs, rb.out_chs, 1, rb.stride, bias=False), nn.BatchNorm2d(rb.out_chs)
            )
            if rb.downsample
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + self.downsample(x))
