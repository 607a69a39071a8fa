from __future__ import annotations

import math
import random

import pytest

from ghostnas.stats import bootstrap_interval, kendall_tau, rankdata, spearman_rho


def test_rankdata_averages_ties() -> None:
    assert rankdata([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert rankdata([]) == []


def test_kendall_hand_checked() -> None:
    # pairs of (1..5) vs (3, 4, 1, 2, 5): 6 concordant, 4 discordant -> (6 - 4) / 10
    assert kendall_tau([1, 2, 3, 4, 5], [3, 4, 1, 2, 5]) == pytest.approx(0.2)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # tau-b with one tie on each side: 4 concordant, 0 discordant -> 4 / sqrt(5 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)


def test_spearman_hand_checked() -> None:
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks of y = (1, 2, 3, 4.5, 4.5); Pearson's r of the ranks, as scipy.stats.spearmanr gives
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    # d = (0, -1, 1) without ties: 1 - 6 * 2 / (3 * 8) = 0.5
    assert spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_undefined_cases() -> None:
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    assert math.isnan(kendall_tau([1, 1], [2, 2]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])
    with pytest.raises(ValueError):
        spearman_rho([1, float("nan")], [1, 2])


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_agreement() -> None:
    rng = random.Random(1)
    x = [rng.random() for _ in range(30)]
    noisy = [v + rng.gauss(0, 0.3) for v in x]
    lo, hi = bootstrap_interval(x, noisy, resamples=400)
    tau = kendall_tau(x, noisy)
    assert lo < tau < hi
    assert -1 <= lo < hi <= 1
    assert bootstrap_interval(x, noisy, resamples=400) == (lo, hi)  # seeded
    assert bootstrap_interval(x, [2 * v for v in x], resamples=200) == (1.0, 1.0)
    wide = bootstrap_interval(x[:8], noisy[:8], resamples=400)
    assert wide[1] - wide[0] > hi - lo  # fewer configs, less certainty


def test_bootstrap_interval_rejects_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1, 2, 3], [1, 2, 3], level=1.5)
