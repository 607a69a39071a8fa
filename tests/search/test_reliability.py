"""Crash and resume, many workers on one study: real processes, SIGKILL, a real PostgreSQL."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import replace

import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.evaluators import EvalResult, FakeEvaluator
from ghostnas.search import SearchSettings, run_search
from ghostnas.testing.workers import check_study, crash_and_resume, load_trials, run_workers


@pytest.mark.parametrize("journal", [False, True], ids=["sqlite", "journal"])
def test_sigkill_mid_trial_then_resume_loses_nothing(tmp_path, journal):
    report = crash_and_resume(tmp_path, trials=8, sleep=0.6, journal=journal)
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


def _dead_remote_trial(study, storage, outcome="evaluating"):
    """A RUNNING trial that claims to belong to a worker on another machine."""
    trial = study.ask()
    trial.suggest_float("width", 0.5, 0.5)
    trial.set_user_attr("worker", {"host": "elsewhere.example", "pid": 1, "started": "1"})
    trial.set_user_attr("outcome", outcome)
    return trial


@pytest.mark.slow  # the slowest tests of the suite (minutes on a loaded 2-core machine)
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_heartbeat_fails_a_silent_remote_worker_and_retries_its_config(tmp_path, monkeypatch):
    import optuna

    from ghostnas import workers
    from ghostnas.storage import close_storage, open_storage

    monkeypatch.setattr(workers, "HEARTBEAT_INTERVAL", 1)
    monkeypatch.setattr(workers, "GRACE_PERIOD", 1)
    settings = SearchSettings(budget=parse_budget("10M"), space="tiny", trials=3, out=str(tmp_path / "run"))
    run_search(settings)
    storage = open_storage(f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    study = optuna.load_study(study_name="run", storage=storage)
    ghost = _dead_remote_trial(study, storage)
    ghost_params = {"width": 0.5}
    storage.record_heartbeat(ghost._trial_id)  # it beat once, then its machine went silent
    close_storage(storage)
    import time

    time.sleep(2.5)
    # the remote owner is not judged by pid (another host): only its missing heartbeat marks it
    result = run_search(replace(settings, trials=4))
    trials = {t.number: t for t in load_trials(f"sqlite:///{tmp_path / 'run' / 'study.db'}", "run")}
    assert trials[ghost.number].state.name == "FAIL"
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == ghost.number]
    assert len(retry) == 1 and retry[0].params["width"] == ghost_params["width"]
    rows = {int(r["number"]): r for r in csv.DictReader((tmp_path / "run" / "trials.csv").open())}
    assert rows[ghost.number]["outcome"] == "worker_died" and "heartbeat" in rows[ghost.number]["reason"]
    assert result.evaluated == 4


def test_journal_sweep_judges_remote_owners_by_age_and_local_ones_by_pid(tmp_path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    from ghostnas import workers

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(study_name="j", storage=storage)
    remote = _dead_remote_trial(study, storage)
    me = workers.WorkerId.current()
    mine = study.ask()
    mine.set_user_attr("worker", me.as_dict())  # this live process: never swept
    assert workers.sweep_stale(study, storage, me, remote_stale_s=3600) == 0
    assert workers.sweep_stale(study, storage, me, remote_stale_s=0) == 1  # older than the limit
    states = {t.number: t for t in study.get_trials()}
    assert states[remote.number].state.name == "FAIL" and states[mine.number].state.name == "RUNNING"
    assert "elsewhere.example" in states[remote.number].user_attrs["reason"]
    retries = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == remote.number]
    assert len(retries) == 1 and retries[0].state.name == "WAITING"
    # a second sweeper racing on the same trial neither fails it again nor retries it twice
    assert workers.sweep_stale(study, storage, me, remote_stale_s=0) == 0


def test_a_worker_killed_mid_trial_is_replaced_by_its_peer(tmp_path):
    """Two workers on a journal file; one is SIGKILLed mid-trial. The survivor, finding the last
    slot held by the dead worker's trial, fails it, retries its config and ends the study exact."""
    import os
    import signal
    import time

    from ghostnas.testing.workers import search_command, start_worker

    url, target = f"journal:{tmp_path / 'study.log'}", 10
    procs = [
        start_worker(
            search_command(tmp_path / f"out-{i}", target, storage=url, study="s", seed=i),
            0.4,
            tmp_path,
            tmp_path / f"w{i}.log",
        )
        for i in range(2)
    ]
    victim = procs[0]
    deadline = time.monotonic() + 60
    doomed = None
    while doomed is None and time.monotonic() < deadline:
        trials = load_trials(url, "s")
        ok = sum(t.user_attrs.get("outcome") == "ok" for t in trials)
        mine = [
            t
            for t in trials
            if t.state.name == "RUNNING"
            and t.user_attrs.get("outcome") == "evaluating"
            and t.user_attrs["worker"]["pid"] == victim.pid
        ]
        if ok >= 2 and mine:
            os.kill(victim.pid, signal.SIGKILL)
            doomed = mine[0].number
        time.sleep(0.02)
    victim.wait()
    assert doomed is not None, "the victim never had a trial to kill"
    assert procs[1].wait(timeout=60) == 0
    trials = {t.number: t for t in load_trials(url, "s")}
    assert check_study(list(trials.values()), target) == []
    assert trials[doomed].state.name == "FAIL" and trials[doomed].user_attrs["outcome"] == "worker_died"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == doomed]
    assert len(retries) == 1 and retries[0].params == trials[doomed].params
    assert retries[0].user_attrs["worker"]["pid"] == procs[1].pid
