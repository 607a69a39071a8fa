"""Exact extremes of MACs and params over a search space, without enumerating its points.

Kernel, expansion ratio and SE only ever add cost (with everything else fixed, a larger choice
means more or wider layers), so the minimum takes their smallest choices and the maximum their
largest. Output channels, depth, width, ``s`` and ``d`` are not monotone: an identity shortcut
appears exactly when a block's input and output widths match, and ``s``/``d`` trade primary for
cheap channels. Those are searched exhaustively, by dynamic programming over the state that links
one block to the next: (raw input channels, raw expansion of the last block), the latter because
the final 1x1 conv widens to the last block's expansion.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ghostnas.config import ResolvedBlock, make_divisible
from ghostnas.cost import _Counter, conv_out_size

if TYPE_CHECKING:
    from ghostnas.space import BlockSpace, CostRange, SearchSpace, StageSpace

__all__ = ["cost_range"]

# (raw c in, raw expansion of the last block) -> (best MACs, best params) so far; the two are
# optimised separately, so they may come from different configs (each is still exact).
_States = dict[tuple[int, int], tuple[int, int]]
_Pick = Callable[[Iterable[float]], float]


def cost_range(
    space: SearchSpace, input_size: int, num_classes: int, in_chans: int = 3, stem_stride: int = 2
) -> CostRange:
    from ghostnas.space import CostRange

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
def _block_cost(rb: ResolvedBlock, size: int) -> tuple[int, int]:
    c = _Counter()
    c.bottleneck(rb, size)
    return c.macs, c.params


def _merge(table: _States, state: tuple[int, int], value: tuple[int, int], better: _Pick) -> None:
    old = table.get(state)
    table[state] = (
        value if old is None else (int(better((old[0], value[0]))), int(better((old[1], value[1]))))
    )


def _extreme(
    space: SearchSpace, input_size: int, num_classes: int, better: _Pick, in_chans: int, stem_stride: int
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
    space: SearchSpace,
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
    head = _Counter()
    head.conv(in_chans, stem, 3, 1, size * size)
    head.bn(stem)
    states: _States = {(space.stem_chs, 0): (head.macs, head.params)}
    for st in space.stages:
        states, size = _stage(space, st, states, size, width, ghost, better)
    return _tail(space, states, size, width, num_classes, better)


def _stage(
    space: SearchSpace,
    st: StageSpace,
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
        cur, bsize = states, size
        for bi, bs in enumerate(st.blocks):
            cur = _block(bs, cur, bsize, width, s, d, better)
            bsize = out_size
            if bi + 1 in st.depth:
                for state, value in cur.items():
                    _merge(out, state, value, better)
    return out, out_size


def _block(
    bs: BlockSpace, states: _States, size: int, width: float, s: int, d: int, better: _Pick
) -> _States:
    """Extend every state by one block, trying every output width."""
    k, ratio, se = better(bs.k), better(bs.exp), better(bs.se)
    nxt: _States = {}
    for (in_raw, _), (m0, p0) in states.items():
        exp_raw = make_divisible(ratio * in_raw, 4)
        for c in bs.c:
            rb = ResolvedBlock(
                stage=0,
                index=0,
                in_chs=make_divisible(in_raw * width, 4),
                mid_chs=make_divisible(exp_raw * width, 4),
                out_chs=make_divisible(c * width, 4),
                k=int(k),
                stride=bs.stride,
                se_ratio=float(se),
                s=s,
                d=d,
            )
            m, p = _block_cost(rb, size)
            _merge(nxt, (c, exp_raw), (m0 + m, p0 + p), better)
    return nxt


def _tail(
    space: SearchSpace, states: _States, size: int, width: float, num_classes: int, better: _Pick
) -> tuple[int, int]:
    """Add the final 1x1 conv, the head conv and the classifier; return the best totals."""
    totals = []
    for (c_raw, exp_raw), (m0, p0) in states.items():
        tail = _Counter()
        final = make_divisible(exp_raw * width, 4)
        tail.conv(make_divisible(c_raw * width, 4), final, 1, 1, size * size)
        tail.bn(final)
        tail.conv(final, space.head_chs, 1, 1, 1, bias=True)
        if num_classes > 0:
            tail.linear(space.head_chs, num_classes)
        totals.append((m0 + tail.macs, p0 + tail.params))
    return int(better(t[0] for t in totals)), int(better(t[1] for t in totals))
