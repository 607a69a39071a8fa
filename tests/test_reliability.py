"""Crash and resume, many workers on one study: real processes, SIGKILL, a real PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pytest

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
