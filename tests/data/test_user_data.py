"""The user's own data: image folders, .npz files and in-memory arrays, the decoded-image cache,
the stem-stride rule, and the whole path through search, export and train on the CLI."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import ghostnas
from ghostnas.cli import main
from ghostnas.config import BuildSpec
from ghostnas.cost import PAPER_SHAPE, count_cost
from ghostnas.data import (
    DatasetError,
    DatasetSpec,
    cache_dir,
    check_input_size,
    clear_cache,
    from_arrays,
    holdout,
    input_shape,
    load_dataset,
    stem_stride_for,
)
from ghostnas.data import folder as folder_mod
from tests._images import image_array, make_folder, make_npz, png_bytes


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts calls of the one function that decodes an image file."""
    calls = {"n": 0}
    real = folder_mod.decode_image

    def counting(path: Path, shape: folder_mod.FolderShape) -> np.ndarray:
        calls["n"] += 1
        return real(path, shape)

    monkeypatch.setattr(folder_mod, "decode_image", counting)
    return calls


# --------------------------------------------------------------------------------------------
# reading


def test_rgb_folder_loads_with_class_names_and_own_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets", per_class=5)
    ds = load_dataset(str(root))
    assert ds.spec == DatasetSpec("folder:pets", 3, 32, 3)
    assert ds.classes == ("cat", "dog", "frog")
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.train_y.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert not ds.has_test and ds.val_x is None and ds.digest
    # the pixels are the file's pixels, channels first
    first = np.asarray(image_array((32, 32), 0, 0))
    assert np.array_equal(ds.train_x[0].permute(1, 2, 0).numpy(), first)


def test_grey_folder_is_one_channel_and_mixed_is_rgb(tmp_path: Path) -> None:
    assert load_dataset(str(make_folder(tmp_path / "g", chans=(1,)))).spec.in_chans == 1
    mixed = load_dataset(str(make_folder(tmp_path / "m", chans=(1, 3))))
    assert mixed.spec.in_chans == 3
    grey_as_rgb = mixed.train_x[0]  # image 0 is grey: three equal planes
    assert torch.equal(grey_as_rgb[0], grey_as_rgb[1]) and torch.equal(grey_as_rgb[1], grey_as_rgb[2])


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "sizes", sizes=((32, 32), (40, 28), (20, 20)), ext=".jpg")
    with pytest.raises(DatasetError, match="--image-size") as info:
        load_dataset(str(root))
    assert "\n" not in str(info.value)
    ds = load_dataset(str(root), image_size=24)
    assert ds.train_x.shape[1:] == (3, 24, 24)


def test_split_layout_keeps_val_and_test_apart(tmp_path: Path) -> None:
    root = tmp_path / "splits"
    for split, n in (("train", 6), ("val", 3), ("test", 2)):
        make_folder(root, per_class=n, split=split)
    ds = load_dataset(str(root))
    assert len(ds.train_x) == 18 and len(ds.val_x) == 9 and len(ds.test_x) == 6
    (tx, _), (vx, vy) = holdout(ds, val_images=100)
    assert len(tx) == 18 and len(vx) == 9  # the user's val split, all training images kept
    assert sorted(vy.tolist()) == sorted(ds.val_y.tolist())


def test_holdout_is_fixed_and_disjoint_without_a_val_split(tmp_path: Path) -> None:
    ds = load_dataset(str(make_folder(tmp_path / "f", per_class=10)))
    a, b = holdout(ds, 2000, seed=0), holdout(ds, 2000, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1], strict=True))
    assert len(a[1][0]) == 6 and len(a[0][0]) == 24  # a fifth of 30 held out
    seen = {tuple(x.flatten()[:16].tolist()) for x in a[0][0]}
    assert not any(tuple(x.flatten()[:16].tolist()) in seen for x in a[1][0])


