"""Which networks a latency table covers and which fit its correction line.

``ghostnas latency build-table`` times the blocks of some networks and fits a line (measured
whole-network latency against the sum of its blocks) on others. The choice is library logic, so
that the CLI, the benchmarks and tests make the same table from the same inputs:

- covered: the named models, ``samples`` random configs of the space (seed ``seed``) and the
  calibration's reference networks (so that ``predict`` calibrates without timing blocks);
- fitted: the named models and ``fit`` random configs from another seed (not the covered sample
  itself), cut to ``fit``, plus the space's reference network at its smallest and largest width,
  so that the line spans the whole latency range (random samples cluster in the middle, and a
  line fitted on them alone overestimates the small networks a latency search proposes).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ghostnas.config import GhostNetConfig
from ghostnas.latency._measure import LatencyError
from ghostnas.latency._predict import REFERENCE_NETWORKS
from ghostnas.registry import resolve_config
from ghostnas.space import SearchSpace, load_space

__all__ = ["FIT_SEED_OFFSET", "TableNetworks", "space_extremes", "space_sample", "table_networks"]

FIT_SEED_OFFSET = 1_000_003
"""Added to the seed for the fitting sample, so it is not the covered sample."""


@dataclass(frozen=True)
class TableNetworks:
    """The networks a table is built from.

    Attributes:
        covered: Networks whose blocks are timed into the table.
        fitted: Networks timed whole to fit the correction line (their blocks are covered too).
    """

    covered: list[GhostNetConfig]
    fitted: list[GhostNetConfig]


def space_sample(space: SearchSpace, samples: int, seed: int) -> list[GhostNetConfig]:
    """``samples`` random configs of ``space`` (a fixed seed makes the table reproducible)."""
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(samples)]


def space_extremes(space: SearchSpace) -> list[GhostNetConfig]:
    """The space's reference network at its smallest and largest width, when it has one."""
    widths = space.width.values()
    out = [space.reference_at_width(w) for w in (widths[0], widths[-1])]
    return [c for c in out if c is not None]


def table_networks(
    models: Sequence[str], space: str | None, samples: int, fit: int, seed: int
) -> TableNetworks:
    """The networks to cover and to fit on (see the module docstring).

    Args:
        models: Model names or config files to cover and fit on.
        space: A search space name or file to sample (None: the models only).
        samples: Random configs of the space to cover.
        fit: Networks to fit the line on (at least 1), before the space's extremes.
        seed: Seed of the covered sample (the fitting sample uses ``seed + FIT_SEED_OFFSET``).

    Raises:
        LatencyError: neither a space nor a model was given.
    """
    if space is None and not models:
        raise LatencyError("build-table: nothing to cover; give --space NAME and/or --model NAME")
    covered = [resolve_config(m) for m in models]
    fitted = list(covered)
    if space is None:
        return TableNetworks(covered=covered, fitted=fitted[: max(fit, 1)])
    sp = load_space(space)
    covered += space_sample(sp, samples, seed)
    fitted += space_sample(sp, fit, seed + FIT_SEED_OFFSET)
    fitted = fitted[: max(fit, 1)] + space_extremes(sp)
    covered += [resolve_config(n) for n in REFERENCE_NETWORKS]
    return TableNetworks(covered=covered, fitted=fitted)
