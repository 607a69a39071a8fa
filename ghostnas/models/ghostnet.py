"""GhostNet (Han et al., CVPR 2020) built from a :class:`~ghostnas.config.GhostNetConfig`.

Blocks compute; :func:`~ghostnas.config.layout` decides every channel width, so this file and the
closed-form cost model in :mod:`ghostnas.cost` cannot disagree about the architecture. The network
asks each resolved block to build itself, so blocks of any kind (:mod:`ghostnas.blocks`) fit in;
this file also holds the V1 Ghost module and bottleneck layers that kind ``ghost`` builds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ghostnas.blocks.ghost import ResolvedBlock
from ghostnas.config import BuildSpec, GhostNetConfig, layout

__all__ = [
    "GhostBottleneck",
    "GhostModule",
    "GhostNet",
    "SqueezeExcite",
    "bottleneck_shortcut",
    "make_activation",
]

_ACT_LAYERS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hard_swish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """Activation module by config name (see :data:`ghostnas.config.ACTIVATIONS`)."""
    layer = _ACT_LAYERS[name]
    return layer(inplace=True) if layer in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else layer()


class GhostModule(nn.Module):
    """A cheap replacement for a 1x1 conv.

    A primary 1x1 conv makes ``ceil(out / s)`` intrinsic channels; a depthwise ``d x d`` conv makes
    ``s - 1`` "ghost" channels from each; the concatenation is sliced to ``out``. With ``s > 2``
    or odd ``out`` a few ghost channels are computed and dropped: they are counted as real cost.
    """

    def __init__(self, in_chs: int, out_chs: int, s: int = 2, d: int = 3, act: str | None = "relu") -> None:
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / s)
        new_chs = init_chs * (s - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, 1, 1, 0, bias=False),
            nn.BatchNorm2d(init_chs),
            make_activation(act) if act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, d, 1, d // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            make_activation(act) if act else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        return torch.cat([x1, x2], dim=1)[:, : self.out_chs]


class SqueezeExcite(nn.Module):
    """Channel attention: pool, reduce, activation, expand, hard-sigmoid gate."""

    def __init__(self, chs: int, reduced_chs: int, act: str = "relu") -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(chs, reduced_chs, 1, bias=True)
        self.act = make_activation(act)
        self.conv_expand = nn.Conv2d(reduced_chs, chs, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean((2, 3), keepdim=True)
        w = self.conv_expand(self.act(self.conv_reduce(w)))
        return x * F.hardsigmoid(w)


def bottleneck_shortcut(rb: ResolvedBlock) -> nn.Module:
    """The Ghost bottleneck's shortcut: identity when shapes match, else depthwise k x k (stride)
    + BN + 1x1 conv + BN (the reference code's layout, so timm's keys map one to one)."""
    if rb.identity_shortcut:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(rb.in_chs, rb.in_chs, rb.k, rb.stride, rb.k // 2, groups=rb.in_chs, bias=False),
        nn.BatchNorm2d(rb.in_chs),
        nn.Conv2d(rb.in_chs, rb.out_chs, 1, 1, 0, bias=False),
        nn.BatchNorm2d(rb.out_chs),
    )


class GhostBottleneck(nn.Module):
    """Ghost module (expand, act) -> [depthwise stride-2] -> [SE] -> Ghost module (project) + shortcut."""

    def __init__(self, rb: ResolvedBlock, act: str = "relu") -> None:
        super().__init__()
        self.stride = rb.stride
        self.ghost1 = GhostModule(rb.in_chs, rb.mid_chs, rb.s, rb.d, act=act)
        if rb.stride > 1:
            self.conv_dw: nn.Module = nn.Conv2d(
                rb.mid_chs, rb.mid_chs, rb.k, rb.stride, rb.k // 2, groups=rb.mid_chs, bias=False
            )
            self.bn_dw: nn.Module = nn.BatchNorm2d(rb.mid_chs)
        else:
            self.conv_dw = nn.Identity()
            self.bn_dw = nn.Identity()
        self.se: nn.Module = SqueezeExcite(rb.mid_chs, rb.se_chs, act) if rb.se_chs else nn.Identity()
        self.ghost2 = GhostModule(rb.mid_chs, rb.out_chs, rb.s, rb.d, act=None)
        self.shortcut = bottleneck_shortcut(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        out = self.bn_dw(self.conv_dw(out))
        out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x)


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
