"""G-GhostNet's stage (Han et al., IJCV 2022) as stage kind ``g_ghost``.

The Ghost idea applied across the blocks of a stage, for GPUs: a full-width first block (it
usually downsamples); a deep path of blocks on the first ``raw`` channels of its output; the
other ``cheap = planes - raw`` channels from a cheap 1x1 conv + BN of the first block's output,
plus a "mix" term (global average pooling over the first block's output and every deep-path
output, concatenated; 1x1 conv, BN, act, 1x1 conv, BN) broadcast-added, then the activation;
the deep output and the cheap features concatenated; a full-width end block.

In a config the stage lists its blocks in that order: ``[first, deep..., end]``; the deep
blocks' output width is ``raw`` (all equal and below the first block's), and any block kind may
fill the roles (RegNet bottlenecks in the published G-Ghost RegNets, Ghost bottlenecks in a
search space). Cost, build and the latency key live here; the layers in
:mod:`ghostnas.models.g_ghost`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ghostnas.blocks.base import (
    BlockRecord,
    BlockSpaceRecord,
    Context,
    Counter,
    Pick,
    Put,
    ResolvedBlockBase,
    ResolvedStageBase,
    fail,
    make_divisible,
    register_stage_kind,
)
from ghostnas.config import StageConfig
from ghostnas.errors import ConfigError

__all__ = [
    "GGhostStage",
    "GGhostStageConfig",
    "choose_blocks",
    "count_mix_and_cheap",
    "deep_space",
    "points",
    "put_blocks",
    "raw_width",
    "space_problem",
]

KIND = "g_ghost"


@dataclass(frozen=True)
class GGhostStage(ResolvedStageBase):
    """A resolved G-Ghost stage: ``blocks`` is ``(first, *deep, end)``."""

    kind: ClassVar[str] = KIND

    blocks: tuple[ResolvedBlockBase, ...]

    @property
    def planes(self) -> int:
        return self.blocks[0].out_chs

    @property
    def raw(self) -> int:
        return self.blocks[1].out_chs

    @property
    def cheap(self) -> int:
        return self.planes - self.raw

    @property
    def deep(self) -> tuple[ResolvedBlockBase, ...]:
        return self.blocks[1:-1]

    @property
    def mix_in(self) -> int:
        return self.planes + self.raw * len(self.deep)

    def count(self, counter: Counter, size: int, training: bool = False) -> None:
        def add(rb: ResolvedBlockBase, side: int) -> None:
            (rb.count_training if training else rb.count)(counter, side)

        first = self.blocks[0]
        add(first, size)
        side = first.out_size(size)
        for rb in self.blocks[1:]:
            add(rb, side)
        count_mix_and_cheap(counter, self.planes, self.raw, len(self.deep), side)

    def build(self, act: str) -> Any:
        from ghostnas.models.g_ghost import GGhostStageModule

        return GGhostStageModule(self, act)

    def parts(self, size: int, batch: int, act: str) -> list[tuple[str, int, int, Callable[[], Any]]]:
        side = self.blocks[0].out_size(size)
        inner = "+".join(
            rb.latency_key(size if i == 0 else side, batch, act).split("|", 3)[3] + f"@{rb.kind}"
            for i, rb in enumerate(self.blocks)
        )
        key = f"{KIND}|b{batch}|r{size}|raw{self.raw}|{inner}"
        return [(key, self.in_chs, size, lambda: self.build(act))]


@dataclass(frozen=True)
class GGhostStageConfig(StageConfig):
    """A G-Ghost stage: ``blocks`` are ``[first, deep..., end]`` (at least three).

    The deep blocks' ``c`` is the deep path's width ``raw`` (equal for all of them, below the
    first block's); ``cheap = c_first - raw`` channels come from the cheap operation.
    """

    kind: ClassVar[str] = KIND

    def check_blocks(self) -> None:
        if len(self.blocks) < 3:
            raise fail(
                "blocks", f"<{len(self.blocks)} blocks>", "a g_ghost stage needs first, deep and end blocks"
            )
        first, deep, end = self.blocks[0], self.blocks[1:-1], self.blocks[-1]
        if any(b.stride != 1 for b in (*deep, end)):
            raise fail("blocks", "stride 2", "only the first block of a g_ghost stage may have stride 2")
        widths = {b.c for b in deep}
        if len(widths) != 1:
            raise fail("blocks", sorted(widths), "the deep blocks of a g_ghost stage need one output width c")
        if widths.pop() >= first.c:
            raise fail(
                "blocks", deep[0].c, f"the deep path's width must be below the first block's c = {first.c}"
            )

    def resolve(self, ctx: Context, in_chs: int, stage: int) -> GGhostStage:
        first = self.blocks[0].resolve(ctx, in_chs, stage, 0)
        raw = self.blocks[1].resolve(ctx, first.out_chs, stage, 1).out_chs
        if not 0 < raw < first.out_chs:
            raise ConfigError(
                f"stage {stage}: g_ghost deep width {raw} is not below the first block's {first.out_chs} "
                "at this width multiplier; use a larger width or a narrower deep path"
            )
        deep = [b.resolve(ctx, raw, stage, i + 1) for i, b in enumerate(self.blocks[1:-1])]
        end = self.blocks[-1].resolve(ctx, first.out_chs, stage, len(self.blocks) - 1)
        return GGhostStage((first, *deep, end))

    def short_tag(self) -> str:
        return "gghost "


register_stage_kind(KIND, GGhostStageConfig)


# --------------------------------------------------------------------------------------------
# a G-Ghost stage as a search-space choice


def raw_width(c: int, cheap_ratio: float) -> int:
    """Deep-path width (before the width multiplier) of a stage whose first block has ``c``
    outputs: ``c * (1 - cheap_ratio)`` rounded down to a multiple of 4 (at least 4)."""
    return max(4, int(c * (1 - cheap_ratio)) // 4 * 4)


def count_mix_and_cheap(counter: Counter, planes: int, raw: int, n_deep: int, side: int) -> None:
    """The stage's own layers: the mix term on pooled features and the cheap 1x1 conv."""
    cheap = planes - raw
    counter.conv(planes + raw * n_deep, cheap, 1, 1, 1)
    counter.bn(cheap)
    counter.conv(cheap, cheap, 1, 1, 1)
    counter.bn(cheap)
    counter.conv(cheap, cheap, 1, 1, side * side)
    counter.bn(cheap)


def deep_space(bs: BlockSpaceRecord, raw: int) -> BlockSpaceRecord:
    """A block position of the deep path: its output width is the stage's ``raw``."""
    return dataclasses.replace(bs, c=(raw,))


def choose_blocks(
    spaces: Sequence[BlockSpaceRecord], pick: Pick, prefix: str, in_c: int, ratio: float
) -> list[BlockRecord]:
    """The blocks of a G-Ghost stage of ``len(spaces)`` blocks (first, deep..., end)."""
    first = spaces[0].choose(pick, f"{prefix}0_", in_c)
    raw = raw_width(first.c, ratio)
    deep = [deep_space(bs, raw).choose(pick, f"{prefix}{i}_", raw) for i, bs in enumerate(spaces[1:-1], 1)]
    end = spaces[-1].choose(pick, f"{prefix}{len(spaces) - 1}_", first.c)
    return [first, *deep, end]


def put_blocks(
    spaces: Sequence[BlockSpaceRecord],
    blocks: Sequence[BlockRecord],
    put: Put,
    prefix: str,
    what: str,
    in_c: int,
    ratio_name: str,
    ratios: Sequence[float],
) -> None:
    """The parameters that :func:`choose_blocks` turns back into ``blocks``."""
    first = blocks[0]
    spaces[0].to_params(first, put, f"{prefix}0_", f"{what} block 0", in_c)
    raw = blocks[1].c
    widths = [raw_width(first.c, r) for r in ratios]
    if raw not in widths:
        put(ratio_name, raw, widths, f"{what} deep-path width")
    put(ratio_name, ratios[widths.index(raw)], ratios, f"{what} cheap_ratio")
    for i, (bs, b) in enumerate(zip(spaces[1:-1], blocks[1:-1], strict=True), 1):
        deep_space(bs, raw).to_params(b, put, f"{prefix}{i}_", f"{what} block {i}", raw)
    n = len(spaces) - 1
    spaces[-1].to_params(blocks[-1], put, f"{prefix}{n}_", f"{what} block {n}", first.c)


def points(spaces: Sequence[BlockSpaceRecord], n_ratios: int) -> int:
    """Distinct G-Ghost stages over these positions (the deep blocks' width is fixed)."""
    deep = math.prod(deep_space(bs, bs.c[0]).n_points() for bs in spaces[1:-1])
    return n_ratios * spaces[0].n_points() * deep * spaces[-1].n_points()


def space_problem(
    spaces: Sequence[BlockSpaceRecord], ratios: Sequence[float], widths: Sequence[float]
) -> str | None:
    """Why these choices could not build valid, distinct G-Ghost stages (or None): two cheap
    ratios that give one deep width, or a deep path not narrower than the first block."""
    for c in spaces[0].c:
        raws = [raw_width(c, r) for r in ratios]
        if len(set(raws)) < len(raws):
            return (
                f"cheap ratios {list(ratios)} give the same deep width for c = {c}; use ratios further apart"
            )
        for raw in raws:
            for w in widths:
                if make_divisible(raw * w, 4) >= make_divisible(c * w, 4):
                    return (
                        f"deep width {raw} is not below c = {c} at width {w:g}; use a larger cheap_ratio or c"
                    )
            for i, bs in enumerate(spaces[1:-1], 1):
                why = deep_space(bs, raw).clash({raw})
                if why:
                    return f"deep block {i}: {why}"
    return None
