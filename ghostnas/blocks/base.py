"""What every block kind provides, the registry that finds kinds by name, and shared arithmetic.

A *block kind* is one module under :mod:`ghostnas.blocks` that owns everything about one block
type: its frozen config record and validation, its resolution (concrete channels and spatial
sizes), its exact closed-form cost, its ``nn.Module`` build, its latency-table key, and its
search-space record (choices, parameter names, cost extremes). The config, cost model, model
builder, search space, space cost range and latency parts walk networks through these methods
and never name a kind, so a new kind is a new module plus data files and tests.

Kinds are found by scanning this package: every module that defines a subclass of
:class:`BlockRecord` or :class:`BlockSpaceRecord` and calls :func:`register_block_kind` is
loaded the first time a kind is looked up.

Nothing here imports torch: building modules is the only step that needs it, and each kind
imports its torch layers inside :meth:`ResolvedBlockBase.build`.
"""

from __future__ import annotations

import abc
import importlib
import math
import pkgutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ghostnas.errors import ConfigError, GhostnasError

__all__ = [
    "ACTIVATIONS",
    "MAX_CHANNELS",
    "MAX_KERNEL",
    "MAX_RATIO",
    "BlockKind",
    "BlockRecord",
    "BlockSpaceRecord",
    "Context",
    "Counter",
    "FieldReader",
    "Pick",
    "Put",
    "ResolvedBlockBase",
    "ResolvedStageBase",
    "SpaceError",
    "block_kind",
    "block_kinds",
    "check_float",
    "check_int",
    "check_keys",
    "check_odd_kernel",
    "check_ratio",
    "conv_out_size",
    "fail",
    "is_int",
    "is_num",
    "is_odd_kernel",
    "make_divisible",
    "register_block_kind",
    "register_stage_kind",
    "same_choice",
    "stage_kind",
    "stage_kinds",
]

MAX_CHANNELS = 8192
MAX_KERNEL = 11
MAX_RATIO = 8
ACTIVATIONS = ("relu", "relu6", "hard_swish", "silu", "gelu")


class SpaceError(GhostnasError, ValueError):
    """A search-space file is missing, malformed, or a config is not a point of the space."""


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


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output side of a conv with ``padding = kernel // 2`` (odd kernels), as PyTorch computes it."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


# --------------------------------------------------------------------------------------------
# field checks shared by every record


def fail(name: str, value: Any, why: str) -> ConfigError:
    """The one-line error of a bad config field."""
    return ConfigError(f"{name} = {value!r}: {why}")


def check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(name, value, f"must be an integer in [{lo}, {hi}]")
    if not lo <= value <= hi:
        raise fail(name, value, f"must be in [{lo}, {hi}]")


def check_odd_kernel(name: str, value: Any) -> None:
    check_int(name, value, 1, MAX_KERNEL)
    if value % 2 == 0:
        raise fail(name, value, f"kernel must be odd (1, 3, 5, ... {MAX_KERNEL})")


def check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(name, value, f"Ghost ratio s must be an integer in [2, {MAX_RATIO}]")
    if not 2 <= value <= MAX_RATIO:
        raise fail(name, value, f"Ghost ratio s must be in [2, {MAX_RATIO}] (s=1 is a plain conv)")


def check_float(name: str, value: Any, lo: float, hi: float, *, hi_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(name, value, "must be a finite number")
    if value < lo or value > hi or (hi_open and value == hi):
        bracket = ")" if hi_open else "]"
        raise fail(name, value, f"must be in [{lo}, {hi}{bracket}")


def check_keys(where: str, data: Any, required: Sequence[str], optional: Sequence[str]) -> None:
    """Refuse a non-mapping, unknown keys and missing required keys, naming the JSON path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    allowed = (*required, *optional)
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(allowed)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")


def is_int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_num(lo: float, hi: float) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
    )


def is_odd_kernel(v: Any) -> bool:
    return is_int(1, MAX_KERNEL)(v) and v % 2 == 1


def same_choice(a: Any, b: Any) -> bool:
    """Choice equality that keeps ``True`` apart from ``1`` and compares numbers by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-12)
    return a == b


