"""GhostNetV3's bottleneck (Liu et al., 2024) as block kind ``ghost_v3``.

GhostNetV3 trains a network with re-parameterisable branches and deploys a GhostNetV2 with
batch-norm folded into conv biases. While training, the primary 1x1 conv of each Ghost module
is ``branches`` parallel conv + BN; the cheap depthwise conv is ``branches`` parallel depthwise
conv + BN, plus a 1x1 depthwise "scale" conv + BN, plus a BN "identity" branch where the shapes
allow it (Ghost ratio 2); the stride-2 depthwise conv is ``branches`` parallel conv + BN plus a
1x1 stride-2 scale conv + BN. :meth:`ghostnas.models.GhostNet.reparameterize` folds all of them.
DFC attention (as in ``ghost_v2``) sits on the expanding module where ``dfc`` is set.

The closed-form cost (:meth:`ResolvedGhostV3Block.count`) is the *deploy* form's, the network
that is shipped and run, so budgets, fronts and latency count it; :meth:`count_training` counts
the training form (timm's ghostnetv3_100: 8,129,028 params training, 6,147,588 deployed).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ghostnas.blocks.base import Counter, check_int, check_keys, fail, register_block_kind
from ghostnas.blocks.ghost import BlockConfig, ResolvedBlock, override_tag
from ghostnas.blocks.ghost_v2 import DFC_KERNEL, count_dfc

__all__ = ["GhostV3BlockConfig", "ResolvedGhostV3Block"]

KIND = "ghost_v3"
MAX_BRANCHES = 8


@dataclass(frozen=True)
class ResolvedGhostV3Block(ResolvedBlock):
    """A GhostNetV3 bottleneck with every width resolved."""

    kind: ClassVar[str] = KIND

    dfc: bool = True
    branches: int = 3

    def count(self, counter: Counter, size: int) -> None:
        """The deploy form: every re-parameterised conv carries a bias instead of a BN."""
        out_size = self.out_size(size)
        hw_out = out_size * out_size
        self._ghost_deploy(counter, self.in_chs, self.mid_chs, size * size)
        if self.dfc:
            count_dfc(counter, self.in_chs, self.mid_chs, size)
        if self.stride > 1:
            counter.conv(self.mid_chs, self.mid_chs, self.k, self.mid_chs, hw_out, bias=True)
        self._se_and_shortcut(counter, hw_out)
        self._ghost_deploy(counter, self.mid_chs, self.out_chs, hw_out)

    def count_training(self, counter: Counter, size: int) -> None:
        """The training form with all its branches."""
        out_size = self.out_size(size)
        hw_out = out_size * out_size
        self._ghost_train(counter, self.in_chs, self.mid_chs, size * size)
        if self.dfc:
            count_dfc(counter, self.in_chs, self.mid_chs, size)
        if self.stride > 1:
            for _ in range(self.branches):
                counter.conv(self.mid_chs, self.mid_chs, self.k, self.mid_chs, hw_out)
                counter.bn(self.mid_chs)
            counter.conv(self.mid_chs, self.mid_chs, 1, self.mid_chs, hw_out)
            counter.bn(self.mid_chs)
        self._se_and_shortcut(counter, hw_out)
        self._ghost_train(counter, self.mid_chs, self.out_chs, hw_out)

    def _se_and_shortcut(self, counter: Counter, hw_out: int) -> None:
        if self.se_chs:
            counter.conv(self.mid_chs, self.se_chs, 1, 1, 1, bias=True)
            counter.conv(self.se_chs, self.mid_chs, 1, 1, 1, bias=True)
        if not self.identity_shortcut:
            counter.conv(self.in_chs, self.in_chs, self.k, self.in_chs, hw_out)
            counter.bn(self.in_chs)
            counter.conv(self.in_chs, self.out_chs, 1, 1, hw_out)
            counter.bn(self.out_chs)

    def _ghost_deploy(self, counter: Counter, cin: int, cout: int, hw: int) -> None:
        init = math.ceil(cout / self.s)
        counter.conv(cin, init, 1, 1, hw, bias=True)
        counter.conv(init, init * (self.s - 1), self.d, init, hw, bias=True)

    def _ghost_train(self, counter: Counter, cin: int, cout: int, hw: int) -> None:
        init = math.ceil(cout / self.s)
        new = init * (self.s - 1)
        for _ in range(self.branches):
            counter.conv(cin, init, 1, 1, hw)
            counter.bn(init)
            counter.conv(init, new, self.d, init, hw)
            counter.bn(new)
        counter.conv(init, new, 1, init, hw)  # scale branch
        counter.bn(new)
        if new == init:  # identity branch
            counter.bn(init)

    def build(self, act: str) -> Any:
        from ghostnas.models.ghostnet_v3 import GhostBottleneckV3

        return GhostBottleneckV3(self, act, dfc_kernel=DFC_KERNEL)

    def key_fields(self) -> str:
        return super().key_fields() + f"|dfc{int(self.dfc)}"


@dataclass(frozen=True)
class GhostV3BlockConfig(BlockConfig):
    """A GhostNetV3 bottleneck: the fields of :class:`BlockConfig`, plus:

    Attributes:
        dfc: DFC attention on the expanding Ghost module (GhostNetV3 sets it from the third
            block on).
        branches: Parallel conv + BN branches of each re-parameterisable conv while training.
    """

    kind: ClassVar[str] = KIND

    dfc: bool = True
    branches: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.dfc, bool):
            raise fail("dfc", self.dfc, "must be true or false")
        check_int("branches", self.branches, 1, MAX_BRANCHES)

    def resolve(self, ctx: Any, in_chs: int, stage: int, index: int) -> ResolvedGhostV3Block:
        rb = super().resolve(ctx, in_chs, stage, index)
        fields = {f.name: getattr(rb, f.name) for f in dataclasses.fields(rb)}
        return ResolvedGhostV3Block(**{**fields, "dfc": self.dfc, "branches": self.branches})

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "dfc": self.dfc, "branches": self.branches}

    @classmethod
    def from_dict(cls, where: str, raw: Mapping[str, Any]) -> GhostV3BlockConfig:
        check_keys(where, raw, ("k", "exp", "c"), ("se_ratio", "stride", "s", "d", "dfc", "branches"))
        return cls(**raw)

    def short(self) -> str:
        text = f"{self.k}:{self.exp}>{self.c}" + ("/2" if self.stride == 2 else "")
        if self.se_ratio > 0:
            text += "se" if self.se_ratio == 0.25 else f"se{self.se_ratio:g}"
        return text + override_tag(self.s, self.d) + ("+dfc" if self.dfc else "") + f"+rep{self.branches}"


register_block_kind(KIND, GhostV3BlockConfig)
