from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest
import torch
from torch import nn

import ghostnas
from ghostnas.data import synthetic_dataset
from ghostnas.evaluators.proxy import default_recipe, proxy_data
from ghostnas.train import FitResult, TrainingFailed, fit
from ghostnas.train_many import fit_many

RECIPE = replace(default_recipe("synthetic"), epochs=2, train_images=128, batch_size=32, check_every=3)


@pytest.fixture(scope="module")
def data():
    ds = synthetic_dataset(n_train=400, n_test=20)
    return proxy_data(ds, replace(RECIPE, val_images=64))


def tiny(width: float = 1.0) -> nn.Module:
    cfg = ghostnas.resolve_config("ghostnet_tiny").with_width(width)
    return ghostnas.create_model(cfg, num_classes=10, in_chans=1, stem_stride=1)


class _NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def _same(a: FitResult, b: FitResult) -> None:
    assert (a.val_acc, a.val_loss, a.train_loss_mean, a.train_loss_last, a.epoch_acc) == (
        b.val_acc,
        b.val_loss,
        b.train_loss_mean,
        b.train_loss_last,
        b.epoch_acc,
    )
    assert (a.steps, a.images) == (b.steps, b.images)


def test_each_candidate_matches_training_it_alone(data) -> None:
    factories = [partial(tiny, 1.0), partial(tiny, 0.5), partial(tiny, 1.0)]
    seeds = [0, 0, 5]
    together = fit_many(factories, *data, RECIPE, seeds=seeds)
    alone = [fit(f, *data, RECIPE, seed=s) for f, s in zip(factories, seeds, strict=True)]
    assert all(isinstance(r, FitResult) for r in together)
    for t, a in zip(together, alone, strict=True):
        _same(t, a)
        assert t.extra["concurrent"] == 3
    # different architectures and seeds really are different runs
    assert len({r.train_loss_mean for r in alone}) == 3


def _dropnet(p: float) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 32), nn.Dropout(p), nn.Linear(32, 10))


def test_dropout_streams_stay_apart_when_interleaved(data) -> None:
    """Each candidate draws its dropout masks from its own seeded stream, swapped in around its
    steps and validations, so interleaving does not mix the streams (with crops and flips from
    the shared batch plan), and the caller's generator is left as it was."""
    rec = replace(RECIPE, crop_padding=2, flip=True)
    factories = [partial(_dropnet, 0.5), partial(_dropnet, 0.3), partial(_dropnet, 0.5)]
    seeds = [0, 0, 3]
    torch.manual_seed(7)
    before = torch.get_rng_state()
    together = fit_many(factories, *data, rec, seeds=seeds)
    assert torch.equal(torch.get_rng_state(), before)
    alone = [fit(f, *data, rec, seed=s) for f, s in zip(factories, seeds, strict=True)]
    for t, a in zip(together, alone, strict=True):
        assert isinstance(t, FitResult)
        _same(t, a)


def test_a_failing_or_pruned_candidate_stops_alone(data) -> None:
    class Stop(Exception):
        pass

    seen: list[int] = []

    def prune(point: int, value: float) -> None:
        seen.append(point)
        raise Stop(f"pruned at {point}")

    out = fit_many([tiny, _NaNNet, tiny], *data, RECIPE, seeds=[1, 1, 2], reports=[None, None, prune])
    assert isinstance(out[1], TrainingFailed) and str(out[1]) == "diverged: loss is nan at step 1"
    assert isinstance(out[2], Stop) and seen == [1]  # stopped at its first report, not later
    assert isinstance(out[0], FitResult)
    _same(out[0], fit(tiny, *data, RECIPE, seed=1))


def test_argument_checks_and_empty(data) -> None:
    assert fit_many([], *data, RECIPE) == []
    with pytest.raises(ValueError, match="2 models but 1 seeds"):
        fit_many([tiny, tiny], *data, RECIPE, seeds=[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_streams_and_graphs_give_results_and_memory(data) -> None:  # pragma: no cover - CUDA only
    out = fit_many([tiny, partial(tiny, 0.5)], *data, RECIPE, device="cuda", seeds=[0, 1])
    assert all(isinstance(r, FitResult) for r in out)
    assert all(r.extra["group_peak_memory_bytes"] > 0 for r in out)
    alone = fit(tiny, *data, RECIPE, device="cuda", seed=0)
    assert abs(out[0].train_loss_mean - alone.train_loss_mean) < 1e-3
