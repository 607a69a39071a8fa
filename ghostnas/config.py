"""Architecture as data: frozen, validated, JSON-serialisable GhostNet configs.

A :class:`GhostNetConfig` is the only thing the model builder and the cost model take. It holds
the paper's cfg table (per block: depthwise kernel ``k``, absolute expansion width ``exp``, output
channels ``c``, SE ratio, stride), grouped into stages, plus network-wide settings: width
multiplier, Ghost ratio ``s`` and cheap-operation kernel ``d`` (overridable per stage and per
block), stem and head widths, dropout and activation name.

Channel bookkeeping (width scaling, make-divisible rounding, which blocks get an identity
shortcut) lives in exactly one place, :func:`layout`, which both the torch builder and the
closed-form cost model read. That is what keeps the two in exact agreement.

Blocks are records of a *block kind* (:mod:`ghostnas.blocks`): the GhostNet V1 bottleneck
(:class:`BlockConfig`, kind ``ghost``) and the kinds added beside it. A block's JSON object names
its kind with ``"kind"``; without it the block is a ``ghost`` bottleneck, so configs written
before kinds existed read unchanged. This module never names a kind beyond that default.

Every config is validated when constructed, so an invalid one cannot exist; :func:`config_from_dict`
adds the JSON path of the offending field to the message.

:class:`BuildSpec` is what, besides the architecture, fixes a built network (input size, input
channels, classes, stem stride); the model factory, the cost model, latency, ONNX export and the
evaluators all take one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ghostnas._io import atomic_write_text, read_user_text
from ghostnas.blocks.base import (
    ACTIVATIONS,
    MAX_CHANNELS,
    BlockRecord,
    Context,
    Counter,
    ResolvedBlockBase,
    ResolvedStageBase,
    block_kind,
    check_float,
    check_int,
    check_keys,
    check_odd_kernel,
    check_ratio,
    conv_out_size,
    fail,
    make_divisible,
    register_stage_kind,
    stage_kind,
)
from ghostnas.blocks.ghost import BlockConfig, ResolvedBlock, override_tag
from ghostnas.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "MAX_INPUT_SIZE",
    "BlockConfig",
    "BuildSpec",
    "GhostNetConfig",
    "Layout",
    "ResolvedBlock",
    "SequentialStage",
    "StageConfig",
    "block_from_dict",
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
MAX_RESOLVED_CHANNELS = 16384
MAX_BLOCKS = 64
MAX_STAGES = 16
MAX_WIDTH = 8.0
MAX_CONFIG_BYTES = 1 << 20
MAX_INPUT_SIZE = 4096

_fail = fail
_int = check_int
_odd_kernel = check_odd_kernel
_ratio = check_ratio
_float = check_float


def _positive_float(name: str, value: Any, hi: float) -> None:
    _float(name, value, 0.0, hi)
    if value <= 0:
        raise _fail(name, value, f"must be > 0 and at most {hi}")


# --------------------------------------------------------------------------------------------
# the config records


@dataclass(frozen=True)
class StageConfig:
    """A run of blocks applied in sequence; per-stage feature maps are taken at its end.

    Attributes:
        blocks: The stage's bottlenecks, in order.
        s: Ghost ratio override for the whole stage (None: inherit from the network).
        d: Cheap-operation kernel override for the whole stage (None: inherit).
    """

    kind: ClassVar[str] = "sequential"

    blocks: tuple[BlockRecord, ...]
    s: int | None = None
    d: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, tuple):
            object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise _fail("blocks", [], "a stage needs at least one block")
        if not all(isinstance(b, BlockRecord) for b in self.blocks):
            raise _fail("blocks", self.blocks, "must be block records (BlockConfig or another kind)")
        if self.s is not None:
            _ratio("s", self.s)
        if self.d is not None:
            _odd_kernel("d", self.d)
        self.check_blocks()

    def check_blocks(self) -> None:
        """Kind-specific checks of the block list (none for a sequential stage)."""

    def resolve(self, ctx: Context, in_chs: int, stage: int) -> ResolvedStageBase:
        """Resolve every block; a sequential stage chains them."""
        blocks = []
        for bi, b in enumerate(self.blocks):
            rb = b.resolve(ctx, in_chs, stage, bi)
            blocks.append(rb)
            in_chs = rb.out_chs
        return SequentialStage(tuple(blocks))

    def short_tag(self) -> str:
        """Prefix for :meth:`GhostNetConfig.short` (empty for a sequential stage)."""
        return ""


@dataclass(frozen=True)
class SequentialStage(ResolvedStageBase):
    """Blocks run one after the other: the GhostNet stage."""

    kind: ClassVar[str] = "sequential"

    blocks: tuple[ResolvedBlockBase, ...]

    def count(self, counter: Counter, size: int, training: bool = False) -> None:
        for rb in self.blocks:
            (rb.count_training if training else rb.count)(counter, size)
            size = rb.out_size(size)

    def build(self, act: str) -> Any:
        from torch import nn

        return nn.Sequential(*(rb.build(act) for rb in self.blocks))

    def parts(self, size: int, batch: int, act: str) -> list[tuple[str, int, int, Callable[[], Any]]]:
        out = []
        for rb in self.blocks:
            out.append((rb.latency_key(size, batch, act), rb.in_chs, size, lambda rb=rb: rb.build(act)))
            size = rb.out_size(size)
        return out


register_stage_kind("sequential", StageConfig)

HEADS = ("ghostnet", "pool_fc")


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
        head: ``ghostnet`` (1x1 conv + BN + act to the last block's expansion width, global
            pooling, 1x1 conv to ``head_chs`` + act, dropout, linear) or ``pool_fc`` (global
            pooling, dropout, linear: the RegNet/ResNet head; ``head_chs`` is not used).
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
    head: str = "ghostnet"

    def __post_init__(self) -> None:
        if not isinstance(self.stages, tuple):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise _fail("stages", [], "a network needs at least one stage")
        if len(self.stages) > MAX_STAGES:
            raise _fail("stages", f"<{len(self.stages)} stages>", f"at most {MAX_STAGES} stages")
        if not all(isinstance(st, StageConfig) for st in self.stages):
            raise _fail("stages", self.stages, "must be StageConfig objects (or another stage kind)")
        if self.head not in HEADS:
            raise _fail("head", self.head, f"unknown head; choose one of {', '.join(HEADS)}")
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
            make_divisible(ch * self.width)
            for st in self.stages
            for b in st.blocks
            for ch in b.scaled_widths()
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

    def blocks(self) -> Iterator[BlockRecord]:
        """All blocks in order, across stages."""
        for st in self.stages:
            yield from st.blocks

    def with_width(self, width: float) -> GhostNetConfig:
        """The same table at another width multiplier."""
        return dataclasses.replace(self, width=float(width))

    def short(self) -> str:
        """One line for logs: network settings, then the blocks of each stage separated by ``|``."""
        head = f"w{self.width:g} s{self.s} d{self.d} stem{self.stem_chs} " + (
            f"head{self.head_chs}" if self.head == "ghostnet" else self.head
        )
        head += "" if self.act == "relu" else f" {self.act}"
        stages = " | ".join(
            st.short_tag()
            + (override_tag(st.s, st.d) + " " if st.s or st.d else "")
            + " ".join(b.short() for b in st.blocks)
            for st in self.stages
        )
        return f"{head} || {stages}"

    def __str__(self) -> str:
        return self.short()


# --------------------------------------------------------------------------------------------
# resolved layout: the one place that decides channel widths


@dataclass(frozen=True)
class BuildSpec:
    """What, besides the architecture, fixes a built network: decided once, passed everywhere.

    Attributes:
        input_size: Square input side in pixels (the cost model counts MACs at this size).
        in_chans: Input image channels.
        num_classes: Classifier outputs; 0 builds a feature extractor without classifier.
        stem_stride: 2 as in the paper; 1 keeps small inputs (28x28, 32x32) from collapsing to
            1x1 before the last stage.
    """

    input_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    stem_stride: int = 2

    def __post_init__(self) -> None:
        _int("input_size", self.input_size, 1, MAX_INPUT_SIZE)
        _int("in_chans", self.in_chans, 1, 1_000_000)
        _int("num_classes", self.num_classes, 0, 1_000_000)
        if self.stem_stride not in (1, 2) or isinstance(self.stem_stride, bool):
            raise _fail("stem_stride", self.stem_stride, "must be 1 or 2")

    def build_args(self) -> dict[str, int]:
        """The build besides the input size, as run folders and export metadata record it."""
        return {"num_classes": self.num_classes, "in_chans": self.in_chans, "stem_stride": self.stem_stride}

    def describe(self) -> str:
        """``224x224x3, 1000 classes, stem stride 2``: the convention, for every output."""
        return (
            f"{self.input_size}x{self.input_size}x{self.in_chans}, {self.num_classes} classes, "
            f"stem stride {self.stem_stride}"
        )

    @classmethod
    def small_images(cls, size: int, in_chans: int, num_classes: int) -> BuildSpec:
        """The build the evaluators train: stem stride 1, so 28x28 and 32x32 images keep a
        spatial map through the last stage."""
        return cls(input_size=size, in_chans=in_chans, num_classes=num_classes, stem_stride=1)


@dataclass(frozen=True)
class Layout:
    """Concrete channel widths of a network, derived from a config by :func:`layout`.

    ``blocks`` holds each kind's resolved record; cost, build and latency keys are methods of
    those records, so the walks over a layout never name a kind.
    """

    stem_chs: int
    blocks: tuple[ResolvedBlockBase, ...]
    stage_ends: tuple[int, ...]
    final_chs: int
    head_chs: int
    stages: tuple[ResolvedStageBase, ...] = ()
    head: str = "ghostnet"

    def sizes(self, spec: BuildSpec) -> tuple[tuple[int, ...], int]:
        """Spatial side each block sees, and the side after the last block, for ``spec``."""
        size = conv_out_size(spec.input_size, 3, spec.stem_stride)
        sides = []
        for rb in self.blocks:
            sides.append(size)
            size = rb.out_size(size)
        return tuple(sides), size


@functools.lru_cache(maxsize=4096)
def layout(cfg: GhostNetConfig) -> Layout:
    """Resolve widths and inherited ``s``/``d`` the way the GhostNet reference code does.

    Stem, block expansion and output widths are ``make_divisible(value * width, 4)``; the 1x1
    conv after the last stage widens to ``make_divisible(last_block.tail_chs * width, 4)`` (the
    expansion width for Ghost bottlenecks); the head conv is not width-scaled.
    """
    stem = make_divisible(cfg.stem_chs * cfg.width, 4)
    in_chs = stem
    blocks: list[ResolvedBlockBase] = []
    stages: list[ResolvedStageBase] = []
    ends: list[int] = []
    for si, st in enumerate(cfg.stages):
        ctx = Context(
            width=cfg.width, s=st.s if st.s is not None else cfg.s, d=st.d if st.d is not None else cfg.d
        )
        rs = st.resolve(ctx, in_chs, si)
        stages.append(rs)
        blocks.extend(rs.blocks)
        in_chs = rs.out_chs
        ends.append(len(blocks) - 1)
    final = (
        make_divisible(cfg.stages[-1].blocks[-1].tail_chs * cfg.width, 4)
        if cfg.head == "ghostnet"
        else in_chs
    )
    return Layout(
        stem_chs=stem,
        blocks=tuple(blocks),
        stage_ends=tuple(ends),
        final_chs=final,
        head_chs=cfg.head_chs,
        stages=tuple(stages),
        head=cfg.head,
    )


# --------------------------------------------------------------------------------------------
# dict / JSON round trip

DEFAULT_BLOCK_KIND = "ghost"
_STAGE_KEYS = ("blocks", "s", "d")
_NET_REQUIRED = ("stages",)
_NET_OPTIONAL = ("width", "s", "d", "stem_chs", "head_chs", "dropout", "act", "head")
# An envelope lets exported configs carry provenance next to the architecture.
_ENVELOPE_KEYS = ("config", "meta")


def config_to_dict(cfg: GhostNetConfig) -> dict[str, Any]:
    """Plain dict of JSON types; ``config_from_dict(config_to_dict(c)) == c``.

    Per-stage and per-block overrides that are unset are left out.
    """
    if not isinstance(cfg, GhostNetConfig) and callable(getattr(cfg, "to_dict", None)):
        return dict(cfg.to_dict())  # another search's candidate (a detector) says its own JSON

    def drop_none(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None}

    out: dict[str, Any] = {k: getattr(cfg, k) for k in _NET_OPTIONAL if k != "head" or cfg.head != "ghostnet"}
    out["stages"] = [
        drop_none(
            {
                "kind": None if st.kind == "sequential" else st.kind,
                "s": st.s,
                "d": st.d,
                "blocks": [_block_to_dict(b) for b in st.blocks],
            }
        )
        for st in cfg.stages
    ]
    return out


def _block_to_dict(b: BlockRecord) -> dict[str, Any]:
    """A block's JSON object; ``kind`` is written for every kind but the default."""
    body = b.to_dict()
    return body if b.kind == DEFAULT_BLOCK_KIND else {"kind": b.kind, **body}


