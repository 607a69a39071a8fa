"""``.npz`` files of images and labels, read without pickles.

Keys: ``x`` (N x H x W grey or N x H x W x C, ``uint8``) and ``y`` (N integer labels), and
optionally ``x_val``/``y_val`` (a validation split for search decisions), ``x_test``/``y_test``
(scored once at the end of ``ghostnas train``) and ``classes`` (class names in label order).
Everything is loaded with ``allow_pickle=False``: an array of Python objects is refused, never
unpickled. The arrays' headers are read first, so a file too large for memory is refused before
its images are.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ghostnas.data.core import DatasetError, check_memory

__all__ = ["NPZ_KEYS", "file_digest", "npz_shapes", "read_npz"]

NPZ_KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test", "classes")


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """Shape and dtype of every array in the file, from the headers only."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    reader = {
                        (1, 0): np.lib.format.read_array_header_1_0,
                        (2, 0): np.lib.format.read_array_header_2_0,
                    }.get(version)
                    if reader is None:
                        raise ValueError(f"unsupported .npy version {version}")
                    shape, _fortran, dtype = reader(fh)
                out[info.filename[: -len(".npy")]] = (tuple(shape), dtype)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc}); save it with numpy.savez") from None
    return out


def read_npz(path: str | os.PathLike[str], image_size: int | None) -> dict[str, Any]:
    """The arrays of an ``.npz`` file, checked against memory before they are loaded.

    Returns:
        Keyword arguments for :func:`ghostnas.data.from_arrays` (``x``, ``y``, ``x_val``...).

    Raises:
        DatasetError: missing ``x``/``y``, object arrays, unreadable file, too large for memory.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; give an .npz file with arrays x and y, or an image folder")
    shapes = npz_shapes(path)
    for key in ("x", "y"):
        if key not in shapes:
            raise DatasetError(
                f"{path}: no array {key!r} (it has {', '.join(sorted(shapes)) or 'none'}); save images as x "
                "and labels as y: numpy.savez(path, x=images, y=labels)"
            )
    for key, (_, dtype) in shapes.items():
        if dtype.hasobject:
            raise DatasetError(f"{path}: array {key!r} holds Python objects; ghostnas does not load pickles")
    n, side, chans = 0, 0, 1
    for key in ("x", "x_val", "x_test"):
        if key in shapes:
            shape = shapes[key][0]
            n += shape[0] if shape else 0
            side = max(side, *(shape[1:3] or (0,)))  # (N, C, H, W): C is small, H decides
            if len(shape) == 4:
                chans = max(chans, shape[3] if shape[3] in (1, 3) else shape[1])
    check_memory(n, chans, image_size or side, str(path))
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in NPZ_KEYS if k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read ({exc}); save it with numpy.savez") from None
    if "classes" in arrays:
        names = arrays.pop("classes")
        if names.ndim != 1 or names.dtype.kind not in "UO":
            raise DatasetError(f"{path}: 'classes' must be a 1-D array of class names")
        arrays["classes"] = [str(c) for c in names]
    return arrays
