"""ghostnas.data.detect: the offline detection dataset (make-detect) and the data.yaml checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ghostnas.cli import main
from ghostnas.data.detect import (
    FASHION_MNIST_CLASSES,
    DetectDataError,
    DetectRecipe,
    make_detect_dataset,
    read_detect_data,
)

TINY = DetectRecipe(images=12, imgsz=64, seed=5)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detect") / "tiny"
    make_detect_dataset(out, TINY)
    return out


def test_layout_and_labels(tiny: Path) -> None:
    data = read_detect_data(tiny / "data.yaml")
    assert data.names == FASHION_MNIST_CLASSES
    assert dict(data.images) == TINY.split_sizes() == {"train": 10, "val": 1, "test": 1}
    assert data.boxes["train"] > 0
    from PIL import Image

    for split in ("train", "val", "test"):
        for img in (tiny / "images" / split).glob("*.png"):
            assert Image.open(img).size == (64, 64)
            rows = (tiny / "labels" / split / f"{img.stem}.txt").read_text().split("\n")
            for row in filter(None, rows):
                c, x, _y, w, h = row.split()
                assert 0 <= int(c) < 10
                x0, x1 = float(x) - float(w) / 2, float(x) + float(w) / 2
                assert -1e-6 <= x0 < x1 <= 1 + 1e-6 and 0 < float(h) <= 1


def test_boxes_are_the_items_true_extent(tiny: Path) -> None:
    """Inside each box the bright pixels touch every edge (the box is tight), and the box is not
    the item's 28x28 frame scaled (Fashion-MNIST items do not fill their frame)."""
    from PIL import Image

    touched = 0
    for img in sorted((tiny / "images" / "train").glob("*.png")):
        pixels = np.asarray(Image.open(img), dtype=np.int32)
        for row in filter(None, (tiny / "labels" / "train" / f"{img.stem}.txt").read_text().split("\n")):
            _, x, y, w, h = (float(v) for v in row.split())
            x0, x1 = round((x - w / 2) * 64), round((x + w / 2) * 64)
            y0, y1 = round((y - h / 2) * 64), round((y + h / 2) * 64)
            crop = pixels[y0:y1, x0:x1]
            if crop.size and crop[:, 0].max() > 40 and crop[:, -1].max() > 40:
                touched += 1
    assert touched > 0


def test_same_seed_same_bytes_other_seed_other_data(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert (
        main(["data", "make-detect", "--out", str(again), "--images", "12", "--imgsz", "64", "--seed", "5"])
        == 0
    )
    assert _tree_digest(again) == _tree_digest(tiny)
    other = tmp_path / "other"
    make_detect_dataset(other, DetectRecipe(images=12, imgsz=64, seed=6))
    assert _tree_digest(other)["labels/train/000000.txt"] != _tree_digest(tiny)["labels/train/000000.txt"]


def test_failure_leaves_no_folder(tmp_path: Path) -> None:
    def stop(done: int, _total: int) -> None:
        if done == 5:
            raise RuntimeError("killed part-way")

    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        make_detect_dataset(out, TINY, progress=stop)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no hidden temporary folder either


def test_existing_folder_is_one_line_exit_2(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree_digest(tiny)
    assert main(["data", "make-detect", "--out", str(tiny), "--images", "12", "--imgsz", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an empty folder" in err
    assert _tree_digest(tiny) == before


def _copy(tiny: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(tiny, dst)
    return dst / "data.yaml"


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda root: (root / "data.yaml").unlink(), "no such file"),
        (
            lambda root: (root / "data.yaml").write_text(
                (root / "data.yaml").read_text().replace("val: images/val\n", "")
            ),
            "no 'val' split",
        ),
        (
            lambda root: (root / "labels" / "train" / "000000.txt").write_text("12 0.5 0.5 0.2 0.2\n"),
            "out of range",
        ),
        (
            lambda root: (root / "labels" / "train" / "000000.txt").write_text("1 0.5 0.5 1.7 0.2\n"),
            "not normalised",
        ),
        (lambda root: (root / "data.yaml").write_text("train: [unclosed\n"), "not valid YAML"),
    ],
    ids=["missing", "no-val", "class-out-of-range", "box-out-of-range", "malformed"],
)
def test_bad_data_yaml(tiny: Path, tmp_path: Path, edit: object, words: str) -> None:
    path = _copy(tiny, tmp_path / "copy")
    edit(path.parent)  # type: ignore[operator]
    with pytest.raises(DetectDataError, match=words) as exc:
        read_detect_data(path)
    assert "\n" not in str(exc.value)


def test_bad_recipe() -> None:
    with pytest.raises(DetectDataError, match="at least 3"):
        DetectRecipe(images=2).check()
    with pytest.raises(DetectDataError, match="6 pixels"):
        DetectRecipe(imgsz=40).check()


def test_unreadable_image_is_one_line_after_ultralytics_is_imported(tmp_path: Path) -> None:
    """Importing Ultralytics (the detection search does) replaces PIL's Image.open with one that
    tries a HEIF plugin on files Pillow cannot identify; a bad image is still one DatasetError."""
    pytest.importorskip("ultralytics")
    import ultralytics  # noqa: F401
    from PIL import Image

    from ghostnas.data import DatasetError, load_dataset

    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "d" / cls / f"{i}.png")
    (tmp_path / "d" / "b" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"bad\.jpg"):
        load_dataset(str(tmp_path / "d"))