def test_npz_and_arrays_are_one_path(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz", n=24, val=6, classes=np.array(["a", "b", "c"]))
    ds = load_dataset(str(path))
    assert ds.spec == DatasetSpec("npz:d", 3, 32, 3) and ds.classes == ("a", "b", "c")
    assert len(ds.val_x) == 6 and ds.digest
    with np.load(path) as z:
        nchw = torch.from_numpy(z["x"]).permute(0, 3, 1, 2).contiguous()
        mem = from_arrays(nchw, torch.from_numpy(z["y"]), z["x_val"], z["y_val"], name="d")
    assert torch.equal(mem.train_x, ds.train_x) and torch.equal(mem.val_y, ds.val_y)
    assert mem.spec.name == "arrays:d" and mem.spec.in_chans == 3
    grey = from_arrays(np.zeros((4, 20, 20), np.uint8), np.array([0, 1, 0, 1]), image_size=16)
    assert grey.train_x.shape == (4, 1, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"y": np.array([0, 1, 2, 5])}, ("class 3 has no training images",)),
        ({"y": np.array([0, 1, -1, 1])}, ("label -1", "out of range")),
        ({"y": np.array([0, 1, 1])}, ("3 labels for 4 images",)),
        ({"y": np.array([0, 0, 0, 0])}, ("at least two",)),
        ({"x": np.zeros((4, 8, 8), np.float32)}, ("uint8",)),
        ({"x": np.zeros((4, 2, 8, 8), np.uint8)}, ("shape",)),
        ({"x_val": np.zeros((2, 8, 8), np.uint8), "y_val": np.array([0, 7])}, ("label 7", "y_val")),
        ({"x_val": np.zeros((2, 8, 8), np.uint8)}, ("x_val and y_val",)),
    ],
)
def test_from_arrays_rejects(kwargs: dict, words: tuple[str, ...]) -> None:
    args = {"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 0, 1]), **kwargs}
    with pytest.raises(DatasetError) as info:
        from_arrays(**args)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_npz_object_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 1]), z=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="Python objects"):
        load_dataset(str(path))


# --------------------------------------------------------------------------------------------
# the cache


def test_second_load_reads_the_cache_and_a_change_decodes_again(tmp_path: Path, count_decodes) -> None:
    root = make_folder(tmp_path / "c", per_class=4)
    first = load_dataset(str(root))
    assert count_decodes["n"] == 12
    entries = list(cache_dir().glob("*.npz"))
    assert len(entries) == 1 and not list(cache_dir().glob(".*tmp"))
    mtime = entries[0].stat().st_mtime_ns
    second = load_dataset(str(root))
    assert count_decodes["n"] == 12 and entries[0].stat().st_mtime_ns == mtime  # nothing decoded
    assert torch.equal(first.train_x, second.train_x) and first.digest == second.digest
    load_dataset(str(root), image_size=16)  # another size is another entry
    assert count_decodes["n"] == 24
    (root / "cat" / "new.png").write_bytes(png_bytes(label=0, seed=99))
    changed = load_dataset(str(root))
    assert count_decodes["n"] == 24 + 13 and len(changed.train_x) == 13 and changed.digest != first.digest
    assert len(list(cache_dir().glob("*.npz"))) == 1  # older entries of the folder are dropped
    assert clear_cache() == 1 and not cache_dir().exists()


def test_a_corrupt_cache_entry_is_decoded_again(tmp_path: Path, count_decodes) -> None:
    root = make_folder(tmp_path / "c", per_class=3)
    load_dataset(str(root))
    (entry,) = cache_dir().glob("*.npz")
    entry.write_bytes(b"not a zip file")
    assert len(load_dataset(str(root)).train_x) == 9 and count_decodes["n"] == 18


# --------------------------------------------------------------------------------------------
# the network fits the data


@pytest.mark.parametrize(("size", "stride"), [(16, 1), (28, 1), (32, 1), (63, 1), (64, 2), (224, 2)])
def test_stem_stride_rule(size: int, stride: int) -> None:
    assert stem_stride_for(size) == stride
    shape = input_shape(DatasetSpec("x", 1, size, 7))
    assert shape == BuildSpec(input_size=size, num_classes=7, in_chans=1, stem_stride=stride)
    net = ghostnas.create_model("ghostnet_tiny", **shape.build_args())
    out = net.forward_features(torch.zeros(1, 1, size, size))
    assert min(out.shape[-2:]) >= 1


def test_too_small_images_are_refused() -> None:
    check_input_size(DatasetSpec("x", 3, 16, 2), 4, "space ghostnet_v1")
    with pytest.raises(DatasetError, match=r"at least 16x16; pass --image-size 16"):
        check_input_size(DatasetSpec("x", 3, 12, 2), 4, "space ghostnet_v1")


# --------------------------------------------------------------------------------------------
# the CLI: search, export, train


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(argv)
    out = capsys.readouterr()
    return status, out.out, out.err


SEARCH = ["search", "--space", "tiny", "--budget", "30M", "--trials", "2", "--no-progress"]


