"""Crash and resume, many workers on one study: real processes, SIGKILL, a real PostgreSQL."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.evaluators import EvalResult, FakeEvaluator
from ghostnas.search import SearchSettings, run_search
from ghostnas.testing.workers import check_study, crash_and_resume, load_trials, run_workers


def test_sigkill_mid_trial_then_resume_loses_nothing(tmp_path):
    report = crash_and_resume(tmp_path, trials=8, sleep=0.6)
    assert report.problems == []
    assert len(report.completed_before) >= 2
    assert report.stale_number is not None and "died" in report.stale_reason
    assert report.retry_number is not None and report.retry_number > report.stale_number
    assert report.retry_outcome == "ok"
    assert report.evaluated == 8 and report.resume_status == 0


def _assert_shared(trials, target: int, n_workers: int) -> None:
    assert check_study(trials, target) == []
    evaluated = [t for t in trials if t.user_attrs.get("outcome") in ("ok", "failed", "pruned")]
    # the work was shared: every worker evaluated some of the trials
    owners = Counter(t.user_attrs["worker"]["pid"] for t in evaluated)
    assert len(owners) == n_workers, owners


def test_two_workers_share_a_journal_file(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    statuses = run_workers(tmp_path, url, "shared", n_workers=2, trials=12, sleep=0.3)
    assert statuses == [0, 0]
    _assert_shared(load_trials(url, "shared"), 12, 2)


@pytest.mark.postgres
def test_two_workers_share_a_postgres_study(tmp_path, postgres_url):
    statuses = run_workers(tmp_path, postgres_url, "shared-pg", n_workers=2, trials=12, sleep=0.3)
    assert statuses == [0, 0]
    _assert_shared(load_trials(postgres_url, "shared-pg"), 12, 2)


class Flaky:
    """Fails in a different way on each of its first four calls, then scores normally."""

    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = FakeEvaluator()

    def evaluate(self, cfg, report=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("CUDA error: an illegal memory access (simulated)")
        if self.calls == 2:
            raise MemoryError("cannot allocate 40 GiB (simulated)")
        if self.calls == 3:
            return EvalResult(score=float("nan"))
        if self.calls == 4:
            return EvalResult(score=None)  # a broken plug-in
        return self.inner.evaluate(cfg, report)


def test_failing_candidates_are_recorded_and_the_search_goes_on(tmp_path):
    flaky = Flaky()
    settings = SearchSettings(budget=parse_budget("10M"), space="tiny", trials=8, out=str(tmp_path / "run"))
    result = run_search(settings, evaluator=flaky)
    assert result.evaluated == 8 == flaky.calls and result.best is not None
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert [r["state"] for r in failed] == ["FAIL"] * 4
    reasons = " | ".join(r["reason"] for r in failed)
    for words in (
        "RuntimeError: CUDA error",
        "MemoryError: cannot allocate",
        "non-finite score nan",
        "TypeError",
    ):
        assert words in reasons, reasons
    assert sum(r["outcome"] == "ok" for r in rows) == 4


class AlwaysOOM:
    name = "always-oom"

    def evaluate(self, cfg, report=None):
        raise MemoryError("out of memory (simulated)")


def always_oom_factory(settings):
    return AlwaysOOM()


def test_cli_every_trial_failing_ends_with_a_clear_message(tmp_path, monkeypatch, capsys):
    from ghostnas import evaluators

    monkeypatch.setitem(evaluators._FACTORIES, "always-oom", f"{__name__}:always_oom_factory")
    monkeypatch.chdir(tmp_path)
    argv = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "always-oom", "--trials", "3"]
    status = main([*argv, "--out", "run", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert "no candidate was evaluated successfully (3 failed" in err and "trials.csv" in err
    assert "Traceback" not in err
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert sum("MemoryError: out of memory" in r["reason"] for r in rows) == 3
