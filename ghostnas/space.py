"""Search spaces: which GhostNet configs a search may propose, read from YAML files.

A space turns a flat dict of named choices into a :class:`~ghostnas.config.GhostNetConfig` and
nothing else. The names are hierarchical (``width``, ``s``, ``d``, ``s3_depth``, ``s3_s``,
``s3_b1_k``, ``s3_b1_e``, ``s3_b1_c``, ``s3_b1_se``), which is exactly Optuna's parameter model:
a trial's stored ``params`` replay through :meth:`SearchSpace.params_to_config` to the config the
trial evaluated. One builder (:meth:`SearchSpace._build`) serves Optuna (:meth:`suggest`), plain
random sampling (:meth:`sample`) and replay (:meth:`params_to_config`), so the three cannot drift
apart.

Spaces ship in ``ghostnas/search_spaces/*.yaml`` (the repository's top-level ``search_spaces/``
links there) and are found by name or by path. YAML is read with a safe loader only (tags such as
``!!python/object`` are refused); errors name the file, the line and the key.

Expansion choices are multiples of the block's *input* channels (the previous block's chosen
``c``, or the stem), rounded with :func:`~ghostnas.config.make_divisible`; in the config ``exp``
is the resulting absolute channel count, as in the paper's table.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas._io import read_user_text
from ghostnas._space_cost import CostRange, cost_range
from ghostnas._yaml import parse_yaml
from ghostnas.blocks.base import (
    ACTIVATIONS,
    BlockSpaceRecord,
    FieldReader,
    SpaceError,
    block_kind,
    is_int,
    is_num,
    is_odd_kernel,
    same_choice,
)
from ghostnas.blocks.g_ghost import GGhostStageConfig
from ghostnas.blocks.g_ghost import choose_blocks as gg_choose
from ghostnas.blocks.g_ghost import points as gg_points
from ghostnas.blocks.g_ghost import put_blocks as gg_put
from ghostnas.blocks.g_ghost import space_problem as gg_problem
from ghostnas.blocks.ghost import BlockSpace
from ghostnas.config import (
    DEFAULT_BLOCK_KIND,
    GhostNetConfig,
    StageConfig,
    config_from_dict,
)
from ghostnas.cost import count_cost
from ghostnas.errors import ConfigError, GhostnasError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BlockSpace",
    "CostRange",
    "SearchSpace",
    "SpaceError",
    "StageSpace",
    "WidthGrid",
    "builtin_space_dir",
    "describe_space",
    "list_spaces",
    "load_space",
    "loads_space",
    "space_digest",
]

logger = logging.getLogger(__name__)

MAX_SPACE_BYTES = 1 << 20
_WIDTH_DECIMALS = 6


# --------------------------------------------------------------------------------------------
# the space records


@dataclass(frozen=True)
class WidthGrid:
    """Width multipliers ``low, low + step, ..., high`` (a single value when ``step`` is 0)."""

    low: float
    high: float
    step: float

    def values(self) -> tuple[float, ...]:
        if self.step == 0:
            return (round(self.low, _WIDTH_DECIMALS),)
        n = round((self.high - self.low) / self.step)
        return tuple(round(self.low + i * self.step, _WIDTH_DECIMALS) for i in range(n + 1))

    def snap(self, value: float) -> float | None:
        """The grid value equal to ``value`` (within rounding), or None if off the grid."""
        for v in self.values():
            if abs(v - value) < 1e-9:
                return v
        return None


@dataclass(frozen=True)
class StageSpace:
    """A stage: depth choices and the block positions (at least ``max(depth)`` of them).

    Attributes:
        depth: Block-count choices.
        blocks: The block positions.
        g_ghost: Stage-kind choices at depths of 3 or more: ``false`` a sequential stage,
            ``true`` a G-Ghost stage (first block, deep path on ``raw`` channels, cheap
            features, end block; see :mod:`ghostnas.blocks.g_ghost`).
        cheap_ratio: Share of the first block's channels made by the cheap operation in a
            G-Ghost stage (the deep path gets the rest, rounded down to a multiple of 4).
    """

    depth: tuple[int, ...]
    blocks: tuple[BlockSpaceRecord, ...]
    g_ghost: tuple[bool, ...] = (False,)
    cheap_ratio: tuple[float, ...] = (0.5,)

    def n_points(self) -> int:
        """Distinct block settings of this stage over all depths (s/d not included)."""
        return sum(self.depth_weights())

    def kind_weights(self, n: int) -> list[int]:
        """Points per ``g_ghost`` choice at depth ``n``."""
        return [
            gg_points(self.blocks[:n], len(self.cheap_ratio))
            if gg
            else math.prod(b.n_points() for b in self.blocks[:n])
            for gg in self.g_ghost
        ]

    def depth_weights(self) -> list[int]:
        """Points per depth choice: sampling depth with these weights is uniform over points."""
        return [
            sum(self.kind_weights(n)) if n >= 3 else math.prod(b.n_points() for b in self.blocks[:n])
            for n in self.depth
        ]


Chooser = Callable[[str, Sequence[Any], "WidthGrid | None", "Sequence[int] | None"], Any]
"""``choose(name, choices, grid, weights)`` returns one of ``choices`` (or a grid value)."""


@dataclass(frozen=True)
class SearchSpace:
    """A GhostNet search space; build one with :func:`load_space`.

    Attributes:
        name: The space's name (file stem for shipped spaces).
        description: One line for listings.
        width: Width multiplier grid.
        s: Ghost ratio choices.
        d: Cheap-operation kernel choices.
        ghost_per_stage: Choose ``s`` and ``d`` per stage instead of network-wide.
        stages: Stage spaces, in order.
        stem_chs, head_chs, dropout, act: Fixed network settings.
        reference: The hand-designed network the search starts from (scaled in width to the
            budget), or None.
        source: Where the space was read from.
    """

    name: str
    description: str
    width: WidthGrid
    s: tuple[int, ...]
    d: tuple[int, ...]
    ghost_per_stage: bool
    stages: tuple[StageSpace, ...]
    stem_chs: int
    head_chs: int
    dropout: float
    act: str
    reference: GhostNetConfig | None = None
    source: str = field(default="<string>", compare=False)

    # ---------------------------------------------------------------- the one builder

    def _build(self, choose: Chooser) -> GhostNetConfig:
        """Walk every decision in a fixed order, asking ``choose`` for each parameter.

        Fixed values (one choice) are not asked for. Blocks beyond a stage's chosen depth are
        not asked for either, so a trial's parameters are exactly the decisions that mattered.
        """

        def pick(name: str, choices: Sequence[Any], weights: Sequence[int] | None = None) -> Any:
            if len(choices) == 1:
                return choices[0]
            return choose(name, choices, None, weights)

        widths = self.width.values()
        width = widths[0] if len(widths) == 1 else choose("width", widths, self.width, None)
        width = round(float(width), _WIDTH_DECIMALS)
        # Per-stage spaces are canonical: the network value is stage 0's, and a stage carries an
        # override only where it differs, so a table with one s and d everywhere has none.
        net_s = self.s[0] if self.ghost_per_stage else pick("s", self.s)
        net_d = self.d[0] if self.ghost_per_stage else pick("d", self.d)
        stages = []
        in_c = self.stem_chs
        for si, st in enumerate(self.stages):
            depth = pick(f"s{si}_depth", st.depth, st.depth_weights())
            st_s = st_d = None
            if self.ghost_per_stage:
                chosen_s, chosen_d = pick(f"s{si}_s", self.s), pick(f"s{si}_d", self.d)
                if si == 0:
                    net_s, net_d = chosen_s, chosen_d
                st_s = None if chosen_s == net_s else chosen_s
                st_d = None if chosen_d == net_d else chosen_d
            gg = pick(f"s{si}_gghost", st.g_ghost, st.kind_weights(depth)) if depth >= 3 else False
            if gg:
                ratio = pick(f"s{si}_cheap", st.cheap_ratio)
                gblocks = gg_choose(st.blocks[:depth], pick, f"s{si}_b", in_c, ratio)
                stages.append(GGhostStageConfig(blocks=tuple(gblocks), s=st_s, d=st_d))
                in_c = gblocks[-1].c
                continue
            blocks = []
            for bi, bs in enumerate(st.blocks[:depth]):
                block = bs.choose(pick, f"s{si}_b{bi}_", in_c)
                blocks.append(block)
                in_c = block.c
            stages.append(StageConfig(blocks=tuple(blocks), s=st_s, d=st_d))
        return GhostNetConfig(
            stages=tuple(stages),
            width=width,
            s=net_s,
            d=net_d,
            stem_chs=self.stem_chs,
            head_chs=self.head_chs,
            dropout=self.dropout,
            act=self.act,
        )

    # ---------------------------------------------------------------- public API

    def suggest(self, trial: optuna.Trial) -> GhostNetConfig:
        """Ask an Optuna trial for every decision; return the config it describes.

        Choices are categorical; the width is a stepped float so that a grid value (such as the
        width-scaled reference) can be enqueued exactly.
        """

        def choose(name: str, choices: Sequence[Any], grid: WidthGrid | None, _w: Any) -> Any:
            if grid is not None:
                return trial.suggest_float(name, grid.low, grid.high, step=grid.step)
            return trial.suggest_categorical(name, list(choices))

        return self._build(choose)

    def sample(self, rng: random.Random) -> GhostNetConfig:
        """A point drawn uniformly from the space (every distinct config equally likely)."""

        def choose(_name: str, choices: Sequence[Any], _g: Any, weights: Sequence[int] | None) -> Any:
            if weights is not None:
                return rng.choices(list(choices), weights=list(weights))[0]
            return rng.choice(list(choices))

        return self._build(choose)

    def params_to_config(self, params: Mapping[str, Any]) -> GhostNetConfig:
        """Replay a flat parameter dict (e.g. ``trial.params``) to its config.

        Raises:
            SpaceError: a parameter is missing, unknown or not one of its choices.
        """
        used: set[str] = set()

        def choose(name: str, choices: Sequence[Any], grid: WidthGrid | None, _w: Any) -> Any:
            if name not in params:
                raise SpaceError(f"space {self.name}: parameter {name!r} is missing")
            value = params[name]
            used.add(name)
            if grid is not None:
                snapped = grid.snap(value) if isinstance(value, (int, float)) else None
                if snapped is None:
                    raise SpaceError(
                        f"space {self.name}: width = {value!r} is not on the grid "
                        f"{grid.low:g}..{grid.high:g} step {grid.step:g}"
                    )
                return snapped
            if not any(_same(value, c) for c in choices):
                raise SpaceError(
                    f"space {self.name}: {name} = {value!r} is not a choice ({', '.join(map(str, choices))})"
                )
            return value

        cfg = self._build(choose)
        unknown = sorted(set(params) - used)
        if unknown:
            raise SpaceError(f"space {self.name}: unknown or inactive parameter {unknown[0]!r}")
        return cfg

    def config_to_params(self, cfg: GhostNetConfig) -> dict[str, Any]:
        """The parameters that :meth:`params_to_config` turns back into ``cfg``.

        Raises:
            SpaceError: ``cfg`` is not a point of this space; the message names the first field
                that is off.
        """
        params: dict[str, Any] = {}
        where = f"config is not a point of space {self.name}"
        widths = self.width.values()
        snapped = self.width.snap(cfg.width)
        if snapped is None:
            raise SpaceError(f"{where}: width {cfg.width:g} is not on its grid {_fmt_grid(self.width)}")
        if len(widths) > 1:
            params["width"] = snapped
        if len(cfg.stages) != len(self.stages):
            raise SpaceError(f"{where}: {len(cfg.stages)} stages, the space has {len(self.stages)}")

        def put(name: str, value: Any, choices: Sequence[Any], what: str) -> None:
            if not any(_same(value, c) for c in choices):
                raise SpaceError(f"{where}: {what} = {value!r}; choices are {', '.join(map(str, choices))}")
            if len(choices) > 1:
                params[name] = next(c for c in choices if _same(value, c))

        if not self.ghost_per_stage:
            put("s", cfg.s, self.s, "s")
            put("d", cfg.d, self.d, "d")
        in_c = cfg.stem_chs
        for si, (st, sp) in enumerate(zip(cfg.stages, self.stages, strict=True)):
            put(f"s{si}_depth", len(st.blocks), sp.depth, f"stage {si} depth")
            if self.ghost_per_stage:
                put(f"s{si}_s", st.s if st.s is not None else cfg.s, self.s, f"stage {si} s")
                put(f"s{si}_d", st.d if st.d is not None else cfg.d, self.d, f"stage {si} d")
            is_gg = isinstance(st, GGhostStageConfig)
            if len(st.blocks) >= 3:
                put(f"s{si}_gghost", is_gg, sp.g_ghost, f"stage {si} g_ghost")
            elif is_gg:
                raise SpaceError(f"{where}: stage {si} is a g_ghost stage of fewer than 3 blocks")
            if is_gg:
                gg_put(
                    sp.blocks[: len(st.blocks)],
                    st.blocks,
                    put,
                    f"s{si}_b",
                    f"stage {si}",
                    in_c,
                    f"s{si}_cheap",
                    sp.cheap_ratio,
                )
                in_c = st.blocks[-1].c
                continue
            for bi, (b, bs) in enumerate(zip(st.blocks, sp.blocks, strict=False)):
                bs.to_params(b, put, f"s{si}_b{bi}_", f"stage {si} block {bi}", in_c)
                in_c = b.c
        replay = self.params_to_config(params)
        if replay != cfg:
            raise SpaceError(f"{where}: {_first_difference(cfg, replay)}")
        return params

    def contains(self, cfg: GhostNetConfig) -> bool:
        """Whether ``cfg`` is a point of this space."""
        try:
            self.config_to_params(cfg)
        except SpaceError:
            return False
        return True

    def parameter_names(self) -> list[str]:
        """Every parameter a trial may set, in suggestion order (inactive blocks included)."""
        names: list[str] = []

        for stage_kind_choice in (0, -1):
            # The deepest stage exposes every block's parameters; a sequential stage its blocks'
            # widths, a G-Ghost stage its cheap ratio: walk both and keep every name once.
            def choose(
                name: str,
                choices: Sequence[Any],
                grid: WidthGrid | None,
                _w: Any,
                pick: int = stage_kind_choice,
            ) -> Any:
                if name not in names:
                    names.append(name)
                return choices[pick] if name.endswith("_gghost") else choices[-1]

            self._build(choose)
        return names

    def size(self) -> int:
        """Number of distinct configs in the space (an exact integer, possibly huge)."""
        ghost = len(self.s) * len(self.d)
        total = len(self.width.values()) * (1 if self.ghost_per_stage else ghost)
        for st in self.stages:
            total *= st.n_points() * (ghost if self.ghost_per_stage else 1)
        return total

    def reference_at_width(self, width: float) -> GhostNetConfig | None:
        """The reference network at a grid width, or None without a reference."""
        if self.reference is None:
            return None
        return self.reference.with_width(width)

    def cost_range(
        self, input_size: int = 224, num_classes: int = 1000, in_chans: int = 3, stem_stride: int = 2
    ) -> CostRange:
        """Exact minimum and maximum MACs and params over all points, without enumerating them.

        Kernel, expansion and SE only ever add cost, so the minimum takes their smallest choices
        and the maximum their largest; output channels, depth, width, ``s`` and ``d`` are not
        monotone (an identity shortcut appears when input and output widths match), so those
        are searched exhaustively by dynamic programming over (channels in, last expansion).
        """
        return _cached_cost_range(self, input_size, num_classes, in_chans, stem_stride)


_same = same_choice


def _fmt_grid(g: WidthGrid) -> str:
    return f"{g.low:g}" if g.step == 0 else f"{g.low:g}..{g.high:g} step {g.step:g}"


def _first_difference(want: GhostNetConfig, got: GhostNetConfig) -> str:
    for name in ("width", "s", "d", "stem_chs", "head_chs", "dropout", "act"):
        if getattr(want, name) != getattr(got, name):
            return f"{name} is {getattr(want, name)!r}; the space fixes it to {getattr(got, name)!r}"
    for si, (a, b) in enumerate(zip(want.stages, got.stages, strict=False)):
        if a != b:
            return f"stage {si} differs: {a.s, a.d} {[x.short() for x in a.blocks]} (space gives {b.s, b.d})"
    return "it differs from the space's nearest point"


@functools.lru_cache(maxsize=32)
def _cached_cost_range(
    space: SearchSpace, input_size: int, num_classes: int, in_chans: int = 3, stem_stride: int = 2
) -> CostRange:
    # Spaces are frozen and compare by content, so one computation serves every load of a file.
    return cost_range(space, input_size, num_classes, in_chans, stem_stride)


# --------------------------------------------------------------------------------------------
# validation of the parsed document


_Reader = FieldReader
_is_int = is_int
_is_num = is_num
_odd_kernel = is_odd_kernel


_TOP_KEYS = ("name", "network", "stages")
_TOP_OPTIONAL = ("description", "reference")
_NET_KEYS = ("width", "s", "d")
_NET_OPTIONAL = ("ghost_per_stage", "stem_chs", "head_chs", "dropout", "act")


def _read_width(net: _Reader) -> WidthGrid:
    raw = net.get("width")
    if _is_num(0.01, 8.0)(raw):
        return WidthGrid(float(raw), float(raw), 0.0)
    if not isinstance(raw, Mapping):
        raise net.fail("width", "give a number or {low: L, high: H, step: S}")
    g = _Reader(net.source, "network.width.", raw, net.key_line("width"))
    g.check_keys(("low", "high", "step"), ())
    for key in ("low", "high", "step"):
        if not _is_num(0.0, 8.0)(g.get(key)) or g.get(key) <= 0:
            raise g.fail(key, f"{g.get(key)!r} must be a number in (0, 8]")
    low, high, step = float(g.get("low")), float(g.get("high")), float(g.get("step"))
    if high < low:
        raise g.fail("high", f"{high:g} is below low {low:g}")
    n = (high - low) / step
    if abs(n - round(n)) > 1e-6:
        raise g.fail("step", f"{step:g} does not divide high - low = {high - low:g}")
    if round(n) > 1000:
        raise g.fail("step", "more than 1000 grid points; use a coarser step")
    return WidthGrid(low, high, step)


def _read_block(source: str, where: str, raw: Any, line: int, first: bool) -> BlockSpaceRecord:
    """One block position: its ``kind`` (default ``ghost``) decides which keys it takes."""
    b = _Reader(source, where, raw, line)
    kind_name = b.get("kind", DEFAULT_BLOCK_KIND)
    try:
        kind = block_kind(kind_name, f"{where}kind")
    except ConfigError as exc:
        raise b.fail("kind", str(exc).split(": ", 1)[-1]) from None
    if kind.space is None:
        raise b.fail("kind", f"block kind {kind_name!r} has no search-space choices; use it in configs only")
    return kind.space.read(b, first)


def _read_stage(source: str, si: int, raw: Any, line: int) -> StageSpace:
    where = f"stages[{si}]."
    r = _Reader(source, where, raw, line)
    r.check_keys(("depth", "blocks"), ("g_ghost", "cheap_ratio"))
    depth = r.choices("depth", _is_int(1, 64), "a block count in 1..64")
    raw_blocks = r.get("blocks")
    if not isinstance(raw_blocks, list) or not raw_blocks:
        raise r.fail("blocks", "must be a non-empty list of blocks")
    if max(depth) > len(raw_blocks):
        raise r.fail("depth", f"allows {max(depth)} blocks but only {len(raw_blocks)} are listed")
    if len(raw_blocks) > max(depth):
        raise r.fail("blocks", f"{len(raw_blocks)} blocks listed but depth allows at most {max(depth)}")
    blocks = tuple(
        _read_block(source, f"{where}blocks[{bi}].", rb, getattr(raw_blocks, "line", r.line), bi == 0)
        for bi, rb in enumerate(raw_blocks)
    )
    g_ghost = r.choices("g_ghost", lambda v: isinstance(v, bool), "true or false", default=False)
    ratios = tuple(
        float(v)
        for v in r.choices("cheap_ratio", _is_num(0.05, 0.95), "a cheap ratio in [0.05, 0.95]", default=0.5)
    )
    if True in g_ghost and False not in g_ghost and min(depth) < 3:
        raise r.fail("g_ghost", "a g_ghost stage needs at least 3 blocks; allow false or raise the depth")
    if True in g_ghost and max(depth) < 3:
        raise r.fail("g_ghost", f"depth at most {max(depth)}: a g_ghost stage needs at least 3 blocks")
    return StageSpace(depth=tuple(sorted(depth)), blocks=blocks, g_ghost=g_ghost, cheap_ratio=ratios)


def _exp_clash(stages: Sequence[StageSpace], stem_chs: int) -> str | None:
    """A block whose choices would let two parameter sets describe one config (see each kind's
    ``clash``), such as two expansion ratios that round to one width: :meth:`SearchSpace.size`
    would over-count and :meth:`SearchSpace.sample` would not be uniform; refuse it."""
    inputs = {stem_chs}
    for si, st in enumerate(stages):
        ends: set[int] = set()
        for bi, bs in enumerate(st.blocks):
            why = bs.clash(inputs)
            if why:
                return f"stage {si} block {bi}: {why}"
            inputs = set(bs.c)
            if bi + 1 in st.depth:
                ends |= inputs
        inputs = ends
    return None


def _read_reference(top: _Reader) -> GhostNetConfig | None:
    raw = top.get("reference")
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            from ghostnas.registry import resolve_config

            return resolve_config(raw)
        return config_from_dict(_plain(raw))
    except GhostnasError as exc:
        raise top.fail("reference", str(exc)) from None


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def space_from_dict(data: Any, source: str = "<string>") -> SearchSpace:
    """Validate a parsed space document and build the :class:`SearchSpace`."""
    top = _Reader(source, "", data, 1)
    top.check_keys(_TOP_KEYS, _TOP_OPTIONAL)
    name = top.get("name")
    if not isinstance(name, str) or not name or len(name) > 64:
        raise top.fail("name", "must be a non-empty string of at most 64 characters")
    description = top.get("description", "")
    if not isinstance(description, str):
        raise top.fail("description", "must be a string")
    net = _Reader(source, "network.", top.get("network"), top.key_line("network"))
    net.check_keys(_NET_KEYS, _NET_OPTIONAL)
    per_stage = net.get("ghost_per_stage", False)
    if not isinstance(per_stage, bool):
        raise net.fail("ghost_per_stage", f"{per_stage!r} must be true or false")
    fixed: dict[str, Any] = {}
    for key, check, what, default in (
        ("stem_chs", _is_int(1, 8192), "a channel count", 16),
        ("head_chs", _is_int(1, 8192), "a channel count", 1280),
        ("dropout", _is_num(0.0, 0.999), "a probability in [0, 1)", 0.2),
        ("act", lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}", "relu"),
    ):
        value = net.get(key, default)
        if isinstance(value, list) or not check(value):
            raise net.fail(key, f"{value!r} must be {what} (fixed, not searched)")
        fixed[key] = value
    raw_stages = top.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise top.fail("stages", "must be a non-empty list of stages")
    if len(raw_stages) > 16:
        raise top.fail("stages", f"{len(raw_stages)} stages; at most 16")
    stages = tuple(
        _read_stage(source, si, rs, getattr(raw_stages, "line", top.line)) for si, rs in enumerate(raw_stages)
    )
    if sum(max(st.depth) for st in stages) > 64:
        raise top.fail("stages", "more than 64 blocks at the deepest; at most 64")
    clash = _exp_clash(stages, net.get("stem_chs", 16))
    if clash:
        raise top.fail("stages", clash)
    grid = _read_width(net)
    for si, st in enumerate(stages):
        if True in st.g_ghost:
            for n in (n for n in st.depth if n >= 3):
                why = gg_problem(st.blocks[:n], st.cheap_ratio, grid.values())
                if why:
                    raise top.fail("stages", f"stage {si}: {why}")
    space = SearchSpace(
        name=name,
        description=description,
        width=_read_width(net),
        s=net.choices("s", _is_int(2, 8), "a Ghost ratio in 2..8"),
        d=net.choices("d", _odd_kernel, "an odd kernel size in 1..11"),
        ghost_per_stage=per_stage,
        stages=stages,
        stem_chs=fixed["stem_chs"],
        head_chs=fixed["head_chs"],
        dropout=float(fixed["dropout"]),
        act=fixed["act"],
        source=source,
    )
    reference = _read_reference(top)
    if reference is not None:
        # The reference is scaled in width by the search, so only its table must be a point.
        snapped = space.width.values()[0] if space.width.snap(reference.width) is None else reference.width
        try:
            space.config_to_params(reference.with_width(snapped))
        except SpaceError as exc:
            raise top.fail("reference", str(exc)) from None
        object.__setattr__(space, "reference", reference)
    return space


# --------------------------------------------------------------------------------------------
# finding spaces


def builtin_space_dir() -> Path:
    """The folder of shipped spaces inside the installed package."""
    return Path(str(resources.files("ghostnas") / "search_spaces"))


def list_spaces() -> list[str]:
    """Names of the shipped search spaces, sorted."""
    folder = builtin_space_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def loads_space(text: str, source: str = "<string>") -> SearchSpace:
    """Parse and validate a space from YAML text."""
    if len(text) > MAX_SPACE_BYTES:
        raise SpaceError(f"{source}: over {MAX_SPACE_BYTES} bytes; not a search space")
    data = parse_yaml(text, source, SpaceError)
    if data is None:
        raise SpaceError(f"{source}: the file is empty; expected a search space")
    try:
        return space_from_dict(data, source)
    except ConfigError as exc:
        raise SpaceError(f"{source}: {exc}") from None


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """Load a shipped space by name (``ghostnet_v1``) or any space file by path.

    Raises:
        SpaceError: unknown name, unreadable file, or invalid content (the message names the
            line and key).
    """
    text = os.fspath(name_or_path)
    path = builtin_space_dir() / f"{text}.yaml"
    if text in list_spaces():
        pass
    elif text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file():
        path = Path(text)
    else:
        raise SpaceError(
            f"unknown search space {text!r}; choose one of {', '.join(list_spaces())} or give a path to a .yaml file"
        )
    body = read_user_text(path, MAX_SPACE_BYTES, "search-space file", SpaceError)
    return loads_space(body, str(path))


def space_digest(space: SearchSpace) -> str:
    """SHA-256 of what the space can build (its fields as canonical JSON, not its file's text).

    Recorded in ``run.json`` and in exported models' provenance: a space edited after a run
    (another width grid, block choices, reference) gets another digest, while reformatting or
    commenting its YAML file does not.
    """
    data = _digest_data(space)
    data.pop("source", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Record fields added after digests were first recorded, with their defaults: left out at the
# default, so that the digest of everything that existed before stays the same.
_ADDED_LATER: dict[str, Any] = {"head": "ghostnet", "g_ghost": (False,), "cheap_ratio": (0.5,)}
_MISSING = object()


def _digest_data(obj: Any) -> Any:
    """``dataclasses.asdict`` plus each record's ``kind`` where it is not the default, so spaces
    and references written before block kinds keep their digests (and runs keep resuming)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {
            f.name: _digest_data(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if _ADDED_LATER.get(f.name, _MISSING) != getattr(obj, f.name)
        }
        kind = getattr(type(obj), "kind", None)
        if isinstance(kind, str) and kind not in (DEFAULT_BLOCK_KIND, "sequential"):
            out["kind"] = kind
        return out
    if isinstance(obj, (list, tuple)):
        return [_digest_data(x) for x in obj]
    return obj


def describe_space(name_or_path: str) -> dict[str, Any]:
    """What a space contains, as a JSON-ready dict (``ghostnas space describe`` prints it): its
    size, parameters and choices, and the exact range of MACs and params it spans at 224x224 and
    1000 classes, with its reference network's cost."""

    space = load_space(name_or_path)
    rng = space.cost_range(224, 1000)
    info: dict[str, Any] = {
        "name": space.name,
        "source": space.source,
        "description": space.description,
        "size": space.size(),
        "parameters": space.parameter_names(),
        "width": list(space.width.values()),
        "s": list(space.s),
        "d": list(space.d),
        "ghost_per_stage": space.ghost_per_stage,
        "depth": [list(st.depth) for st in space.stages],
        "block_kinds": sorted({bs.kind for st in space.stages for bs in st.blocks}),
        "g_ghost_stages": [si for si, st in enumerate(space.stages) if True in st.g_ghost],
        "macs": [rng.min_macs, rng.max_macs],
        "params": [rng.min_params, rng.max_params],
        "input_size": 224,
        "num_classes": 1000,
    }
    if space.reference is not None:
        cost = count_cost(space.reference)
        info["reference"] = {"arch": space.reference.short(), "macs": cost.macs, "params": cost.params}
    return info
