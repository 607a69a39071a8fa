"""GhostNetV3's training-form layers and their re-parameterisation into the deploy form.

Module names follow timm's ``GhostModuleV3`` / ``GhostBottleneckV3`` (``primary_rpr_conv``,
``cheap_rpr_conv``, ``cheap_rpr_scale``, ``cheap_rpr_skip``, ``dw_rpr_conv``, ``dw_rpr_scale``,
each conv + BN pair as ``conv`` / ``bn1``), so timm's weights map one to one.

:meth:`GhostBottleneckV3.reparameterize` returns the deploy block: a V1 or V2 bottleneck
(:class:`~ghostnas.models.GhostBottleneck`, :class:`~ghostnas.models.ghostnet_v2.GhostBottleneckV2`)
whose primary, cheap and stride-2 depthwise convs carry the fused kernels and a bias, with their
batch-norms replaced by ``nn.Identity``. In eval mode the two compute the same function.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ghostnas.models.ghostnet_v2 import GhostBottleneckV2, dfc_branch, dfc_gate
from ghostnas.models.layers import (
    BottleneckShape,
    GhostBottleneck,
    SqueezeExcite,
    bottleneck_shortcut,
    make_activation,
)

__all__ = ["ConvBn", "GhostBottleneckV3", "GhostModuleV3"]


class ConvBn(nn.Module):
    """A conv followed by batch-norm: one re-parameterisable branch."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn1(self.conv(x))

    def fused(self, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel (zero-padded to ``kernel``) and bias of conv and BN as one conv."""
        w, b = _fold(self.conv.weight, self.bn1)
        pad = (kernel - w.shape[-1]) // 2
        return F.pad(w, [pad, pad, pad, pad]), b


def _fold(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std
    return weight * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def _identity_fused(bn: nn.BatchNorm2d, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The BN identity branch of a depthwise conv as a ``kernel x kernel`` depthwise kernel."""
    chs = bn.num_features
    w = torch.zeros(chs, 1, kernel, kernel, dtype=bn.weight.dtype, device=bn.weight.device)
    w[:, 0, kernel // 2, kernel // 2] = 1
    return _fold(w, bn)


def _conv_with_bias(like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(
        like.in_channels,
        like.out_channels,
        like.kernel_size,
        like.stride,
        like.padding,
        groups=like.groups,
        bias=True,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


class GhostModuleV3(nn.Module):
    """A Ghost module in training form: parallel conv + BN branches, summed, then activation."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        s: int,
        d: int,
        act: str | None,
        branches: int,
        dfc: bool,
        dfc_kernel: int = 0,
    ) -> None:
        super().__init__()
        self.out_chs, self.d = out_chs, d
        init = math.ceil(out_chs / s)
        new = init * (s - 1)
        self.primary_rpr_conv = nn.ModuleList(ConvBn(in_chs, init, 1) for _ in range(branches))
        self.primary_activation = make_activation(act) if act else nn.Identity()
        self.cheap_rpr_skip = nn.BatchNorm2d(init) if new == init else None
        self.cheap_rpr_conv = nn.ModuleList(ConvBn(init, new, d, groups=init) for _ in range(branches))
        self.cheap_rpr_scale = ConvBn(init, new, 1, groups=init)
        self.cheap_activation = make_activation(act) if act else nn.Identity()
        self.short_conv = dfc_branch(in_chs, out_chs, dfc_kernel) if dfc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = sum(branch(x) for branch in self.primary_rpr_conv)
        x1 = self.primary_activation(x1)
        x2 = self.cheap_rpr_scale(x1)
        if self.cheap_rpr_skip is not None:
            x2 = x2 + self.cheap_rpr_skip(x1)
        x2 = self.cheap_activation(x2 + sum(branch(x1) for branch in self.cheap_rpr_conv))
        out = torch.cat([x1, x2], dim=1)[:, : self.out_chs]
        return out if self.short_conv is None else dfc_gate(self.short_conv, x, out)

    def fuse_into(self, deploy: nn.Module) -> None:
        """Write the fused primary and cheap convs into a V1/V2 Ghost module of the same shape."""
        weights = [b.fused(1) for b in self.primary_rpr_conv]
        conv = self.primary_rpr_conv[0].conv
        deploy.primary_conv[0] = _conv_with_bias(conv, *_sum(weights))
        deploy.primary_conv[1] = nn.Identity()
        deploy.primary_conv[2] = self.primary_activation
        parts = [b.fused(self.d) for b in self.cheap_rpr_conv] + [self.cheap_rpr_scale.fused(self.d)]
        if self.cheap_rpr_skip is not None:
            parts.append(_identity_fused(self.cheap_rpr_skip, self.d))
        deploy.cheap_operation[0] = _conv_with_bias(self.cheap_rpr_conv[0].conv, *_sum(parts))
        deploy.cheap_operation[1] = nn.Identity()
        deploy.cheap_operation[2] = self.cheap_activation
        if self.short_conv is not None:
            deploy.short_conv = self.short_conv


def _sum(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return sum(w for w, _ in pairs), sum(b for _, b in pairs)


class V3Shape(BottleneckShape, Protocol):
    """A V3 bottleneck's shape (:class:`ghostnas.blocks.ghost_v3.ResolvedGhostV3Block` has it):
    the V1 shape plus the number of parallel training branches and whether DFC gates it."""

    branches: int
    dfc: bool


class GhostBottleneckV3(nn.Module):
    """The GhostNetV3 bottleneck in training form; :meth:`reparameterize` gives the deploy form."""

    def __init__(self, rb: V3Shape, act: str = "relu", *, dfc_kernel: int) -> None:
        super().__init__()
        self.rb, self.act, self.dfc_kernel = rb, act, dfc_kernel
        self.stride = rb.stride
        self.ghost1 = GhostModuleV3(rb.in_chs, rb.mid_chs, rb.s, rb.d, act, rb.branches, rb.dfc, dfc_kernel)
        if rb.stride > 1:
            mid = rb.mid_chs
            self.dw_rpr_conv = nn.ModuleList(
                ConvBn(mid, mid, rb.k, rb.stride, groups=mid) for _ in range(rb.branches)
            )
            self.dw_rpr_scale: nn.Module = ConvBn(mid, mid, 1, rb.stride, groups=mid)
        else:
            self.dw_rpr_conv = nn.ModuleList()
            self.dw_rpr_scale = nn.Identity()
        self.se: nn.Module = SqueezeExcite(rb.mid_chs, rb.se_chs, act) if rb.se_chs else nn.Identity()
        self.ghost2 = GhostModuleV3(rb.mid_chs, rb.out_chs, rb.s, rb.d, None, rb.branches, False)
        self.shortcut = bottleneck_shortcut(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.dw_rpr_scale(out) + sum(branch(out) for branch in self.dw_rpr_conv)
        out = self.ghost2(self.se(out))
        return out + self.shortcut(x)

    @torch.no_grad()
    def reparameterize(self) -> nn.Module:
        """The deploy block (V2 with DFC, else V1) computing the same function in eval mode."""
        # the V1/V2 layers read only the bottleneck's shape, which the V3 block has
        deploy: GhostBottleneck = (
            GhostBottleneckV2(self.rb, self.act, dfc_kernel=self.dfc_kernel)
            if self.rb.dfc
            else GhostBottleneck(self.rb, self.act)
        )
        self.ghost1.fuse_into(deploy.ghost1)
        self.ghost2.fuse_into(deploy.ghost2)
        if self.stride > 1:
            k = self.rb.k
            parts = [b.fused(k) for b in self.dw_rpr_conv] + [self.dw_rpr_scale.fused(k)]
            deploy.conv_dw = _conv_with_bias(self.dw_rpr_conv[0].conv, *_sum(parts))
            deploy.bn_dw = nn.Identity()
        deploy.se = self.se
        deploy.shortcut = self.shortcut
        return deploy.train(self.training)