@pytest.mark.slow
def test_folder_search_export_train(tmp_path, monkeypatch, capsys, count_decodes, isolated_home) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "pets", per_class=8)
    argv = [
        *SEARCH,
        "--data",
        "pets",
        "--evaluator",
        "train",
        "--epochs",
        "1",
        "--out",
        "run",
        "--trials",
        "1",
    ]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert count_decodes["n"] == 24
    info = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    assert info["data"] == "folder:pets" and info["classes"] == ["cat", "dog", "frog"]
    assert info["build"] == {"num_classes": 3, "in_chans": 3, "stem_stride": 1} and info["image_size"] == 32
    assert info["cost_at"] == "paper" and "224x224" in info["cost_convention"] and "224x224" in out

    # the second search on the same folder decodes nothing (cache) and resumes the study
    status, out, err = _run([*argv, "--trials", "2"], capsys)  # the last --trials wins
    assert status == 0, err
    assert count_decodes["n"] == 24 and "(1 this run)" in out

    status, out, err = _run(["export", "run", "--best", "--name", "pets_net"], capsys)
    assert status == 0, err
    meta = json.loads((isolated_home / "models" / "pets_net.json").read_text())["meta"]
    assert meta["build"] == {"input_size": 32, "num_classes": 3, "in_chans": 3, "stem_stride": 1}
    assert meta["data"]["name"] == "folder:pets" and meta["data"]["classes"] == ["cat", "dog", "frog"]

    status, out, err = _run(
        ["train", "pets_net", "--data", "pets", "--epochs", "1", "--out", "t", "--json"], capsys
    )
    assert status == 0, err
    m = json.loads(out)
    assert m["build"] == {"num_classes": 3, "in_chans": 3, "stem_stride": 1} and m["input_size"] == 32
    assert m["test_acc"] is None and m["test_images"] == 0 and 0 <= m["val_acc"] <= 1
    assert m["classes"] == ["cat", "dog", "frog"] and count_decodes["n"] == 24


