"""Latency: accuracy figures of a predictor: Kendall tau and the report (:mod:`ghostnas.latency._accuracy`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import math

import pytest

from ghostnas.latency import (
    accuracy_report,
    kendall_tau,
)


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # tau-b with a tie in y: concordant 2, discordant 0, ties_y 1 -> 2 / sqrt(3 * 2)
    assert kendall_tau([1, 2, 3], [1, 2, 2]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau([1, 1], [1, 2]))


def test_accuracy_report() -> None:
    rep = accuracy_report([1.05, 2.5, 2.9], [1.0, 2.0, 3.0])
    assert rep["within"] == pytest.approx(2 / 3)
    assert rep["mape"] == pytest.approx((0.05 + 0.25 + 0.1 / 3) / 3)
    assert rep["kendall_tau"] == pytest.approx(1.0)
