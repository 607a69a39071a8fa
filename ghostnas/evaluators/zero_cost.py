"""Zero-cost proxies: score an untrained candidate from one batch, plus the cost baselines.

Each proxy builds the candidate the way the training proxy does (the data's shape and stem
stride, :func:`ghostnas.data.input_shape`) with a seeded initialisation, and returns a score
where higher is supposed to mean "will train to higher accuracy". Whether it does is measured by
``benchmarks/fidelity.py``; ``params`` and ``macs`` are the baselines a proxy must beat.

- ``synflow`` (Tanaka et al., 2020; used as a NAS proxy by Abdelfattah et al., 2021): with every
  parameter replaced by its absolute value and batch-norm reduced to its affine part (eval mode
  with fresh statistics, i.e. no data statistics), feed an all-ones input and sum the outputs to
  R; the score is the sum over conv and linear weights of ``|w * dR/dw|``. Computed in float64
  (the raw value overflows float32) and reported as its natural log.
- ``naswot`` (Mellor et al., 2021): for a batch of N real training images, the binary pattern of
  which units every activation layer leaves positive; the kernel ``K[i, j]`` counts the units
  where images i and j agree, and the score is ``log |det K|``. Networks that separate inputs
  into distinct linear regions at initialisation score higher.
- ``zen`` (Lin et al., 2021, Zen-NAS): with Gaussian-initialised weights (N(0, 1) conv and linear
  weights, unit batch-norm scale, zero shifts) in training mode, the expected change of the
  pre-pooling feature map under a small Gaussian input perturbation,
  ``log E||f(x) - f(x + 0.01 e)||_1``, plus the sum over batch-norm layers of
  ``log sqrt(mean_c var_c)``, where ``var_c`` is the mini-batch variance of channel c at that
  layer's input (the paper's definition; the reference code reads BN running variances, which
  after one step of momentum are a damped version of the same quantity). Inputs are N(0, 1)
  noise, so no data is needed.
- ``params`` and ``macs``: the closed-form counts (MACs at the dataset's input shape), higher
  scoring higher, as the search would use them.
"""

from __future__ import annotations

import abc
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from ghostnas.config import GhostNetConfig
from ghostnas.cost import count_cost
from ghostnas.data import DATASETS, DataArg, DatasetSpec, input_shape, load_dataset, spec_of
from ghostnas.evaluators.base import EvalResult, EvaluationFailed, ReportFn

if TYPE_CHECKING:
    from ghostnas.evaluators import EvalSettings

__all__ = [
    "CostEvaluator",
    "NaswotEvaluator",
    "SynflowEvaluator",
    "ZenEvaluator",
    "naswot_score",
    "synflow_score",
    "zen_score",
]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------------------------
# the scores, on any model


def synflow_score(
    model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu"
) -> float:
    """Natural log of the synflow saliency of ``model`` (modified in place: use a throwaway).

    Args:
        model: An untrained network.
        input_shape: (C, H, W) of one input.
        device: Where to compute.

    Returns:
        ``log(sum |w * dR/dw|)`` over conv and linear weights.

    Raises:
        EvaluationFailed: the saliency is zero, NaN or overflows float64.
    """
    model = model.to(device=device, dtype=torch.float64).eval()  # eval: BN uses fresh stats 0 / 1
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    model(x).sum().backward()
    total = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
                total += (m.weight * m.weight.grad).abs().sum()
    value = float(total)
    if not math.isfinite(value) or value <= 0:
        raise EvaluationFailed(f"synflow: saliency is {value} (float64 overflow or a dead network)")
    return math.log(value)


def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    """log |det K| of the activation-pattern kernel of ``model`` on the batch ``x``.

    Args:
        model: An untrained network (used in training mode, as the paper does).
        x: A batch of N normalised real inputs (N around 64-128).

    Raises:
        EvaluationFailed: K is singular (two inputs share an activation pattern).
    """
    n = len(x)
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
        codes = (out.detach().reshape(n, -1) > 0).to(torch.float32)
        kernel.add_((codes @ codes.T + (1 - codes) @ (1 - codes).T).double())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    if float(sign) == 0 or not math.isfinite(float(logdet)):
        raise EvaluationFailed("naswot: the activation-pattern kernel is singular (identical patterns)")
    return float(logdet)


