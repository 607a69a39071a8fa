"""The short-training proxy: train a candidate briefly, score it on held-out training images.

The candidate is built with the same block sequence as at 224x224 but for the data's shape
(:func:`ghostnas.data.input_shape`: its channels and classes, and a stride-1 stem below 64
pixels), so that 28x28 and 32x32 images still have 4x4 and 2x2 spatial maps, not 1x1, before the
last stage. Nothing else changes: the budget is counted as ``--cost-at`` says (224x224 by default).

Two scores come from one run: ``train`` (validation accuracy after the run, in [0, 1]) and
``trainloss`` (minus the mean training loss over all steps, the "sum of training losses" proxy,
which can rank better than early accuracy); ``benchmarks/fidelity.py`` measures both.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from ghostnas.config import GhostNetConfig
from ghostnas.data import DataArg, Dataset, data_label, holdout, input_shape, load_dataset
from ghostnas.evaluators.base import EvalResult, EvaluationFailed, PromoteFn, ReportFn
from ghostnas.train import FitResult, Recipe, TrainingFailed, fit

if TYPE_CHECKING:
    from ghostnas.evaluators import EvalSettings

__all__ = ["TrainEvaluator", "default_recipe", "from_settings", "proxy_data", "trainloss_from_settings"]

log = logging.getLogger(__name__)


def default_recipe(data: str, device: str = "cpu") -> Recipe:
    """The proxy recipe for a dataset: about 30 s for a ghostnet_100-sized candidate on 2 CPU cores.

    ``synthetic`` gets a seconds-long smoke-test recipe (it exists for tests only). On CUDA the
    same images run as a captured CUDA graph in fp32: measured on an H100 at the proxy's batch of
    128 (results/throughput-gpu-2026-11-23) it trains ghostnet_100 2.9x faster than a plain eager
    loop from the first run on. channels_last was faster still on a second run of the same
    network (4.5x) but 10x slower on its first (one-off kernel loading and selection), which a
    search of always-new architectures may keep paying; bf16 was slower at this batch size. So
    both stay options (``Recipe.channels_last``, ``Recipe.bf16``), not defaults.
    """
    if data == "synthetic":
        return Recipe(epochs=2, train_images=512, val_images=256, batch_size=32, eval_batch_size=256, lr=0.05)
    del device  # one recipe for CPU and GPU: the GPU runs it as a CUDA graph (see fit)
    return Recipe()


def proxy_data(
    dataset: Dataset, recipe: Recipe
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The (train, val) tensors a recipe trains and validates on (:func:`ghostnas.data.holdout`).

    The split and the subset depend on ``recipe.split_seed`` only, so every candidate and every
    seed uses the same images. The test set is never touched.
    """
    return holdout(dataset, recipe.val_images, recipe.train_images, recipe.split_seed)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op threads and restore the previous setting afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TrainEvaluator:
    """Scores a config by training it briefly (see the module docstring).

    Args:
        data: Dataset name, or a loaded :class:`~ghostnas.data.Dataset`.
        data_dir: Where the dataset's files are (None: ``$GHOSTNAS_DATA`` or the default place).
        recipe: Training recipe; None means :func:`default_recipe` for the dataset.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        seed: Initialisation and batch order (the data split is fixed by the recipe).
        score: ``val_acc`` (validation accuracy) or ``train_loss`` (minus the mean training loss).
        threads: CPU intra-op threads during evaluation (None: leave torch's setting).
    """

    def __init__(
        self,
        data: DataArg = "fashion-mnist",
        data_dir: str | None = None,
        recipe: Recipe | None = None,
        device: str = "cpu",
        seed: int = 0,
        score: str = "val_acc",
        threads: int | None = None,
    ) -> None:
        if score not in ("val_acc", "train_loss"):
            raise ValueError(f"score must be 'val_acc' or 'train_loss', not {score!r}")
        self._dataset = data if isinstance(data, Dataset) else None
        self.data = data.spec.name if isinstance(data, Dataset) else data
        self.data_dir = data_dir
        self.recipe = recipe or default_recipe(self.data, device)
        self.device = device
        self.seed = seed
        self.score = score
        self.threads = threads
        self.name = "train" if score == "val_acc" else "trainloss"

    def dataset(self) -> Dataset:
        """The dataset, loaded on first use and cached for the process."""
        if self._dataset is None:
            self._dataset = load_dataset(self.data, self.data_dir)
        return self._dataset

    def with_seed(self, seed: int) -> TrainEvaluator:
        """The same evaluator (data shared, not reloaded) scoring with another seed."""
        other = copy.copy(self)
        other.seed = seed
        return other

    def _build(
        self, cfg: GhostNetConfig, built: list[torch.nn.Module] | None = None
    ) -> Callable[[], torch.nn.Module]:
        """A factory of ``cfg``'s network for this evaluator's data (appending each network it
        builds to ``built`` when given, so that a caller can train it further)."""
        from ghostnas.registry import create_model

        spec = input_shape(self.dataset().spec)

        def build() -> torch.nn.Module:
            net = create_model(cfg, spec=spec)
            if built is not None:
                built.append(net)
            return net

        return build

    def fit(
        self,
        cfg: GhostNetConfig | torch.nn.Module,
        report: ReportFn | None = None,
        recipe: Recipe | None = None,
        seed: int | None = None,
        built: list[torch.nn.Module] | None = None,
    ) -> FitResult:
        """Train ``cfg`` with this evaluator's recipe; :class:`TrainingFailed` on divergence.

        Args:
            cfg: A config to build and train, or an already trained network to train on.
            report: Passed to :func:`ghostnas.train.fit`.
            recipe: Instead of the evaluator's recipe (a promotion rung's extra epochs).
            seed: Instead of the evaluator's seed.
            built: When given, the network built from ``cfg`` is appended to it, so that a
                caller can train it further.
        """
        ds = self.dataset()
        train, val = proxy_data(ds, self.recipe)
        model = cfg if isinstance(cfg, torch.nn.Module) else self._build(cfg, built)
        recipe = recipe or self.recipe
        seed = self.seed if seed is None else seed
        with _threads(self.threads):
            return fit(model, train, val, recipe, self.device, seed, report, ds.mean, ds.std)

    def evaluate(self, cfg: GhostNetConfig, report: ReportFn | None = None) -> EvalResult:
        start = time.perf_counter()
        res = self._fit_or_fail(cfg, report)
        return self._result(res, time.perf_counter() - start)

    def evaluate_rungs(
        self, cfg: GhostNetConfig, rungs: int, factor: float, promote: PromoteFn
    ) -> list[EvalResult]:
        """Rung 0 is :meth:`evaluate`; rung ``r`` trains the same network on in memory until it
        has had ``factor ** r`` times the recipe's epochs in total (see :mod:`ghostnas.promotion`).

        Each continuation is a warm restart: the recipe's warm-up and decay over the extra epochs
        only, momentum reset, batches drawn with a seed derived from the evaluator's seed and the
        rung (the same for every candidate: common random numbers per rung). Metrics ``images``
        and ``train_s`` of a rung count all training so far.
        """
        start = time.perf_counter()
        built: list[torch.nn.Module] = []
        fits = [self._fit_or_fail(cfg, None, built=built)]
        results = [self._result(fits[0], time.perf_counter() - start)]
        done = self.recipe.epochs
        for rung in range(1, rungs):
            if not promote(rung - 1, results[-1]):
                break
            total = self.recipe.epochs * factor**rung
            more = replace(self.recipe, epochs=total - done)
            res = self._fit_or_fail(built[0], None, recipe=more, seed=_rung_seed(self.seed, rung))
            fits.append(res)
            done = total
            res = replace(
                res,
                images=sum(f.images for f in fits),
                steps=sum(f.steps for f in fits),
                train_s=sum(f.train_s for f in fits),
                eval_s=sum(f.eval_s for f in fits),
            )
            results.append(self._result(res, time.perf_counter() - start, rung=rung, epochs=total))
        return results

    def _fit_or_fail(
        self, cfg: GhostNetConfig | torch.nn.Module, report: ReportFn | None, **kw: Any
    ) -> FitResult:
        try:
            return self.fit(cfg, report, **kw)
        except (TrainingFailed, torch.cuda.OutOfMemoryError) as exc:
            raise _failure(exc) from None

    def evaluate_many(
        self, cfgs: Sequence[GhostNetConfig], reports: Sequence[ReportFn | None]
    ) -> list[EvalResult | Exception]:
        """Train every config at once (:func:`ghostnas.train_many.fit_many`: one CUDA graph and
        stream each on a GPU, in turn on the CPU) with this evaluator's recipe and seed; each
        result equals :meth:`evaluate`'s for that config alone (bit for bit on the CPU)."""
        from ghostnas.train_many import fit_many

        start = time.perf_counter()
        ds = self.dataset()
        train, val = proxy_data(ds, self.recipe)
        with _threads(self.threads):
            outs = fit_many(
                [self._build(c) for c in cfgs],
                train,
                val,
                self.recipe,
                self.device,
                [self.seed] * len(cfgs),
                reports,
                ds.mean,
                ds.std,
            )
        seconds = time.perf_counter() - start
        return [
            self._result(o, seconds)
            if isinstance(o, FitResult)
            else (_failure(o) if isinstance(o, (TrainingFailed, torch.cuda.OutOfMemoryError)) else o)
            for o in outs
        ]

    def _result(
        self, res: FitResult, seconds: float, rung: int = 0, epochs: float | None = None
    ) -> EvalResult:
        value = res.val_acc if self.score == "val_acc" else -res.train_loss_mean
        metrics: dict[str, float | int | str] = {
            "val_acc": res.val_acc,
            "val_loss": res.val_loss,
            "train_loss_mean": res.train_loss_mean,
            "train_loss_last": res.train_loss_last,
            "steps": res.steps,
            "images": res.images,
            "setup_s": res.setup_s,
            "train_s": res.train_s,
            "eval_s": res.eval_s,
            "images_per_s": res.images_per_s,
            "data": self.dataset().label,
        }
        if rung:
            metrics["rung"] = rung
            metrics["epochs_total"] = epochs if epochs is not None else self.recipe.epochs
        for i, acc in enumerate(res.epoch_acc, start=1):
            metrics[f"val_acc_{i}"] = acc
        for key, extra in res.extra.items():
            metrics[key] = extra
        return EvalResult(score=value, metrics=metrics, seconds=seconds)


