"""Exact extremes of MACs and params over a search space, without enumerating its points.

Kernel, expansion ratio and SE only ever add cost (with everything else fixed, a larger choice
means more or wider layers), so the minimum takes their smallest choices and the maximum their
largest. Output channels, depth, width, ``s`` and ``d`` are not monotone: an identity shortcut
appears exactly when a block's input and output widths match, and ``s``/``d`` trade primary for
cheap channels. Those are searched exhaustively, by dynamic programming over the state that links
one block to the next: (raw input channels, raw tail width of the last block), the latter because
the final 1x1 conv widens to the last block's expansion (:attr:`BlockRecord.tail_chs`).

Which choices are monotone is each block kind's knowledge: its space record's ``extremes`` gives
the candidate blocks for the minimum or the maximum, and the walk here never names a kind.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ghostnas.blocks.base import (
    BlockRecord,
    BlockSpaceRecord,
    Context,
    Counter,
    ResolvedBlockBase,
    conv_out_size,
    make_divisible,
)
from ghostnas.blocks.g_ghost import count_mix_and_cheap, deep_space, raw_width
from ghostnas.cost import count_tail

__all__ = ["CostRange", "SpaceShape", "StageShape", "cost_range"]


@dataclass(frozen=True)
class CostRange:
    """Exact extremes of params and MACs over every point of a space at one input size."""

    min_macs: int
    max_macs: int
    min_params: int
    max_params: int
    input_size: int
    num_classes: int


class StageShape(Protocol):
    """What the walk reads of a stage's choices (:class:`ghostnas.space.StageSpace` has it)."""

    depth: Sequence[int]
    blocks: Sequence[BlockSpaceRecord]
    g_ghost: Sequence[bool]
    cheap_ratio: Sequence[float]


class SpaceShape(Protocol):
    """What the walk reads of a space (:class:`ghostnas.space.SearchSpace` has it). A protocol,
    not the class, so that this lower module does not import :mod:`ghostnas.space`, which
    imports it."""

    width: Any
    s: Sequence[int]
    d: Sequence[int]
    ghost_per_stage: bool
    stages: Sequence[StageShape]
    stem_chs: int
    head_chs: int


# (raw c in, raw expansion of the last block) -> (best MACs, best params) so far; the two are
# optimised separately, so they may come from different configs (each is still exact).
_States = dict[tuple[int, int], tuple[int, int]]
_Pick = Callable[[Iterable[float]], float]


def cost_range(
    space: SpaceShape, input_size: int, num_classes: int, in_chans: int = 3, stem_stride: int = 2
) -> CostRange:
    lo = _extreme(space, input_size, num_classes, min, in_chans, stem_stride)
    hi = _extreme(space, input_size, num_classes, max, in_chans, stem_stride)
    return CostRange(
        min_macs=lo[0],
        max_macs=hi[0],
        min_params=lo[1],
        max_params=hi[1],
        input_size=input_size,
        num_classes=num_classes,
    )


@functools.lru_cache(maxsize=1 << 16)
def _block_cost(rb: ResolvedBlockBase, size: int) -> tuple[int, int]:
    c = Counter()
    rb.count(c, size)
    return c.macs, c.params


def _merge(table: _States, state: tuple[int, int], value: tuple[int, int], better: _Pick) -> None:
    old = table.get(state)
    table[state] = (
        value if old is None else (int(better((old[0], value[0]))), int(better((old[1], value[1]))))
    )


def _extreme(
    space: SpaceShape, input_size: int, num_classes: int, better: _Pick, in_chans: int, stem_stride: int
) -> tuple[int, int]:
    """Smallest (``better=min``) or largest (``max``) MACs and params over the space."""
    ghost_net = (
        [(space.s[0], space.d[0])] if space.ghost_per_stage else list(itertools.product(space.s, space.d))
    )
    results = [
        _network(space, width, ghost, input_size, num_classes, better, in_chans, stem_stride)
        for width in space.width.values()
        for ghost in ghost_net
    ]
    return int(better(r[0] for r in results)), int(better(r[1] for r in results))


def _network(
    space: SpaceShape,
    width: float,
    ghost: tuple[int, int],
    input_size: int,
    num_classes: int,
    better: _Pick,
    in_chans: int = 3,
    stem_stride: int = 2,
) -> tuple[int, int]:
    stem = make_divisible(space.stem_chs * width, 4)
    size = conv_out_size(input_size, 3, stem_stride)
    head = Counter()
    head.conv(in_chans, stem, 3, 1, size * size)
    head.bn(stem)
    states: _States = {(space.stem_chs, 0): (head.macs, head.params)}
    for st in space.stages:
        states, size = _stage(space, st, states, size, width, ghost, better)
    return _tail(space, states, size, width, num_classes, better)


