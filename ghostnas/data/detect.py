"""Detection data: a real detection set made offline from Fashion-MNIST, and a reader that checks
any Ultralytics (YOLO txt) dataset before a search trains on it.

Why made, not downloaded: the machines ghostnas runs on in tests and CI reach no network, and a
detection search needs boxes. :func:`make_detect_dataset` composes Fashion-MNIST items onto
canvases the way detection sets look: several items per canvas at random log-uniform scales
(from a tenth of the canvas side to more than half of it), random positions and slight aspect
changes, placement rejected when it overlaps an earlier item too much, and background clutter
(noise, shapes, lines, and texture strips cut from other items) so that "anything bright" is not
an object. Each box is the item's *true* extent: the bounding box of its non-background pixels
after scaling, not the 28x28 frame.

Items of the train, val and test splits come from disjoint Fashion-MNIST pools (train: the first
54,000 training images; val: the last 6,000; test: the official test set), so no item is seen in
two splits. Every canvas draws from its own random stream ``(seed, split, index)``: the same seed
gives byte-identical files whatever else runs.

The output folder is written whole or not at all: everything goes to a hidden folder beside it
that is renamed into place at the end (removed on any failure).

:func:`read_detect_data` reads a ``data.yaml`` (safe loader) and checks what a detector's training
needs: a train and a val split whose images exist, class names, and label files whose classes are
in range and whose boxes are normalised. Its errors are one line (:class:`DetectDataError`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ghostnas._fs import check_output_dir, writing
from ghostnas.data.core import DatasetError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_SUFFIXES",
    "DetectData",
    "DetectDataError",
    "DetectRecipe",
    "check_new_folder",
    "make_detect_dataset",
    "read_detect_data",
]

logger = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
_VAL_POOL_START = 54_000  # Fashion-MNIST training images from here on are the val split's items
_ITEM_THRESHOLD = 24  # a pixel above this (of 255) belongs to the item: its true extent
_MAX_PLACEMENTS = 40
_MAX_LABEL_BYTES = 1 << 20
_MAX_YAML_BYTES = 1 << 20


class DetectDataError(DatasetError):
    """A detection dataset cannot be made or read; one line naming the problem and the fix."""


@dataclass(frozen=True)
class DetectRecipe:
    """How :func:`make_detect_dataset` composes its canvases; every field is recorded in
    ``dataset.json`` beside the images.

    Attributes:
        images: Canvases in all splits together (val and test get a tenth each, at least one).
        imgsz: Canvas side in pixels.
        seed: The one seed every canvas's random stream derives from.
        min_items, max_items: Items per canvas (uniform).
        min_scale, max_scale: Item side as a share of the canvas side, drawn log-uniformly so
            that small items are as common as large ones.
        max_iou: A new item whose box overlaps an earlier box by more than this IoU, or covers
            more than ``max_cover`` of it, is placed elsewhere (or dropped after 40 tries).
        max_cover: See ``max_iou``: the share of an earlier box a new box may hide.
        clutter: Up to this many background shapes, lines and texture strips per canvas.
    """

    images: int = 2000
    imgsz: int = 320
    seed: int = 0
    min_items: int = 1
    max_items: int = 6
    min_scale: float = 0.1
    max_scale: float = 0.6
    max_iou: float = 0.3
    max_cover: float = 0.5
    clutter: int = 10

    def check(self) -> None:
        """Raise :class:`DetectDataError` for a recipe that cannot make a dataset."""
        if self.images < 3:
            raise DetectDataError(
                f"--images {self.images}: need at least 3 (one per split: train, val, test)"
            )
        if not 32 <= self.imgsz <= 4096:
            raise DetectDataError(f"--imgsz {self.imgsz}: choose a canvas side from 32 to 4096 pixels")
        if not 1 <= self.min_items <= self.max_items <= 50:
            raise DetectDataError("items per canvas: need 1 <= min_items <= max_items <= 50")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise DetectDataError("item scale: need 0 < min_scale <= max_scale <= 1")
        if self.imgsz * self.min_scale < 6:
            raise DetectDataError(
                f"--imgsz {self.imgsz}: the smallest items would be under 6 pixels; use --imgsz 64 or more"
            )

    def split_sizes(self) -> dict[str, int]:
        """Canvases per split: a tenth each for val and test (at least one), the rest train."""
        n_val = max(1, round(self.images * 0.1))
        n_test = max(1, round(self.images * 0.1))
        return {"train": self.images - n_val - n_test, "val": n_val, "test": n_test}


@dataclass(frozen=True)
class DetectData:
    """A checked Ultralytics detection dataset.

    Attributes:
        yaml_path: The ``data.yaml`` (absolute).
        names: Class names, index order.
        images: Image count per split present (``train``, ``val`` and maybe ``test``).
        boxes: Box count per split.
        digest: SHA-256 of the data.yaml and every label file (a study made on other data is not
            resumed on this one).
    """

    yaml_path: Path
    names: tuple[str, ...]
    images: Mapping[str, int]
    boxes: Mapping[str, int]
    digest: str
    image_dirs: Mapping[str, str] = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def label(self) -> str:
        return str(self.yaml_path)


# --------------------------------------------------------------------------------------------
# making a dataset


def _resize(item: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(item).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def _background(rng: np.random.Generator, size: int, pool: np.ndarray, clutter: int) -> np.ndarray:
    """A grey canvas with noise, shapes, lines and texture strips (none of them an object)."""
    canvas = np.full((size, size), rng.uniform(0, 50), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, clutter + 1))):
        kind = int(rng.integers(0, 4))
        level = rng.uniform(20, 150)
        if kind == 0:  # a filled or hollow rectangle
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 20 + 1, size // 3 + 2, 2)
            patch = canvas[y0 : y0 + h, x0 : x0 + w]
            if rng.random() < 0.5:
                patch[...] = 0.5 * patch + 0.5 * level
            else:
                t = max(1, size // 100)
                patch[:t], patch[-t:], patch[:, :t], patch[:, -t:] = level, level, level, level
        elif kind == 1:  # an ellipse
            cx, cy = rng.uniform(0, size, 2)
            rx, ry = rng.uniform(size / 40, size / 6, 2)
            canvas[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = level
        elif kind == 2:  # a line
            (x0, y0), (x1, y1) = rng.uniform(0, size, (2, 2))
            n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            xs = np.clip(np.linspace(x0, x1, n).astype(int), 0, size - 1)
            ys = np.clip(np.linspace(y0, y1, n).astype(int), 0, size - 1)
            canvas[ys, xs] = level
        else:  # a thin texture strip cut from an item: its pixels, not its shape
            src = pool[int(rng.integers(0, len(pool)))]
            row = int(rng.integers(8, 20))
            strip = src[row : row + 3, :].astype(np.uint8)
            w = int(rng.integers(size // 12 + 2, size // 4 + 3))
            strip = _resize(strip, w, max(2, w // 10)).astype(np.float32)
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - strip.shape[0] + 1))
            region = canvas[y0 : y0 + strip.shape[0], x0 : x0 + w]
            np.maximum(region, 0.6 * strip, out=region)
    canvas += rng.normal(0, rng.uniform(2, 12), canvas.shape).astype(np.float32)
    return canvas


def _iou_cover(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[float, float]:
    """IoU of boxes ``a`` and ``b`` (x0, y0, x1, y1), and the share of ``b`` that ``a`` covers."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / max(area_a + area_b - inter, 1), inter / max(area_b, 1)


