"""GhostNetV2's layers: DFC attention and the bottleneck that uses it (kind ``ghost_v2``).

Module names follow timm's ``GhostModuleV2`` (``primary_conv``, ``cheap_operation``,
``short_conv``) so that weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ghostnas.models.layers import BottleneckShape, GhostBottleneck, GhostModule

__all__ = ["GhostBottleneckV2", "GhostModuleV2", "dfc_branch", "dfc_gate"]


class GhostModuleV2(GhostModule):
    """A Ghost module whose output is gated by DFC attention computed from its input."""

    def __init__(
        self, in_chs: int, out_chs: int, s: int, d: int, act: str | None, *, dfc_kernel: int
    ) -> None:
        super().__init__(in_chs, out_chs, s, d, act)
        self.short_conv = dfc_branch(in_chs, out_chs, dfc_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dfc_gate(self.short_conv, x, super().forward(x))


def dfc_branch(in_chs: int, out_chs: int, k: int) -> nn.Sequential:
    """DFC attention's layers: 1x1 conv + BN, depthwise 1xk + BN, depthwise kx1 + BN (``k`` is the
    kind's :data:`ghostnas.blocks.ghost_v2.DFC_KERNEL`, passed in so that the layers do not import
    the block kinds that build them)."""
    pad = k // 2
    return nn.Sequential(
        nn.Conv2d(in_chs, out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (1, k), 1, (0, pad), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
        nn.Conv2d(out_chs, out_chs, (k, 1), 1, (pad, 0), groups=out_chs, bias=False),
        nn.BatchNorm2d(out_chs),
    )


def dfc_gate(branch: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` gated by the branch run on ``x`` pooled 2x2 (sigmoid, nearest upsampling)."""
    pooled = F.avg_pool2d(x, 2, 2) if min(x.shape[-2:]) >= 2 else x
    gate = torch.sigmoid(branch(pooled))
    return out * F.interpolate(gate, size=out.shape[-2:], mode="nearest")


class GhostBottleneckV2(GhostBottleneck):
    """The V1 bottleneck with :class:`GhostModuleV2` as its expanding module."""

    def __init__(self, rb: BottleneckShape, act: str = "relu", *, dfc_kernel: int) -> None:
        super().__init__(rb, act)
        self.ghost1 = GhostModuleV2(rb.in_chs, rb.mid_chs, rb.s, rb.d, act, dfc_kernel=dfc_kernel)
