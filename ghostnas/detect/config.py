"""A searched detector as data: the base detector and one choice per backbone C2f.

A detection candidate is not a GhostNet: it is a stock Ultralytics detector (``yolov8n``...)
whose backbone C2f layers get another bottleneck kind, depth and hidden width, while the stem,
the downsampling convs, SPPF, the neck and the head stay the base's. :class:`DetectConfig` is the
frozen record of that choice; it round-trips through JSON (:meth:`DetectConfig.to_dict`,
:func:`detect_config_from_dict`) and is the only input to the model-YAML writer and the cost
model, as :class:`~ghostnas.config.GhostNetConfig` is for classification.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ghostnas.errors import ConfigError

__all__ = ["C2F_KINDS", "STOCK_KIND", "C2fChoice", "DetectConfig", "detect_config_from_dict"]

STOCK_KIND = "c2f"
"""The base's own C2f bottleneck (Ultralytics' ``Bottleneck``: two 3x3 convs)."""

C2F_KINDS = (STOCK_KIND, "ghost", "ghost_v2", "regnet")
"""Bottleneck kinds a backbone C2f may take: the stock one and the block registry's kinds that
keep shape at stride 1 (Ghost V1, Ghost V2 with DFC attention, the RegNet bottleneck of G-Ghost
with a depthwise 3x3)."""


@dataclass(frozen=True)
class C2fChoice:
    """One backbone C2f: its bottleneck kind, how many bottlenecks, and its hidden width.

    Attributes:
        kind: One of :data:`C2F_KINDS`.
        depth: Bottlenecks in the C2f (Ultralytics' ``n``).
        width: Hidden channels as a share of the C2f's output channels (Ultralytics' ``e``;
            0.5 in every stock C2f). The output channels stay the base's, so the neck and head
            do not change.
    """

    kind: str
    depth: int
    width: float

    def __post_init__(self) -> None:
        if self.kind not in C2F_KINDS:
            raise ConfigError(f"C2f kind {self.kind!r}: choose one of {', '.join(C2F_KINDS)}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or not 1 <= self.depth <= 12:
            raise ConfigError(f"C2f depth {self.depth!r}: must be an integer from 1 to 12")
        if (
            isinstance(self.width, bool)
            or not isinstance(self.width, (int, float))
            or not math.isfinite(self.width)
            or not 0 < self.width <= 2
        ):
            raise ConfigError(f"C2f width {self.width!r}: must be a number in (0, 2]")
        object.__setattr__(self, "width", float(self.width))

    def short(self) -> str:
        return f"{self.kind}x{self.depth}@{self.width:g}"


@dataclass(frozen=True)
class DetectConfig:
    """A detector: the base and one :class:`C2fChoice` per backbone C2f, in layer order.

    Attributes:
        base: The stock Ultralytics detector the candidate is made from (``yolov8n``...).
        c2f: One choice per backbone C2f of the base.
    """

    base: str
    c2f: tuple[C2fChoice, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.base, str) or not self.base:
            raise ConfigError(f"base {self.base!r}: name a base detector such as yolov8n")
        object.__setattr__(self, "c2f", tuple(self.c2f))
        if not self.c2f or not all(isinstance(c, C2fChoice) for c in self.c2f):
            raise ConfigError("c2f: give one choice per backbone C2f of the base")

    def short(self) -> str:
        """``yolov8n[ghostx1@0.5,ghostx2@0.5,...]``: for logs and tables."""
        return f"{self.base}[{','.join(c.short() for c in self.c2f)}]"

    def with_width(self, width: float) -> DetectConfig:
        """Every C2f at hidden share ``width`` (how the reference is scaled to a budget)."""
        return DetectConfig(self.base, tuple(C2fChoice(c.kind, c.depth, width) for c in self.c2f))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :func:`detect_config_from_dict` gives the same config back."""
        return {
            "task": "detect",
            "base": self.base,
            "c2f": [{"kind": c.kind, "depth": c.depth, "width": c.width} for c in self.c2f],
        }


def detect_config_from_dict(data: Mapping[str, Any]) -> DetectConfig:
    """The config :meth:`DetectConfig.to_dict` wrote (a ``best.json``'s ``config``)."""
    if not isinstance(data, Mapping) or data.get("task") != "detect":
        raise ConfigError("not a detector config: expected an object with task: detect, base and c2f")
    raw = data.get("c2f")
    if not isinstance(raw, list):
        raise ConfigError("detector config: c2f must be a list of {kind, depth, width}")
    choices = []
    for i, c in enumerate(raw):
        if not isinstance(c, Mapping) or set(c) != {"kind", "depth", "width"}:
            raise ConfigError(f"detector config: c2f[{i}] must have exactly kind, depth and width")
        choices.append(C2fChoice(c["kind"], c["depth"], c["width"]))
    return DetectConfig(str(data.get("base", "")), tuple(choices))
