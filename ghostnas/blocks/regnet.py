"""The RegNet bottleneck (Radosavovic et al., CVPR 2020) as block kind ``regnet``.

1x1 conv + BN + act, grouped 3x3 conv (stride here) + BN + act, 1x1 conv + BN, plus the input
(or a 1x1 strided conv + BN of it when the shape changes), then act. The 3x3 conv's groups come
from a group width: ``width // min(width, group_width)`` groups as in the G-Ghost RegNet code,
lowered to the nearest count that divides the width (the code's formula always divides for the
published widths). The bottleneck width equals the output width (RegNetX's ratio 1).

G-GhostNet's GPU networks (``g_ghost_regnetx_*``) are stages of these blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ghostnas.blocks.base import (
    MAX_CHANNELS,
    BlockRecord,
    Context,
    Counter,
    ResolvedBlockBase,
    check_int,
    check_keys,
    conv_out_size,
    fail,
    make_divisible,
    register_block_kind,
)

__all__ = ["RegNetBlockConfig", "ResolvedRegNetBlock", "regnet_groups"]

KIND = "regnet"


def regnet_groups(width: int, group_width: int) -> int:
    """Groups of the 3x3 conv: ``width // min(width, group_width)``, lowered until it divides."""
    groups = width // min(width, group_width)
    while width % groups:
        groups -= 1
    return groups


@dataclass(frozen=True)
class ResolvedRegNetBlock(ResolvedBlockBase):
    kind: ClassVar[str] = KIND

    stage: int
    index: int
    in_chs: int
    out_chs: int
    stride: int
    group_width: int

    @property
    def groups(self) -> int:
        return regnet_groups(self.out_chs, self.group_width)

    @property
    def downsample(self) -> bool:
        return self.stride != 1 or self.in_chs != self.out_chs

    def out_size(self, size: int) -> int:
        return conv_out_size(size, 3, self.stride)

    def count(self, counter: Counter, size: int) -> None:
        w, hw_out = self.out_chs, self.out_size(size) ** 2
        counter.conv(self.in_chs, w, 1, 1, size * size)
        counter.bn(w)
        counter.conv(w, w, 3, self.groups, hw_out)
        counter.bn(w)
        counter.conv(w, self.out_chs, 1, 1, hw_out)
        counter.bn(self.out_chs)
        if self.downsample:
            counter.conv(self.in_chs, self.out_chs, 1, 1, hw_out)
            counter.bn(self.out_chs)

    def build(self, act: str) -> Any:
        from ghostnas.models.regnet import RegNetBottleneck

        return RegNetBottleneck(self, act)

    def latency_key(self, size: int, batch: int, act: str) -> str:
        return f"{KIND}|b{batch}|r{size}|i{self.in_chs}|o{self.out_chs}|g{self.groups}|st{self.stride}|{act}"


@dataclass(frozen=True)
class RegNetBlockConfig(BlockRecord):
    """One RegNet bottleneck.

    Attributes:
        c: Output (and bottleneck) width, before the width multiplier.
        group_width: Channels per group of the 3x3 conv.
        stride: 1 or 2 (on the 3x3 conv and the projection).
    """

    kind: ClassVar[str] = KIND

    c: int
    group_width: int
    stride: int = 1

    def __post_init__(self) -> None:
        check_int("c", self.c, 1, MAX_CHANNELS)
        check_int("group_width", self.group_width, 1, MAX_CHANNELS)
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise fail("stride", self.stride, "stride must be 1 or 2")

    def resolve(self, ctx: Context, in_chs: int, stage: int, index: int) -> ResolvedRegNetBlock:
        return ResolvedRegNetBlock(
            stage=stage,
            index=index,
            in_chs=in_chs,
            out_chs=make_divisible(self.c * ctx.width, 4),
            stride=self.stride,
            group_width=self.group_width,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.c, "group_width": self.group_width, "stride": self.stride}

    @classmethod
    def from_dict(cls, where: str, raw: Mapping[str, Any]) -> RegNetBlockConfig:
        check_keys(where, raw, ("c", "group_width"), ("stride",))
        return cls(**raw)

    def short(self) -> str:
        return f"rx{self.c}g{self.group_width}" + ("/2" if self.stride == 2 else "")


register_block_kind(KIND, RegNetBlockConfig)
