"""GhostNet (Han et al., CVPR 2020) built from a :class:`~ghostnas.config.GhostNetConfig`.

Blocks compute; :func:`~ghostnas.config.layout` decides every channel width, so this file and the
closed-form cost model in :mod:`ghostnas.cost` cannot disagree about the architecture. The network
asks each resolved block to build itself, so blocks of any kind (:mod:`ghostnas.blocks`) fit in;
the V1 Ghost module and bottleneck layers that kind ``ghost`` builds are in
:mod:`ghostnas.models.layers` (re-exported here).
"""

from __future__ import annotations

import torch
from torch import nn

from ghostnas.config import BuildSpec, GhostNetConfig, layout
from ghostnas.models.layers import (
    GhostBottleneck,
    GhostModule,
    SqueezeExcite,
    bottleneck_shortcut,
    make_activation,
)

__all__ = [
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "SqueezeExcite",
    "bottleneck_shortcut",
    "make_activation",
]


class GhostNet(nn.Module):
    """GhostNet classifier built from a config.

    Args:
        cfg: The architecture.
        num_classes: Classifier outputs (0 for a feature extractor without classifier).
        in_chans: Input image channels.
        stem_stride: 2 as in the paper; 1 keeps small inputs (28x28, 32x32) from collapsing to
            1x1 before the last stage. It is a build choice, not part of the architecture.
        spec: The build (:class:`~ghostnas.config.BuildSpec`); replaces the three above.
    """

    def __init__(
        self,
        cfg: GhostNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem_stride: int = 2,
        *,
        spec: BuildSpec | None = None,
    ) -> None:
        super().__init__()
        if spec is not None:
            num_classes, in_chans, stem_stride = spec.num_classes, spec.in_chans, spec.stem_stride
        lay = layout(cfg)
        self.cfg = cfg
        self.num_classes = num_classes
        self.conv_stem = nn.Conv2d(in_chans, lay.stem_chs, 3, stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(lay.stem_chs)
        self.act1 = make_activation(cfg.act)
        stages: list[nn.Module] = []
        reduction = stem_stride
        self.feature_info: list[dict[str, int | str]] = []
        for si, stage in enumerate(lay.stages):
            stages.append(stage.build(cfg.act))
            for rb in stage.blocks:
                reduction *= rb.stride
            self.feature_info.append(
                {"num_chs": stage.out_chs, "reduction": reduction, "module": f"stages.{si}"}
            )
        self.stages = nn.ModuleList(stages)
        self.num_features = lay.final_chs
        if lay.head == "pool_fc":
            self.conv_final: nn.Module = nn.Identity()
            self.conv_head: nn.Module = nn.Identity()
            self.act2: nn.Module = nn.Identity()
            classifier_in = lay.final_chs
        else:
            self.conv_final = nn.Sequential(
                nn.Conv2d(lay.blocks[-1].out_chs, lay.final_chs, 1, bias=False),
                nn.BatchNorm2d(lay.final_chs),
                make_activation(cfg.act),
            )
            self.conv_head = nn.Conv2d(lay.final_chs, lay.head_chs, 1, bias=True)
            self.act2 = make_activation(cfg.act)
            classifier_in = lay.head_chs
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier: nn.Module = (
            nn.Linear(classifier_in, num_classes) if num_classes > 0 else nn.Identity()
        )

    @torch.no_grad()
    def reparameterize(self) -> GhostNet:
        """Fold every re-parameterisable block (kinds whose module has ``reparameterize``, such
        as ``ghost_v3``) into its deploy form, in place; returns ``self``. The closed-form cost
        of such kinds is the deploy form's, so afterwards the model matches
        :func:`ghostnas.count_cost`.
        """
        _fold_children(self.stages)
        return self

    @property
    def reparameterizable(self) -> bool:
        """Whether any block has a training form that :meth:`reparameterize` would fold."""
        return any(hasattr(m, "reparameterize") for m in self.stages.modules())

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map at the end of every stage (see ``feature_info`` for widths and strides).

        Detectors pick the stages they need, e.g. the last ones at reductions 8, 16 and 32.
        """
        x = self.act1(self.bn1(self.conv_stem(x)))
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages and the final 1x1 conv: the unpooled feature map."""
        return self.conv_final(self.forward_stages(x)[-1])

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean((2, 3), keepdim=True)
        x = self.act2(self.conv_head(x)).flatten(1)
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _fold_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if hasattr(child, "reparameterize"):
            setattr(module, name, child.reparameterize())
        else:
            _fold_children(child)
