from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import ghostnas
from ghostnas.data import synthetic_dataset
from ghostnas.evaluators.proxy import default_recipe, proxy_data
from ghostnas.train import Recipe, TrainingFailed, _crop_flip, fit, full_recipe, lr_schedule, normalise

RECIPE = replace(default_recipe("synthetic"), epochs=1, train_images=256, batch_size=32)


@pytest.fixture(scope="module")
def data():
    ds = synthetic_dataset(n_train=600, n_test=50)
    return proxy_data(ds, replace(RECIPE, val_images=128))


def tiny() -> nn.Module:
    return ghostnas.create_model("ghostnet_tiny", num_classes=10, in_chans=1, stem_stride=1)


def test_same_seed_same_result_on_cpu(data) -> None:
    train, val = data
    a = fit(tiny, train, val, RECIPE, seed=3)
    b = fit(tiny, train, val, RECIPE, seed=3)
    c = fit(tiny, train, val, RECIPE, seed=4)
    assert (a.val_acc, a.val_loss, a.train_loss_mean) == (b.val_acc, b.val_loss, b.train_loss_mean)
    assert a.train_loss_mean != c.train_loss_mean
    assert a.steps == 8 and a.images == 256 and a.epoch_acc == (a.val_acc,)
    assert a.train_s > 0 and a.images_per_s > 0 and math.isfinite(a.val_loss)