@pytest.mark.slow
def test_split_folder_of_mixed_sizes_with_image_size(tmp_path, monkeypatch, capsys, isolated_home) -> None:
    monkeypatch.chdir(tmp_path)
    sizes = ((32, 32), (48, 40), (24, 30))
    make_folder(tmp_path / "mix", per_class=6, sizes=sizes, split="train", chans=(1, 3))
    make_folder(tmp_path / "mix", per_class=2, sizes=sizes, split="test")
    argv = [*SEARCH, "--data", "mix", "--evaluator", "naswot", "--out", "run"]
    status, _, err = _run(argv, capsys)
    assert status == 2 and "--image-size" in err and not (tmp_path / "run").exists()
    status, _, err = _run([*argv, "--image-size", "20"], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["splits"] == {
        "train": 18,
        "val": None,
        "test": 6,
    }
    assert _run(["export", "run", "--best", "--name", "mix_net"], capsys)[0] == 0
    status, out, err = _run(
        ["train", "mix_net", "--data", "mix", "--image-size", "20", "--epochs", "1", "--out", "t", "--json"],
        capsys,
    )
    assert status == 0, err
    m = json.loads(out)
    assert m["input_size"] == 20 and m["test_images"] == 6 and m["test_acc"] is not None


@pytest.mark.slow
def test_npz_search_export_onnx_train(tmp_path, monkeypatch, capsys, isolated_home) -> None:
    monkeypatch.chdir(tmp_path)
    make_npz(tmp_path / "d.npz", n=30, size=32, val=9)
    status, _, err = _run([*SEARCH, "--data", "d.npz", "--evaluator", "naswot", "--out", "run"], capsys)
    assert status == 0, err
    argv = ["export", "run", "--best", "--name", "npz_net"]
    have_onnx = all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxscript"))
    if have_onnx:
        argv += ["--onnx", "n.onnx"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    meta = json.loads((isolated_home / "models" / "npz_net.json").read_text())["meta"]
    if have_onnx:
        import onnx

        graph = onnx.load("n.onnx").graph
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims == [1, 3, 32, 32] and graph.output[0].type.tensor_type.shape.dim[1].dim_value == 3
        assert meta["onnx"]["stem_stride"] == 1 and meta["onnx"]["num_classes"] == 3
    status, out, err = _run(
        ["train", "npz_net", "--data", "d.npz", "--epochs", "1", "--out", "t", "--json"], capsys
    )
    assert status == 0, err
    m = json.loads(out)
    assert m["val_images"] == 9 and m["train_images"] == 30 and m["data"] == "npz:d"


def test_cost_at_data_counts_at_the_data_shape(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "g", per_class=4, chans=(1,))
    argv = [
        "search",
        "--space",
        "tiny",
        "--trials",
        "3",
        "--no-progress",
        "--data",
        "g",
        "--evaluator",
        "fake",
    ]
    status, out, err = _run([*argv, "--budget", "3M", "--cost-at", "data", "--out", "run"], capsys)
    assert status == 0, err
    info = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    shape = BuildSpec(input_size=32, num_classes=3, in_chans=1, stem_stride=1)
    assert info["cost_shape"] == {"input_size": 32, "num_classes": 3, "in_chans": 1, "stem_stride": 1}
    assert shape.describe() in info["cost_convention"] and shape.describe() in out
    assert shape.describe() in (tmp_path / "run" / "summary.md").read_text()
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    cfg = ghostnas.config_from_dict(best.get("config", best))
    with open(tmp_path / "run" / "trials.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["number"] == str(best["meta"]["trial"]))
    assert int(row["macs"]) == count_cost(cfg, spec=shape).macs != count_cost(cfg, spec=PAPER_SHAPE).macs
    assert int(row["macs"]) <= 3e6
    # a study made at the papers' shape is not resumed at the data's
    status, _, err = _run([*argv, "--budget", "3M", "--out", "run"], capsys)
    assert status == 2 and "cost_at" in err
    # and the export checks the config against the data-shape costs it recorded
    assert _run(["export", "run", "--best", "--name", "g_net"], capsys)[0] == 0


def test_user_data_gets_its_own_default_run_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "birds", per_class=3)
    status, out, err = _run(["search", "--space", "tiny", "--budget", "30M", "--trials", "1", "--no-progress",
                             "--data", "birds", "--evaluator", "fake"], capsys)  # fmt: skip
    assert status == 0, err
    assert "birds" in out.splitlines()[0] and any(
        "birds" in p.name for p in (tmp_path / "ghostnas-runs").iterdir()
    )


def test_memory_check_refuses_before_decoding(tmp_path, monkeypatch, capsys, count_decodes) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "big", per_class=4)
    from ghostnas.data import core

    monkeypatch.setattr(core, "memory_available", lambda: 10_000)
    status, _, err = _run([*SEARCH, "--data", "big", "--evaluator", "fake", "--out", "run"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert "12 images at 3x32x32 need" in err and "available" in err
    assert count_decodes["n"] == 0 and not (tmp_path / "run").exists()
    assert not cache_dir().exists() or not list(cache_dir().iterdir())


def test_in_memory_dataset_searches_through_the_same_path(tmp_path: Path) -> None:
    from ghostnas.budget import parse_budget
    from ghostnas.search import SearchSettings, run_search

    x = np.stack([image_array((16, 16), i % 2, i, chans=1) for i in range(20)])
    ds = from_arrays(x, np.arange(20) % 2, name="mine")
    settings = SearchSettings(
        budget=parse_budget("30M"),
        space="tiny",
        trials=2,
        evaluator="naswot",
        data=ds,
        out=str(tmp_path / "r"),
    )
    result = run_search(settings)
    s = result.run_info["settings"]
    assert s["data"] == "arrays:mine" and s["build"] == {"num_classes": 2, "in_chans": 1, "stem_stride": 1}
    assert os.path.isfile(tmp_path / "r" / "best.json")


def test_a_large_folder_logs_its_decoding(tmp_path, monkeypatch, caplog) -> None:
    import logging

    root = make_folder(tmp_path / "f", per_class=3)
    monkeypatch.setattr(folder_mod, "LARGE_FOLDER", 5)  # "large" for the test: 9 images
    monkeypatch.setattr(folder_mod, "_PROGRESS_EVERY_S", 0.0)  # a progress line after every chunk
    with caplog.at_level(logging.INFO, logger="ghostnas.data"):
        load_dataset(str(root))
    lines = [r.getMessage() for r in caplog.records if r.name == "ghostnas.data.folder"]
    assert lines[0].startswith("decoding 9 images") and lines[-1].startswith("decoded 9 images")


def test_data_info_and_clear_cache(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "pets", per_class=2, split="train")
    make_folder(tmp_path / "pets", per_class=1, split="val")
    status, out, err = _run(["data", "info", "pets", "--json"], capsys)
    assert status == 0, err
    info = json.loads(out)
    assert info["splits"] == {"train": 6, "val": 3, "test": 0} and info["classes"] == ["cat", "dog", "frog"]
    assert info["build"] == {"num_classes": 3, "in_chans": 3, "stem_stride": 1}
    status, out, _ = _run(["data", "info", "pets"], capsys)
    assert status == 0 and "32x32 RGB, 3 classes" in out and "clear-cache" in out
    status, out, _ = _run(["data", "clear-cache"], capsys)
    assert status == 0 and out.startswith("removed 1 cache file ") and not cache_dir().exists()
    status, _, err = _run(["data", "info", "nothere/"], capsys)
    assert status == 2 and err.count("\n") == 1 and "nothere" in err