def _canvas(
    rng: np.random.Generator, recipe: DetectRecipe, pool_x: np.ndarray, pool_y: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One canvas and its labels ``(class, x_center, y_center, width, height)``, normalised."""
    size = recipe.imgsz
    canvas = _background(rng, size, pool_x, recipe.clutter)
    boxes: list[tuple[int, int, int, int]] = []
    labels: list[tuple[int, float, float, float, float]] = []
    lo, hi = math.log(recipe.min_scale), math.log(recipe.max_scale)
    for _ in range(int(rng.integers(recipe.min_items, recipe.max_items + 1))):
        k = int(rng.integers(0, len(pool_x)))
        side = math.exp(rng.uniform(lo, hi)) * size
        aspect = math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        w = max(6, min(size, round(side * math.sqrt(aspect))))
        h = max(6, min(size, round(side / math.sqrt(aspect))))
        item = _resize(pool_x[k], w, h)
        mask = item > _ITEM_THRESHOLD
        if not mask.any():
            continue
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        for _ in range(_MAX_PLACEMENTS):
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
            if all(
                iou <= recipe.max_iou and cover <= recipe.max_cover
                for iou, cover in (_iou_cover(box, b) for b in boxes)
            ):
                break
        else:
            continue  # no room for it here: leave it out rather than hide another item
        alpha = np.clip(item.astype(np.float32) / _ITEM_THRESHOLD, 0, 1)
        region = canvas[y0 : y0 + h, x0 : x0 + w]
        region[...] = region * (1 - alpha) + item.astype(np.float32) * alpha
        boxes.append(box)
        bw, bh = box[2] - box[0], box[3] - box[1]
        labels.append(
            (int(pool_y[k]), (box[0] + bw / 2) / size, (box[1] + bh / 2) / size, bw / size, bh / size)
        )
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), labels


def _pools(data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The disjoint Fashion-MNIST item pools of the three splits."""
    from ghostnas.data.source import load_dataset

    ds = load_dataset("fashion-mnist", data_dir)
    tx, ty = ds.train_x[:, 0].numpy(), ds.train_y.numpy()
    return {
        "train": (tx[:_VAL_POOL_START], ty[:_VAL_POOL_START]),
        "val": (tx[_VAL_POOL_START:], ty[_VAL_POOL_START:]),
        "test": (ds.test_x[:, 0].numpy(), ds.test_y.numpy()),
    }


def _data_yaml(recipe: DetectRecipe) -> str:
    import yaml

    lines = [
        "# A detection dataset made by `ghostnas data make-detect` from Fashion-MNIST items;",
        f"# recipe in dataset.json (seed {recipe.seed}). Paths are relative to this file's folder.",
    ]
    body = {
        "train": "images/train",
        "val": "images/val",
        "test": "images/test",
        "nc": len(FASHION_MNIST_CLASSES),
        "names": dict(enumerate(FASHION_MNIST_CLASSES)),
    }
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


def check_new_folder(out: Path) -> None:
    """Raise unless ``out`` can be created (or is an empty folder): checked before any work."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DetectDataError(f"--out {out}: already exists and is not an empty folder; choose a new folder")
    check_output_dir(out, "--out")


def make_detect_dataset(
    out: str | os.PathLike[str],
    recipe: DetectRecipe | None = None,
    *,
    data_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DetectData:
    """Make a detection dataset in the Ultralytics layout at ``out`` (see the module docstring).

    Layout: ``images/{train,val,test}/NNNNNN.png`` (grey PNG), ``labels/{...}/NNNNNN.txt``
    (``class x_center y_center width height``, normalised), ``data.yaml`` (no ``path:`` key, so
    Ultralytics resolves the splits beside the file wherever the folder is moved) and
    ``dataset.json`` (the recipe and the box counts).

    Args:
        out: The folder to create; it must not exist yet (or be empty).
        recipe: How to compose the canvases (defaults: :class:`DetectRecipe`).
        data_dir: Where Fashion-MNIST's files are (default: the usual places).
        progress: Called with ``(canvases done, total)`` after each canvas.

    Raises:
        DetectDataError: a bad recipe, or ``out`` exists with files in it.
        OutputDirError: ``out`` cannot be created.
    """
    recipe = recipe or DetectRecipe()
    recipe.check()
    out = Path(out)
    check_new_folder(out)
    pools = _pools(data_dir)
    base = out.absolute().parent
    while not base.exists():
        base = base.parent
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=f".{out.name}.making-"))
    try:
        with writing(tmp, "the detection dataset"):
            result = _write_all(tmp, recipe, pools, progress)
            (out.absolute().parent).mkdir(parents=True, exist_ok=True)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s: %s images, %s boxes", out, dict(result["images"]), dict(result["boxes"]))
    return read_detect_data(out / "data.yaml")


def _write_all(
    root: Path,
    recipe: DetectRecipe,
    pools: Mapping[str, tuple[np.ndarray, np.ndarray]],
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from PIL import Image

    sizes = recipe.split_sizes()
    total, done = sum(sizes.values()), 0
    per_class = [0] * len(FASHION_MNIST_CLASSES)
    boxes = {s: 0 for s in SPLITS}
    for split_index, split in enumerate(SPLITS):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        px, py = pools[split]
        for i in range(sizes[split]):
            rng = np.random.default_rng([recipe.seed, split_index, i])
            img, labels = _canvas(rng, recipe, px, py)
            stem = f"{i:06d}"
            Image.fromarray(img, mode="L").save(root / "images" / split / f"{stem}.png", format="PNG")
            text = "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            (root / "labels" / split / f"{stem}.txt").write_text(text, encoding="utf-8")
            for c, *_ in labels:
                per_class[c] += 1
            boxes[split] += len(labels)
            done += 1
            if progress is not None:
                progress(done, total)
    (root / "data.yaml").write_text(_data_yaml(recipe), encoding="utf-8")
    info = {
        "made_by": "ghostnas data make-detect",
        "source": "Fashion-MNIST (train items 0-53999 -> train, 54000-59999 -> val, test set -> test)",
        "recipe": asdict(recipe),
        "images": sizes,
        "boxes": boxes,
        "boxes_per_class": dict(zip(FASHION_MNIST_CLASSES, per_class, strict=True)),
        "box_rule": f"bounding box of the scaled item's pixels above {_ITEM_THRESHOLD}/255 (its true extent)",
    }
    (root / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info


# --------------------------------------------------------------------------------------------
# reading and checking a dataset


def _split_dir(root: Path, value: Any, split: str, yaml_path: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise DetectDataError(
            f"{yaml_path}: {split!r} must be a folder path (a list of folders or a .txt list is not "
            "supported by ghostnas' check); give one images folder per split"
        )
    p = Path(value)
    return p if p.is_absolute() else root / p


def _label_dir(images: Path) -> Path:
    """Ultralytics' rule: the labels folder mirrors the images folder with ``images`` -> ``labels``."""
    parts = list(images.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images


def _check_labels(path: Path, nc: int, h: Any) -> int:
    try:
        if path.stat().st_size > _MAX_LABEL_BYTES:
            raise DetectDataError(f"{path}: label file over 1 MiB; not a YOLO label file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DetectDataError(f"{path}: cannot read this label file ({exc}); fix or remove it") from None
    h.update(path.name.encode() + b"\0" + text.encode())
    n = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) < 5:
            raise DetectDataError(
                f"{where}: expected 'class x_center y_center width height', got {line.strip()!r}"
            )
        try:
            cls = float(fields[0])
            coords = [float(v) for v in fields[1:5]]
        except ValueError:
            raise DetectDataError(f"{where}: not numbers: {line.strip()!r}") from None
        if cls != int(cls) or not 0 <= cls < nc:
            raise DetectDataError(
                f"{where}: class {fields[0]} is out of range for the {nc} names in data.yaml "
                f"(0 to {nc - 1}); fix the label or add the class name"
            )
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in coords):
            raise DetectDataError(
                f"{where}: box {' '.join(fields[1:5])} is not normalised to [0, 1]; fix the label"
            )
        n += 1
    return n


def read_detect_data(path: str | os.PathLike[str]) -> DetectData:
    """Read and check an Ultralytics detection ``data.yaml``.

    Checked: the file exists and is safe YAML; it names classes (``names``, and ``nc`` agrees);
    ``train`` and ``val`` are present and their image folders hold images (``test`` is optional);
    every label file parses, with classes in ``[0, nc)`` and normalised boxes. A relative split
    path is resolved against ``path:`` when given, else against the file's folder.

    Raises:
        DetectDataError: one line naming the problem and its fix.
    """
    import yaml

    yaml_path = Path(path).absolute()
    if yaml_path.suffix.lower() not in (".yaml", ".yml"):
        raise DetectDataError(f"--data {path}: a detection search takes an Ultralytics data.yaml file")
    try:
        if yaml_path.stat().st_size > _MAX_YAML_BYTES:
            raise DetectDataError(f"{path}: over 1 MiB; not a data.yaml")
        raw = yaml_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DetectDataError(
            f"--data {path}: no such file; give an Ultralytics data.yaml (make one with `ghostnas data make-detect`)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DetectDataError(f"--data {path}: cannot read it ({exc})") from None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise DetectDataError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(data, dict):
        raise DetectDataError(f"{path}: expected a mapping with train, val and names")
    names = data.get("names")
    if isinstance(names, dict):
        keys = sorted(names)
        if keys != list(range(len(keys))):
            raise DetectDataError(f"{path}: names must be numbered 0 to N-1 without gaps")
        names = [names[k] for k in keys]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) for n in names):
        raise DetectDataError(f"{path}: no class names; add `names:` (a list, or a mapping 0: name, ...)")
    names = tuple(str(n) for n in names)
    if "nc" in data and data["nc"] != len(names):
        raise DetectDataError(
            f"{path}: nc is {data['nc']!r} but {len(names)} names are given; make them agree"
        )
    root = yaml_path.parent
    if data.get("path"):
        p = Path(str(data["path"]))
        root = p if p.is_absolute() else (yaml_path.parent / p)
    for split in ("train", "val"):
        if not data.get(split):
            raise DetectDataError(
                f"{path}: no {split!r} split; a detection search trains on train and scores on val, "
                f"add `{split}: images/{split}`"
            )
    h = hashlib.sha256(raw.encode())
    images: dict[str, int] = {}
    boxes: dict[str, int] = {}
    dirs: dict[str, str] = {}
    for split in SPLITS:
        if not data.get(split):
            continue
        folder = _split_dir(root, data[split], split, yaml_path)
        if not folder.is_dir():
            raise DetectDataError(f"{path}: the {split} images folder {folder} does not exist; fix the path")
        files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DetectDataError(f"{path}: the {split} images folder {folder} holds no images")
        labels = _label_dir(folder)
        n_boxes = 0
        for f in files:
            lab = labels / f.relative_to(folder).with_suffix(".txt")
            if lab.is_file():
                n_boxes += _check_labels(lab, len(names), h)
        images[split], boxes[split], dirs[split] = len(files), n_boxes, str(folder)
    if boxes["train"] == 0:
        raise DetectDataError(f"{path}: the train split has no labelled boxes; nothing to learn from")
    return DetectData(yaml_path, names, images, boxes, h.hexdigest()[:16], dirs)
