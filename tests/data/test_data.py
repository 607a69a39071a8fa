from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostnas.data import (
    DEBIAN_FASHION_MNIST,
    DatasetError,
    dataset_spec,
    load_dataset,
    read_idx,
    synthetic_dataset,
    train_val_split,
)
from ghostnas.errors import GhostnasError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fmnist(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    parts = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, arr in parts.items():
        data = idx_bytes(np.asarray(arr))
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GHOSTNAS_DATA", raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda b: b"\x01" + b[1:], "magic"),  # non-zero first byte
        (lambda b: b[:2] + b"\x0d" + b[3:], "magic"),  # float data type
        (lambda b: b[:3] + b"\x00" + b[4:], "magic"),  # zero dimensions
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "promises"),
        (lambda b: b[:6], "header"),
        (lambda b: b"", "magic"),
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, mutate, needle: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(mutate(idx_bytes(np.zeros((3, 2, 2), np.uint8))))
    with pytest.raises(DatasetError, match=needle) as info:
        read_idx(path)
    assert "\n" not in str(info.value)


def test_read_idx_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path: Path, gz: bool) -> None:
    write_fmnist(tmp_path / "fm", gz=gz)
    ds = load_dataset("fashion-mnist", tmp_path / "fm")
    assert ds.train_x.shape == (12, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (6, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64 and ds.train_y.tolist() == [i % 10 for i in range(12)]
    assert ds.label == "fashion-mnist"


def test_fashion_mnist_from_env_and_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fmnist(tmp_path / "root" / "fashion-mnist", n_train=14)
    monkeypatch.setenv("GHOSTNAS_DATA", str(tmp_path / "root"))
    assert len(load_dataset("fashion-mnist").train_x) == 14


def test_missing_fashion_mnist_is_one_line_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", tmp_path / "nothing-here")
    msg = str(info.value)
    assert isinstance(info.value, GhostnasError)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "GHOSTNAS_DATA" in msg


def test_wrong_image_shape_is_rejected(tmp_path: Path) -> None:
    write_fmnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((12, 32, 32)))))
    with pytest.raises(DatasetError, match="shapes"):
        load_dataset("fashion-mnist", tmp_path)


@pytest.mark.skipif(
    not Path(DEBIAN_FASHION_MNIST, "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist package is not installed",
)
def test_fashion_mnist_from_debian_package() -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert sorted(set(ds.train_y.tolist())) == list(range(10))
    assert 60 < ds.mean[0] < 90 and 80 < ds.std[0] < 100


def write_cifar(folder: Path, n: int = 4) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": b"fake",
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_loads_with_restricted_unpickler(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    assert ds.spec.in_chans == 3


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar10_refuses_pickles_that_call_functions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to load global .*print"):
        load_dataset("cifar10", folder)
    assert "must never run" not in capsys.readouterr().out


def test_cifar10_wrong_content(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(DatasetError, match="uint8"):
        load_dataset("cifar10", folder)


def test_cifar10_missing() -> None:
    with pytest.raises(DatasetError, match="CIFAR-10 not found"):
        load_dataset("cifar10", "/nonexistent/folder")


def test_unknown_dataset() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'mnist3'"):
        dataset_spec("mnist3")


def test_split_is_fixed_and_disjoint() -> None:
    a, b = train_val_split(100, 20, seed=0), train_val_split(100, 20, seed=0)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert len(a.val) == 20 and len(a.train) == 80
    assert set(a.train.tolist()).isdisjoint(a.val.tolist())
    assert sorted(a.train.tolist() + a.val.tolist()) == list(range(100))
    assert not torch.equal(train_val_split(100, 20, seed=1).val, a.val)
    with pytest.raises(DatasetError):
        train_val_split(10, 10)


def test_synthetic_is_labelled_and_seeded() -> None:
    a, b = synthetic_dataset(n_train=50, n_test=10), synthetic_dataset(n_train=50, n_test=10)
    assert torch.equal(a.train_x, b.train_x) and "synthetic" in a.label and a.spec.synthetic
    assert load_dataset("synthetic").spec.synthetic
