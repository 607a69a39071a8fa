"""The one rule that fits a network to its data: input channels, classes and stem stride.

``in_chans`` and ``num_classes`` are the data's. The stem stride follows the image side:

    stem stride 1 below :data:`STRIDE2_FROM` (64) pixels, the papers' stride 2 from 64 up.

GhostNet's blocks halve the map four times (16x); with the papers' stride-2 stem a 224x224 input
ends at 7x7. A 28x28 or 32x32 image would end at 1x1 that way, so below 64 pixels the stem keeps
the full resolution and the last stage still sees 2x2 (32x32) or 4x4 (28x28 rounds up at each
stride); from 64 pixels up the stride-2 stem also leaves at least 2x2. The search's proxy, the
zero-cost proxies, ``ghostnas train``, the metadata ``ghostnas export`` writes and its ONNX file
all take the shape from :func:`input_shape`, so a network is trained, costed and exported the way
it was searched.

An image is too small when the network's total downsampling (stem times its stride-2 blocks)
exceeds its side: the last stage would then see less than one pixel of real input per position.
"""

from __future__ import annotations

from ghostnas.config import BuildSpec
from ghostnas.data.core import DatasetError, DatasetSpec

__all__ = ["STRIDE2_FROM", "check_input_size", "input_shape", "stem_stride_for"]

STRIDE2_FROM = 64
"""Smallest image side (pixels) that gets the papers' stride-2 stem."""


def stem_stride_for(size: int) -> int:
    """1 below :data:`STRIDE2_FROM` pixels, 2 from there up (see the module docstring)."""
    return 1 if size < STRIDE2_FROM else 2


def input_shape(spec: DatasetSpec) -> BuildSpec:
    """The shape a network for ``spec`` is built, trained, costed (``--cost-at data``) and exported at."""
    return BuildSpec(
        input_size=spec.size,
        num_classes=spec.num_classes,
        in_chans=spec.in_chans,
        stem_stride=stem_stride_for(spec.size),
    )


def check_input_size(spec: DatasetSpec, downsamples: int, what: str) -> None:
    """Refuse images smaller than the network's total downsampling.

    Args:
        spec: The data.
        downsamples: Number of stride-2 blocks in the network (the largest over a search space).
        what: The network or space, for the message.

    Raises:
        DatasetError: naming the smallest side that works.
    """
    stem = stem_stride_for(spec.size)
    factor = stem * 2**downsamples
    if spec.size < factor:
        raise DatasetError(
            f"image size {spec.size} is too small for {what}: its stem (stride {stem}) and {downsamples} "
            f"stride-2 blocks downsample {factor}x, so images need at least {factor}x{factor}; "
            f"pass --image-size {factor} or more"
        )
