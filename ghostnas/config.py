"""Architecture as data: frozen, validated, JSON-serialisable GhostNet configs.

A :class:`GhostNetConfig` is the only thing the model builder and the cost model take. It holds
the paper's cfg table (per block: depthwise kernel ``k``, absolute expansion width ``exp``, output
channels ``c``, SE ratio, stride), grouped into stages, plus network-wide settings: width
multiplier, Ghost ratio ``s`` and cheap-operation kernel ``d`` (overridable per stage and per
block), stem and head widths, dropout and activation name.

Channel bookkeeping (width scaling, make-divisible rounding, which blocks get an identity
shortcut) lives in exactly one place, :func:`layout`, which both the torch builder and the
closed-form cost model read. That is what keeps the two in exact agreement.

Every config is validated when constructed, so an invalid one cannot exist; :func:`config_from_dict`
adds the JSON path of the offending field to the message.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghostnas._io import atomic_write_text, read_user_text
from ghostnas.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "BlockConfig",
    "GhostNetConfig",
    "Layout",
    "ResolvedBlock",
    "StageConfig",
    "config_from_dict",
    "config_to_dict",
    "layout",
    "load_config",
    "loads_config",
    "make_divisible",
    "save_config",
]

# Limits that catch typos and hostile input ("c": 1e9) before anything allocates memory. They are
# far beyond any mobile network (GhostNet 1.3x peaks at 1248 channels).
MAX_CHANNELS = 8192
MAX_RESOLVED_CHANNELS = 16384
MAX_KERNEL = 11
MAX_RATIO = 8
MAX_BLOCKS = 64
MAX_STAGES = 16
MAX_WIDTH = 8.0
MAX_CONFIG_BYTES = 1 << 20

ACTIVATIONS = ("relu", "relu6", "hard_swish", "silu", "gelu")


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never below ``min_value`` (default
    ``divisor``), adding one step if rounding down lost more than 10% of ``v``.

    This is the rounding of the GhostNet and MobileNet reference code; the published parameter
    and MAC counts depend on it.
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# --------------------------------------------------------------------------------------------
# field checks shared by construction and loading


def _fail(name: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{name} = {value!r}: {why}")


def _int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, f"must be an integer in [{lo}, {hi}]")
    if not lo <= value <= hi:
        raise _fail(name, value, f"must be in [{lo}, {hi}]")


def _odd_kernel(name: str, value: Any) -> None:
    _int(name, value, 1, MAX_KERNEL)
    if value % 2 == 0:
        raise _fail(name, value, f"kernel must be odd (1, 3, 5, ... {MAX_KERNEL})")


def _ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, f"Ghost ratio s must be an integer in [2, {MAX_RATIO}]")
    if not 2 <= value <= MAX_RATIO:
        raise _fail(name, value, f"Ghost ratio s must be in [2, {MAX_RATIO}] (s=1 is a plain conv)")


def _float(name: str, value: Any, lo: float, hi: float, *, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, value, "must be a finite number")
    if value < lo or value > hi or (hi_open and value == hi):
        bracket = ")" if hi_open else "]"
        raise _fail(name, value, f"must be in [{lo}, {hi}{bracket}")


def _positive_float(name: str, value: Any, hi: float) -> None:
    _float(name, value, 0.0, hi)
    if value <= 0:
        raise _fail(name, value, f"must be > 0 and at most {hi}")


# --------------------------------------------------------------------------------------------
# the config records


@dataclass(frozen=True)
class BlockConfig:
    """One Ghost bottleneck, one row of the GhostNet cfg table.

    Channel counts are the table's values before the width multiplier; the builder scales them
    and rounds with :func:`make_divisible`.

    Attributes:
        k: Depthwise kernel of the stride-2 conv and of the projection shortcut (odd).
        exp: Expansion (hidden) width, an absolute channel count as in the paper's ``t`` column.
        c: Output channels.
        se_ratio: Squeeze-excite reduction relative to ``exp``; 0 disables SE.
        stride: 1 or 2.
        s: Ghost ratio override for this block (None: inherit from stage or network).
        d: Cheap-operation kernel override for this block (None: inherit).
    """

    k: int
    exp: int
    c: int
    se_ratio: float = 0.0
    stride: int = 1
    s: int | None = None
    d: int | None = None

    def __post_init__(self) -> None:
        _odd_kernel("k", self.k)
        _int("exp", self.exp, 1, MAX_CHANNELS)
        _int("c", self.c, 1, MAX_CHANNELS)
        _float("se_ratio", self.se_ratio, 0.0, 1.0)
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise _fail("stride", self.stride, "stride must be 1 or 2")
        if self.s is not None:
            _ratio("s", self.s)
        if self.d is not None:
            _odd_kernel("d", self.d)
        # JSON gives 0 for 0.0: normalise so that equality and round-trips are exact.
        object.__setattr__(self, "se_ratio", float(self.se_ratio))

    def short(self) -> str:
        """Compact form for logs: ``k:exp>c``, ``/2`` for stride 2, ``se`` when SE is on."""
        text = f"{self.k}:{self.exp}>{self.c}"
        if self.stride == 2:
            text += "/2"
        if self.se_ratio > 0:
            text += "se" if self.se_ratio == 0.25 else f"se{self.se_ratio:g}"
        return text + _override_tag(self.s, self.d)


@dataclass(frozen=True)
class StageConfig:
    """A run of blocks; per-stage feature maps are taken at the end of each stage.

    Attributes:
        blocks: The stage's bottlenecks, in order.
        s: Ghost ratio override for the whole stage (None: inherit from the network).
        d: Cheap-operation kernel override for the whole stage (None: inherit).
    """

    blocks: tuple[BlockConfig, ...]
    s: int | None = None
    d: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise _fail("blocks", [], "a stage needs at least one block")
        if not all(isinstance(b, BlockConfig) for b in self.blocks):
            raise _fail("blocks", self.blocks, "must be BlockConfig objects")
        if self.s is not None:
            _ratio("s", self.s)
        if self.d is not None:
            _odd_kernel("d", self.d)


@dataclass(frozen=True)
class GhostNetConfig:
    """A whole GhostNet: stem, stages of Ghost bottlenecks, and head.

    ``num_classes`` and ``in_chans`` are not here: they belong to the task, not the architecture,
    and are given to :func:`ghostnas.create_model`.

    Attributes:
        stages: The stages, each a tuple of blocks.
        width: Width multiplier applied to stem, block and final-conv channels (not to the head).
        s: Ghost ratio: the primary conv makes ``ceil(out / s)`` channels, cheap ops the rest.
        d: Kernel of the cheap depthwise operation in every Ghost module.
        stem_chs: Stem conv output channels, before the width multiplier.
        head_chs: Channels of the 1x1 conv after global pooling (1280 in GhostNet).
        dropout: Dropout before the classifier, as a probability.
        act: Activation name, used wherever GhostNet uses ReLU (the SE gate stays hard-sigmoid).
    """

    stages: tuple[StageConfig, ...]
    width: float = 1.0
    s: int = 2
    d: int = 3
    stem_chs: int = 16
    head_chs: int = 1280
    dropout: float = 0.2
    act: str = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise _fail("stages", [], "a network needs at least one stage")
        if len(self.stages) > MAX_STAGES:
            raise _fail("stages", f"<{len(self.stages)} stages>", f"at most {MAX_STAGES} stages")
        if not all(isinstance(st, StageConfig) for st in self.stages):
            raise _fail("stages", self.stages, "must be StageConfig objects")
        n_blocks = sum(len(st.blocks) for st in self.stages)
        if n_blocks > MAX_BLOCKS:
            raise _fail("stages", f"<{n_blocks} blocks>", f"at most {MAX_BLOCKS} blocks in all")
        _positive_float("width", self.width, MAX_WIDTH)
        _ratio("s", self.s)
        _odd_kernel("d", self.d)
        _int("stem_chs", self.stem_chs, 1, MAX_CHANNELS)
        _int("head_chs", self.head_chs, 1, MAX_CHANNELS)
        _float("dropout", self.dropout, 0.0, 1.0, hi_open=True)
        if self.act not in ACTIVATIONS:
            raise _fail("act", self.act, f"unknown activation; choose one of {', '.join(ACTIVATIONS)}")
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "dropout", float(self.dropout))
        widest = max(
            make_divisible(ch * self.width) for st in self.stages for b in st.blocks for ch in (b.exp, b.c)
        )
        if widest > MAX_RESOLVED_CHANNELS:
            raise _fail(
                "width",
                self.width,
                f"makes a layer {widest} channels wide (limit {MAX_RESOLVED_CHANNELS}); lower it",
            )

    @property
    def num_blocks(self) -> int:
        return sum(len(st.blocks) for st in self.stages)

    def blocks(self) -> Iterator[BlockConfig]:
        """All blocks in order, across stages."""
        for st in self.stages:
            yield from st.blocks

    def with_width(self, width: float) -> GhostNetConfig:
        """The same table at another width multiplier."""
        return dataclasses.replace(self, width=float(width))

    def short(self) -> str:
        """One line for logs: network settings, then the blocks of each stage separated by ``|``."""
        head = f"w{self.width:g} s{self.s} d{self.d} stem{self.stem_chs} head{self.head_chs}" + (
            "" if self.act == "relu" else f" {self.act}"
        )
        stages = " | ".join(
            (_override_tag(st.s, st.d) + " " if st.s or st.d else "") + " ".join(b.short() for b in st.blocks)
            for st in self.stages
        )
        return f"{head} || {stages}"

    def __str__(self) -> str:
        return self.short()


def _override_tag(s: int | None, d: int | None) -> str:
    tags = ([f"s{s}"] if s is not None else []) + ([f"d{d}"] if d is not None else [])
    return f"[{','.join(tags)}]" if tags else ""


# --------------------------------------------------------------------------------------------
# resolved layout: the one place that decides channel widths


@dataclass(frozen=True)
class ResolvedBlock:
    """A block with every channel count and inherited setting made concrete."""

    stage: int
    index: int
    in_chs: int
    mid_chs: int
    out_chs: int
    k: int
    stride: int
    se_ratio: float
    s: int
    d: int

    @property
    def se_chs(self) -> int:
        """Channels of the SE bottleneck (0 without SE)."""
        return make_divisible(self.mid_chs * self.se_ratio, 4) if self.se_ratio > 0 else 0

    @property
    def identity_shortcut(self) -> bool:
        """GhostNet keeps an identity shortcut only when the shape is unchanged."""
        return self.in_chs == self.out_chs and self.stride == 1


@dataclass(frozen=True)
class Layout:
    """Concrete channel widths of a network, derived from a config by :func:`layout`."""

    stem_chs: int
    blocks: tuple[ResolvedBlock, ...]
    stage_ends: tuple[int, ...]
    final_chs: int
    head_chs: int


@functools.lru_cache(maxsize=4096)
def layout(cfg: GhostNetConfig) -> Layout:
    """Resolve widths and inherited ``s``/``d`` the way the GhostNet reference code does.

    Stem, block expansion and output widths are ``make_divisible(value * width, 4)``; the 1x1
    conv after the last stage widens to ``make_divisible(last_block.exp * width, 4)``; the head
    conv is not width-scaled.
    """
    stem = make_divisible(cfg.stem_chs * cfg.width, 4)
    in_chs = stem
    blocks: list[ResolvedBlock] = []
    ends: list[int] = []
    for si, st in enumerate(cfg.stages):
        for bi, b in enumerate(st.blocks):
            out_chs = make_divisible(b.c * cfg.width, 4)
            blocks.append(
                ResolvedBlock(
                    stage=si,
                    index=bi,
                    in_chs=in_chs,
                    mid_chs=make_divisible(b.exp * cfg.width, 4),
                    out_chs=out_chs,
                    k=b.k,
                    stride=b.stride,
                    se_ratio=b.se_ratio,
                    s=_first(b.s, st.s, cfg.s),
                    d=_first(b.d, st.d, cfg.d),
                )
            )
            in_chs = out_chs
        ends.append(len(blocks) - 1)
    last_exp = cfg.stages[-1].blocks[-1].exp
    return Layout(
        stem_chs=stem,
        blocks=tuple(blocks),
        stage_ends=tuple(ends),
        final_chs=make_divisible(last_exp * cfg.width, 4),
        head_chs=cfg.head_chs,
    )


def _first(*values: int | None) -> int:
    for v in values:
        if v is not None:
            return v
    raise AssertionError("the network-wide value is never None")


# --------------------------------------------------------------------------------------------
# dict / JSON round trip

_BLOCK_REQUIRED = ("k", "exp", "c")
_BLOCK_OPTIONAL = ("se_ratio", "stride", "s", "d")
_STAGE_KEYS = ("blocks", "s", "d")
_NET_REQUIRED = ("stages",)
_NET_OPTIONAL = ("width", "s", "d", "stem_chs", "head_chs", "dropout", "act")
# An envelope lets exported configs carry provenance next to the architecture.
_ENVELOPE_KEYS = ("config", "meta")


def config_to_dict(cfg: GhostNetConfig) -> dict[str, Any]:
    """Plain dict of JSON types; ``config_from_dict(config_to_dict(c)) == c``.

    Per-stage and per-block overrides that are unset are left out.
    """

    def drop_none(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None}

    out: dict[str, Any] = {k: getattr(cfg, k) for k in _NET_OPTIONAL}
    out["stages"] = [
        drop_none(
            {
                "s": st.s,
                "d": st.d,
                "blocks": [drop_none(dataclasses.asdict(b)) for b in st.blocks],
            }
        )
        for st in cfg.stages
    ]
    return out


def _check_keys(where: str, data: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    allowed = required + optional
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")


def _build(where: str, cls: type, kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}" if where else str(exc)) from None


def _list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def config_from_dict(data: Any) -> GhostNetConfig:
    """Validate a plain dict (as read from JSON or YAML) and build the config.

    Accepts either a bare config or an envelope ``{"config": {...}, "meta": {...}}`` as written
    by ``ghostnas export``. Errors name the JSON path, the bad value and what is allowed.
    """
    if isinstance(data, Mapping) and "config" in data:
        _check_keys("config file", data, ("config",), ("meta",))
        data = data["config"]
    _check_keys("config", data, _NET_REQUIRED, _NET_OPTIONAL)
    stages = []
    raw_stages = _list("stages", data["stages"])
    if len(raw_stages) > MAX_STAGES:
        raise ConfigError(f"stages: {len(raw_stages)} stages; at most {MAX_STAGES} are allowed")
    for si, raw_stage in enumerate(raw_stages):
        where = f"stages[{si}]"
        _check_keys(where, raw_stage, ("blocks",), ("s", "d"))
        raw_blocks = _list(f"{where}.blocks", raw_stage["blocks"])
        if len(raw_blocks) > MAX_BLOCKS:
            raise ConfigError(f"{where}.blocks: at most {MAX_BLOCKS} blocks are allowed")
        blocks = []
        for bi, raw_block in enumerate(raw_blocks):
            bwhere = f"{where}.blocks[{bi}]"
            _check_keys(bwhere, raw_block, _BLOCK_REQUIRED, _BLOCK_OPTIONAL)
            blocks.append(_build(bwhere, BlockConfig, dict(raw_block)))
        stage_kwargs = {k: raw_stage[k] for k in ("s", "d") if k in raw_stage}
        stages.append(_build(where, StageConfig, {"blocks": tuple(blocks), **stage_kwargs}))
    net_kwargs = {k: data[k] for k in _NET_OPTIONAL if k in data}
    return _build("", GhostNetConfig, {"stages": tuple(stages), **net_kwargs})


def _reject_constant(name: str) -> Any:
    raise ConfigError(f"JSON constant {name} is not allowed in a config; use a finite number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ConfigError(f"duplicate key {k!r} in JSON object; keep one")
        out[k] = v
    return out


def parse_json(text: str, source: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, bounded size and depth."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: file is over {MAX_CONFIG_BYTES} bytes; not a config")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise ConfigError(f"{source}: JSON nested too deeply") from None


def loads_config(text: str, source: str = "<string>") -> GhostNetConfig:
    """Parse and validate a config from JSON text."""
    data = parse_json(text, source)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> GhostNetConfig:
    """Read and validate a config JSON file (bare or with an export envelope)."""
    path = Path(path)
    text = read_user_text(path, MAX_CONFIG_BYTES, "config file", ConfigError)
    return loads_config(text, str(path))


def save_config(cfg: GhostNetConfig, path: str | Path, meta: Mapping[str, Any] | None = None) -> None:
    """Write a config as JSON, atomically (write to a temp file, then rename).

    With ``meta`` the file is an envelope ``{"config": ..., "meta": ...}``.
    """
    body: dict[str, Any] = config_to_dict(cfg)
    if meta is not None:
        body = {"config": body, "meta": dict(meta)}
    atomic_write_text(path, json.dumps(body, indent=2) + "\n")
