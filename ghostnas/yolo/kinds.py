"""Which ghostnas block (or stage) fills a C2f's bottleneck slots, and the backbone's taps, as data.

A C2f (Ultralytics' CSP block) runs ``n`` bottlenecks of width ``c`` that keep ``c`` channels and
the spatial size. Any ghostnas block kind whose record can be made with ``in = out = c`` and
stride 1 fits there, and so does a G-Ghost stage of such blocks. :class:`C2fBlockSpec` turns a
kind name and options (from the CLI's ``KIND[:key=value,...]`` or a YAML row's dict) into the
model library's own records, resolved at width ``c``: the C2f then builds and counts exactly
the library's blocks (:mod:`ghostnas.blocks`), never copies of them.

Defaults follow what the seed tables used (the official GhostBottleneck with mid width = ``c``,
kernel 3, no SE, ReLU; the RegNet bottleneck with group width 1, i.e. a depthwise 3x3), and are
chosen by the record's *fields*, not by kind name, so a new Ghost-family kind fits unchanged:

* a record with ``exp`` gets ``exp = make_divisible(e * c, 4)`` (option ``e``, default 1.0);
* a record with ``k`` gets ``k = 3``; one with ``group_width`` gets ``group_width = 1``;
* option ``dfc = false`` on a kind without a ``dfc`` field (``ghost_v2``) gives the V1 Ghost
  bottleneck, as the ``ghost_v2`` search space's ``dfc: false`` does;
* ``act`` (default ``relu``) is the activation inside the blocks;
* ``g_ghost`` (a stage kind) takes ``block`` (inner kind, default ``regnet``), ``depth`` (deep
  blocks, default 1), ``cheap_ratio`` (default 0.5) and passes other options to its blocks.

:func:`backbone_taps` decides where a ghostnas network is tapped for a detector: the *last*
tensor at strides 8, 16 and 32 (P3, P4, P5), where the last one at stride 32 is the final 1x1
conv of a GhostNet head (960 channels for ghostnet_100). timm's ``features_only`` taps the
first block of each resolution instead (40/80/160 for ghostnet_100). No torch here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ghostnas.blocks.base import (
    ACTIVATIONS,
    BlockRecord,
    Context,
    Counter,
    ResolvedStageBase,
    block_kind,
    block_kinds,
    conv_out_size,
    make_divisible,
    stage_kinds,
)
from ghostnas.blocks.g_ghost import raw_width
from ghostnas.config import BuildSpec, GhostNetConfig, StageConfig, block_from_dict, config_from_dict, layout
from ghostnas.errors import ConfigError, GhostnasError
from ghostnas.registry import resolve_config

__all__ = [
    "DEFAULT_KIND",
    "TAP_STRIDES",
    "BackboneTaps",
    "C2fBlockSpec",
    "YoloError",
    "backbone_cost",
    "backbone_taps",
    "c2f_kinds",
    "load_backbone_config",
    "parse_kind",
]

DEFAULT_KIND = "ghost"
TAP_STRIDES = (8, 16, 32)
STAGE_KIND = "g_ghost"
_STAGE_OPTIONS = ("block", "depth", "cheap_ratio")
_MAX_DEPTH = 16


class YoloError(GhostnasError):
    """A YOLO build or profile request is unusable; the message says how to fix it."""


def c2f_kinds() -> list[str]:
    """Every kind that can fill a C2f's bottleneck slots: the block kinds and ``g_ghost``."""
    return sorted([*block_kinds(), *(k for k in stage_kinds() if k == STAGE_KIND)])


