"""The two layers a YOLO YAML can name once :mod:`ghostnas.yolo` is imported.

* :class:`GhostnasC2f` -- Ultralytics' C2f (1x1 conv, split, ``n`` bottlenecks each fed the last
  part, concatenation, 1x1 conv) whose bottlenecks are ghostnas blocks of any C2f-compatible kind
  (:class:`~ghostnas.yolo.kinds.C2fBlockSpec`). Its two 1x1 convs are Ultralytics' own ``Conv``,
  so ``model.fuse()`` folds their batch-norms; the blocks inside keep theirs (``fuse()`` folds
  BN only in Ultralytics' classes), as the official Ghost modules in the seed tables did.
* :class:`GhostnasBackbone` -- a whole ghostnas network (a registered name, a config JSON file,
  an exported search winner, or the config itself) without its classifier head, returning the
  P3/P4/P5 maps (:func:`~ghostnas.yolo.kinds.backbone_taps`) as a list that Ultralytics' stock
  ``Index`` layers pick apart. Its parameter names are GhostNet's (``conv_stem``, ``bn1``,
  ``stages``, ``conv_final``), so ghostnas or mapped timm weights load into it with
  ``load_state_dict(..., strict=False)``.

Ultralytics passes YAML arguments to both verbatim (no channel inference, no width scaling):
:func:`ghostnas.yolo.build_yaml` writes every channel explicitly.

Checkpoints. Ultralytics pickles whole models. Both classes are pickled under the path by which
YAML finds them, ``ultralytics.nn.tasks.<name>``, where importing :mod:`ghostnas.yolo` puts them.
A process that has imported ``ghostnas.yolo`` loads such a checkpoint; one without ghostnas
stops at the first of these classes with ``AttributeError: Can't get attribute 'GhostnasC2f' on
<module 'ultralytics.nn.tasks' ...>``. Had they been pickled under ``ghostnas.yolo.modules``, a
process without ghostnas would hit ``ModuleNotFoundError: ghostnas``, on which Ultralytics runs
``pip install ghostnas`` (whatever package of that name an index serves). The ghostnas blocks
inside come later in the pickle and are never reached first.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from ultralytics.nn.modules import Conv

from ghostnas.config import BuildSpec, GhostNetConfig
from ghostnas.models.ghostnet import GhostNet
from ghostnas.yolo.kinds import C2fBlockSpec, YoloError, backbone_taps, load_backbone_config

__all__ = ["PICKLE_MODULE", "GhostnasBackbone", "GhostnasC2f"]

PICKLE_MODULE = "ultralytics.nn.tasks"
"""The module both classes are registered in (YAML names) and pickled under (checkpoints)."""


class GhostnasC2f(nn.Module):
    """C2f with ghostnas bottlenecks.

    Args:
        c1: Input channels.
        c2: Output channels.
        n: Number of bottlenecks.
        kind: Block kind of every bottleneck (see :func:`ghostnas.yolo.c2f_kinds`).
        options: Kind options, e.g. ``{"dfc": False}`` or ``{"group_width": 8}``.
        e: Hidden width ``c = int(c2 * e)`` (0.5 in YOLOv8's C2f; YOLO11's C3k2 rows give theirs).
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        kind: str = "ghost",
        options: Mapping[str, Any] | None = None,
        e: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (("c1", c1), ("c2", c2), ("n", n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise YoloError(f"GhostnasC2f {name} = {value!r}: must be a positive integer")
        self.spec = C2fBlockSpec.make(kind, options)
        self.c = int(c2 * e)
        if self.c < 1:
            raise YoloError(f"GhostnasC2f e = {e!r}: gives {self.c} hidden channels from c2 = {c2}")
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(self.spec.build(self.c) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class GhostnasBackbone(nn.Module):
    """A ghostnas network as a detector backbone: ``forward`` returns ``[P3, P4, P5]``.

    Args:
        config: The architecture: a registered name, a config JSON path, an exported winner, a
            config dict (what generated YAMLs carry, so they stand alone) or a config.
        in_chans: Image channels.
    """

    def __init__(
        self, config: str | os.PathLike[str] | Mapping[str, Any] | GhostNetConfig, in_chans: int = 3
    ) -> None:
        super().__init__()
        cfg = load_backbone_config(config)
        self.taps = backbone_taps(cfg)
        net = GhostNet(cfg, spec=BuildSpec(in_chans=in_chans, num_classes=0, stem_stride=2))
        self.cfg = cfg
        self.conv_stem, self.bn1, self.act1 = net.conv_stem, net.bn1, net.act1
        self.stages = net.stages
        self.conv_final = net.conv_final  # nn.Identity for a pool_fc (RegNet) head
        self.has_final = cfg.head == "ghostnet"
        self.channels = list(self.taps.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        wanted = self.taps.points
        out: list[torch.Tensor] = []
        point = 0
        for stage, split in zip(self.stages, self.taps.per_block, strict=True):
            for unit in stage if split else (stage,):
                x = unit(x)
                if point in wanted:
                    out.append(x)
                point += 1
        if self.has_final:
            x = self.conv_final(x)
            if point in wanted:
                out.append(x)
        return out


for _cls in (GhostnasC2f, GhostnasBackbone):
    # Pickled by the path YAML uses; see the module docstring for why not ghostnas.yolo.modules.
    _cls.__module__ = PICKLE_MODULE
del _cls
