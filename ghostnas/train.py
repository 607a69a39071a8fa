"""The training loop shared by the short-training proxy and full training.

One :class:`Recipe` (every field says its unit and why) and one function, :func:`fit`, which
trains any model on tensors that are already in memory and returns accuracy, losses and timings.
The proxy evaluator calls it with a short recipe on a small subset; a full ``ghostnas train``
calls the same loop with a longer recipe (:func:`full_recipe`: more epochs, random crops, flips
for CIFAR, label smoothing, cosine schedule).

Why it is fast:

- The data lives on the training device as one float tensor; a batch is an ``index_select``
  with indices precomputed for the whole run, so there is no DataLoader, no per-step host
  transfer and no per-step Python sampling. Random-crop offsets and flips are precomputed too.
- The optimizer (SGD with Nesterov momentum, written with ``torch._foreach`` ops) takes its
  learning rate from a device tensor indexed by a device step counter, and the per-step loss is
  written into a device buffer. So one training step is a fixed sequence of device kernels with
  no host synchronisation, which on CUDA can be captured once in a CUDA graph and replayed
  (``Recipe.cuda_graphs``). On the CPU the identical step runs eagerly; the loss buffer is read
  only every ``Recipe.check_every`` steps.
- CUDA only: bf16 autocast and channels_last memory format (``Recipe.bf16``,
  ``Recipe.channels_last``). ``torch.compile`` and ``cudnn.benchmark`` are deliberately not used:
  they cost more per new architecture than a short run takes.

Failures are not scores: a NaN, infinite or exploding loss raises :class:`TrainingFailed` with
the step at which it happened.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FitResult",
    "Recipe",
    "TrainingData",
    "TrainingFailed",
    "TrainingRun",
    "batch_plan",
    "evaluate_accuracy",
    "fit",
    "full_recipe",
    "lr_schedule",
    "normalise",
    "prepare_data",
    "recalibrate_bn",
    "run_to_end",
    "sync",
]

log = logging.getLogger(__name__)

ReportFn = Callable[[int, float], None]
ModelFactory = Callable[[], nn.Module]


class TrainingFailed(RuntimeError):
    """Training could not produce a meaningful model (diverged, NaN); ``str`` is the reason."""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides how a candidate is trained. The defaults are the CPU proxy.

    The proxy defaults were chosen by measurement on a 2-core CPU (see
    ``benchmarks/bench_throughput.py``): ghostnet_100 at 28x28 with a stride-1 stem trains at
    about 250-270 images/s at batch 128 with 2 threads and evaluates at about 800-1200 images/s,
    so 2 epochs of 3,072 images plus two validations of 2,000 images take about 30 s.

    Attributes:
        epochs: Passes over the training subset (may be fractional). Validation runs, and
            ``report`` is called, after every whole epoch and at the end. 2 gives the pruner
            one early look at half the cost.
        train_images: Size of the training subset in images, a fixed random subset of the
            training part of the split (the same images for every candidate, so that scores
            compare architectures, not data). 0 or more than available means all of it.
        val_images: Images held out of the official training set for validation; fixed by
            ``split_seed`` and never trained on. The official test set is not used here.
        split_seed: Seed of the train/validation split and of the subset: fixed so that every
            candidate and every seed sees the same split.
        batch_size: Training images per step. 128 was the fastest on 2 CPU cores (measured).
        eval_batch_size: Images per validation forward pass; larger is faster, no gradients.
        lr: Peak learning rate of SGD (per step, before the schedule).
        momentum: SGD momentum coefficient (Nesterov).
        weight_decay: L2 coefficient on conv and linear weights (not on biases or batch-norm).
        warmup: Fraction of all steps over which the learning rate rises linearly from 0; keeps
            the first steps of an untrained batch-norm network from blowing up.
        schedule: Decay after warm-up: ``linear`` (to 0; best for very short runs) or
            ``cosine`` (to 0; the usual full-training schedule).
        label_smoothing: Cross-entropy label smoothing, 0..1; helps long runs, not short ones.
        crop_padding: Random-crop augmentation: pixels of zero padding on each side, then a
            crop back to the original size (0 disables it; 4 for CIFAR full training).
        flip: Random horizontal flips (natural images only: CIFAR, not Fashion-MNIST).
        bn_recalibration_images: Before every validation, batch-norm running statistics are
            re-estimated from this many training images (forward passes only, cumulative average).
            A short run leaves the running averages far behind the weights (they are exponential
            averages over only tens of steps), and an eval-mode network then predicts near chance
            even when its training loss has dropped; re-estimating costs a fraction of a second.
            0 disables it (long runs do not need it).
        max_loss: Training loss in nats above which a run counts as diverged (chance level
            for 10 classes is ln 10 = 2.3, so a loss this high means the run blew up).
        check_every: Steps between host reads of the loss buffer for NaN or divergence; reading
            forces a device synchronisation, so it is not done every step on a GPU.
        bf16: CUDA only: bfloat16 autocast for the forward pass.
        channels_last: CUDA only: NHWC memory format for model and data.
        cuda_graphs: CUDA only: capture the training step in a CUDA graph after
            ``graph_warmup`` eager steps and replay it.
        graph_warmup: Eager steps before capture (CUDA needs a few to allocate and settle).
    """

    epochs: float = 2.0
    train_images: int = 3072
    val_images: int = 2000
    split_seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 500
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.15
    schedule: str = "linear"
    label_smoothing: float = 0.0
    crop_padding: int = 0
    flip: bool = False
    bn_recalibration_images: int = 512
    max_loss: float = 25.0
    check_every: int = 8
    bf16: bool = False
    channels_last: bool = False
    cuda_graphs: bool = True
    graph_warmup: int = 3

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs > 0 and math.isfinite(self.epochs)),
            ("train_images", self.train_images >= 0),
            ("val_images", self.val_images >= 1),
            ("batch_size", self.batch_size >= 1),
            ("eval_batch_size", self.eval_batch_size >= 1),
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("momentum", 0 <= self.momentum < 1),
            ("weight_decay", self.weight_decay >= 0),
            ("warmup", 0 <= self.warmup < 1),
            ("schedule", self.schedule in ("linear", "cosine")),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("crop_padding", self.crop_padding >= 0),
            ("bn_recalibration_images", self.bn_recalibration_images >= 0),
            ("max_loss", self.max_loss > 0),
            ("check_every", self.check_every >= 1),
            ("graph_warmup", self.graph_warmup >= 1),
        ]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"Recipe.{name} = {getattr(self, name)!r} is out of range")