def block_from_dict(where: str, raw: Any) -> BlockRecord:
    """One block's JSON object to its kind's record (``kind`` defaults to ``ghost``)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected an object, got {type(raw).__name__}")
    kind = block_kind(raw.get("kind", DEFAULT_BLOCK_KIND), f"{where}.kind")
    body = {k: v for k, v in raw.items() if k != "kind"}
    try:
        return kind.record.from_dict(where, body)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(where) else f"{where}.{text}") from None


_check_keys = check_keys


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
        _check_keys(where, raw_stage, ("blocks",), ("s", "d", "kind"))
        stage_cls = stage_kind(raw_stage.get("kind", "sequential"), f"{where}.kind")
        raw_blocks = _list(f"{where}.blocks", raw_stage["blocks"])
        if len(raw_blocks) > MAX_BLOCKS:
            raise ConfigError(f"{where}.blocks: at most {MAX_BLOCKS} blocks are allowed")
        blocks = []
        for bi, raw_block in enumerate(raw_blocks):
            blocks.append(block_from_dict(f"{where}.blocks[{bi}]", raw_block))
        stage_kwargs = {k: raw_stage[k] for k in ("s", "d") if k in raw_stage}
        stages.append(_build(where, stage_cls, {"blocks": tuple(blocks), **stage_kwargs}))
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
