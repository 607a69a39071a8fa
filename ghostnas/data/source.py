"""``--data``: a dataset name or the path of the user's own data, loaded into a :class:`Dataset`.

``fashion-mnist``, ``cifar10`` and ``synthetic`` are the named datasets
(:mod:`ghostnas.data.named`), read once per process. Anything else is a path: an image folder
(:mod:`ghostnas.data.folder`, decoded once into the cache of :mod:`ghostnas.data.cache`) or an
``.npz`` file (:mod:`ghostnas.data.npz`). Both become arrays that go through
:func:`ghostnas.data.from_arrays`, the entry point for data already in memory, so there is one
path for checks, splits and shapes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ghostnas.data import cache
from ghostnas.data.core import Dataset, DatasetError, DatasetSpec, from_arrays
from ghostnas.data.folder import FolderScan, decode_folder, probe_folder, scan_folder
from ghostnas.data.named import DATASETS, load_cifar10, load_fashion_mnist, synthetic_dataset
from ghostnas.data.npz import file_digest, read_npz

__all__ = ["CheckFn", "DataArg", "data_label", "load_dataset", "spec_of"]

log = logging.getLogger(__name__)

DataArg = str | Dataset
"""What ``--data`` and every ``data=`` setting accept: a name, a path, or a loaded dataset."""

CheckFn = Callable[[DatasetSpec], None]
"""Called with the data's shape once it is known and before any image is decoded."""


@functools.lru_cache(maxsize=4)
def _load_named(name: str, data_dir: str | None, env: str | None) -> Dataset:
    del env  # part of the cache key only: a changed GHOSTNAS_DATA must not hit a stale entry
    if name == "fashion-mnist":
        ds = load_fashion_mnist(data_dir)
    elif name == "cifar10":
        ds = load_cifar10(data_dir)
    else:
        ds = synthetic_dataset()
    log.debug(
        "loaded %s from %s: %d train, %d test images", ds.label, ds.source, len(ds.train_x), len(ds.test_x)
    )
    return ds


def _folder_arrays(scan: FolderScan, image_size: int | None, check: CheckFn | None) -> tuple[dict, bool]:
    """The folder's arrays from the cache, or decoded (and cached); True when decoded now."""
    key = cache.cache_key(scan.digest, image_size)
    hit = cache.read_entry(scan.root, key)
    if hit is not None:
        arrays, _meta = hit
        x = arrays["x"]
        if check is not None:
            check(DatasetSpec(f"folder:{scan.root.name}", x.shape[1], x.shape[2], len(scan.classes)))
        log.debug("read %d decoded images of %s from the cache %s", sum(len(a) for k, a in arrays.items() if k.startswith("x")),
                 scan.root, cache.entry_path(scan.root, key))  # fmt: skip
        return arrays, False
    shape = probe_folder(scan, image_size)
    if check is not None:
        check(DatasetSpec(f"folder:{scan.root.name}", shape.in_chans, shape.size, len(scan.classes)))
    decoded = decode_folder(scan, shape)
    arrays = {}
    for split, suffix in (("train", ""), ("val", "_val"), ("test", "_test")):
        if split in decoded:
            arrays[f"x{suffix}"], arrays[f"y{suffix}"] = decoded[split]
    cache.write_entry(scan.root, key, arrays, {"source": str(scan.root), "classes": list(scan.classes)})
    return arrays, True


def load_dataset(
    data: DataArg = "fashion-mnist",
    data_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    check: CheckFn | None = None,
) -> Dataset:
    """Load a named dataset, an image folder or an ``.npz`` file.

    Args:
        data: ``fashion-mnist``, ``cifar10``, ``synthetic``, a folder, an ``.npz`` path, or a
            :class:`Dataset` (returned as it is, after ``check``).
        data_dir: Where a named dataset's files are (None: ``$GHOSTNAS_DATA``, then the
            default place); not used with a path.
        image_size: Resize the user's images to this square side (None: their own size, which
            must be one square size). The named datasets keep their own size.
        check: Called with the shape before any decoding (e.g. "is the image big enough for
            the network"), so a refusal costs no decoding.

    Raises:
        DatasetError: unknown name, missing or malformed files, bad images or labels (one line
            saying how to fix it).
    """
    if isinstance(data, Dataset):
        if check is not None:
            check(data.spec)
        return data
    if data in DATASETS:
        spec = DATASETS[data]
        if image_size is not None and image_size != spec.size:
            raise DatasetError(
                f"--image-size {image_size}: {data} is {spec.size}x{spec.size} and is not resized; "
                "--image-size is for your own folder or .npz"
            )
        if check is not None:
            check(spec)
        folder = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
        return _load_named(data, folder, os.environ.get("GHOSTNAS_DATA"))
    path = Path(data).expanduser()
    if image_size is not None and not 1 <= image_size <= 4096:
        raise DatasetError(f"--image-size {image_size}: must be between 1 and 4096 pixels")
    if path.is_dir():
        scan = scan_folder(path)
        arrays, _ = _folder_arrays(scan, image_size, check)
        return from_arrays(
            **arrays, name=path.resolve().name, image_size=image_size, classes=scan.classes,
            source=str(path.resolve()), digest=scan.digest, kind="folder",
        )  # fmt: skip
    if path.suffix.lower() == ".npz" or path.is_file():
        if path.suffix.lower() != ".npz":
            raise DatasetError(f"{path}: not an .npz file or an image folder")
        ds = from_arrays(
            **read_npz(path, image_size), name=path.stem, image_size=image_size,
            source=str(path.resolve()), digest=file_digest(path), kind="npz",
        )  # fmt: skip
        if check is not None:
            check(ds.spec)
        return ds
    if os.sep not in str(data) and "." not in str(data):
        raise DatasetError(
            f"unknown dataset {data!r}; choose one of {', '.join(sorted(DATASETS))}, or give an image "
            "folder (PATH/<class>/*.png) or an .npz file"
        )
    raise DatasetError(
        f"{path}: no such folder or file; give an image folder (PATH/<class>/*.png) or an .npz file"
    )


def spec_of(data: DataArg) -> DatasetSpec:
    """The shape of a named dataset (without reading it) or of a loaded one."""
    if isinstance(data, Dataset):
        return data.spec
    if data not in DATASETS:
        raise DatasetError(f"unknown dataset {data!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[data]


def data_label(data: DataArg) -> str:
    """How results name the data: the name, or ``folder:NAME`` / ``npz:NAME`` / ``arrays:NAME``."""
    return data.spec.name if isinstance(data, Dataset) else data
