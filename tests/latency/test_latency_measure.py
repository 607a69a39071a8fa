"""Latency: BN folding, the timer and its clocks, thread counts, device choice (:mod:`ghostnas.latency._measure`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostnas.latency import (
    LatencyError,
    MeasureSettings,
    clock_name,
    fold_bn,
    resolve_device,
    thread_count,
    time_callable,
)
from ghostnas.models.ghostnet import GhostNet
from ghostnas.registry import resolve_config
from tests.latency.stubs import randomize_bn

# ------------------------------------------------------------------------------------------
# measurement


@pytest.mark.parametrize("name", ["ghostnet_tiny", "ghostnet_050"])
def test_fold_bn_preserves_outputs(name: str) -> None:
    model = GhostNet(resolve_config(name), num_classes=10).eval()
    randomize_bn(model)
    folded = fold_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "the original is untouched"
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref, out = model(x), folded(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()


def test_time_callable_uses_the_injected_clock() -> None:
    now = [0.0]
    durations = iter([0.001] * 3 + [0.002] * 1000)  # warm-up calls 1 ms, then 2 ms each

    def fn() -> None:
        now[0] += next(durations)

    t = time_callable(fn, MeasureSettings(warmup_s=0.0, blocks=5, min_block_s=0.004), clock=lambda: now[0])
    # blocks are sized from the fastest warm-up call: 4 calls per block
    assert t.n == 20
    assert t.median_ms == pytest.approx(2.0)
    assert t.p20_ms == pytest.approx(2.0)
    assert t.iqr_ms == pytest.approx(0.0)
    assert t.latency_ms == t.p20_ms


def test_time_callable_low_quantile_ignores_slow_blocks() -> None:
    now = [0.0]
    costs = iter([0.001] * 3 + [0.001, 0.001, 0.001, 0.001, 0.009, 0.001, 0.009, 0.001, 0.001, 0.009])

    def fn() -> None:
        now[0] += next(costs)

    t = time_callable(fn, MeasureSettings(warmup_s=0.0, blocks=10, min_block_s=0.0005), clock=lambda: now[0])
    assert t.latency_ms == pytest.approx(1.0)
    assert t.iqr_ms > 0


def test_thread_count_is_restored() -> None:
    before = torch.get_num_threads()
    with thread_count(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_measure_settings_are_checked() -> None:
    with pytest.raises(LatencyError):
        MeasureSettings(blocks=1)


def test_clock_and_device_choice() -> None:
    assert clock_name("cpu", 1) == "thread-cpu"
    assert clock_name("cpu", 2) == "wall"
    assert clock_name("cuda", 1) == "wall"
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(LatencyError, match="unknown"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(LatencyError, match="CUDA is not available"):
            resolve_device("cuda")
