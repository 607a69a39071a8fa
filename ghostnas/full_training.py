"""Training a chosen architecture fully: ``ghostnas train NAME_OR_CFG --data fashion-mnist|PATH``.

The same data code and the same training loop as the search's short-training proxy
(:func:`ghostnas.evaluators.proxy.proxy_data`, :func:`ghostnas.train.fit`), with the longer recipe
of :func:`ghostnas.train.full_recipe`: all training images except the fixed validation split,
cosine decay, label smoothing 0.1 and random crops. Two choices are made here:

- Horizontal flips are on for Fashion-MNIST as well as CIFAR-10. A left-right mirrored shirt,
  bag or sneaker is still a shirt, bag or sneaker (the classes carry no handedness), so the flip
  preserves every label; vertical flips would not (an upside-down trouser or ankle boot is not in
  the data) and are never used. ``flip=False`` turns it off.
- The network is built for the data's shape by the rule the search used
  (:func:`ghostnas.data.input_shape`: the data's channels and classes, a stride-1 stem below 64
  pixels), so params and MACs at 224x224 (the budget figures) describe the same block sequence.
  On the user's own data, random crops pad by an eighth of the image side.

Validation accuracy is measured on the user's validation split, or else on the held-out part of
the training set; a test split, when there is one, is scored once, at the end, and reported
next to it. A run folder holds ``weights.pt`` (a
plain state dict, ``torch.load(..., weights_only=True)``), ``metrics.json``, ``config.json`` and
``run.json`` (command, versions, git commit, machine).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas._fs import check_output_dir, writing
from ghostnas._io import atomic_write_text
from ghostnas.config import GhostNetConfig, save_config
from ghostnas.cost import count_cost
from ghostnas.errors import GhostnasError, WriteFailedError

if TYPE_CHECKING:
    from ghostnas.data import Dataset

__all__ = [
    "TrainError",
    "TrainReport",
    "TrainSettings",
    "TrainStart",
    "default_train_dir",
    "train_model",
    "training_recipe",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, float], None]
"""``progress(epoch, total_epochs, val_acc)`` after every whole epoch (and at the end)."""

SHORT_RUN_EPOCHS = 10
"""Below this many epochs the full recipe is out of its range (see :func:`short_run_note`)."""


class TrainError(GhostnasError):
    """The training request cannot be met (bad settings, an existing run folder)."""


@dataclass(frozen=True)
class TrainSettings:
    """What ``ghostnas train`` trains and how.

    Attributes:
        model: Registered name, config JSON path or config.
        data: ``fashion-mnist``, ``cifar10``, ``synthetic`` (tests only), the path of an image
            folder or ``.npz`` file, or a loaded :class:`ghostnas.data.Dataset`.
        data_dir: Folder with a named dataset's files (None: the default place).
        image_size: Resize the user's images to this side (None: their own size).
        epochs: Passes over the training images.
        seed: Initialisation, batch order and augmentation (the validation split is fixed).
        device: ``cpu``, ``cuda`` or ``cuda:N``; ``auto`` picks CUDA when available.
        train_images: Train on this many images of the training part (0: all of them); for
            reduced-scale runs such as the CPU benchmark.
        flip: Random horizontal flips (see the module docstring).
        out: Run folder (None: :func:`default_train_dir`).
        force: Replace the outputs of an earlier run in ``out``.
        command: The command line, recorded in ``run.json``.
        reparam: Train the training form of re-parameterisable blocks (kind ``ghost_v3``), then
            fold it and test and save the deploy form (the weights fit ``create_model(...)
            .reparameterize()``).
    """

    model: str | GhostNetConfig
    data: str | Dataset = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | None = None
    epochs: float = 30.0
    seed: int = 0
    device: str = "auto"
    train_images: int = 0
    flip: bool = True
    out: str | None = None
    force: bool = False
    command: Sequence[str] | None = None
    reparam: bool = False


@dataclass(frozen=True)
class TrainReport:
    """What a finished training run measured and wrote.

    Attributes:
        out_dir: The run folder.
        metrics: The content of ``metrics.json``.
        files: File names written.
    """

    out_dir: Path
    metrics: dict[str, Any]
    files: list[str]


@dataclass(frozen=True)
class TrainStart:
    """What a training run is about to do, once its inputs are checked and its data loaded.

    Attributes:
        model, arch: The model's label and its compact architecture string.
        params, macs: At 224x224 and 1000 classes (the budget convention).
        data: The dataset's label; train_images, val_images, test_images: the split's sizes.
        epochs, batch_size, steps: The schedule (steps = optimizer steps in all).
        device, out_dir: Where it trains and writes.
    """

    model: str
    arch: str
    params: int
    macs: int
    data: str
    train_images: int
    val_images: int
    test_images: int
    epochs: float
    batch_size: int
    steps: int
    device: str
    out_dir: Path


def short_run_note(epochs: float) -> str | None:
    """Why a short run of the full recipe scores below the search's proxy, or None.

    The full recipe is made for tens of epochs: cosine decay, label smoothing, random crops and
    flips, and validation with batch-norm statistics as training left them. The search's proxy
    recipe (:class:`ghostnas.train.Recipe` defaults) is made for 2 epochs: linear decay, no
    augmentation, batch-norm statistics re-estimated before every validation. So a 1-epoch
    ``ghostnas train`` of a network can score far below the proxy score the search reported
    for it; the two numbers answer different questions.
    """
    if epochs >= SHORT_RUN_EPOCHS:
        return None
    return (
        f"{epochs:g} epoch(s) is a short run for the full recipe (cosine schedule, label smoothing, "
        "crops and flips, made for 30 epochs), so expect accuracy below the search's proxy score, "
        "which uses a 2-epoch recipe (linear decay, no augmentation, batch-norm statistics "
        "re-estimated before validation)"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def _model_label(model: str | GhostNetConfig) -> str:
    if isinstance(model, GhostNetConfig):
        return "config"
    return Path(model).stem if model.endswith(".json") else model


def _data_slug(data: str | Dataset) -> str:
    if not isinstance(data, str):
        return data.spec.name.split(":")[-1]
    return data if "/" not in data and "." not in data else Path(data).stem


def default_train_dir(settings: TrainSettings) -> Path:
    """``ghostnas-runs/train-<model>-<data>-e<epochs>-seed<seed>`` (<data>: a folder's or file's name)."""
    from ghostnas.search import RUNS_DIR

    return RUNS_DIR / _slug(
        f"train-{_model_label(settings.model)}-{_data_slug(settings.data)}-e{settings.epochs:g}-seed{settings.seed}"
    )


def training_recipe(
    data: str, epochs: float, train_images: int = 0, flip: bool = True, image_size: int | None = None
) -> Any:
    """The full-training recipe: :func:`ghostnas.train.full_recipe` with this module's choices.

    ``synthetic`` (tests only) keeps the split small enough for its 2,048 training images. The
    user's own data (``image_size`` given) pads random crops by an eighth of the side (4 pixels
    at 32, CIFAR's choice).
    """
    from ghostnas.train import full_recipe

    recipe = full_recipe(data, epochs)
    recipe = replace(recipe, flip=flip, train_images=train_images)
    if data == "synthetic":
        recipe = replace(recipe, val_images=256, batch_size=64, check_every=8)
    if image_size is not None:
        recipe = replace(recipe, crop_padding=max(1, image_size // 8))
    return recipe


def _device(name: str) -> str:
    from ghostnas.device import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as exc:
        raise TrainError(str(exc)) from None


def _validate(settings: TrainSettings) -> tuple[GhostNetConfig, Path, str]:
    from ghostnas.registry import resolve_config

    if not math.isfinite(settings.epochs) or settings.epochs <= 0:
        raise TrainError(f"epochs = {settings.epochs!r}: must be a positive number")
    if settings.train_images < 0:
        raise TrainError(f"train_images = {settings.train_images!r}: must be 0 (all) or more")
    cfg = resolve_config(settings.model)
    if settings.reparam and count_cost(cfg, training=True) == count_cost(cfg):
        raise TrainError(
            f"--reparam: {_model_label(settings.model)} has no re-parameterisable blocks "
            "(kind ghost_v3, e.g. ghostnetv3_100); drop --reparam"
        )
    device = _device(settings.device)
    out = Path(settings.out) if settings.out else default_train_dir(settings)
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: exists and is not a folder")
    if (out / "metrics.json").exists() and not settings.force:
        raise TrainError(f"{out} already holds a training run; choose another --out or pass --force")
    check_output_dir(out, "--out")  # before the training, not after it
    return cfg, out, device


def train_model(
    settings: TrainSettings,
    progress: ProgressFn | None = None,
    on_start: Callable[[TrainStart], None] | None = None,
    on_test: Callable[[int], None] | None = None,
) -> TrainReport:
    """Train ``settings.model`` fully and write weights, metrics and provenance.

    Args:
        settings: What to train and how.
        progress: Called after every whole epoch with the validation accuracy.
        on_start: Called once the inputs are checked and the data is loaded, before training.
        on_test: Called with the number of test images just before the official test set is
            scored (after the last epoch; it can take as long as a short training).

    Returns:
        The run folder and its metrics.

    Raises:
        GhostnasError: bad model, data or settings, or an output folder that cannot be written
            (nothing is written, nothing is trained); the training diverged.
        WriteFailedError: the outputs could not be written (a full disk); no partial file is
            left and the folder has no ``metrics.json``, so the same command runs again.
    """
    import torch

    from ghostnas.data import check_input_size, input_shape, load_dataset
    from ghostnas.evaluators.proxy import proxy_data
    from ghostnas.provenance import provenance
    from ghostnas.registry import create_model
    from ghostnas.train import TrainingFailed, evaluate_accuracy, fit, normalise
    from ghostnas.weights import save_weights

    cfg, out, device = _validate(settings)
    label = _model_label(settings.model)
    downsamples = sum(b.stride == 2 for b in cfg.blocks())
    ds = load_dataset(
        settings.data,
        settings.data_dir,
        settings.image_size,
        check=lambda spec: check_input_size(spec, downsamples, label),
    )
    spec = ds.spec
    shape = input_shape(spec)
    recipe = training_recipe(
        spec.name, settings.epochs, settings.train_images, settings.flip, spec.size if spec.user else None
    )
    train, val = proxy_data(ds, recipe)
    built: dict[str, torch.nn.Module] = {}

    def build() -> torch.nn.Module:
        built["net"] = create_model(cfg, spec=shape)
        return built["net"]

    total_epochs = math.ceil(recipe.epochs)
    if on_start is not None:
        cost0 = count_cost(cfg)
        on_start(
            TrainStart(
                model=_model_label(settings.model),
                arch=cfg.short(),
                params=cost0.params,
                macs=cost0.macs,
                data=ds.label,
                train_images=len(train[0]),
                val_images=len(val[0]),
                test_images=len(ds.test_x),
                epochs=settings.epochs,
                batch_size=recipe.batch_size,
                steps=max(1, round(recipe.epochs * (len(train[0]) // recipe.batch_size))),
                device=device,
                out_dir=out,
            )
        )

    def report(point: int, val_acc: float) -> None:
        if progress is not None:
            progress(min(point, total_epochs), total_epochs, val_acc)

    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        res = fit(build, train, val, recipe, device, settings.seed, report, ds.mean, ds.std)
    except TrainingFailed as exc:
        raise TrainError(f"training {label} failed: {exc}") from None
    net = built["net"]
    if settings.reparam:
        net.reparameterize()  # test and save the network that is deployed
    if on_test is not None:
        on_test(len(ds.test_x))
    t_test = time.perf_counter()
    dev = torch.device(device)
    test_acc: float | None = None
    test_loss: float | None = None
    if ds.has_test:  # scored once, here, never during training
        test_x = normalise(ds.test_x.to(dev), ds.mean, ds.std)
        test_acc, test_loss = evaluate_accuracy(net, test_x, ds.test_y.to(dev), recipe.eval_batch_size)
    test_s = time.perf_counter() - t_test
    net = net.to("cpu")
    cost = count_cost(cfg)
    trained_cost = count_cost(cfg, spec=shape, training=not settings.reparam)
    metrics: dict[str, Any] = {
        "model": _model_label(settings.model),
        "arch": cfg.short(),
        "data": ds.label,
        "dataset": spec.name,
        "seed": settings.seed,
        "epochs": settings.epochs,
        "val_acc": res.val_acc,
        "val_loss": res.val_loss,
        "test_acc": test_acc,
        "test_loss": test_loss,
        "epoch_val_acc": list(res.epoch_acc),
        "train_loss_last": res.train_loss_last,
        "train_images": len(train[0]),
        "val_images": len(val[0]),
        "test_images": len(ds.test_x),
        "params": cost.params,
        "macs": cost.macs,
        "cost_convention": "params and MACs at 224x224, 1000 classes (conv+linear MACs, the paper's FLOPs)",
        "trained_params": trained_cost.params,
        "trained_macs": trained_cost.macs,
        "weights_form": "deploy (re-parameterised)" if settings.reparam else "as trained",
        "trained_cost_convention": f"params and MACs at the data's shape, {shape.describe()}",
        "build": shape.build_args(),
        "input_size": spec.size,
        "classes": list(ds.classes) if ds.classes is not None else None,
        "data_digest": ds.digest,
        "device": device,
        "train_s": round(res.train_s, 3),
        "eval_s": round(res.eval_s + test_s, 3),
        "total_s": round(time.perf_counter() - t0, 3),
        "images_per_s": round(res.images_per_s, 1),
        "recipe": dataclasses.asdict(recipe),
    }
    run_info = {
        **provenance(settings.command),
        "device": device,
        "cuda_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "started": started.isoformat(timespec="seconds"),
        "ended": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "data_source": ds.source,
    }
    try:
        with writing(out, "the run folder"):
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").unlink(missing_ok=True)  # --force: the old run is no longer whole
        save_weights(net, out / "weights.pt")
        save_config(cfg, out / "config.json")
        atomic_write_text(out / "run.json", json.dumps(run_info, indent=2) + "\n")
        # Last: a folder without metrics.json is an unfinished run that the same command redoes.
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    except WriteFailedError as exc:
        exc.kept = (
            "the trained model could not be saved (no partial file is left); the training must be redone"
        )
        raise
    log.info("trained %s: val %.4f, test %s -> %s", metrics["model"], res.val_acc, test_acc, out)
    return TrainReport(
        out_dir=out, metrics=metrics, files=["weights.pt", "config.json", "metrics.json", "run.json"]
    )
