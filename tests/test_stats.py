from __future__ import annotations

import math

import pytest

from ghostnas.stats import kendall_tau, rankdata, spearman_rho


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
