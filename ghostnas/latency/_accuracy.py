"""How good a latency predictor is: the figures nn-Meter and the issue report.

Kept apart from the benchmark so that the arithmetic is tested on fixed numbers, and so that
anyone judging a new predictor computes the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ghostnas.stats import kendall_tau  # one tau-b for the proxy and the latency benchmarks

__all__ = ["accuracy_report", "kendall_tau"]


def accuracy_report(
    predicted: Sequence[float], measured: Sequence[float], tolerance: float = 0.10
) -> dict[str, Any]:
    """Share of predictions within ``tolerance`` of the measurement, MAPE and Kendall tau.

    Args:
        predicted: Predicted latencies.
        measured: Measured latencies of the same networks, same order (all > 0).
        tolerance: Relative error counted as a hit (0.10: within +-10%).

    Returns:
        ``n``, ``within`` (fraction), ``mape`` (fraction), ``max_abs_pct_error`` (fraction),
        ``mean_signed_pct_error`` (fraction; > 0 means over-prediction) and ``kendall_tau``.
    """
    if not measured or len(predicted) != len(measured):
        raise ValueError("accuracy_report needs equally long, non-empty lists")
    errors = [(p - m) / m for p, m in zip(predicted, measured, strict=True)]
    return {
        "n": len(errors),
        "tolerance": tolerance,
        "within": sum(abs(e) <= tolerance for e in errors) / len(errors),
        "mape": math.fsum(abs(e) for e in errors) / len(errors),
        "max_abs_pct_error": max(abs(e) for e in errors),
        "mean_signed_pct_error": math.fsum(errors) / len(errors),
        "kendall_tau": kendall_tau(predicted, measured),
    }
