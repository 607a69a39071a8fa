"""A small finished search run folder for plot and export tests (fake evaluator, tiny space)."""

from __future__ import annotations

from pathlib import Path

from ghostnas.budget import parse_budget
from ghostnas.evaluators import FakeEvaluator
from ghostnas.search import SearchSettings, run_search

BUDGET = parse_budget("10M")  # tiny spans 2.7M..24.5M MACs


def make_run(out: Path, trials: int = 8) -> Path:
    """Run a fake search into ``out`` in which the second evaluated candidate fails."""
    calls = {"n": 0}

    def fail_second(_cfg: object) -> bool:
        calls["n"] += 1
        return calls["n"] == 2

    # noise_seeds=0: no reference probes, so the second evaluation is the second candidate
    settings = SearchSettings(
        budget=BUDGET, space="tiny", trials=trials, evaluator="fake", out=str(out), noise_seeds=0
    )
    run_search(settings, evaluator=FakeEvaluator(fail_if=fail_second))
    return out