def full_recipe(dataset: str, epochs: float = 30.0) -> Recipe:
    """A longer recipe for training a chosen architecture, reusing the proxy's loop.

    All of the training set except the validation split, cosine decay, label smoothing 0.1,
    random crops with 4 pixels of padding for CIFAR-10 (2 for 28x28 Fashion-MNIST), flips for
    CIFAR-10 only (a flipped garment is still the same garment, but its pixels are not natural
    image statistics; Fashion-MNIST papers usually train without flips).
    """
    cifar = dataset == "cifar10"
    return Recipe(
        epochs=epochs,
        train_images=0,
        val_images=5000,
        lr=0.1,
        warmup=0.03,
        schedule="cosine",
        label_smoothing=0.1,
        crop_padding=4 if cifar else 2,
        flip=cifar,
        bn_recalibration_images=0,
        check_every=50,
    )


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` measured.

    Attributes:
        val_acc: Validation accuracy after the last step, in [0, 1].
        val_loss: Mean validation cross-entropy (no label smoothing) after the last step.
        epoch_acc: Validation accuracy after each reported point (whole epochs and the end).
        train_loss_mean: Mean training loss over all steps (the "sum of training losses" proxy
            divided by the number of steps; lower means the network learns faster).
        train_loss_last: Mean training loss over the last epoch's steps (or all, if fewer).
        steps: Optimizer steps taken.
        images: Training images processed.
        setup_s: Seconds to build the model and move data to the device.
        train_s: Seconds spent in training steps (device-synchronised).
        eval_s: Seconds spent in validation.
        images_per_s: Training throughput, ``images / train_s``.
    """

    val_acc: float
    val_loss: float
    epoch_acc: tuple[float, ...]
    train_loss_mean: float
    train_loss_last: float
    steps: int
    images: int
    setup_s: float
    train_s: float
    eval_s: float
    images_per_s: float
    extra: dict[str, float] = field(default_factory=dict)


def lr_schedule(recipe: Recipe, total_steps: int) -> torch.Tensor:
    """Learning rate of every step (float32): linear warm-up, then linear or cosine decay to 0.

    Step ``i`` uses the value at ``i + 1`` of the curve, so the first step is not wasted at 0.
    """
    t = torch.arange(1, total_steps + 1, dtype=torch.float64) / total_steps
    w = recipe.warmup
    up = t / w if w > 0 else torch.ones_like(t)
    frac = ((t - w) / (1 - w)).clamp(0, 1)
    down = 0.5 * (1 + torch.cos(math.pi * frac)) if recipe.schedule == "cosine" else 1 - frac
    lr = torch.where(t < w, up, down) * recipe.lr
    return lr.clamp_min(recipe.lr * 1e-3).float()


class _SGD:
    """SGD with Nesterov momentum whose learning rate is a device tensor (CUDA-graph safe).

    ``torch.optim.SGD`` takes its rate as a Python float, which a captured graph would freeze;
    here the rate is read on the device from a per-step table, so the whole step, schedule
    included, can be replayed without the host. Weight decay applies to weights of rank > 1.
    """

    def __init__(self, params: list[nn.Parameter], momentum: float, weight_decay: float) -> None:
        self.params = params
        self.decayed = [p for p in params if p.ndim > 1]
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.bufs = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.weight_decay:
            by_id = {id(p): g for p, g in zip(self.params, grads, strict=True)}
            torch._foreach_add_([by_id[id(p)] for p in self.decayed], self.decayed, alpha=self.weight_decay)
        torch._foreach_mul_(self.bufs, self.momentum)
        torch._foreach_add_(self.bufs, grads)
        torch._foreach_add_(grads, self.bufs, alpha=self.momentum)  # Nesterov look-ahead
        torch._foreach_mul_(grads, lr)
        torch._foreach_sub_(self.params, grads)


def _crop_flip(
    x: torch.Tensor, shift: torch.Tensor | None, flip: torch.Tensor | None, pad: int
) -> torch.Tensor:
    """Random crop (zero padding ``pad``, per-image offsets ``shift`` in [0, 2 pad]) and flip.

    Args:
        x: Batch (N, C, H, W).
        shift: (N, 2) row and column offsets into the padded image, or None for no crop.
        flip: (N,) booleans, True to mirror the image left-right, or None for no flips.
        pad: Padding in pixels on each side.
    """
    n, _, h, w = x.shape
    if shift is not None and pad:
        xp = F.pad(x, (pad, pad, pad, pad))
        rows = torch.arange(h, device=x.device).unsqueeze(0) + shift[:, 0:1]  # (N, H)
        cols = torch.arange(w, device=x.device).unsqueeze(0) + shift[:, 1:2]  # (N, W)
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        x = xp.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)
    if flip is not None:
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x.contiguous()


class _Stepper:
    """One training step as a fixed sequence of device operations on static buffers.

    Everything that varies from step to step (batch indices, augmentation offsets, learning
    rate) is read on the device from tables built before training, through a device step
    counter; so the same step can run eagerly or be captured once as a CUDA graph.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        order: torch.Tensor,
        recipe: Recipe,
        lr: torch.Tensor,
        shifts: torch.Tensor | None,
        flips: torch.Tensor | None,
        autocast: bool,
        channels_last: bool,
    ) -> None:
        self.model, self.x, self.y, self.order, self.recipe = model, x, y, order, recipe
        self.lr, self.shifts, self.flips = lr, shifts, flips
        self.autocast, self.channels_last = autocast, channels_last
        dev = x.device
        self.opt = _SGD(
            [p for p in model.parameters() if p.requires_grad], recipe.momentum, recipe.weight_decay
        )
        self.t = torch.zeros((), dtype=torch.long, device=dev)
        self.losses = torch.zeros(len(lr), dtype=torch.float32, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None

    def _step(self) -> None:
        t = self.t.view(1)
        idx = self.order.index_select(0, t).squeeze(0)
        x = self.x.index_select(0, idx)
        y = self.y.index_select(0, idx)
        if self.shifts is not None or self.flips is not None:
            shift = None if self.shifts is None else self.shifts.index_select(0, t).squeeze(0)
            flip = None if self.flips is None else self.flips.index_select(0, t).squeeze(0)
            x = _crop_flip(x, shift, flip, self.recipe.crop_padding)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad()
        # cache_enabled=False: autocast's weight-cast cache must not be used under graph capture
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.autocast, cache_enabled=False):
            out = self.model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=self.recipe.label_smoothing)
        loss.backward()
        self.opt.step(self.lr.index_select(0, self.t.view(1)).squeeze(0))
        self.losses.index_copy_(0, self.t.view(1), loss.detach().view(1))
        self.t += 1

    def run(self, step: int, use_graph: bool) -> None:
        """Take training step number ``step`` (0-based); steps must come in order."""
        if not use_graph:
            self._step()
            return
        if step < self.recipe.graph_warmup:  # pragma: no cover - CUDA only
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step()
            torch.cuda.current_stream().wait_stream(side)
            return
        if self.graph is None:  # pragma: no cover - CUDA only
            # Capture records without executing, so after capture the step still has to run.
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()
        self.graph.replay()  # pragma: no cover - CUDA only


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's global generators seeded from ``seed`` and restore the
    caller's generator states afterwards (CPU always, plus ``device`` when it is a CUDA device).

    Model initialisation and dropout draw from these global generators, not from an explicit
    one, so the only way to make them reproducible without touching the caller's random state
    is to fork them for the duration of the call.
    """
    cuda = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        _seed_all(seed, device)
        yield


def _seed_all(seed: int, device: torch.device | None) -> None:
    # The CPU generator only (torch.manual_seed would also reseed every CUDA device, which a
    # CPU run's fork does not restore), plus the training device's own when it is CUDA.
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":  # pragma: no cover - CUDA only
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def _noise_seed(seed: int) -> int:
    """The seed of the training-time noise (dropout) stream: derived from ``seed`` but not equal
    to it, so that it does not replay the initialisation's draws."""
    return (seed * 1_000_003 + 0x5EED) % (2**63)


RngStates = tuple[torch.Tensor, torch.Tensor | None]


def _rng_states(device: torch.device) -> RngStates:
    """The CPU generator's state and, for a CUDA ``device``, that device's generator state."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_states(states: RngStates, device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:  # pragma: no cover - CUDA only
        torch.cuda.set_rng_state(states[1], device)


def batch_plan(
    n: int, recipe: Recipe, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Every step's batch indices and augmentation draws for a run, on the CPU.

    They depend on the number of training images, the recipe and the seed only, never on the
    model: every candidate trained with one seed sees the same batches in the same order with
    the same crops and flips (common random numbers), so differences between candidates are not
    differences in data luck. Drawn from a private generator, so the global state is untouched.

    Returns:
        ``order`` (steps, batch) indices into the training images; ``shifts`` (steps, batch, 2)
        crop offsets or None without cropping; ``flips`` (steps, batch) booleans or None.
    """
    batch = min(recipe.batch_size, n)
    steps_per_epoch = n // batch
    total = max(1, round(recipe.epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    epochs_needed = -(-total // steps_per_epoch)
    order = torch.cat(
        [torch.randperm(n, generator=gen)[: steps_per_epoch * batch] for _ in range(epochs_needed)]
    )
    order = order[: total * batch].view(total, batch)
    shifts = flips = None
    if recipe.crop_padding:
        shifts = torch.randint(0, 2 * recipe.crop_padding + 1, (total, batch, 2), generator=gen)
    if recipe.flip:
        flips = torch.rand(total, batch, generator=gen) < 0.5
    return order, shifts, flips


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 500,
    autocast: bool = False,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Accuracy in [0, 1] and mean cross-entropy of ``model`` (eval mode) on normalised ``x``.

    Counts accumulate on the device; there is one host read at the end.
    """
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(xb).float()
        yb = y[start : start + batch_size]
        correct += (out.argmax(1) == yb).sum()
        loss_sum += F.cross_entropy(out, yb, reduction="sum").double()
    model.train(was_training)
    n = max(len(x), 1)
    return int(correct) / n, float(loss_sum) / n


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, x: torch.Tensor, batch_size: int, autocast: bool = False, channels_last: bool = False
) -> None:
    """Re-estimate every batch-norm layer's running statistics from the images ``x``.

    The statistics are reset and then accumulated as a plain (cumulative) average over forward
    passes in training mode; weights are not touched. Buffers are updated in place, so a
    captured CUDA graph keeps pointing at them.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(x) == 0:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
                model(xb)
    finally:
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``uint8`` images (N, C, H, W) on the 0..255 scale to float32 with zero mean, unit std."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() - m) / s


def _first_bad(losses: torch.Tensor, upto: int, max_loss: float) -> tuple[int, str] | None:
    seen = losses[:upto]
    bad = ~torch.isfinite(seen) | (seen > max_loss)
    if not bool(bad.any()):
        return None
    i = int(bad.nonzero()[0, 0])
    v = float(seen[i])
    what = "nan" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.3g} > max_loss {max_loss:g}")
    return i + 1, what


@dataclass(frozen=True)
class TrainingData:
    """Training and validation tensors on the training device, and the step plan they imply.

    Built once by :func:`prepare_data` and shared, read-only, by every :class:`TrainingRun`
    that trains on it (several candidates at once share one copy of the data on the device).

    Attributes:
        x, y: Normalised training images (float32, N C H W) and labels, on ``device``.
        val_x, val_y: Normalised validation images and labels, on ``device``.
        recipe: The recipe, with ``batch_size`` lowered to the number of images when fewer.
        device: Where everything lives.
        steps_per_epoch: Whole batches in one pass over ``x``.
        total_steps: Steps of the whole run.
        report_at: Steps after which the run validates and reports (whole epochs and the end).
    """

    x: torch.Tensor
    y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    recipe: Recipe
    device: torch.device
    steps_per_epoch: int
    total_steps: int
    report_at: tuple[int, ...]


def prepare_data(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    device: str | torch.device = "cpu",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> TrainingData:
    """Move ``train`` and ``val`` to ``device`` once, normalised, and plan the steps of ``recipe``.

    Arguments as for :func:`fit`.
    """
    dev = torch.device(device)
    tx, ty = train
    vx, vy = val
    if len(tx) == 0 or len(vx) == 0:
        raise ValueError("fit needs at least one training and one validation image")
    if mean is None or std is None:
        ref = tx.double()
        mean = tuple(float(v) for v in ref.mean((0, 2, 3)))
        std = tuple(max(float(v), 1e-6) for v in ref.std((0, 2, 3)))
    xs = normalise(tx.to(dev), mean, std) if tx.dtype == torch.uint8 else tx.to(dev, torch.float32)
    xv = normalise(vx.to(dev), mean, std) if vx.dtype == torch.uint8 else vx.to(dev, torch.float32)
    batch = min(recipe.batch_size, len(xs))
    if batch != recipe.batch_size:
        recipe = replace(recipe, batch_size=batch)
    steps_per_epoch = len(xs) // batch
    total = max(1, round(recipe.epochs * steps_per_epoch))
    report_at = sorted({e * steps_per_epoch for e in range(1, int(recipe.epochs) + 1)} | {total})
    return TrainingData(
        x=xs,
        y=ty.to(dev),
        val_x=xv,
        val_y=vy.to(dev),
        recipe=recipe,
        device=dev,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        report_at=tuple(s for s in report_at if s <= total),
    )


class TrainingRun:
    """One candidate being trained on shared :class:`TrainingData`, a step at a time.

    :func:`fit` drives one run to the end; :func:`ghostnas.train_many.fit_many` interleaves
    several. A run owns everything that is its own (model, optimizer state, batch order,
    augmentation tables, loss log, CUDA graph, and the state of torch's global random
    generators while it steps or validates) and only reads the shared data, so runs never
    affect each other: a run gives the same result alone or interleaved with others.

    The driver calls :meth:`advance` for one step, :meth:`check` when :attr:`check_due` (it
    reads the device's loss log, a synchronisation, so a driver of several runs may synchronise
    once and then check them all), and :meth:`validate` when :attr:`at_report_point`.

    Args:
        model: A module or a factory (called with torch's generators seeded by ``seed``).
        data: The shared data and step plan.
        seed: Initialisation, batch order and augmentation (:func:`batch_plan`) and dropout,
            as for :func:`fit`.
        report: ``report(point, val_acc)`` after each validation; may raise to stop the run.
    """

    def __init__(
        self,
        model: nn.Module | ModelFactory,
        data: TrainingData,
        seed: int = 0,
        report: ReportFn | None = None,
    ) -> None:
        self.data, self.seed, self.report = data, seed, report
        recipe, dev, total = data.recipe, data.device, data.total_steps
        order, shifts, flips = batch_plan(len(data.x), recipe, seed)
        order = order.to(dev)
        shifts = None if shifts is None else shifts.to(dev)
        flips = None if flips is None else flips.to(dev)
        with _seeded(seed, dev):
            net = model if isinstance(model, nn.Module) else model()
            # Dropout (and any other stochastic layer) draws from the global generators: restart
            # them from a seed derived from ``seed`` alone, so that every candidate trained with
            # this seed starts the same stream whatever its initialisation consumed (common
            # random numbers). The run keeps that stream as its own (see _own_rng).
            _seed_all(_noise_seed(seed), dev)
            self._rng = _rng_states(dev)
        cuda = dev.type == "cuda"
        self.channels_last = cuda and recipe.channels_last
        net = net.to(dev, memory_format=torch.channels_last) if self.channels_last else net.to(dev)
        net.train()
        self.net = net
        self.autocast = cuda and recipe.bf16
        self.use_graph = cuda and recipe.cuda_graphs
        self.stepper = _Stepper(
            net,
            data.x,
            data.y,
            order,
            recipe,
            lr_schedule(recipe, total).to(dev),
            shifts,
            flips,
            self.autocast,
            self.channels_last,
        )
        self.step = 0
        self.checked = 0
        self.epoch_acc: list[float] = []
        self.val_acc = self.val_loss = float("nan")
        self.eval_s = 0.0

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run the block on this run's own random stream and give the caller's back afterwards.

        torch's generators are global, so runs interleaved by
        :func:`ghostnas.train_many.fit_many` would otherwise share one stream, and each run's
        dropout draws would depend on what the others did. Swapping the states in and out around
        every step and validation gives each run exactly the stream it would see trained alone
        with :func:`fit`, and leaves the caller's states as they were.
        """
        dev = self.data.device
        outer = _rng_states(dev)
        _set_rng_states(self._rng, dev)
        try:
            yield
        finally:
            self._rng = _rng_states(dev)
            _set_rng_states(outer, dev)

    @property
    def done(self) -> bool:
        """Every step taken and every report point validated."""
        return len(self.epoch_acc) == len(self.data.report_at)

    @property
    def at_report_point(self) -> bool:
        """The last step taken ends a report point that has not been validated yet."""
        return not self.done and self.step == self.data.report_at[len(self.epoch_acc)]

    @property
    def check_due(self) -> bool:
        """The loss log should be read now: every ``check_every`` steps and at report points."""
        return self.step > self.checked and (
            self.step % self.data.recipe.check_every == 0 or self.at_report_point
        )

    def advance(self) -> None:
        """Take the next training step (on the current CUDA stream)."""
        with self._own_rng():
            self.stepper.run(self.step, self.use_graph)
        self.step += 1

    def check(self) -> None:
        """Raise :class:`TrainingFailed` if any loss so far is NaN, infinite or too large."""
        bad = _first_bad(self.stepper.losses, self.step, self.data.recipe.max_loss)
        self.checked = self.step
        if bad is not None:
            raise TrainingFailed(f"diverged: loss is {bad[1]} at step {bad[0]}")

    def validate(self) -> None:
        """Recalibrate batch norm, score the validation images, and call ``report``."""
        with self._own_rng():
            self._validate()

    def _validate(self) -> None:
        t2 = time.perf_counter()
        data, recipe, batch = self.data, self.data.recipe, self.data.recipe.batch_size
        if recipe.bn_recalibration_images:
            # whole batches only: the cumulative average weighs every batch equally
            n_calib = max(1, min(recipe.bn_recalibration_images, len(data.x)) // batch) * batch
            recalibrate_bn(self.net, data.x[:n_calib], batch, self.autocast, self.channels_last)
        self.val_acc, self.val_loss = evaluate_accuracy(
            self.net, data.val_x, data.val_y, recipe.eval_batch_size, self.autocast, self.channels_last
        )
        self.eval_s += time.perf_counter() - t2
        if not math.isfinite(self.val_loss):
            raise TrainingFailed(f"diverged: validation loss is {self.val_loss} after step {self.step}")
        self.epoch_acc.append(self.val_acc)
        point = len(self.epoch_acc)
        log.debug(
            "point %d (step %d): val_acc %.4f val_loss %.4f", point, self.step, self.val_acc, self.val_loss
        )
        if self.report is not None:
            self.report(point, self.val_acc)

    def result(self, setup_s: float, train_s: float, extra: dict[str, float] | None = None) -> FitResult:
        """The finished run's :class:`FitResult` (timings are the driver's to measure)."""
        total, batch = self.data.total_steps, self.data.recipe.batch_size
        losses = self.stepper.losses[:total].double()
        last = losses[-min(self.data.steps_per_epoch, total) :]
        return FitResult(
            val_acc=self.val_acc,
            val_loss=self.val_loss,
            epoch_acc=tuple(self.epoch_acc),
            train_loss_mean=float(losses.mean()),
            train_loss_last=float(last.mean()),
            steps=total,
            images=total * batch,
            setup_s=setup_s,
            train_s=train_s,
            eval_s=self.eval_s,
            images_per_s=total * batch / train_s if train_s > 0 else float("nan"),
            extra=dict(extra or {}),
        )

    def release(self) -> None:
        """Drop the model, optimizer state and CUDA graph (a finished or failed run's memory)."""
        self.stepper.graph = None
        del self.stepper, self.net


def sync(device: torch.device) -> None:
    """Wait for every queued kernel on a CUDA ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":  # pragma: no cover - CUDA only
        torch.cuda.synchronize(device)


def fit(
    model: nn.Module | ModelFactory,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    device: str | torch.device = "cpu",
    seed: int = 0,
    report: ReportFn | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> FitResult:
    """Train ``model`` on ``train`` with ``recipe`` and score it on ``val``.

    Args:
        model: A module, or a factory that builds one; a factory is called with torch's CPU
            generator seeded by ``seed`` (so initialisation is reproducible) without changing
            the caller's random state.
        train: Images (N, C, H, W; ``uint8`` or float) and labels (N,) to train on, all of them
            (the caller chooses the subset; see :func:`ghostnas.evaluators.proxy.proxy_data`).
        val: Held-out images and labels to score on.
        recipe: How to train.
        device: Where to train; data is moved there once.
        seed: Every random draw of the run: initialisation (when ``model`` is a factory),
            batch order, augmentation and dropout. Training runs with torch's global generators
            forked and seeded from it (the caller's states are restored afterwards), so on the
            CPU the same model, data, recipe, seed and thread count give the same result bit for
            bit whatever ran before. Batch order and augmentation depend only on the seed and
            the data size, and the dropout stream restarts from a seed derived from ``seed``
            after initialisation, so every candidate trained with one seed sees the same
            batches (common random numbers).
        report: Called as ``report(epoch, val_acc)`` after each whole epoch (and at the end);
            it may raise (e.g. ``optuna.TrialPruned``) to stop training, and that propagates.
        mean: Per-channel mean (0..255 scale) for ``uint8`` inputs; default computed from train.
        std: Per-channel standard deviation likewise.

    Returns:
        Accuracy, losses and timings.

    Raises:
        TrainingFailed: the loss became NaN, infinite or larger than ``recipe.max_loss``.
    """
    t0 = time.perf_counter()
    data = prepare_data(train, val, recipe, device, mean, std)
    run = TrainingRun(model, data, seed, report)
    sync(data.device)
    setup_s = time.perf_counter() - t0
    return run.result(setup_s, run_to_end(run))


def run_to_end(run: TrainingRun) -> float:
    """Drive ``run`` to its end: train, check the loss when due, validate at each report point.

    The one loop every single-model trainer shares (:func:`fit`, the fidelity benchmark's
    reference); :mod:`ghostnas.train_many` interleaves several runs instead. Returns the seconds
    spent training (validation excluded; the device is synchronised before each clock read).
    Raises :class:`TrainingFailed` as :meth:`TrainingRun.check` does.
    """
    device = run.data.device
    train_s = 0.0
    while not run.done:
        t1 = time.perf_counter()
        while True:
            run.advance()
            if run.check_due:
                run.check()
            if run.at_report_point:
                break
        sync(device)
        train_s += time.perf_counter() - t1
        run.validate()
    return train_s
