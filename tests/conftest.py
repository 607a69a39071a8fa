"""Shared fixtures: an isolated user model library and a generator of random valid configs."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghostnas.config import BlockConfig, GhostNetConfig, StageConfig


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point GHOSTNAS_HOME at a fresh folder so no test reads or writes the real ~/.ghostnas."""
    home = tmp_path_factory.mktemp("ghostnas_home")
    monkeypatch.setenv("GHOSTNAS_HOME", str(home))
    return home


def random_config(rng: random.Random, max_chs: int = 64) -> GhostNetConfig:
    """A random valid config covering every knob: s in 2..4, d in 1/3/5, mixed kernels, SE,
    both strides, per-stage and per-block overrides, odd channel counts and widths."""

    def maybe(values: list[int]) -> int | None:
        return rng.choice(values) if rng.random() < 0.3 else None

    stages = []
    for _ in range(rng.randint(1, 4)):
        blocks = []
        for bi in range(rng.randint(1, 3)):
            blocks.append(
                BlockConfig(
                    k=rng.choice([1, 3, 5, 7]),
                    exp=rng.randint(1, max_chs),
                    c=rng.randint(1, max_chs),
                    se_ratio=rng.choice([0.0, 0.0, 0.25, 0.5]),
                    stride=rng.choice([1, 2]) if bi == 0 else rng.choice([1, 1, 2]),
                    s=maybe([2, 3, 4]),
                    d=maybe([1, 3, 5]),
                )
            )
        stages.append(StageConfig(tuple(blocks), s=maybe([2, 3, 4]), d=maybe([1, 3, 5])))
    return GhostNetConfig(
        stages=tuple(stages),
        width=rng.choice([0.35, 0.5, 0.75, 1.0, 1.3]),
        s=rng.choice([2, 3, 4]),
        d=rng.choice([1, 3, 5]),
        stem_chs=rng.randint(1, 32),
        head_chs=rng.randint(1, 128),
        dropout=rng.choice([0.0, 0.2]),
        act=rng.choice(["relu", "hard_swish", "silu"]),
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real local PostgreSQL server (skipped only where PostgreSQL is not installed and
    this is not CI: in CI, scripts/setup.sh installs it and a missing server is a failure)."""
    from ghostnas.testing import postgres as _postgres

    if not _postgres.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; scripts/setup.sh should have installed it")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    with _postgres.postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def tiny_detect_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny detection dataset made at run time (``ghostnas data make-detect``): 16 canvases of
    64x64 (train 12, val 2, test 2); its data.yaml path."""
    from ghostnas.data.detect import DetectRecipe, make_detect_dataset

    out = tmp_path_factory.mktemp("detect_data") / "tiny"
    make_detect_dataset(out, DetectRecipe(images=16, imgsz=64, seed=1))
    return out / "data.yaml"
