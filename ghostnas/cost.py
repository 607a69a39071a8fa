"""Closed-form cost model: parameters and MACs of a config, without building a model.

Convention (the one the GhostNet and mobile-NAS papers call "FLOPs"): multiply-accumulates of
convolution and linear layers only, biases, batch-norm, activations, pooling, the SE gate's
multiply and the shortcut's add not counted. At 224x224 and 1000 classes, GhostNet 0.5x/1.0x/1.3x
come to 42,328,152 / 141,150,512 / 227,003,256 MACs. ``thop`` also counts batch-norm and
activation operations and reports more (about 155.3M for 1.0x with ultralytics-thop 2.2.3); restricted to conv and linear
layers, it agrees with this module to the unit (the tests check both statements).

Parameters are every trainable tensor of the built model: conv and linear weights and biases and
batch-norm weights and biases (running statistics are buffers, not parameters).

The arithmetic walks :func:`ghostnas.config.layout`, the same resolved layout the torch builder
uses, asking each block's kind for its own closed form (:meth:`ResolvedBlockBase.count`), and takes microseconds per config, which is what lets the search reject over-budget
candidates before any training (see ``benchmarks/bench_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ghostnas.blocks.base import Counter, conv_out_size
from ghostnas.config import MAX_INPUT_SIZE, BuildSpec, GhostNetConfig, layout
from ghostnas.errors import GhostnasError

__all__ = [
    "PAPER_SHAPE",
    "Cost",
    "conv_out_size",
    "count_cost",
    "count_network",
    "count_tail",
    "measure_cost",
]

PAPER_SHAPE = BuildSpec()
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


def count_cost(
    cfg: GhostNetConfig,
    input_size: int = 224,
    num_classes: int = 1000,
    in_chans: int = 3,
    stem_stride: int = 2,
    *,
    spec: BuildSpec | None = None,
    training: bool = False,
) -> Cost:
    """Exact parameters and MACs of ``create_model(cfg, spec=spec)`` at ``spec.input_size``, as
    deployed (after :meth:`~ghostnas.models.GhostNet.reparameterize` for kinds that have a
    training form), or as trained with ``training=True``.

    Args:
        cfg: The architecture.
        input_size: Side of the square input image in pixels (ignored when ``spec`` is given).
        num_classes: Classifier outputs; 0 means no classifier (feature extractor).
        in_chans: Input image channels.
        stem_stride: Must match the value the model is built with (see :class:`BuildSpec`).
        spec: The build; when given, it replaces the four arguments above.
        training: Count the training form of re-parameterisable kinds instead of the deployed one.

    Returns:
        The counts; they equal a hook count on the built model to the unit.
    """
    if spec is None:
        if (
            isinstance(input_size, bool)
            or not isinstance(input_size, int)
            or not 1 <= input_size <= MAX_INPUT_SIZE
        ):
            raise GhostnasError(f"input size {input_size!r} must be an integer in [1, {MAX_INPUT_SIZE}]")
        if (
            isinstance(num_classes, bool)
            or not isinstance(num_classes, int)
            or not 0 <= num_classes <= 1_000_000
        ):
            raise GhostnasError(f"num_classes {num_classes!r} must be an integer in [0, 1000000]")
        spec = BuildSpec(input_size, in_chans, num_classes, stem_stride)
    c = count_network(cfg, spec, training=training)
    return Cost(params=c.params, macs=c.macs, input_size=spec.input_size, num_classes=spec.num_classes)


def count_network(cfg: GhostNetConfig, spec: BuildSpec, *, training: bool = False) -> Counter:
    """The stem, every block (by its kind's closed form), the final conv, the head.

    Args:
        cfg: The architecture.
        spec: The build.
        training: Count the form that is trained rather than the deployed one (they differ for
            re-parameterisable kinds such as ``ghost_v3``; budgets use the deployed one).
    """
    lay = layout(cfg)
    c = Counter()
    size = conv_out_size(spec.input_size, 3, spec.stem_stride)
    c.conv(spec.in_chans, lay.stem_chs, 3, 1, size * size)
    c.bn(lay.stem_chs)
    for stage in lay.stages:
        stage.count(c, size, training)
        size = stage.out_size(size)
    count_tail(c, lay.blocks[-1].out_chs, lay.final_chs, lay.head_chs, spec.num_classes, size, lay.head)
    return c


def count_tail(
    c: Counter,
    last_chs: int,
    final_chs: int,
    head_chs: int,
    num_classes: int,
    size: int,
    head: str = "ghostnet",
) -> None:
    """The head. ``ghostnet``: 1x1 conv + BN to ``final_chs``, pooling, head conv, classifier;
    ``pool_fc``: pooling and the classifier on the last block's channels."""
    if head == "pool_fc":
        if num_classes > 0:
            c.linear(last_chs, num_classes)
        return
    c.conv(last_chs, final_chs, 1, 1, size * size)
    c.bn(final_chs)
    c.conv(final_chs, head_chs, 1, 1, 1, bias=True)
    if num_classes > 0:
        c.linear(head_chs, num_classes)


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
