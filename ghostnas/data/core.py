"""The in-memory dataset record, the fixed validation split, and arrays the user already holds.

Every dataset ghostnas trains on, named (Fashion-MNIST, CIFAR-10), read from the user's disk (an
image folder, an ``.npz`` file) or handed over in memory, ends up as one :class:`Dataset`: ``uint8``
tensors shaped (N, C, H, W) and ``int64`` labels. User data of any origin passes through
:func:`from_arrays`, which checks labels, lengths, shapes and memory; the folder and ``.npz``
readers only produce arrays for it. So the checks and their messages are the same whichever way
the data came in.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ghostnas.errors import GhostnasError

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "Split",
    "check_memory",
    "from_arrays",
    "holdout",
    "memory_available",
    "resize_images",
    "train_val_split",
]

MEMORY_SHARE = 0.5
"""Decoded images may take at most this share of the memory available when they are read: the
trainer makes float copies of what it trains on, and the machine is rarely idle."""


class DatasetError(GhostnasError):
    """A dataset is missing, truncated or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset looks like: enough for the cost model and the network's build arguments.

    Attributes:
        name: ``fashion-mnist``, ``cifar10``, ``synthetic``, or for user data ``folder:NAME``,
            ``npz:NAME`` or ``arrays:NAME`` (the colon keeps them apart from the named ones).
        in_chans: Image channels (1 grey, 3 RGB).
        size: Square image side in pixels.
        num_classes: Number of labels.
        synthetic: True for the test-only synthetic data; every result from it is labelled.
    """

    name: str
    in_chans: int
    size: int
    num_classes: int
    synthetic: bool = False

    @property
    def user(self) -> bool:
        """True for data from the user (a folder, an ``.npz`` file, in-memory arrays)."""
        return ":" in self.name

    def describe(self) -> str:
        """``32x32 RGB, 5 classes``: the shape, for outputs."""
        chans = {1: "grey", 3: "RGB"}.get(self.in_chans, f"{self.in_chans}-channel")
        return f"{self.size}x{self.size} {chans}, {self.num_classes} classes"


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held in memory.

    Images are ``uint8`` tensors shaped (N, C, H, W); labels are ``int64`` (N,). ``mean`` and
    ``std`` are per-channel statistics of the training images on the 0..255 scale, used to
    normalise batches on the device.

    Attributes:
        spec: Name and shape.
        train_x: Training images.
        train_y: Training labels.
        test_x: Test images (final reports only, never search decisions); may be empty.
        test_y: Test labels.
        source: Where it was read from (a folder, a file, ``synthetic``, ``in-memory arrays``).
        val_x: The user's own validation images, or None: then validation images are carved
            out of the training images by a fixed, seeded split (:func:`holdout`).
        val_y: Their labels.
        classes: Class names in label order (folder names), when known.
        digest: Content digest of the source (user data), recorded with every run on it.
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None
    digest: str | None = None

    @functools.cached_property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.train_x.double().mean((0, 2, 3)))

    @functools.cached_property
    def std(self) -> tuple[float, ...]:
        # A constant channel (a blank colour plane) would divide by zero; 1.0 on the 0..255
        # scale is far below any real image's spread, so it changes nothing else.
        return tuple(max(float(v), 1.0) for v in self.train_x.double().std((0, 2, 3)))

    @property
    def label(self) -> str:
        """Name for tables and logs; synthetic data is marked as such."""
        return "synthetic (test data, not a benchmark)" if self.spec.synthetic else self.spec.name

    @property
    def has_test(self) -> bool:
        return len(self.test_x) > 0


@dataclass(frozen=True)
class Split:
    """Disjoint index sets into ``Dataset.train_x``: ``train`` to fit, ``val`` to score."""

    train: torch.Tensor
    val: torch.Tensor


def train_val_split(n: int, val_size: int, seed: int = 0) -> Split:
    """A fixed split of ``n`` training images into a training part and ``val_size`` for validation.

    The same ``(n, val_size, seed)`` always gives the same split, on every machine: it is a
    seeded permutation from torch's CPU generator. The training part keeps the permuted order, so
    its first ``k`` indices are a random subset of size ``k``.
    """
    if not 0 < val_size < n:
        raise DatasetError(
            f"validation size {val_size} must be between 1 and {n - 1} (the training set has {n})"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Split(train=perm[val_size:], val=perm[:val_size])


Pair = tuple[torch.Tensor, torch.Tensor]


def holdout(dataset: Dataset, val_images: int, train_images: int = 0, seed: int = 0) -> tuple[Pair, Pair]:
    """The (train, val) tensors a training run fits and validates on; the test split is never used.

    Without a validation split of its own, ``min(val_images, N // 5)`` training images (at least
    one) are held out by :func:`train_val_split`: a large set keeps the recipe's count, a small one
    gives a fifth. With one, a fixed seeded subset of ``val_images`` of them is used and all
    training images stay for training. ``train_images > 0`` keeps a fixed random subset of that
    many training images. Everything depends on ``seed`` only, so every candidate and every
    training seed sees the same images.
    """
    gen = torch.Generator().manual_seed(seed)
    if dataset.val_x is not None and dataset.val_y is not None:
        n_val = len(dataset.val_x)
        pick = torch.randperm(n_val, generator=gen)[: min(val_images, n_val)]
        val = (dataset.val_x[pick], dataset.val_y[pick])
        order = torch.randperm(len(dataset.train_x), generator=gen)
    else:
        n = len(dataset.train_x)
        split = train_val_split(n, max(1, min(val_images, n // 5)), seed)
        val = (dataset.train_x[split.val], dataset.train_y[split.val])
        order = split.train
    keep = order if train_images <= 0 else order[:train_images]
    return (dataset.train_x[keep], dataset.train_y[keep]), val


# --------------------------------------------------------------------------------------------
# memory


def memory_available() -> int:
    """Bytes of memory available to a new allocation now (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX: no check rather than a wrong one
        return 1 << 62


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 26 else f"{n / (1 << 20):.1f} MiB"


def check_memory(n_images: int, in_chans: int, size: int, what: str) -> None:
    """Refuse, before any decoding, data whose ``uint8`` images would not fit in memory.

    Raises:
        DatasetError: naming how much the images need and how much there is.
    """
    need = n_images * in_chans * size * size
    have = memory_available()
    if need > MEMORY_SHARE * have:
        raise DatasetError(
            f"{what}: {n_images:,} images at {in_chans}x{size}x{size} need {_gib(need)} of memory as "
            f"uint8, more than half of the {_gib(have)} available; use a smaller --image-size or "
            "fewer images"
        )


# --------------------------------------------------------------------------------------------
# arrays the user holds


def _to_numpy(a: Any, what: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    if isinstance(a, np.ndarray):
        return a
    raise DatasetError(f"{what} must be a numpy array or a torch tensor, not {type(a).__name__}")


def _images_nchw(x: Any, what: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) ``uint8`` images as (N, C, H, W)."""
    a = _to_numpy(x, what)
    if a.dtype != np.uint8:
        raise DatasetError(
            f"{what} has dtype {a.dtype}, expected uint8 pixels 0..255; convert with "
            "(x * 255).round().astype(np.uint8) for floats in [0, 1]"
        )
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4:
        if a.shape[3] in (1, 3):
            return a.transpose(0, 3, 1, 2)
        if a.shape[1] in (1, 3):
            return a
    raise DatasetError(
        f"{what} has shape {a.shape}; expected (N, H, W) grey images or (N, H, W, C) / (N, C, H, W) "
        "with C = 1 (grey) or 3 (RGB)"
    )


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    a = _to_numpy(y, what)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise DatasetError(f"{what} must be a 1-D array of integer labels, not {a.dtype} {a.shape}")
    if len(a) != n:
        raise DatasetError(f"{what} has {len(a):,} labels for {n:,} images; give one label per image")
    return a.astype(np.int64)


def resize_images(x: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) ``uint8`` images resized to ``size x size`` with Pillow's bilinear filter
    (antialiased when shrinking), each image stretched to the square as a whole."""
    from PIL import Image

    if x.shape[2] == size and x.shape[3] == size:
        return x
    out = np.empty((len(x), x.shape[1], size, size), dtype=np.uint8)
    for i, img in enumerate(x):
        for c, plane in enumerate(img):
            pic = Image.fromarray(np.ascontiguousarray(plane), mode="L")
            out[i, c] = np.asarray(pic.resize((size, size), Image.Resampling.BILINEAR))
    return out


def from_arrays(
    x: Any,
    y: Any,
    x_val: Any = None,
    y_val: Any = None,
    x_test: Any = None,
    y_test: Any = None,
    *,
    name: str = "arrays",
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    source: str = "in-memory arrays",
    digest: str | None = None,
    kind: str = "arrays",
) -> Dataset:
    """A :class:`Dataset` from images and labels held in memory (numpy arrays or torch tensors).

    This is the entry point for data a user already has, and the path every user dataset takes
    (the folder and ``.npz`` readers call it too).

    Args:
        x: Training images, ``uint8``: (N, H, W) grey, (N, H, W, C) or (N, C, H, W) with C = 1 or 3.
        y: Training labels, integers 0..K-1 with every class present.
        x_val, y_val: An optional validation split (used for every search decision); without it
            one is carved out of the training images by a fixed seeded split.
        x_test, y_test: An optional test split (scored once at the end of ``ghostnas train``).
        name: Short name for tables and logs.
        image_size: Resize every image to this square side; None keeps the images' own size,
            which must then be square and the same in every split.
        classes: Class names in label order (their count sets the number of classes).
        source: Where the arrays came from, recorded with results.
        digest: Content digest of the source, recorded with results.
        kind: ``arrays``, ``folder`` or ``npz``: the prefix of ``spec.name``.

    Raises:
        DatasetError: one line naming the problem and the fix.
    """
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, xs, ys in (("", x, y), ("_val", x_val, y_val), ("_test", x_test, y_test)):
        if xs is None and ys is None:
            continue
        if xs is None or ys is None:
            raise DatasetError(f"{name}: x{split} and y{split} come together; give both or neither")
        images = _images_nchw(xs, f"{name}: x{split}")
        splits[split] = (images, _labels(ys, len(images), f"{name}: y{split}"))
    tx, ty = splits[""]
    if len(tx) == 0:
        raise DatasetError(f"{name}: no training images")
    chans = {a.shape[1] for a, _ in splits.values()}
    if len(chans) > 1:
        raise DatasetError(f"{name}: the splits mix grey and RGB images ({sorted(chans)} channels); use one")
    in_chans = chans.pop()
    if image_size is None:
        shapes = {a.shape[2:] for a, _ in splits.values()}
        if len(shapes) > 1 or tx.shape[2] != tx.shape[3]:
            seen = ", ".join(f"{h}x{w}" for h, w in sorted(shapes))
            raise DatasetError(f"{name}: images are {seen}, not one square size; pass --image-size N")
        size = int(tx.shape[2])
    else:
        size = int(image_size)
    if not 1 <= size <= 4096:
        raise DatasetError(f"{name}: image size {size} is out of range 1..4096")
    total = sum(len(a) for a, _ in splits.values())
    check_memory(total, in_chans, size, name)
    num_classes = len(classes) if classes is not None else int(ty.max()) + 1
    for split, (_, labels) in splits.items():
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
            raise DatasetError(
                f"{name}: label {bad} in y{split} is out of range 0..{num_classes - 1}"
                + (" (one per class name)" if classes is not None else " (set by the training labels)")
                + "; labels must be 0..K-1"
            )
    if num_classes < 2:
        raise DatasetError(f"{name}: only {num_classes} class; a classifier needs at least two")
    counts = np.bincount(ty, minlength=num_classes)
    if (counts == 0).any():
        missing = int(np.flatnonzero(counts == 0)[0])
        label = f"{missing} ({classes[missing]})" if classes is not None else str(missing)
        raise DatasetError(f"{name}: class {label} has no training images; labels must be 0..K-1, each used")

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            return torch.zeros(0, in_chans, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
        images, labels = splits[split]
        images = np.ascontiguousarray(resize_images(images, size))
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_x, train_y = tensors("")
    test_x, test_y = tensors("_test")
    val = tensors("_val") if "_val" in splits else (None, None)
    spec = DatasetSpec(f"{kind}:{name}", in_chans, size, num_classes)
    return Dataset(
        spec, train_x, train_y, test_x, test_y, source, val[0], val[1],
        tuple(classes) if classes is not None else None, digest,
    )  # fmt: skip


ProgressFn = Callable[[int, int], None]
"""``progress(done, total)`` while images are decoded."""
