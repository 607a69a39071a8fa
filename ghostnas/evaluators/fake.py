"""A deterministic, instant evaluator for tests and for exercising the search loop.

Its score rises with log MACs and with a few architecture choices and has a small config-hashed
jitter, so a search has a real trade-off to find, but it trains nothing. Results from it are
labelled ``fake`` wherever they are shown.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable

from ghostnas.config import BuildSpec, GhostNetConfig
from ghostnas.cost import count_cost
from ghostnas.errors import GhostnasError
from ghostnas.evaluators.base import EvalResult, EvaluationFailed, PromoteFn, ReportFn

__all__ = ["FakeEvaluator"]


class FakeEvaluator:
    """Instant pseudo-accuracy in (0, 1) from the config alone.

    Args:
        steps: How many intermediate values to report (exercises pruning paths).
        fail_if: Optional predicate; configs it accepts raise :class:`EvaluationFailed`.
        sleep: Seconds to sleep per evaluation (to test time-outs and progress).
        seed: 0 gives the historical scores; any other seed adds a config- and seed-hashed
            jitter of about +-0.005, a stand-in for seed-to-seed noise (noise-floor tests).
    """

    name = "fake"

    def __init__(
        self,
        steps: int = 3,
        fail_if: Callable[[GhostNetConfig], bool] | None = None,
        sleep: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.steps = steps
        self.fail_if = fail_if
        self.sleep = sleep
        self.seed = seed

    def evaluate(self, cfg: GhostNetConfig, report: ReportFn | None = None) -> EvalResult:
        start = time.perf_counter()
        if self.fail_if is not None and self.fail_if(cfg):
            raise EvaluationFailed("fake evaluator: configured to fail on this config")
        if self.sleep:
            time.sleep(self.sleep)
        macs = count_cost(cfg, spec=BuildSpec(input_size=32, in_chans=3, num_classes=10, stem_stride=1)).macs
        digest = hashlib.sha256(cfg.short().encode()).digest()
        jitter = (int.from_bytes(digest[:4], "little") / 2**32 - 0.5) * 0.02
        se_bonus = 0.005 * sum(b.se_ratio > 0 for b in cfg.blocks()) / cfg.num_blocks
        base = 0.5 + 0.08 * math.log10(max(macs, 1) / 1e5) + se_bonus + jitter
        if self.seed:
            base += _hashed(f"{cfg.short()}|seed{self.seed}") * 0.01
        score = min(max(base, 0.01), 0.99)
        for step in range(1, self.steps + 1):
            if report is not None:
                report(step, score * step / self.steps)
        return EvalResult(score=score, metrics={"fake": 1}, seconds=time.perf_counter() - start)

    def evaluate_rungs(
        self, cfg: GhostNetConfig, rungs: int, factor: float, promote: PromoteFn
    ) -> list[EvalResult]:
        """Rung ``r`` scores rung 0 plus ``0.02 r`` plus a config-hashed jitter of +-0.01 (so
        the order can change between rungs), and sleeps ``factor ** r - factor ** (r - 1)``
        times :attr:`sleep` (the extra training a real continuation costs)."""
        results = [self.evaluate(cfg)]
        for rung in range(1, rungs):
            if not promote(rung - 1, results[-1]):
                break
            if self.sleep:
                time.sleep(self.sleep * (factor**rung - factor ** (rung - 1)))
            score = results[0].score + 0.02 * rung + _hashed(f"{cfg.short()}|rung{rung}") * 0.02
            results.append(EvalResult(score=min(max(score, 0.01), 0.99), metrics={"fake": 1, "rung": rung}))
        return results


def _hashed(text: str) -> float:
    """A deterministic number in [-0.5, 0.5) from ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:4], "little") / 2**32 - 0.5


# Test-only: seconds the fake sleeps per evaluation when built by name (``--evaluator fake``), so
# that tests and the crash/resume demo can kill a worker mid-trial. Never read by real evaluators.
SLEEP_ENV = "GHOSTNAS_FAKE_SLEEP"


def from_settings(settings: object) -> FakeEvaluator:
    """Factory for :func:`ghostnas.evaluators.make_evaluator`; the fake needs no settings (the
    test-only ``GHOSTNAS_FAKE_SLEEP`` environment variable slows it down)."""
    text = os.environ.get(SLEEP_ENV, "")
    try:
        sleep = float(text) if text else 0.0
    except ValueError:
        raise GhostnasError(f"{SLEEP_ENV}={text!r}: must be a number of seconds") from None
    if not math.isfinite(sleep) or sleep < 0:
        raise GhostnasError(f"{SLEEP_ENV}={text!r}: must be a non-negative number of seconds")
    return FakeEvaluator(sleep=sleep)