def _gaussian_init(model: nn.Module, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                w = torch.randn(m.weight.shape, generator=generator, dtype=m.weight.dtype)
                m.weight.copy_(w)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def zen_score(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int = 32,
    gamma: float = 1e-2,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> float:
    """The Zen-score of ``model`` (re-initialised in place: use a throwaway).

    Args:
        model: A network with ``forward_features`` (the map before global pooling).
        input_shape: (C, H, W) of one input.
        batch_size: Gaussian inputs per evaluation.
        gamma: Size of the input perturbation.
        device: Where to compute.
        generator: CPU generator for the weights and inputs (seeded by the caller for
            reproducibility; None uses torch's global generator).

    Raises:
        EvaluationFailed: the score is not finite.
    """
    model = model.train()
    _gaussian_init(model, generator)
    model = model.to(device)
    x = torch.randn((batch_size, *input_shape), generator=generator).to(device)
    noise = torch.randn((batch_size, *input_shape), generator=generator).to(device)
    log_sigma: list[torch.Tensor] = []

    def hook(_m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        var = inp[0].detach().double().var(dim=(0, 2, 3), unbiased=False)
        log_sigma.append(0.5 * torch.log(var.mean()))

    features: Callable[[torch.Tensor], torch.Tensor] = getattr(model, "forward_features", model)
    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            f1 = features(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad():
        f2 = features(x + gamma * noise)
    delta = (f1 - f2).abs().double().sum(dim=(1, 2, 3)).mean()
    value = float(torch.log(delta) + torch.stack(log_sigma).sum()) if log_sigma else float(torch.log(delta))
    if not math.isfinite(value):
        raise EvaluationFailed(f"zen: score is {value} (features did not respond to the perturbation)")
    return value


# --------------------------------------------------------------------------------------------
# evaluators


class _ZeroCost(abc.ABC):
    """Shared plumbing: dataset shape, seeded model construction, timing."""

    name = "zero_cost"

    def __init__(self, data: DataArg = "fashion-mnist", device: str = "cpu", seed: int = 0) -> None:
        if isinstance(data, str) and data not in DATASETS:  # the user's folder or .npz: read it now
            data = load_dataset(data)
        self.data = data
        self.spec: DatasetSpec = spec_of(data)
        self.device = device
        self.seed = seed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.in_chans, self.spec.size, self.spec.size)

    def build(self, cfg: GhostNetConfig) -> nn.Module:
        from ghostnas.registry import create_model

        with _seeded(self.seed):
            return create_model(cfg, spec=input_shape(self.spec))

    @abc.abstractmethod
    def score(self, cfg: GhostNetConfig) -> float:
        """The proxy's value for ``cfg`` (higher is better)."""

    def evaluate(self, cfg: GhostNetConfig, report: ReportFn | None = None) -> EvalResult:
        start = time.perf_counter()
        try:
            value = self.score(cfg)
        except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - needs a device to run out
            raise EvaluationFailed(f"out of memory: {str(exc).splitlines()[0]}") from None
        metrics: dict[str, float | int | str] = {self.name: value}
        if self.spec.synthetic:
            metrics["data"] = "synthetic (test data, not a benchmark)"
        return EvalResult(score=value, metrics=metrics, seconds=time.perf_counter() - start)


class SynflowEvaluator(_ZeroCost):
    """``synflow``: log synaptic-flow saliency; needs no data."""

    name = "synflow"

    def score(self, cfg: GhostNetConfig) -> float:
        return synflow_score(self.build(cfg), self.input_shape, self.device)


class ZenEvaluator(_ZeroCost):
    """``zen``: Zen-score from Gaussian inputs; needs no data."""

    name = "zen"

    def __init__(
        self, data: DataArg = "fashion-mnist", device: str = "cpu", seed: int = 0, batch_size: int = 32
    ) -> None:
        super().__init__(data, device, seed)
        self.batch_size = batch_size

    def score(self, cfg: GhostNetConfig) -> float:
        gen = torch.Generator().manual_seed(self.seed)
        return zen_score(
            self.build(cfg), self.input_shape, self.batch_size, device=self.device, generator=gen
        )


class NaswotEvaluator(_ZeroCost):
    """``naswot``: activation-pattern kernel log-determinant on a batch of training images.

    The batch is a fixed seeded sample of the training part of the train/validation split, so it
    never includes validation or test images.
    """

    name = "naswot"

    def __init__(
        self,
        data: DataArg = "fashion-mnist",
        data_dir: str | None = None,
        device: str = "cpu",
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        super().__init__(data, device, seed)
        self.data_dir = data_dir
        self.batch_size = batch_size
        self._batch: torch.Tensor | None = None

    def batch(self) -> torch.Tensor:
        if self._batch is None:
            from ghostnas.data import holdout
            from ghostnas.train import Recipe, normalise

            ds = load_dataset(self.data, self.data_dir)
            (train_x, _), _ = holdout(ds, Recipe().val_images)
            pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(self.seed))
            self._batch = normalise(train_x[pick[: self.batch_size]], ds.mean, ds.std).to(self.device)
        return self._batch

    def score(self, cfg: GhostNetConfig) -> float:
        return naswot_score(self.build(cfg).to(self.device), self.batch())


class CostEvaluator(_ZeroCost):
    """``params`` or ``macs`` from the closed-form cost model: the baselines."""

    def __init__(
        self, what: str, data: DataArg = "fashion-mnist", device: str = "cpu", seed: int = 0
    ) -> None:
        if what not in ("params", "macs"):
            raise ValueError(f"what must be 'params' or 'macs', not {what!r}")
        super().__init__(data, device, seed)
        self.name = what

    def score(self, cfg: GhostNetConfig) -> float:
        cost = count_cost(cfg, spec=input_shape(self.spec))
        return float(cost.params if self.name == "params" else cost.macs)


def synflow_from_settings(settings: EvalSettings) -> SynflowEvaluator:
    """Factory for ``make_evaluator("synflow", settings)``."""
    return SynflowEvaluator(settings.data, settings.device, settings.seed)


def naswot_from_settings(settings: EvalSettings) -> NaswotEvaluator:
    """Factory for ``make_evaluator("naswot", settings)``; reads its batch now (missing data fails early)."""
    ev = NaswotEvaluator(settings.data, settings.data_dir, settings.device, settings.seed)
    ev.batch()
    return ev


def zen_from_settings(settings: EvalSettings) -> ZenEvaluator:
    """Factory for ``make_evaluator("zen", settings)``."""
    return ZenEvaluator(settings.data, settings.device, settings.seed)


def params_from_settings(settings: EvalSettings) -> CostEvaluator:
    """Factory for ``make_evaluator("params", settings)``."""
    return CostEvaluator("params", settings.data, settings.device, settings.seed)


def macs_from_settings(settings: EvalSettings) -> CostEvaluator:
    """Factory for ``make_evaluator("macs", settings)``."""
    return CostEvaluator("macs", settings.data, settings.device, settings.seed)
