"""Image folders and .npz files made at test time (Pillow), for the user-data tests."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def image_array(size: tuple[int, int], label: int, seed: int, chans: int = 3) -> np.ndarray:
    """A learnable image: a per-class colour plus noise, ``uint8`` (H, W[, C])."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.random.default_rng(1000 + label).integers(0, 256, chans)
    a = np.clip(base + rng.normal(0, 25, (h, w, chans)), 0, 255).astype(np.uint8)
    return a[..., 0] if chans == 1 else a


def png_bytes(size: tuple[int, int] = (32, 32), label: int = 0, seed: int = 0, chans: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_array(size, label, seed, chans)).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "frog"),
    per_class: int = 8,
    sizes: Sequence[tuple[int, int]] = ((32, 32),),
    chans: Sequence[int] = (3,),
    split: str | None = None,
    ext: str = ".png",
) -> Path:
    """``root[/split]/<class>/<i>.png``; image ``i`` takes ``sizes[i % len]`` and ``chans[i % len]``."""
    folder = root / split if split else root
    offset = {None: 0, "train": 0, "val": 100_000, "test": 200_000}.get(split, 300_000)
    for label, name in enumerate(classes):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = image_array(sizes[i % len(sizes)], label, offset + 1000 * label + i, chans[i % len(chans)])
            Image.fromarray(a).save(d / f"{i}{ext}")
    return root


def make_npz(
    path: Path, n: int = 24, size: int = 32, n_classes: int = 3, val: int = 0, **extra: np.ndarray
) -> Path:
    """``x`` (N, H, W, 3) uint8 and ``y``; ``val`` > 0 adds ``x_val``/``y_val``."""
    y = np.arange(n) % n_classes
    x = np.stack([image_array((size, size), int(c), i) for i, c in enumerate(y)])
    arrays: dict[str, np.ndarray] = {"x": x, "y": y}
    if val:
        yv = np.arange(val) % n_classes
        arrays["x_val"] = np.stack([image_array((size, size), int(c), 500 + i) for i, c in enumerate(yv)])
        arrays["y_val"] = yv
    arrays.update(extra)
    np.savez(path, **arrays)
    return path
