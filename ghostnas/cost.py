"""Closed-form cost model: parameters and MACs of a config, without building a model.

Convention (the one the GhostNet and mobile-NAS papers call "FLOPs"): multiply-accumulates of
convolution and linear layers only, biases, batch-norm, activations, pooling, the SE gate's
multiply and the shortcut's add not counted. At 224x224 and 1000 classes, GhostNet 0.5x/1.0x/1.3x
come to 42,328,152 / 141,150,512 / 227,003,256 MACs. ``thop`` also counts batch-norm and
activation operations and reports more (about 153.9M for 1.0x); restricted to conv and linear
layers, it agrees with this module to the unit (the tests check both statements).

Parameters are every trainable tensor of the built model: conv and linear weights and biases and
batch-norm weights and biases (running statistics are buffers, not parameters).

The arithmetic walks :func:`ghostnas.config.layout`, the same resolved layout the torch builder
uses, and takes microseconds per config, which is what lets the search reject over-budget
candidates before any training (see ``benchmarks/bench_cost.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ghostnas.config import GhostNetConfig, ResolvedBlock, layout
from ghostnas.errors import GhostnasError

__all__ = ["PAPER_SHAPE", "Cost", "InputShape", "conv_out_size", "count_cost", "measure_cost"]

MAX_INPUT_SIZE = 4096


@dataclass(frozen=True)
class InputShape:
    """The input a network is built for and costed at: the build arguments besides the config.

    :data:`PAPER_SHAPE` is the papers' convention (224x224 RGB, 1000 classes, stride-2 stem),
    the default for budgets; :func:`ghostnas.data.input_shape` gives a dataset's own.

    Attributes:
        input_size: Square input side in pixels.
        num_classes: Classifier outputs.
        in_chans: Input channels.
        stem_stride: Stride of the stem conv (1 or 2).
    """

    input_size: int = 224
    num_classes: int = 1000
    in_chans: int = 3
    stem_stride: int = 2

    def build_args(self) -> dict[str, int]:
        """Keyword arguments for :func:`ghostnas.create_model`."""
        return {"num_classes": self.num_classes, "in_chans": self.in_chans, "stem_stride": self.stem_stride}

    def describe(self) -> str:
        """``224x224x3, 1000 classes, stem stride 2``: the convention, for every output."""
        return (
            f"{self.input_size}x{self.input_size}x{self.in_chans}, {self.num_classes} classes, "
            f"stem stride {self.stem_stride}"
        )

    def count(self, cfg: GhostNetConfig) -> Cost:
        """:func:`count_cost` of ``cfg`` at this shape."""
        return count_cost(cfg, self.input_size, self.num_classes, self.in_chans, self.stem_stride)


PAPER_SHAPE = InputShape()
"""224x224 RGB, 1000 classes, stride-2 stem: where the GhostNet and mobile-NAS papers count."""


@dataclass(frozen=True)
class Cost:
    """Cost of one network at one input size.

    Attributes:
        params: Trainable parameters (weights, biases, batch-norm affine parameters).
        macs: Multiply-accumulates of conv and linear layers for one image.
        input_size: Square input side in pixels the MACs were counted at.
        num_classes: Classifier width the counts include.
    """

    params: int
    macs: int
    input_size: int
    num_classes: int


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output side of a conv with ``padding = kernel // 2`` (odd kernels), as PyTorch computes it."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class _Counter:
    """Accumulates conv/linear/batch-norm costs; one method per layer kind the builder uses."""

    __slots__ = ("macs", "params")

    def __init__(self) -> None:
        self.macs = 0
        self.params = 0

    def conv(self, cin: int, cout: int, k: int, groups: int, out_hw: int, bias: bool = False) -> None:
        weights = k * k * (cin // groups) * cout
        self.params += weights + (cout if bias else 0)
        self.macs += weights * out_hw

    def bn(self, chs: int) -> None:
        self.params += 2 * chs

    def linear(self, fin: int, fout: int) -> None:
        self.params += fin * fout + fout
        self.macs += fin * fout

    def ghost_module(self, cin: int, cout: int, s: int, d: int, hw: int) -> None:
        init = math.ceil(cout / s)
        new = init * (s - 1)
        self.conv(cin, init, 1, 1, hw)
        self.bn(init)
        self.conv(init, new, d, init, hw)
        self.bn(new)

    def bottleneck(self, rb: ResolvedBlock, size: int) -> int:
        """Count one block at input side ``size``; return its output side."""
        out_size = conv_out_size(size, rb.k, rb.stride) if rb.stride > 1 else size
        hw_in, hw_out = size * size, out_size * out_size
        self.ghost_module(rb.in_chs, rb.mid_chs, rb.s, rb.d, hw_in)
        if rb.stride > 1:
            self.conv(rb.mid_chs, rb.mid_chs, rb.k, rb.mid_chs, hw_out)
            self.bn(rb.mid_chs)
        if rb.se_chs:
            self.conv(rb.mid_chs, rb.se_chs, 1, 1, 1, bias=True)
            self.conv(rb.se_chs, rb.mid_chs, 1, 1, 1, bias=True)
        self.ghost_module(rb.mid_chs, rb.out_chs, rb.s, rb.d, hw_out)
        if not rb.identity_shortcut:
            self.conv(rb.in_chs, rb.in_chs, rb.k, rb.in_chs, hw_out)
            self.bn(rb.in_chs)
            self.conv(rb.in_chs, rb.out_chs, 1, 1, hw_out)
            self.bn(rb.out_chs)
        return out_size


def count_cost(
    cfg: GhostNetConfig,
    input_size: int = 224,
    num_classes: int = 1000,
    in_chans: int = 3,
    stem_stride: int = 2,
) -> Cost:
    """Exact parameters and MACs of ``create_model(cfg, num_classes, in_chans)`` at ``input_size``.

    Args:
        cfg: The architecture.
        input_size: Side of the square input image in pixels.
        num_classes: Classifier outputs; 0 means no classifier (feature extractor).
        in_chans: Input image channels.
        stem_stride: Must match the value the model is built with (see :class:`GhostNet`).

    Returns:
        The counts; they equal a hook count on the built model to the unit.
    """
    if (
        isinstance(input_size, bool)
        or not isinstance(input_size, int)
        or not 1 <= input_size <= MAX_INPUT_SIZE
    ):
        raise GhostnasError(f"input size {input_size!r} must be an integer in [1, {MAX_INPUT_SIZE}]")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 0 <= num_classes <= 1_000_000:
        raise GhostnasError(f"num_classes {num_classes!r} must be an integer in [0, 1000000]")
    lay = layout(cfg)
    c = _Counter()
    size = conv_out_size(input_size, 3, stem_stride)
    c.conv(in_chans, lay.stem_chs, 3, 1, size * size)
    c.bn(lay.stem_chs)
    for rb in lay.blocks:
        size = c.bottleneck(rb, size)
    c.conv(lay.blocks[-1].out_chs, lay.final_chs, 1, 1, size * size)
    c.bn(lay.final_chs)
    c.conv(lay.final_chs, lay.head_chs, 1, 1, 1, bias=True)
    if num_classes > 0:
        c.linear(lay.head_chs, num_classes)
    return Cost(params=c.params, macs=c.macs, input_size=input_size, num_classes=num_classes)


def measure_cost(model: Any, input_size: int = 224, in_chans: int = 3) -> Cost:
    """Count parameters and conv/linear MACs of a built model with forward hooks.

    This is the independent check on :func:`count_cost`: it runs one forward pass on a zero image
    and reads every layer's real weight shape and output size. It is far slower (it builds and runs
    the network) and is meant for tests and ``ghostnas profile --verify``.
    """
    import torch
    from torch import nn

    macs = 0

    def conv_hook(mod: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = mod.kernel_size
        macs += (out.numel() // out.shape[0]) * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal macs
        macs += (out.numel() // out.shape[0]) * mod.in_features

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_chans, input_size, input_size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    num_classes = getattr(model, "num_classes", 0)
    return Cost(params=params, macs=macs, input_size=input_size, num_classes=num_classes)
