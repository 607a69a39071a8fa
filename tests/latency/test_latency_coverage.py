"""Latency: build-table's choice of networks (:mod:`ghostnas.latency._coverage`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import pytest

from ghostnas.latency import (
    LatencyError,
)
from ghostnas.registry import resolve_config


def test_table_networks_choose_cover_and_fit_in_the_library() -> None:
    """build-table's choice of networks (moved out of the CLI): reproducible for a seed, the fit
    sample differs from the covered one, the space's extremes are fitted and the calibration's
    reference networks covered."""
    from ghostnas.latency import REFERENCE_NETWORKS, table_networks
    from ghostnas.space import load_space

    a = table_networks(["ghostnet_tiny"], "tiny", samples=3, fit=2, seed=5)
    assert a == table_networks(["ghostnet_tiny"], "tiny", samples=3, fit=2, seed=5)
    space = load_space("tiny")
    widths = space.width.values()
    extremes = [space.reference_at_width(w) for w in (widths[0], widths[-1])]
    assert a.covered[0] == resolve_config("ghostnet_tiny") == a.fitted[0]
    assert a.covered[-len(REFERENCE_NETWORKS) :] == [resolve_config(n) for n in REFERENCE_NETWORKS]
    assert a.fitted[2:] == [c for c in extremes if c is not None] and len(a.fitted[:2]) == 2
    assert a.covered[1:4] != table_networks([], "tiny", samples=3, fit=3, seed=5).fitted[:3]
    only = table_networks(["ghostnet_tiny", "ghostnet_050"], None, samples=9, fit=1, seed=0)
    assert only.covered == [resolve_config("ghostnet_tiny"), resolve_config("ghostnet_050")]
    assert only.fitted == only.covered[:1]
    with pytest.raises(LatencyError, match="nothing to cover"):
        table_networks([], None, samples=1, fit=1, seed=0)
