"""GhostNetV2's bottleneck (Tang et al., NeurIPS 2022) as block kind ``ghost_v2``.

A Ghost bottleneck whose expanding Ghost module is gated by DFC attention ("decoupled fully
connected"): a branch on the module's *input* -- 2x2 average pooling (floor), 1x1 conv + BN,
depthwise 1x5 conv + BN, depthwise 5x1 conv + BN, no activation -- whose sigmoid, taken at the
low resolution and upsampled (nearest) to the output size, multiplies the whole Ghost output.
The rest of the block is the V1 bottleneck (:mod:`ghostnas.blocks.ghost`), so this kind only adds
the branch to the record, cost, build and key, and a ``dfc`` choice to the search space: a block
position of kind ``ghost_v2`` chooses between a plain Ghost bottleneck (``dfc: false``) and this
one. GhostNetV2 uses it in every bottleneck but the first two.

Cost of the branch at input side ``h`` (``p = h // 2``): params ``in*out + 16*out`` (1x1 weights,
two depthwise 5-tap kernels, three BNs); MACs ``(in*out + 10*out) * p*p``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ghostnas.blocks.base import BlockRecord, Counter, FieldReader, Pick, Put, register_block_kind
from ghostnas.blocks.ghost import BlockConfig, BlockSpace, ResolvedBlock

__all__ = [
    "DFC_KERNEL",
    "GhostV2BlockConfig",
    "GhostV2BlockSpace",
    "ResolvedGhostV2Block",
    "count_dfc",
    "dfc_side",
]

KIND = "ghost_v2"
DFC_KERNEL = 5


def dfc_side(size: int) -> int:
    """Side of the DFC branch's map: 2x2 average pooling with floor (7 -> 3); a 1-pixel map is
    kept as it is (the reference code would fail there)."""
    return size // 2 if size >= 2 else size


def count_dfc(counter: Counter, in_chs: int, out_chs: int, size: int) -> None:
    """The DFC branch of a Ghost module from ``in_chs`` to ``out_chs`` at input side ``size``."""
    p = dfc_side(size)
    counter.conv(in_chs, out_chs, 1, 1, p * p)
    counter.bn(out_chs)
    counter.conv(out_chs, out_chs, (1, DFC_KERNEL), out_chs, p * p)
    counter.bn(out_chs)
    counter.conv(out_chs, out_chs, (DFC_KERNEL, 1), out_chs, p * p)
    counter.bn(out_chs)


@dataclass(frozen=True)
class ResolvedGhostV2Block(ResolvedBlock):
    """A Ghost bottleneck with DFC attention on its expanding Ghost module."""

    kind: ClassVar[str] = KIND

    def count_expand(self, counter: Counter, size: int) -> None:
        super().count_expand(counter, size)
        count_dfc(counter, self.in_chs, self.mid_chs, size)

    def build(self, act: str) -> Any:
        from ghostnas.models.ghostnet_v2 import GhostBottleneckV2

        return GhostBottleneckV2(self, act, dfc_kernel=DFC_KERNEL)


@dataclass(frozen=True)
class GhostV2BlockConfig(BlockConfig):
    """A GhostNetV2 bottleneck: the fields of :class:`BlockConfig`, with DFC attention."""

    kind: ClassVar[str] = KIND
    resolved_type: ClassVar[type[ResolvedBlock]] = ResolvedGhostV2Block

    def short(self) -> str:
        return super().short() + "+dfc"


@dataclass(frozen=True)
class GhostV2BlockSpace(BlockSpace):
    """A Ghost bottleneck position with DFC attention as a choice.

    Attributes:
        dfc: ``true`` builds a ``ghost_v2`` block, ``false`` a plain ``ghost`` one (default
            ``true``: fixed on).
    """

    kind: ClassVar[str] = KIND
    record: ClassVar[type[BlockConfig]] = GhostV2BlockConfig
    extra_keys: ClassVar[tuple[str, ...]] = ("dfc",)

    dfc: tuple[bool, ...] = (True,)

    def n_points(self) -> int:
        return super().n_points() * len(self.dfc)

    def choose(self, pick: Pick, prefix: str, in_c: int) -> BlockConfig:
        fields = self.pick_fields(pick, prefix, in_c)
        return (GhostV2BlockConfig if pick(prefix + "dfc", self.dfc) else BlockConfig)(**fields)

    def to_params(self, block: BlockRecord, put: Put, prefix: str, what: str, in_c: int) -> None:
        if type(block) not in (BlockConfig, GhostV2BlockConfig):
            put(prefix + "kind", block.kind, ("ghost", KIND), f"{what} kind")
        assert isinstance(block, BlockConfig)
        self.put_fields(block, put, prefix, what, in_c)
        put(prefix + "dfc", type(block) is GhostV2BlockConfig, self.dfc, f"{what} dfc")

    def extremes(self, better: Callable[[Iterable[Any]], Any], in_c: int) -> Iterable[BlockConfig]:
        # DFC only adds layers, so the extreme takes the better of its choices.
        cls = GhostV2BlockConfig if better(self.dfc) else BlockConfig
        return [cls(**fields) for fields in self.extreme_fields(better, in_c)]

    @classmethod
    def read_fields(cls, b: FieldReader, first: bool) -> dict[str, Any]:
        fields = super().read_fields(b, first)
        fields["dfc"] = b.choices("dfc", lambda v: isinstance(v, bool), "true or false", default=True)
        return fields


register_block_kind(KIND, GhostV2BlockConfig, GhostV2BlockSpace)