def _stage(
    space: SpaceShape,
    st: StageShape,
    states: _States,
    size: int,
    width: float,
    ghost: tuple[int, int],
    better: _Pick,
) -> tuple[_States, int]:
    """States after the stage, over its depth choices (and its own s/d when chosen per stage)."""
    out: _States = {}
    out_size = (size - 1) // st.blocks[0].stride + 1  # odd kernels, padding k // 2
    ghosts = list(itertools.product(space.s, space.d)) if space.ghost_per_stage else [ghost]
    for s, d in ghosts:
        ctx = Context(width=width, s=s, d=d)
        cur, bsize = states, size
        for bi, bs in enumerate(st.blocks):
            cur = _block(bs, cur, bsize, ctx, better)
            bsize = out_size
            n = bi + 1
            if n in st.depth and (n < 3 or False in st.g_ghost):
                for state, value in cur.items():
                    _merge(out, state, value, better)
        if True in st.g_ghost:
            for n in (n for n in st.depth if n >= 3):
                for state, value in _g_ghost(st, n, states, size, ctx, better).items():
                    _merge(out, state, value, better)
    return out, out_size


def _g_ghost(st: StageShape, n: int, states: _States, size: int, ctx: Context, better: _Pick) -> _States:
    """A G-Ghost stage of ``n`` blocks: every first-block width, cheap ratio and end width."""
    spaces = st.blocks[:n]
    out: _States = {}
    for (in_raw, _), (m0, p0) in states.items():
        in_chs = make_divisible(in_raw * ctx.width, 4)
        for first in _extremes(spaces[0], better, in_raw):
            rf = first.resolve(ctx, in_chs, 0, 0)
            m1, p1 = _block_cost(rf, size)
            side = rf.out_size(size)
            for ratio in st.cheap_ratio:
                m2, p2 = _g_ghost_middle(spaces, first.c, rf.out_chs, ratio, ctx, side, better)
                m2, p2 = m0 + m1 + m2, p0 + p1 + p2
                for end in _extremes(spaces[-1], better, first.c):
                    m, p = _resolved_cost(end, ctx, rf.out_chs, side)
                    _merge(out, (end.c, end.tail_chs), (m2 + m, p2 + p), better)
    return out


def _block(bs: BlockSpaceRecord, states: _States, size: int, ctx: Context, better: _Pick) -> _States:
    """Extend every state by one block, trying every candidate the kind names."""
    nxt: _States = {}
    for (in_raw, _), (m0, p0) in states.items():
        for block in _extremes(bs, better, in_raw):
            m, p = _resolved_cost(block, ctx, make_divisible(in_raw * ctx.width, 4), size)
            _merge(nxt, (block.c, block.tail_chs), (m0 + m, p0 + p), better)
    return nxt


@functools.lru_cache(maxsize=1 << 14)
def _g_ghost_middle(
    spaces: tuple[BlockSpaceRecord, ...],
    c_first: int,
    planes: int,
    ratio: float,
    ctx: Context,
    side: int,
    better: _Pick,
) -> tuple[int, int]:
    """The deep path and the stage's own layers of a G-Ghost stage (depends on no state)."""
    raw = raw_width(c_first, ratio)
    raw_chs = make_divisible(raw * ctx.width, 4)
    tally = Counter()
    count_mix_and_cheap(tally, planes, raw_chs, len(spaces) - 2, side)
    m2, p2 = tally.macs, tally.params
    for bs in spaces[1:-1]:
        (deep,) = _extremes(deep_space(bs, raw), better, raw)
        m, p = _resolved_cost(deep, ctx, raw_chs, side)
        m2, p2 = m2 + m, p2 + p
    return m2, p2


@functools.lru_cache(maxsize=1 << 16)
def _extremes(bs: BlockSpaceRecord, better: _Pick, in_raw: int) -> tuple[BlockRecord, ...]:
    return tuple(bs.extremes(better, in_raw))


@functools.lru_cache(maxsize=1 << 16)
def _resolved_cost(block: BlockRecord, ctx: Context, in_chs: int, size: int) -> tuple[int, int]:
    return _block_cost(block.resolve(ctx, in_chs, 0, 0), size)


def _tail(
    space: SpaceShape, states: _States, size: int, width: float, num_classes: int, better: _Pick
) -> tuple[int, int]:
    """Add the final 1x1 conv, the head conv and the classifier; return the best totals."""
    totals = []
    for (c_raw, tail_raw), (m0, p0) in states.items():
        tail = Counter()
        final = make_divisible(tail_raw * width, 4)
        count_tail(tail, make_divisible(c_raw * width, 4), final, space.head_chs, num_classes, size)
        totals.append((m0 + tail.macs, p0 + tail.params))
    return int(better(t[0] for t in totals)), int(better(t[1] for t in totals))