def _scalar(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            break
        return value
    return text


def parse_kind(text: str) -> C2fBlockSpec:
    """``KIND[:key=value,...]`` (e.g. ``ghost_v2:dfc=false``, ``regnet:group_width=8``) to a spec."""
    kind, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise YoloError(
                f"block option {item!r} in {text!r}: write key=value, e.g. ghost:k=5,se_ratio=0.25"
            )
        options[key.strip()] = _scalar(value.strip())
    return C2fBlockSpec.make(kind.strip(), options)


@dataclass(frozen=True)
class C2fBlockSpec:
    """The kind (and options) of every bottleneck of one C2f; resolved per width ``c``.

    Attributes:
        kind: A block kind (``ghost``, ``ghost_v2``, ``ghost_v3``, ``regnet``, ...) or ``g_ghost``.
        options: Sorted ``(key, value)`` pairs of JSON scalars (see the module docstring).
    """

    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, kind: Any, options: Mapping[str, Any] | None = None) -> C2fBlockSpec:
        """Validate ``kind`` and ``options`` now (at a width of 16) so errors come before building."""
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            raise YoloError(f"C2f block options: expected a mapping, got {type(options).__name__}")
        for key, value in options.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, (bool, int, float, str))):
                raise YoloError(f"C2f block option {key!r} = {value!r}: keys are names, values JSON scalars")
        if not isinstance(kind, str) or kind not in c2f_kinds():
            raise YoloError(
                f"unknown C2f block kind {kind!r}; choose one of {', '.join(c2f_kinds())} "
                "(options as KIND:key=value,...)"
            )
        spec = cls(kind, tuple(sorted(options.items())))
        spec.resolve(16)
        return spec

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def act(self) -> str:
        act = self.options_dict.get("act", "relu")
        if act not in ACTIVATIONS:
            raise YoloError(f"C2f block option act = {act!r}: choose one of {', '.join(ACTIVATIONS)}")
        return str(act)

    def short(self) -> str:
        """``ghost_v2:dfc=False``: the kind with its options, for tables and YAML comments."""
        return self.kind + (":" + ",".join(f"{k}={v}" for k, v in self.options) if self.options else "")

    def resolve(self, c: int) -> ResolvedStageBase:
        """The library's resolved stage (one block, or a G-Ghost stage) that keeps ``c`` channels."""
        opts = {k: v for k, v in self.options if k != "act"}
        self.act  # noqa: B018 -- validates the activation option
        where = f"C2f block {self.short()!r} at width {c}"
        try:
            if self.kind == STAGE_KIND:
                stage = self._stage(c, opts)
            else:
                stage = StageConfig(blocks=(_block(self.kind, c, c, opts),))
            resolved = stage.resolve(Context(width=1.0, s=2, d=3), c, 0)
        except (ConfigError, TypeError) as exc:
            raise YoloError(f"{where}: {exc}") from None
        if resolved.in_chs != c or resolved.out_chs != c or resolved.out_size(64) != 64:
            raise YoloError(
                f"{where}: gives {resolved.out_chs} channels at stride "
                f"{64 // max(resolved.out_size(64), 1)}; a C2f needs {c} channels at stride 1"
            )
        return resolved

    def _stage(self, c: int, opts: dict[str, Any]) -> StageConfig:
        inner = opts.pop("block", "regnet")
        depth = opts.pop("depth", 1)
        ratio = opts.pop("cheap_ratio", 0.5)
        if inner == STAGE_KIND or not isinstance(inner, str):
            raise ConfigError(f"block = {inner!r}: a g_ghost stage's blocks are block kinds, e.g. regnet")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= _MAX_DEPTH:
            raise ConfigError(f"depth = {depth!r}: the number of deep blocks, 1..{_MAX_DEPTH}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise ConfigError(f"cheap_ratio = {ratio!r}: the share of cheap channels, between 0 and 1")
        raw = raw_width(c, float(ratio))
        blocks = (
            _block(inner, c, c, opts),
            *(_block(inner, raw, raw, opts) for _ in range(depth)),
            _block(inner, c, c, opts),
        )
        return stage_kinds()[STAGE_KIND](blocks=blocks)

    def count(self, counter: Counter, c: int, size: int) -> None:
        """Add one bottleneck's exact params and conv MACs at width ``c`` and input side ``size``."""
        self.resolve(c).count(counter, size)

    def build(self, c: int) -> Any:
        """One bottleneck as an ``nn.Module`` (imports torch): the library's block or stage."""
        stage = self.resolve(c)
        if len(stage.blocks) == 1 and stage.kind == "sequential":
            return stage.blocks[0].build(self.act)
        return stage.build(self.act)


def _block(kind: str, c: int, exp_base: int, opts: Mapping[str, Any]) -> BlockRecord:
    """A record of ``kind`` with output width ``c``, stride 1, defaults by field (module docstring)."""
    if kind not in block_kinds():
        raise ConfigError(
            f"block = {kind!r}: unknown block kind; choose one of {', '.join(sorted(block_kinds()))}"
        )
    opts = dict(opts)
    names = {f.name for f in dataclasses.fields(block_kind(kind).record)}
    if "dfc" in opts and "dfc" not in names:
        if not isinstance(opts["dfc"], bool):
            raise ConfigError(f"dfc = {opts['dfc']!r}: true or false")
        if not opts.pop("dfc"):
            kind = DEFAULT_KIND  # the V2 bottleneck without DFC attention is the V1 bottleneck
            names = {f.name for f in dataclasses.fields(block_kind(kind).record)}
    fields: dict[str, Any] = {"c": c, "stride": 1}
    if "exp" in names:
        e = opts.pop("e", 1.0)
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e <= 16:
            raise ConfigError(f"e = {e!r}: the expansion as a multiple of the width, in (0, 16]")
        fields["exp"] = make_divisible(e * exp_base, 4)
    if "k" in names:
        fields["k"] = 3
    if "group_width" in names:
        fields["group_width"] = 1
    for key in ("c", "exp", "stride"):
        if key in opts:
            raise ConfigError(f"{key}: set by the C2f (width {c}, stride 1); leave it out")
    unknown = [k for k in opts if k not in names]
    if unknown:
        allowed = sorted(
            {*names, "act", *(("e",) if "exp" in names else ()), *(("dfc",) if kind != DEFAULT_KIND else ())}
            - {"c", "exp", "stride"}
        )
        raise ConfigError(f"unknown option {unknown[0]!r} for kind {kind}; allowed: {', '.join(allowed)}")
    fields.update(opts)
    return block_from_dict(kind, {"kind": kind, **fields})


# --------------------------------------------------------------------------------------------
# a ghostnas network as a detector backbone


@dataclass(frozen=True)
class BackboneTaps:
    """Where a network is tapped: indices into its sequence of tensors, and their channels.

    The tensors, in order: one after every block of a sequential stage, one after every other
    stage (a G-Ghost stage is one unit), and the final 1x1 conv of a GhostNet head.

    Attributes:
        points: Index of the P3, P4 and P5 tensor in that sequence.
        channels: Their channel counts.
        n_points: Length of the sequence (the final conv is the last point, if any).
        per_block: For each stage, whether its blocks are separate points.
    """

    points: tuple[int, int, int]
    channels: tuple[int, int, int]
    n_points: int
    per_block: tuple[bool, ...]


def backbone_taps(cfg: GhostNetConfig) -> BackboneTaps:
    """The last tensor at strides 8, 16 and 32 of ``cfg`` (stride-2 stem), or a one-line error."""
    lay = layout(cfg)
    reduction = 2
    seen: list[tuple[int, int]] = []  # (reduction, channels) of every point
    per_block = []
    for stage in lay.stages:
        split = stage.kind == "sequential"
        per_block.append(split)
        if split:
            for rb in stage.blocks:
                reduction *= rb.stride
                seen.append((reduction, rb.out_chs))
        else:
            for rb in stage.blocks:
                reduction *= rb.stride
            seen.append((reduction, stage.out_chs))
    if lay.head == "ghostnet":
        seen.append((reduction, lay.final_chs))
    found = sorted({r for r, _ in seen})
    missing = [s for s in TAP_STRIDES if s not in found]
    if missing or found[-1] != TAP_STRIDES[-1]:
        why = (
            f"has no feature map at stride {missing[0]}"
            if missing
            else f"goes on to stride {found[-1]} after stride 32"
        )
        raise YoloError(
            f"backbone config {why} (its strides: {', '.join(map(str, found))}); P3/P4/P5 need its last maps "
            "at strides 8, 16 and 32 with nothing after: use a GhostNet-like config with five stride-2 steps"
        )
    points = tuple(max(i for i, (r, _) in enumerate(seen) if r == s) for s in TAP_STRIDES)
    return BackboneTaps(
        points=points,  # type: ignore[arg-type]
        channels=tuple(seen[i][1] for i in points),  # type: ignore[arg-type]
        n_points=len(seen),
        per_block=tuple(per_block),
    )


def backbone_cost(cfg: GhostNetConfig, imgsz: int, in_chans: int = 3) -> Counter:
    """Exact params and conv MACs of the backbone (stem, stages, final 1x1 conv; no classifier
    head) at input side ``imgsz``: ghostnas' closed form, the papers' convention."""
    spec = BuildSpec(input_size=imgsz, in_chans=in_chans, num_classes=0)
    lay = layout(cfg)
    c = Counter()
    size = conv_out_size(spec.input_size, 3, spec.stem_stride)
    c.conv(in_chans, lay.stem_chs, 3, 1, size * size)
    c.bn(lay.stem_chs)
    for stage in lay.stages:
        stage.count(c, size)
        size = stage.out_size(size)
    if lay.head == "ghostnet":
        c.conv(lay.blocks[-1].out_chs, lay.final_chs, 1, 1, size * size)
        c.bn(lay.final_chs)
    return c


def load_backbone_config(
    config: str | os.PathLike[str] | Mapping[str, Any] | GhostNetConfig,
) -> GhostNetConfig:
    """A backbone's config from a registered name, a JSON path, an export envelope or a dict."""
    try:
        return config_from_dict(config) if isinstance(config, Mapping) else resolve_config(config)
    except GhostnasError as exc:
        raise YoloError(f"backbone: {exc}") from None
