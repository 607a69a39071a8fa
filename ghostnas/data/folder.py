"""Image folders in the ImageFolder layout, decoded with Pillow (no torchvision).

Two layouts are read::

    PATH/<class>/*.png|jpg|jpeg|webp|bmp          one pool; validation is carved out of it
    PATH/train/<class>/...                        the user's own splits: train/ and, optionally,
    PATH/val/<class>/...   PATH/test/<class>/...  val/ (search decisions) and test/ (final report)

Class names are the sub-folder names, sorted; labels are their positions in that order. Files
inside a class folder are found recursively; other extensions and hidden files are ignored.

Reading happens in three passes so that every check runs before the expensive one:

1. :func:`scan_folder` lists the files and stats them (size, modification time): this is the
   content digest that keys the cache (:mod:`ghostnas.data.cache`).
2. :func:`probe_folder` reads only the image headers (size and mode) to settle the output shape:
   channels (grey if every image is grey, else RGB) and side (``image_size``, or the images' own
   when they all share one square size), and checks that the decoded images fit in memory.
3. :func:`decode_folder` decodes every image to that shape (threads; Pillow releases the GIL),
   logging progress, and names the first file that is unreadable or truncated.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ghostnas.data.core import DatasetError, check_memory

__all__ = [
    "IMAGE_SUFFIXES",
    "FolderScan",
    "FolderShape",
    "decode_folder",
    "decode_image",
    "probe_folder",
    "scan_folder",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SPLITS = ("train", "val", "test")
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PROGRESS_EVERY_S = 5.0
LARGE_FOLDER = 2000
"""Folders with at least this many images log the start and end of decoding (progress lines
come every few seconds whatever the size)."""


@dataclass(frozen=True)
class FolderScan:
    """What a folder holds, before any image is opened.

    Attributes:
        root: The folder.
        classes: Class names in label order.
        files: Per split (``train``, ``val``, ``test``; only those present), ``(path, label)``.
        digest: SHA-256 over every file's relative path, size and modification time (ns).
    """

    root: Path
    classes: tuple[str, ...]
    files: dict[str, tuple[tuple[Path, int], ...]]
    digest: str

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.files.values())


@dataclass(frozen=True)
class FolderShape:
    """The decoded shape settled from the headers: ``in_chans`` (1 or 3) and square ``size``."""

    in_chans: int
    size: int


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                out.append(Path(dirpath) / name)
    return out


def scan_folder(root: str | os.PathLike[str]) -> FolderScan:
    """List and stat an image folder (see the module docstring for the layouts).

    Raises:
        DatasetError: not a folder, fewer than two classes, an empty class, a val/test class that
            train lacks.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; give an image folder (PATH/<class>/*.png) or an .npz file")
    top = _subdirs(root)
    names = {p.name for p in top}
    if "train" in names and names <= set(SPLITS):
        split_dirs = {s: root / s for s in SPLITS if s in names}
    else:
        split_dirs = {"train": root}
    classes = tuple(p.name for p in _subdirs(split_dirs["train"]))
    where = split_dirs["train"]
    if len(classes) < 2:
        raise DatasetError(
            f"{where}: {len(classes)} class folder{'s' if len(classes) != 1 else ''}, need at least two "
            f"(one sub-folder of images per class: {where}/<class>/*.png)"
        )
    label = {c: i for i, c in enumerate(classes)}
    files: dict[str, tuple[tuple[Path, int], ...]] = {}
    h = hashlib.sha256(b"ghostnas image folder v1\n")
    for split, folder in split_dirs.items():
        rows: list[tuple[Path, int]] = []
        for cdir in _subdirs(folder):
            if cdir.name not in label:
                raise DatasetError(
                    f"{cdir}: class {cdir.name!r} is not among the training classes in {where}; "
                    "every val/test class needs training images"
                )
            found = _images(cdir)
            if not found:
                raise DatasetError(
                    f"{cdir}: class {cdir.name!r} has no images ({', '.join(IMAGE_SUFFIXES)}); "
                    "add images or remove the folder"
                )
            for path in found:
                st = path.stat()
                h.update(f"{path.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
                rows.append((path, label[cdir.name]))
        files[split] = tuple(rows)
    return FolderScan(root=root, classes=classes, files=files, digest=h.hexdigest())


def _open(path: Path) -> Any:  # a PIL image; PIL is imported lazily
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}; fix or remove the file") from None
    except ImportError as exc:
        # Importing Ultralytics (ghostnas.yolo, search --task detect) replaces PIL's Image.open with
        # one that, when Pillow cannot identify a file, tries an optional HEIF plugin: a missing
        # plugin then means the same thing, an image Pillow cannot read.
        raise DatasetError(
            f"cannot read image {path}: Pillow cannot identify it ({exc}); fix or remove the file"
        ) from None


def probe_folder(scan: FolderScan, image_size: int | None) -> FolderShape:
    """Settle channels and side from the image headers (no pixel is decoded).

    Raises:
        DatasetError: an unreadable file (named), images of several sizes without ``image_size``,
            or more decoded bytes than memory allows (with how much they need).
    """
    sizes: set[tuple[int, int]] = set()
    grey = True
    for rows in scan.files.values():
        for path, _ in rows:
            with _open(path) as im:
                sizes.add(im.size)
                grey = grey and im.mode in _GREY_MODES
    if image_size is None:
        if len(sizes) > 1 or any(w != h for w, h in sizes):
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4]) + (", ..." if len(sizes) > 4 else "")
            raise DatasetError(
                f"{scan.root}: images are {shown}, not one square size; pass --image-size N to resize "
                "them all to NxN"
            )
        size = next(iter(sizes))[0]
    else:
        size = image_size
    shape = FolderShape(in_chans=1 if grey else 3, size=size)
    check_memory(scan.n_images, shape.in_chans, shape.size, str(scan.root))
    return shape


def decode_image(path: Path, shape: FolderShape) -> np.ndarray:
    """One image as ``uint8`` (C, S, S): converted to grey or RGB, stretched to S x S (bilinear,
    antialiased when shrinking).

    Raises:
        DatasetError: the file is unreadable or truncated (named).
    """
    from PIL import Image

    with _open(path) as im:
        try:
            im.load()
            if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit grey: scale to 8 bits
                scale = 255.0 / 65535.0 if im.mode != "F" else 255.0
                im = Image.fromarray((np.asarray(im, dtype=np.float64) * scale).clip(0, 255).astype(np.uint8))
            im = im.convert("L" if shape.in_chans == 1 else "RGB")
            if im.size != (shape.size, shape.size):
                im = im.resize((shape.size, shape.size), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DatasetError(f"cannot decode image {path}: {exc}; fix or remove the file") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _chunks(rows: tuple[tuple[Path, int], ...], n: int) -> Iterator[tuple[tuple[Path, int], ...]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def decode_folder(scan: FolderScan, shape: FolderShape) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decode every image of every split; logs progress every few seconds.

    Returns:
        Per split, ``uint8`` images (N, C, S, S) and ``int64`` labels (N,).
    """
    total, done = scan.n_images, 0
    t0 = last = time.perf_counter()
    # A large folder announces itself and reports every few seconds; a small one (seconds at most)
    # stays quiet, so that an error in it is the only line the user sees.
    level = logging.INFO if total >= LARGE_FOLDER else logging.DEBUG
    log.log(
        level,
        "decoding %d images from %s to %dx%dx%d",
        total,
        scan.root,
        shape.in_chans,
        shape.size,
        shape.size,
    )
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        for split, rows in scan.files.items():
            x = np.empty((len(rows), shape.in_chans, shape.size, shape.size), dtype=np.uint8)
            y = np.fromiter((label for _, label in rows), dtype=np.int64, count=len(rows))
            i = 0
            for chunk in _chunks(rows, 256):
                for img in pool.map(lambda row: decode_image(row[0], shape), chunk):
                    x[i] = img
                    i += 1
                done += len(chunk)
                now = time.perf_counter()
                if now - last >= _PROGRESS_EVERY_S and done < total:
                    last = now
                    log.info("decoded %d/%d images (%.0f/s)", done, total, done / (now - t0))
            out[split] = (x, y)
    elapsed = time.perf_counter() - t0
    log.log(level, "decoded %d images in %.1f s (%.0f/s)", total, elapsed, total / max(elapsed, 1e-9))
    return out
