"""The Ghost bottleneck (GhostNet V1, Han et al., CVPR 2020) as block kind ``ghost``.

Ghost module (expand, activation) -> [depthwise k x k stride-2 conv + BN] -> [SE] -> Ghost
module (project, no activation) + shortcut (identity when the shape is unchanged, otherwise
depthwise k x k + BN + 1x1 conv + BN). This module owns the block's record, resolution, cost,
latency key and search-space choices; the torch layers are in :mod:`ghostnas.models.ghostnet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ghostnas.blocks.base import (
    MAX_CHANNELS,
    BlockRecord,
    BlockSpaceRecord,
    Context,
    Counter,
    FieldReader,
    Pick,
    Put,
    ResolvedBlockBase,
    check_float,
    check_int,
    check_keys,
    check_odd_kernel,
    check_ratio,
    conv_out_size,
    fail,
    is_int,
    is_num,
    is_odd_kernel,
    make_divisible,
    register_block_kind,
)

__all__ = ["BlockConfig", "BlockSpace", "ResolvedBlock", "override_tag"]

KIND = "ghost"


def override_tag(s: int | None, d: int | None) -> str:
    """``[s3,d5]`` for per-stage or per-block Ghost overrides (empty when none)."""
    tags = ([f"s{s}"] if s is not None else []) + ([f"d{d}"] if d is not None else [])
    return f"[{','.join(tags)}]" if tags else ""


@dataclass(frozen=True)
class ResolvedBlock(ResolvedBlockBase):
    """A Ghost bottleneck with every channel count and inherited setting made concrete."""

    kind: ClassVar[str] = KIND

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

    def out_size(self, size: int) -> int:
        return conv_out_size(size, self.k, self.stride) if self.stride > 1 else size

    def count(self, counter: Counter, size: int) -> None:
        out_size = self.out_size(size)
        hw_out = out_size * out_size
        self.count_expand(counter, size)
        if self.stride > 1:
            counter.conv(self.mid_chs, self.mid_chs, self.k, self.mid_chs, hw_out)
            counter.bn(self.mid_chs)
        if self.se_chs:
            counter.conv(self.mid_chs, self.se_chs, 1, 1, 1, bias=True)
            counter.conv(self.se_chs, self.mid_chs, 1, 1, 1, bias=True)
        counter.ghost_module(self.mid_chs, self.out_chs, self.s, self.d, hw_out)
        if not self.identity_shortcut:
            counter.conv(self.in_chs, self.in_chs, self.k, self.in_chs, hw_out)
            counter.bn(self.in_chs)
            counter.conv(self.in_chs, self.out_chs, 1, 1, hw_out)
            counter.bn(self.out_chs)

    def count_expand(self, counter: Counter, size: int) -> None:
        """The expanding Ghost module at input side ``size`` (kinds that change only this part
        override it)."""
        counter.ghost_module(self.in_chs, self.mid_chs, self.s, self.d, size * size)

    def build(self, act: str) -> Any:
        from ghostnas.models.layers import GhostBottleneck

        return GhostBottleneck(self, act)

    def key_fields(self) -> str:
        return (
            f"i{self.in_chs}|m{self.mid_chs}|o{self.out_chs}|k{self.k}|st{self.stride}"
            f"|se{self.se_chs}|s{self.s}|d{self.d}"
        )

    def latency_key(self, size: int, batch: int, act: str) -> str:
        return f"{self.kind}|b{batch}|r{size}|{self.key_fields()}|{act}"


_REQUIRED = ("k", "exp", "c")
_OPTIONAL = ("se_ratio", "stride", "s", "d")


@dataclass(frozen=True)
class BlockConfig(BlockRecord):
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

    kind: ClassVar[str] = KIND
    resolved_type: ClassVar[type[ResolvedBlock]] = ResolvedBlock

    k: int
    exp: int
    c: int
    se_ratio: float = 0.0
    stride: int = 1
    s: int | None = None
    d: int | None = None

    def __post_init__(self) -> None:
        check_odd_kernel("k", self.k)
        check_int("exp", self.exp, 1, MAX_CHANNELS)
        check_int("c", self.c, 1, MAX_CHANNELS)
        check_float("se_ratio", self.se_ratio, 0.0, 1.0)
        if self.stride not in (1, 2) or isinstance(self.stride, bool):
            raise fail("stride", self.stride, "stride must be 1 or 2")
        if self.s is not None:
            check_ratio("s", self.s)
        if self.d is not None:
            check_odd_kernel("d", self.d)
        # JSON gives 0 for 0.0: normalise so that equality and round-trips are exact.
        object.__setattr__(self, "se_ratio", float(self.se_ratio))

    @property
    def tail_chs(self) -> int:
        return self.exp

    def scaled_widths(self) -> Iterable[int]:
        return (self.exp, self.c)

    def resolve(self, ctx: Context, in_chs: int, stage: int, index: int) -> ResolvedBlock:
        return self.resolved_type(
            stage=stage,
            index=index,
            in_chs=in_chs,
            mid_chs=make_divisible(self.exp * ctx.width, 4),
            out_chs=make_divisible(self.c * ctx.width, 4),
            k=self.k,
            stride=self.stride,
            se_ratio=self.se_ratio,
            s=self.s if self.s is not None else ctx.s,
            d=self.d if self.d is not None else ctx.d,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "k": self.k,
            "exp": self.exp,
            "c": self.c,
            "se_ratio": self.se_ratio,
            "stride": self.stride,
            "s": self.s,
            "d": self.d,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, where: str, raw: Mapping[str, Any]) -> BlockConfig:
        check_keys(where, raw, _REQUIRED, _OPTIONAL)
        return cls(**raw)

    def short(self) -> str:
        """Compact form for logs: ``k:exp>c``, ``/2`` for stride 2, ``se`` when SE is on."""
        text = f"{self.k}:{self.exp}>{self.c}"
        if self.stride == 2:
            text += "/2"
        if self.se_ratio > 0:
            text += "se" if self.se_ratio == 0.25 else f"se{self.se_ratio:g}"
        return text + override_tag(self.s, self.d)


_SPACE_KEYS = ("k", "exp", "c", "se", "stride")


@dataclass(frozen=True)
class BlockSpace(BlockSpaceRecord):
    """Choices for one Ghost bottleneck position. Single-element tuples are fixed, not parameters.

    Expansion choices are multiples of the block's input channels (the previous block's chosen
    ``c``, or the stem), rounded with :func:`make_divisible`; the built config holds the
    resulting absolute width, as in the paper's table.

    Attributes:
        k: Depthwise kernel choices.
        exp: Expansion choices as multiples of the block's input channels.
        c: Output channel choices (before the width multiplier).
        se: SE ratio choices (0 disables SE).
        stride: The table's stride; only a stage's first block may have stride 2.
    """

    kind: ClassVar[str] = KIND
    record: ClassVar[type[BlockConfig]] = BlockConfig
    extra_keys: ClassVar[tuple[str, ...]] = ()

    k: tuple[int, ...]
    exp: tuple[float, ...]
    c: tuple[int, ...]
    se: tuple[float, ...]
    stride: int

    def n_points(self) -> int:
        return len(self.k) * len(self.exp) * len(self.c) * len(self.se)

    def choose(self, pick: Pick, prefix: str, in_c: int) -> BlockConfig:
        return self.record(**self.pick_fields(pick, prefix, in_c))

    def pick_fields(self, pick: Pick, prefix: str, in_c: int) -> dict[str, Any]:
        """The Ghost bottleneck's own decisions, in parameter order (kinds built on it add theirs)."""
        k = pick(prefix + "k", self.k)
        ratio = pick(prefix + "e", self.exp)
        c = pick(prefix + "c", self.c)
        se = pick(prefix + "se", self.se)
        return {
            "k": k,
            "exp": make_divisible(ratio * in_c, 4),
            "c": c,
            "se_ratio": float(se),
            "stride": self.stride,
        }

    def to_params(self, block: BlockRecord, put: Put, prefix: str, what: str, in_c: int) -> None:
        if type(block) is not self.record:
            put(prefix + "kind", block.kind, (self.kind,), f"{what} kind")
        assert isinstance(block, BlockConfig)
        self.put_fields(block, put, prefix, what, in_c)

    def put_fields(self, block: BlockConfig, put: Put, prefix: str, what: str, in_c: int) -> None:
        """The Ghost bottleneck's own parameters (kinds built on it add theirs)."""
        put(prefix + "k", block.k, self.k, f"{what} k")
        widths = [make_divisible(r * in_c, 4) for r in self.exp]
        if block.exp not in widths:
            put(prefix + "e", block.exp, widths, f"{what} exp (from {in_c} input channels)")
        put(prefix + "e", self.exp[widths.index(block.exp)], self.exp, f"{what} exp ratio")
        put(prefix + "c", block.c, self.c, f"{what} c")
        put(prefix + "se", block.se_ratio, self.se, f"{what} se_ratio")

    def extremes(self, better: Callable[[Iterable[Any]], Any], in_c: int) -> Iterable[BlockConfig]:
        return [self.record(**fields) for fields in self.extreme_fields(better, in_c)]

    def extreme_fields(self, better: Callable[[Iterable[Any]], Any], in_c: int) -> list[dict[str, Any]]:
        """Kernel, expansion and SE only add cost, so they sit at ``better``; every ``c`` is tried."""
        k, ratio, se = better(self.k), better(self.exp), better(self.se)
        exp = make_divisible(ratio * in_c, 4)
        return [
            {"k": int(k), "exp": exp, "c": c, "se_ratio": float(se), "stride": self.stride} for c in self.c
        ]

    def clash(self, in_cs: Iterable[int]) -> str | None:
        """Two expansion ratios that round to the same width for some input width would make two
        parameter sets describe one config (``size()`` would over-count, sampling would not be
        uniform)."""
        for in_c in sorted(in_cs):
            seen: dict[int, float] = {}
            for r in self.exp:
                exp = make_divisible(r * in_c, 4)
                if exp in seen:
                    return (
                        f"exp ratios {seen[exp]:g} and {r:g} both give {exp} "
                        f"channels from {in_c} inputs; use ratios further apart"
                    )
                seen[exp] = r
        return None

    @classmethod
    def read_fields(cls, b: FieldReader, first: bool) -> dict[str, Any]:
        stride = b.get("stride")
        if stride not in (1, 2) or isinstance(stride, bool):
            raise b.fail("stride", f"{stride!r} must be 1 or 2 (strides are fixed, not searched)")
        if stride == 2 and not first:
            raise b.fail(
                "stride", "only a stage's first block may have stride 2 (so depth keeps the strides)"
            )
        return {
            "k": b.choices("k", is_odd_kernel, "an odd kernel size in 1..11"),
            "exp": tuple(
                float(v) for v in b.choices("exp", is_num(0.1, 16.0), "an expansion ratio in [0.1, 16]")
            ),
            "c": b.choices("c", is_int(1, 8192), "a channel count in 1..8192"),
            "se": tuple(float(v) for v in b.choices("se", is_num(0.0, 1.0), "an SE ratio in [0, 1]")),
            "stride": stride,
        }

    @classmethod
    def read(cls, reader: FieldReader, first: bool) -> BlockSpace:
        reader.check_keys(_SPACE_KEYS, ("kind", *cls.extra_keys))
        return cls(**cls.read_fields(reader, first))


register_block_kind(KIND, BlockConfig, BlockSpace)
