"""Datasets as in-memory tensors: Fashion-MNIST, CIFAR-10 and a synthetic set for tests.

No torchvision and no DataLoader: a whole dataset is a few tens of megabytes, so it is read once
into ``uint8`` tensors and the trainer indexes batches straight out of them (on the GPU when it
trains there). Loaded datasets are cached per process, so a search reads the files once, not
once per candidate.

Where the files come from:

- Fashion-MNIST (the default): the four idx files (gzipped or raw) in ``--data-dir``, else in
  ``$GHOSTNAS_DATA``, else in ``/usr/share/datasets/fashion-mnist`` (Debian's
  ``dataset-fashion-mnist`` package, which ``scripts/setup.sh`` installs). A folder may hold the
  files or a ``fashion-mnist/`` subfolder with them.
- CIFAR-10: a ``cifar-10-batches-py`` folder (the "python version" from the dataset's site) in
  the same places. Those batches are Python pickles; they are read with a restricted unpickler
  that can build nothing but plain containers and numpy arrays (see :class:`_ArrayUnpickler`).
- ``synthetic``: class-dependent random patterns, seeded, for tests only. Results on it say so.

Search decisions use a fixed, seeded validation split carved out of the training set
(:func:`train_val_split`); the official test set is kept for final reports only.
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ghostnas.errors import GhostnasError

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "Split",
    "dataset_spec",
    "load_dataset",
    "read_idx",
    "synthetic_dataset",
    "train_val_split",
]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
_FMNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_HOW_TO_GET_FMNIST = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (or `bash scripts/setup.sh`), "
    "or pass --data-dir / set GHOSTNAS_DATA to a folder with the four *-idx*-ubyte[.gz] files"
)
_MAX_IDX_BYTES = 1 << 31  # far above any dataset we read; stops a hostile header early


class DatasetError(GhostnasError):
    """A dataset is missing, truncated or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset looks like, known without reading it (the cost model needs this).

    Attributes:
        name: ``fashion-mnist``, ``cifar10`` or ``synthetic``.
        in_chans: Image channels.
        size: Square image side in pixels.
        num_classes: Number of labels.
        synthetic: True for the test-only synthetic data; every result from it is labelled.
    """

    name: str
    in_chans: int
    size: int
    num_classes: int
    synthetic: bool = False


DATASETS: dict[str, DatasetSpec] = {
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, 28, 10),
    "cifar10": DatasetSpec("cifar10", 3, 32, 10),
    "synthetic": DatasetSpec("synthetic", 1, 16, 10, synthetic=True),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` called ``name``; a one-line error for unknown names."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


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
        test_x: Official test images (final reports only, never search decisions).
        test_y: Official test labels.
        source: Where it was read from (a folder, or ``synthetic``).
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str

    @functools.cached_property
    def mean(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.train_x.double().mean((0, 2, 3)))

    @functools.cached_property
    def std(self) -> tuple[float, ...]:
        return tuple(float(v) for v in self.train_x.double().std((0, 2, 3)))

    @property
    def label(self) -> str:
        """Name for tables and logs; synthetic data is marked as such."""
        return "synthetic (test data, not a benchmark)" if self.spec.synthetic else self.spec.name


@dataclass(frozen=True)
class Split:
    """Disjoint index sets into ``Dataset.train_x``: ``train`` to fit, ``val`` to score."""

    train: torch.Tensor
    val: torch.Tensor


# --------------------------------------------------------------------------------------------
# idx files (MNIST format)

_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (raw, or gzipped when the name ends in ``.gz``) into a numpy array.

    The header is checked: two zero bytes, the data-type code (only unsigned bytes, 0x08, as in
    every MNIST-style file), the number of dimensions (1 to 4), and that the payload has exactly
    the size the dimensions promise.

    Raises:
        DatasetError: unreadable, truncated, oversized or malformed file.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read(_MAX_IDX_BYTES + 1)
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"cannot read idx file {path}: {exc}; re-download or reinstall it") from None
    if len(raw) > _MAX_IDX_BYTES:
        raise DatasetError(f"idx file {path} is larger than 2 GiB; not a dataset ghostnas reads")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DatasetError(
            f"{path} is not an unsigned-byte idx file (bad magic number {raw[:4].hex() or 'none'}); "
            "re-download or reinstall it"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"idx file {path} is truncated inside its header; re-download it")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise DatasetError(
            f"idx file {path} holds {len(raw) - header} data bytes but its header {dims} promises "
            f"{expected}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _candidate_dirs(data_dir: str | os.PathLike[str] | None, sub: str, default: str | None) -> list[Path]:
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    elif os.environ.get("GHOSTNAS_DATA"):
        roots.append(Path(os.environ["GHOSTNAS_DATA"]).expanduser())
    elif default is not None:
        roots.append(Path(default))
    out = []
    for root in roots:
        out += [root, root / sub]
    return out


def _load_fashion_mnist(data_dir: str | None) -> Dataset:
    dirs = _candidate_dirs(data_dir, "fashion-mnist", DEBIAN_FASHION_MNIST)
    for folder in dirs:
        files = {key: _find_file(folder, stem) for key, stem in _FMNIST_FILES.items()}
        if all(files.values()):
            break
    else:
        where = ", ".join(str(d) for d in dirs)
        raise DatasetError(f"Fashion-MNIST not found in {where}: {_HOW_TO_GET_FMNIST}")
    arrays = {key: read_idx(p) for key, p in files.items() if p is not None}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(
                f"Fashion-MNIST {split} files in {folder} have shapes {x.shape} and {y.shape}, "
                "expected (N, 28, 28) images and N labels; re-download them"
            )
        if y.size and int(y.max()) > 9:
            raise DatasetError(f"Fashion-MNIST {split} labels in {folder} go above 9; re-download them")
    return Dataset(
        spec=DATASETS["fashion-mnist"],
        train_x=torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        source=str(folder),
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 python batches (pickles) without trusting them


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global.

    CIFAR-10's python batches are pickled dicts of bytes, lists and a ``uint8`` numpy array. A
    pickle can name any importable callable, so a normal ``pickle.load`` of a downloaded file can
    run arbitrary code. This unpickler resolves only the globals numpy needs to rebuild an array
    (``_reconstruct``, ``ndarray``, ``dtype``) and ``_codecs.encode`` (how Python 3 pickles bytes
    at protocol 2); anything else raises. Arrays of Python objects could still only contain what
    this unpickler can build, and the loader checks the array's dtype and shape afterwards.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
        obj = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except OSError as exc:
        raise DatasetError(f"cannot read CIFAR-10 batch {path}: {exc}") from None
    except Exception as exc:  # any unpickling failure means a file we will not use
        raise DatasetError(
            f"{path} is not a CIFAR-10 python batch ({type(exc).__name__}: {exc}); re-download it"
        ) from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path} is not a CIFAR-10 python batch (no dict inside); re-download it")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or not isinstance(labels, list)
        or len(labels) != len(data)
        or not all(isinstance(v, int) and 0 <= v <= 9 for v in labels)
    ):
        raise DatasetError(
            f"{path} does not hold uint8 (N, 3072) images and N labels 0..9; re-download CIFAR-10"
        )
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _load_cifar10(data_dir: str | None) -> Dataset:
    dirs = _candidate_dirs(data_dir, "cifar-10-batches-py", None)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for folder in dirs:
        if all((folder / n).is_file() for n in names):
            break
    else:
        where = ", ".join(str(d) for d in dirs) or "(no folder given)"
        raise DatasetError(
            f"CIFAR-10 not found in {where}: download the python version (cifar-10-python.tar.gz), "
            "unpack it and pass --data-dir or set GHOSTNAS_DATA to the cifar-10-batches-py folder"
        )
    parts = [_read_cifar_batch(folder / n) for n in names]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    return Dataset(
        spec=DATASETS["cifar10"],
        train_x=torch.from_numpy(np.ascontiguousarray(train_x)),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(np.ascontiguousarray(parts[5][0])),
        test_y=torch.from_numpy(parts[5][1]),
        source=str(folder),
    )


# --------------------------------------------------------------------------------------------
# synthetic data (tests only)


def synthetic_dataset(
    n_train: int = 2048, n_test: int = 512, size: int = 16, in_chans: int = 1, seed: int = 0
) -> Dataset:
    """Learnable random data for tests: each class is a fixed random pattern plus noise.

    It is not a benchmark: anything trained or scored on it is labelled ``synthetic``.
    """
    gen = torch.Generator().manual_seed(seed)
    classes = 10
    protos = torch.rand(classes, in_chans, size, size, generator=gen) * 255

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=gen)
        noise = torch.randn(n, in_chans, size, size, generator=gen) * 40
        x = (0.7 * protos[y] + 0.3 * 128 + noise).clamp(0, 255).round().to(torch.uint8)
        return x, y

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    spec = DatasetSpec("synthetic", in_chans, size, classes, synthetic=True)
    return Dataset(spec, train_x, train_y, test_x, test_y, source="synthetic")


# --------------------------------------------------------------------------------------------
# loading, caching and the validation split


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str | None, env: str | None) -> Dataset:
    del env  # part of the cache key only: a changed GHOSTNAS_DATA must not hit a stale entry
    if name == "fashion-mnist":
        ds = _load_fashion_mnist(data_dir)
    elif name == "cifar10":
        ds = _load_cifar10(data_dir)
    else:
        ds = synthetic_dataset()
    log.info(
        "loaded %s from %s: %d train, %d test images", ds.label, ds.source, len(ds.train_x), len(ds.test_x)
    )
    return ds


def load_dataset(name: str = "fashion-mnist", data_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a dataset by name, reading its files once per process.

    Args:
        name: ``fashion-mnist``, ``cifar10`` or ``synthetic``.
        data_dir: Folder with the files; None looks in ``$GHOSTNAS_DATA`` and then the default
            location (Debian's package folder for Fashion-MNIST).

    Raises:
        DatasetError: unknown name, files missing or malformed (one line saying how to fix it).
    """
    dataset_spec(name)
    folder = None if data_dir is None else str(Path(data_dir).expanduser().resolve())
    return _load_cached(name, folder, os.environ.get("GHOSTNAS_DATA"))


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