# --------------------------------------------------------------------------------------------
# cost arithmetic


class Counter:
    """Accumulates conv/linear/batch-norm costs; kinds call one method per layer they build.

    MACs: conv and linear multiply-accumulates only (the papers' "FLOPs"). Params: every
    trainable tensor (conv/linear weights and biases, batch-norm affine parameters).
    """

    __slots__ = ("macs", "params")

    def __init__(self) -> None:
        self.macs = 0
        self.params = 0

    def conv(
        self, cin: int, cout: int, k: int | tuple[int, int], groups: int, out_hw: int, bias: bool = False
    ) -> None:
        kh, kw = (k, k) if isinstance(k, int) else k
        weights = kh * kw * (cin // groups) * cout
        self.params += weights + (cout if bias else 0)
        self.macs += weights * out_hw

    def bn(self, chs: int) -> None:
        self.params += 2 * chs

    def linear(self, fin: int, fout: int) -> None:
        self.params += fin * fout + fout
        self.macs += fin * fout

    def ghost_module(self, cin: int, cout: int, s: int, d: int, hw: int) -> None:
        """A Ghost module: 1x1 primary conv to ``ceil(cout / s)``, depthwise cheap conv, BNs."""
        init = math.ceil(cout / s)
        new = init * (s - 1)
        self.conv(cin, init, 1, 1, hw)
        self.bn(init)
        self.conv(init, new, d, init, hw)
        self.bn(new)


# --------------------------------------------------------------------------------------------
# what a kind provides


@dataclass(frozen=True)
class Context:
    """Network-wide settings a block inherits (after stage overrides).

    Attributes:
        width: Width multiplier.
        s: Ghost ratio.
        d: Cheap-operation kernel.
    """

    width: float
    s: int
    d: int


class ResolvedBlockBase(abc.ABC):
    """A block with every channel count made concrete; what the cost model, builder and latency
    table read. Subclasses are frozen dataclasses with at least ``stage``, ``index``, ``in_chs``,
    ``out_chs`` and ``stride`` fields, so equal blocks share cache and table entries."""

    kind: ClassVar[str]
    stage: int
    index: int
    in_chs: int
    out_chs: int
    stride: int

    @abc.abstractmethod
    def out_size(self, size: int) -> int:
        """Spatial side of the output for an input of side ``size``."""

    @abc.abstractmethod
    def count(self, counter: Counter, size: int) -> None:
        """Add this block's exact params and MACs at input side ``size``, as deployed."""

    def count_training(self, counter: Counter, size: int) -> None:
        """Cost of the form that is trained, where it differs from the deployed one that
        :meth:`count` counts (re-parameterisable kinds); the same by default."""
        self.count(counter, size)

    @abc.abstractmethod
    def build(self, act: str) -> Any:
        """The block as an ``nn.Module`` (imports torch), in the form that is trained."""

    @abc.abstractmethod
    def latency_key(self, size: int, batch: int, act: str) -> str:
        """Latency-table key: the kind, then every field that changes the computation."""


class BlockRecord(abc.ABC):
    """A block's config record: a frozen dataclass of primitives, validated on construction.

    Every kind has the raw output width ``c`` (before the width multiplier), which is the next
    block's input, and ``stride``.
    """

    kind: ClassVar[str]
    c: int
    stride: int

    @property
    def tail_chs(self) -> int:
        """Raw width the GhostNet final 1x1 conv widens to when this block ends the network."""
        return self.c

    @abc.abstractmethod
    def resolve(self, ctx: Context, in_chs: int, stage: int, index: int) -> ResolvedBlockBase: ...

    @abc.abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON form, without the ``kind`` key (the caller adds it) and without unset overrides."""

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, where: str, raw: Mapping[str, Any]) -> BlockRecord: ...

    @abc.abstractmethod
    def short(self) -> str: ...

    def scaled_widths(self) -> Iterable[int]:
        """Raw channel counts that the width multiplier scales (checked against the limit)."""
        return (self.c,)


Pick = Callable[[str, Sequence[Any]], Any]
"""``pick(name, choices)``: the chosen value (fixed values are not asked for)."""
Put = Callable[[str, Any, Sequence[Any], str], None]
"""``put(name, value, choices, what)``: record a parameter, or raise if ``value`` is no choice."""


class BlockSpaceRecord(abc.ABC):
    """Choices for one block position in a search space (a frozen dataclass).

    Attributes every kind has: ``stride`` (fixed by the table) and ``c`` (output width choices).
    """

    kind: ClassVar[str]
    stride: int
    c: tuple[int, ...]

    @abc.abstractmethod
    def n_points(self) -> int: ...

    @abc.abstractmethod
    def choose(self, pick: Pick, prefix: str, in_c: int) -> BlockRecord:
        """Build the block record, asking ``pick`` for every decision under ``prefix``."""

    @abc.abstractmethod
    def to_params(self, block: BlockRecord, put: Put, prefix: str, what: str, in_c: int) -> None:
        """Record the parameters that :meth:`choose` turns back into ``block``."""

    @abc.abstractmethod
    def extremes(self, better: Callable[[Iterable[Any]], Any], in_c: int) -> Iterable[BlockRecord]:
        """Blocks that together reach the ``better`` (min or max) cost for input width ``in_c``.

        Fields whose larger choice always costs more are fixed at ``better``; the others (output
        width, which decides identity shortcuts) are enumerated.
        """

    def clash(self, in_cs: Iterable[int]) -> str | None:
        """A reason two parameter sets would build one config (refused), or None."""
        return None

    @classmethod
    @abc.abstractmethod
    def read(cls, reader: FieldReader, first: bool) -> BlockSpaceRecord: ...


class ResolvedStageBase(abc.ABC):
    """A stage with its blocks resolved: how data flows through them (a stage *kind*).

    The default kind, ``sequential``, runs its blocks one after the other; other kinds (such as
    ``g_ghost``) wire them differently and may add layers of their own, which they count,
    build and key here. Subclasses are frozen dataclasses with a ``blocks`` field.
    """

    kind: ClassVar[str]
    blocks: tuple[ResolvedBlockBase, ...]

    @property
    def in_chs(self) -> int:
        return self.blocks[0].in_chs

    @property
    def out_chs(self) -> int:
        return self.blocks[-1].out_chs

    def out_size(self, size: int) -> int:
        for rb in self.blocks:
            size = rb.out_size(size)
        return size

    @abc.abstractmethod
    def count(self, counter: Counter, size: int, training: bool = False) -> None:
        """Add the stage's exact cost at input side ``size`` (``training``: the trained form)."""

    @abc.abstractmethod
    def build(self, act: str) -> Any:
        """The stage as an ``nn.Module`` (imports torch)."""

    @abc.abstractmethod
    def parts(self, size: int, batch: int, act: str) -> list[tuple[str, int, int, Callable[[], Any]]]:
        """Separately timed pieces: ``(latency key, input channels, input side, build)``."""


_STAGE_KINDS: dict[str, Any] = {}


def register_stage_kind(name: str, record: type) -> None:
    """Make a stage kind resolvable in configs (``"kind"`` of a stage object)."""
    if name in _STAGE_KINDS and _STAGE_KINDS[name] is not record:
        raise GhostnasError(f"stage kind {name!r} is registered twice")
    _STAGE_KINDS[name] = record


def stage_kinds() -> dict[str, Any]:
    """Every registered stage kind's record class by name."""
    _scan()
    return dict(_STAGE_KINDS)


def stage_kind(name: Any, where: str = "kind") -> Any:
    """The record class of stage kind ``name``, or a one-line error listing the known kinds."""
    kinds = stage_kinds()
    if not isinstance(name, str) or name not in kinds:
        raise ConfigError(f"{where} = {name!r}: unknown stage kind; choose one of {', '.join(sorted(kinds))}")
    return kinds[name]


@dataclass(frozen=True)
class BlockKind:
    """A registered kind: its name and its two records."""

    name: str
    record: type[BlockRecord]
    space: type[BlockSpaceRecord] | None = None


_KINDS: dict[str, BlockKind] = {}
_SCANNED = False


def register_block_kind(
    name: str, record: type[BlockRecord], space: type[BlockSpaceRecord] | None = None
) -> BlockKind:
    """Make ``name`` resolvable in configs and spaces; called once at a kind module's import."""
    if name in _KINDS and _KINDS[name].record is not record:
        raise GhostnasError(f"block kind {name!r} is registered twice")
    kind = BlockKind(name, record, space)
    _KINDS[name] = kind
    return kind


def _scan() -> None:
    global _SCANNED
    if _SCANNED:
        return
    _SCANNED = True
    # the kinds are this module's siblings; found by path, not by importing the package (which
    # imports this module: a cycle)
    package = __name__.rpartition(".")[0]
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{package}.{info.name}")


def block_kinds() -> dict[str, BlockKind]:
    """Every registered kind by name."""
    _scan()
    return dict(_KINDS)


def block_kind(name: Any, where: str = "kind") -> BlockKind:
    """The kind called ``name``, or a one-line error listing the known kinds."""
    kinds = block_kinds()
    if not isinstance(name, str) or name not in kinds:
        raise ConfigError(f"{where} = {name!r}: unknown block kind; choose one of {', '.join(sorted(kinds))}")
    return kinds[name]


# --------------------------------------------------------------------------------------------
# reading YAML mappings for spaces


class FieldReader:
    """Checks one mapping's keys and values; every error names the file, line and key path."""

    def __init__(self, source: str, path: str, data: Any, parent_line: int = 0) -> None:
        self.source, self.path = source, path
        line = getattr(data, "line", parent_line)
        if not isinstance(data, Mapping):
            raise self._err(line, f"expected a mapping, got {_type(data)}")
        self.data = data
        self.line = line

    def _err(self, line: int, msg: str) -> SpaceError:
        at = f"line {line}: " if line else ""
        return SpaceError(f"{self.source}: {at}{msg}")

    def key_line(self, key: str) -> int:
        return getattr(self.data, "key_lines", {}).get(key, self.line)

    def fail(self, key: str, msg: str) -> SpaceError:
        return self._err(self.key_line(key), f"{self.path}{key}: {msg}")

    def check_keys(self, required: Sequence[str], optional: Sequence[str]) -> None:
        allowed = [*required, *optional]
        for key in self.data:
            if key not in allowed:
                raise self._err(
                    self.key_line(key),
                    f"{self.path}{key}: unknown key; allowed keys are {', '.join(allowed)}",
                )
        for key in required:
            if key not in self.data:
                raise self._err(
                    self.line, f"{self.path.rstrip('.') or 'top level'}: missing required key {key!r}"
                )

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def choices(
        self, key: str, check: Callable[[Any], bool], what: str, default: Any = None
    ) -> tuple[Any, ...]:
        """A scalar (fixed) or a non-empty list of distinct values that pass ``check``."""
        raw = self.data.get(key, default)
        if raw is None:
            raise self.fail(key, f"missing; give {what} or a list of them")
        values = list(raw) if isinstance(raw, list) else [raw]
        if not values:
            raise self.fail(key, "an empty list; give at least one choice")
        for v in values:
            if not check(v):
                raise self.fail(key, f"{v!r} is not {what}")
        for i, v in enumerate(values):
            if any(same_choice(v, w) for w in values[:i]):
                raise self.fail(key, f"choice {v!r} is listed twice")
        return tuple(values)


def _type(v: Any) -> str:
    return "a list" if isinstance(v, list) else "nothing" if v is None else f"a {type(v).__name__}"