def test_seed_does_not_disturb_global_rng(data) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(tiny, *data, RECIPE, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_learns_synthetic_data_above_chance() -> None:
    ds = synthetic_dataset()
    train, val = proxy_data(ds, default_recipe("synthetic"))
    res = fit(tiny, train, val, default_recipe("synthetic"), seed=0)
    assert res.val_acc > 0.2  # chance is 0.1
    assert res.train_loss_last < res.train_loss_mean < math.log(10) + 0.2


def test_reports_every_epoch_and_lets_exceptions_through(data) -> None:
    seen: list[tuple[int, float]] = []
    fit(tiny, *data, replace(RECIPE, epochs=2.5), report=lambda s, v: seen.append((s, v)))
    assert [s for s, _ in seen] == [1, 2, 3]  # epochs 1, 2 and the end (2.5)
    assert all(0 <= v <= 1 for _, v in seen)

    class Stop(Exception):
        pass

    def prune(step: int, value: float) -> None:
        raise Stop

    with pytest.raises(Stop):
        fit(tiny, *data, replace(RECIPE, epochs=2), report=prune)


class _NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def test_nan_loss_fails_with_its_step(data) -> None:
    with pytest.raises(TrainingFailed, match=r"^diverged: loss is nan at step 1$"):
        fit(_NaNNet, *data, RECIPE)


def test_huge_learning_rate_diverges(data) -> None:
    with pytest.raises(TrainingFailed, match=r"^diverged: loss is .* at step \d+"):
        fit(tiny, *data, replace(RECIPE, lr=1e8, warmup=0.0, epochs=2))


def test_float_inputs_and_augmentation(data) -> None:
    (tx, ty), (vx, vy) = data
    recipe = replace(full_recipe("cifar10", epochs=1), train_images=0, val_images=64, batch_size=32)
    res = fit(tiny, (normalise(tx, (128.0,), (64.0,)), ty), (normalise(vx, (128.0,), (64.0,)), vy), recipe)
    assert 0 <= res.val_acc <= 1 and res.steps == len(tx) // 32


def test_lr_schedule_shape() -> None:
    lr = lr_schedule(Recipe(lr=0.4, warmup=0.25), 8)
    assert lr.shape == (8,) and lr.dtype == torch.float32
    assert lr[1] == pytest.approx(0.4)  # warm-up ends at step 2 of 8
    assert lr[0] < lr[1] and all(lr[i] >= lr[i + 1] for i in range(1, 7))
    assert lr[-1] == pytest.approx(0.4e-3)  # floor, never exactly 0
    cos = lr_schedule(Recipe(lr=1.0, warmup=0.0, schedule="cosine"), 4)
    assert cos[1].item() == pytest.approx(0.5)


def test_crop_flip() -> None:
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    centre = torch.full((2, 2), 1)
    assert torch.equal(_crop_flip(x, centre, None, 1), x)
    shifted = _crop_flip(x, torch.tensor([[0, 0], [2, 2]]), None, 1)
    assert shifted[0, 0, 0, 0] == 0 and torch.equal(shifted[0, 0, 1:, 1:], x[0, 0, :2, :2])
    assert torch.equal(shifted[1, 0, :2, :2], x[1, 0, 1:, 1:]) and shifted[1, 0, 2, 2] == 0
    flipped = _crop_flip(x, None, torch.tensor([True, False]), 0)
    assert torch.equal(flipped[0], x[0].flip(2)) and torch.equal(flipped[1], x[1])


@pytest.mark.parametrize(
    "field, value", [("epochs", 0), ("lr", -1.0), ("schedule", "step"), ("momentum", 1.0)]
)
def test_recipe_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        Recipe(**{field: value})


def test_full_recipe_reuses_the_loop_settings() -> None:
    c, f = full_recipe("cifar10"), full_recipe("fashion-mnist")
    assert c.flip and not f.flip and c.crop_padding == 4 and c.schedule == "cosine"
    assert c.label_smoothing == 0.1 and c.train_images == 0


def test_recalibrate_bn_matches_the_data_statistics() -> None:
    from ghostnas.train import recalibrate_bn

    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    x = torch.randn(64, 1, 4, 4) * 3 + 5
    recalibrate_bn(net, x, batch_size=16)
    with torch.no_grad():
        h = net[0](x)
    bn = net[1]
    assert torch.allclose(bn.running_mean, h.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bn.running_var, h.var((0, 2, 3)), rtol=0.05)  # mean of per-batch unbiased vars
    assert bn.momentum == 0.1 and net.training


def test_cuda_only_switches_leave_the_cpu_result_unchanged(data) -> None:
    """The CUDA recipe (graph, bf16, channels_last) runs on a CPU machine as the plain CPU step."""
    cuda_recipe = replace(RECIPE, cuda_graphs=True, bf16=True, channels_last=True)
    a = fit(tiny, *data, replace(RECIPE, cuda_graphs=False), seed=1)
    b = fit(tiny, *data, cuda_recipe, seed=1)
    assert (a.val_acc, a.val_loss, a.train_loss_mean) == (b.val_acc, b.val_loss, b.train_loss_mean)


def test_default_proxy_recipe_is_the_same_on_cpu_and_cuda() -> None:
    cuda = default_recipe("fashion-mnist", "cuda")
    assert cuda == default_recipe("fashion-mnist", "cpu")
    assert cuda.cuda_graphs and not cuda.bf16 and not cuda.channels_last


def _space_config_with_dropout_and_se():
    """A real point of the shipped ghostnet_v1 space: the reference at its smallest width, which
    has dropout before the classifier and SE blocks (both draw on or depend on random state)."""
    from ghostnas.space import load_space

    space = load_space("ghostnet_v1")
    cfg = space.reference_at_width(space.width.values()[0])
    assert cfg is not None and cfg.dropout > 0
    assert any(b.se_ratio > 0 for st in cfg.stages for b in st.blocks)
    return cfg


def _other_random_work() -> None:
    """What a search does between two evaluations: draws from the global generators, including a
    forward pass through a training-mode network with dropout."""
    torch.rand(1000)
    net = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    net.train()
    net(torch.randn(64, 8)).sum().backward()
    torch.randint(0, 10, (17,))


@pytest.mark.slow
def test_space_config_with_dropout_and_se_scores_bit_identically_and_keeps_global_rng() -> None:
    from ghostnas.evaluators.proxy import TrainEvaluator

    cfg = _space_config_with_dropout_and_se()
    recipe = Recipe(epochs=1, train_images=192, val_images=128, batch_size=64, eval_batch_size=128, lr=0.05)
    ev = TrainEvaluator(synthetic_dataset(n_train=512, n_test=16), recipe=recipe, seed=5)
    torch.manual_seed(2024)
    state = torch.get_rng_state()
    a = ev.fit(cfg)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
    _other_random_work()
    b = ev.fit(cfg)
    _other_random_work()
    torch.manual_seed(999)  # a different global seed changes nothing either
    c = ev.fit(cfg)
    for r in (b, c):
        assert (r.val_acc, r.val_loss, r.train_loss_mean, r.train_loss_last) == (
            a.val_acc,
            a.val_loss,
            a.train_loss_mean,
            a.train_loss_last,
        )
    other_seed = TrainEvaluator(ev.dataset(), recipe=recipe, seed=6).fit(cfg)
    assert other_seed.train_loss_mean != a.train_loss_mean


def test_dropout_stream_is_seeded_inside_fit(data) -> None:
    """A model with dropout only (nothing else random) trains identically twice: the dropout
    masks come from the fit's seed, not from whatever the global generator held."""

    def dropnet() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 32), nn.Dropout(0.5), nn.Linear(32, 10))

    torch.manual_seed(1)
    a = fit(dropnet, *data, RECIPE, seed=0)
    torch.manual_seed(2)
    b = fit(dropnet, *data, RECIPE, seed=0)
    assert a.train_loss_mean == b.train_loss_mean and a.val_loss == b.val_loss


def test_batch_plan_is_common_to_every_candidate() -> None:
    """Common random numbers: batch order and augmentation depend on the seed and the data size
    only, never on the model."""
    from ghostnas.train import batch_plan

    rec = replace(RECIPE, crop_padding=2, flip=True)
    a = batch_plan(256, rec, seed=3)
    b = batch_plan(256, rec, seed=3)
    c = batch_plan(256, rec, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (8, 32) and a[1].shape == (8, 32, 2) and a[2].shape == (8, 32)
