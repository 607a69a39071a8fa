"""The named datasets: Fashion-MNIST, CIFAR-10 and a synthetic set for tests.

Where the files come from:

- Fashion-MNIST (the default): the four idx files (gzipped or raw) in ``--data-dir``, else in
  ``$GHOSTNAS_DATA``, else in ``/usr/share/datasets/fashion-mnist`` (Debian's
  ``dataset-fashion-mnist`` package, which ``scripts/setup.sh`` installs). A folder may hold the
  files or a ``fashion-mnist/`` subfolder with them.
- CIFAR-10: a ``cifar-10-batches-py`` folder (the "python version" from the dataset's site) in
  the same places. Those batches are Python pickles; they are read with a restricted unpickler
  that can build nothing but plain containers and numpy arrays (see :class:`_ArrayUnpickler`).
- ``synthetic``: class-dependent random patterns, seeded, for tests only. Results on it say so.

Each is read whole into ``uint8`` tensors (a few tens of megabytes); the official test set is
kept for final reports only.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ghostnas.data.core import Dataset, DatasetError, DatasetSpec

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "dataset_spec",
    "load_cifar10",
    "load_fashion_mnist",
    "read_idx",
    "synthetic_dataset",
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


def load_fashion_mnist(data_dir: str | None) -> Dataset:
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


def load_cifar10(data_dir: str | None) -> Dataset:
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
