"""Stand-ins shared by the latency tests: a stub part timer, a fake network timer, a stub
predictor and table, BN randomisation, and the CLI runner. Nothing here times anything real."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ghostnas.cli import main
from ghostnas.latency import (
    LatencyPredictor,
    LatencyTable,
    NetworkSpec,
    Timing,
    device_fingerprint,
)
from ghostnas.registry import resolve_config

TINY = resolve_config("ghostnet_tiny")
SMALL = NetworkSpec(input_size=32)


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g))


def make_table(**device: object) -> LatencyTable:
    fp = device_fingerprint("cpu", 1) | device
    return LatencyTable(
        device=fp,
        entries={"ghost|x": Timing(1.5, 0.1, 30, 1.4), "stem|y": Timing(0.25, 0.01, 100, None)},
        constant_ms=0.5,
        scale=1.1,
        fit={"networks": 3},
    )


class StubTimer:
    """Deterministic 'measurement': latency from the key's text; records what was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, part: object) -> Timing:
        key = part.key  # type: ignore[attr-defined]
        self.calls.append(key)
        ms = 0.01 * (len(key) % 17 + 1)
        return Timing(ms, 0.0, 1, ms)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def stub_part_timer(*_args: object, **_kw: object) -> object:
    """Stands in for ``part_timer``: a part's 'latency' grows with its widths, 0.01 ms a channel."""
    import re

    def measure(part: object) -> Timing:
        widths = [int(v) for v in re.findall(r"\|[imof](\d+)", part.key)]  # type: ignore[attr-defined]
        ms = 0.01 * sum(widths)
        return Timing(ms, 0.0, 1, ms)

    return measure


class NetTimer:
    """Stands in for ``measure_network``: a 'machine' ``speed`` times slower than the stub table."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.calls: list[object] = []
        self.probe = LatencyPredictor(
            LatencyTable(device={"d": 1}, constant_ms=0.25), measure=stub_part_timer()
        )

    def __call__(self, cfg: object, *_a: object, **_k: object) -> Timing:
        self.calls.append(cfg)
        ms = self.speed * self.probe.predict(cfg)
        return Timing(ms, 0.0, 1, ms)


def stub_predictor(spec: NetworkSpec | None = None) -> LatencyPredictor:
    table = LatencyTable(device=device_fingerprint("cpu", 1), constant_ms=0.25, fit={"rel_rms": 0.04})
    return LatencyPredictor(table, spec, stub_part_timer())
