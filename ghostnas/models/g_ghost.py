"""G-GhostNet's stage layers (stage kind ``g_ghost``); names follow the G-Ghost RegNet code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from ghostnas.models.layers import make_activation

__all__ = ["GGhostStageModule"]


class GGhostStageShape(Protocol):
    """What the layer reads of its resolved stage (:class:`ghostnas.blocks.g_ghost.GGhostStage` has
    it; the layer does not import the kind that builds it): the resolved blocks (each builds
    itself), the deep path's blocks, and the raw, mix and cheap widths."""

    blocks: Sequence[Any]
    deep: Sequence[Any]
    raw: int
    mix_in: int
    cheap: int


class GGhostStageModule(nn.Module):
    """First block, deep path on ``raw`` channels, cheap features plus the mix term, end block."""

    def __init__(self, rs: GGhostStageShape, act: str = "relu") -> None:
        super().__init__()
        self.raw = rs.raw
        self.base = rs.blocks[0].build(act)
        self.layers = nn.Sequential(*(rb.build(act) for rb in rs.deep))
        self.end = rs.blocks[-1].build(act)
        self.merge = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(rs.mix_in, rs.cheap, 1, bias=False),
            nn.BatchNorm2d(rs.cheap),
            make_activation(act),
            nn.Conv2d(rs.cheap, rs.cheap, 1, bias=False),
            nn.BatchNorm2d(rs.cheap),
        )
        self.cheap = nn.Sequential(nn.Conv2d(rs.cheap, rs.cheap, 1, bias=False), nn.BatchNorm2d(rs.cheap))
        self.cheap_act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.base(x)
        deep = [x0]
        e = x0[:, : self.raw]
        for layer in self.layers:
            e = layer(e)
            deep.append(e)
        mix = self.merge(torch.cat(deep, 1))
        c = self.cheap_act(self.cheap(x0[:, self.raw :]) + mix)
        return self.end(torch.cat((e, c), 1))