def _failure(exc: Exception) -> EvaluationFailed:
    """Divergence or running out of device memory: a failed evaluation with its reason."""
    if isinstance(exc, TrainingFailed):
        return EvaluationFailed(str(exc))
    return EvaluationFailed(f"out of memory: {str(exc).splitlines()[0] if str(exc) else 'device'}")


def _rung_seed(seed: int, rung: int) -> int:
    """Seed of a promotion rung's extra training: depends on the search seed and the rung only."""
    return seed + 7_919 * rung


def _settings_recipe(settings: EvalSettings) -> Recipe:
    recipe = default_recipe(data_label(settings.data), settings.device)
    return recipe if settings.epochs is None else replace(recipe, epochs=float(settings.epochs))


def from_settings(settings: EvalSettings) -> TrainEvaluator:
    """Factory for ``make_evaluator("train", settings)``: validation accuracy.

    The dataset is loaded here, not at the first evaluation, so that missing data is a one-line
    error before a search starts rather than a string of failed trials.
    """
    ev = TrainEvaluator(
        settings.data, settings.data_dir, _settings_recipe(settings), settings.device, settings.seed
    )
    ev.dataset()
    return ev


def trainloss_from_settings(settings: EvalSettings) -> TrainEvaluator:
    """Factory for ``make_evaluator("trainloss", settings)``: minus the mean training loss."""
    ev = TrainEvaluator(
        settings.data,
        settings.data_dir,
        _settings_recipe(settings),
        settings.device,
        settings.seed,
        score="train_loss",
    )
    ev.dataset()
    return ev
