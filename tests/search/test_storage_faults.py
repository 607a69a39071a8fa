"""A database that goes away mid-search: the retry window, and PostgreSQL stopped, restarted and
cutting connections under real worker processes (ghostnas.storage, "A database server that goes
away")."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter

import pytest
import sqlalchemy.exc

from ghostnas.cli import main
from ghostnas.storage import (
    ConnectionRetry,
    StorageError,
    StorageUnavailableError,
    check_retry_s,
    is_connection_lost,
    open_storage,
)
from ghostnas.testing.workers import (
    check_study,
    load_trials,
    run_chaos,
    search_command,
    start_worker,
    wait_mid_trial,
)

URL = "postgresql+psycopg://u:***@db:5432/ghostnas"


def _lost() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _flaky(fails: int, clock: FakeClock, calls: list[float]):
    def fn() -> str:
        calls.append(clock.now)
        if len(calls) <= fails:
            raise _lost()
        return "ok"

    return fn


def test_a_lost_connection_is_retried_with_backoff_and_said_in_two_lines(caplog):
    clock, calls = FakeClock(), []
    retry = ConnectionRetry(URL, 60, clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.WARNING, logger="ghostnas.storage"):
        assert retry.call(_flaky(5, clock, calls)) == "ok"
        assert retry.call(lambda: "again") == "again"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert len(calls) == 6 and all(later > earlier for earlier, later in itertools.pairwise(gaps))  # backoff
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "stopped answering (connection refused); retrying for up to 60 s" in lines[0]
    assert "answers again after" in lines[1] and "***" in lines[0] and "carrying on" in lines[1]
    assert retry.outages == 1 and retry.recovered_within(5) and not retry.recovered_within(0)


def test_one_dropped_connection_is_retried_at_once_without_a_warning(caplog):
    clock, calls = FakeClock(), []
    retry = ConnectionRetry(URL, 60, clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.WARNING, logger="ghostnas.storage"):
        assert retry.call(_flaky(1, clock, calls)) == "ok"
        retry.failed(_lost(), wait=False)  # a heartbeat that missed: noted, not said
        retry.succeeded()
    assert calls == [0.0, 0.0] and retry.dropped == 1 and retry.outages == 0
    assert caplog.records == []
    assert retry.recovered_within(1)  # but others' heartbeats are not judged for a while


def test_past_the_window_every_call_fails_at_once_with_one_line():
    clock, calls = FakeClock(), []
    retry = ConnectionRetry(URL, 10, clock=clock, sleep=clock.sleep)
    with pytest.raises(StorageUnavailableError) as info:
        retry.call(_flaky(1000, clock, calls))
    assert 10 <= clock.now <= 10 + 1e-6  # never sleeps past the window
    assert calls[-1] == pytest.approx(10)
    before = len(calls)
    with pytest.raises(StorageUnavailableError):  # clean-up calls do not wait a second window
        retry.call(_flaky(1000, clock, calls))
    assert len(calls) == before + 1 and clock.now == pytest.approx(10)
    err = info.value
    err.kept, err.command = "the trials completed so far are safe in study 's'", "ghostnas search --trials 3"
    text = str(err)
    assert "\n" not in text and text.startswith(f"the study storage {URL} stopped answering 10 s ago")
    assert text.endswith("resume with: ghostnas search --trials 3 (--storage-retry-s waits longer)")


def test_zero_window_fails_as_soon_as_the_server_is_down():
    clock, calls = FakeClock(), []
    with pytest.raises(StorageUnavailableError):
        ConnectionRetry(URL, 0, clock=clock, sleep=clock.sleep).call(_flaky(2, clock, calls))
    assert len(calls) == 2  # one dropped connection is always retried once, at once


@pytest.mark.parametrize(
    "exc, lost",
    [
        (_lost(), True),
        (sqlalchemy.exc.InterfaceError("x", {}, Exception("connection already closed")), True),
        (sqlalchemy.exc.OperationalError("x", {}, OSError(28, "No space left on device")), False),
        (sqlalchemy.exc.DataError("x", {}, Exception("value too long")), False),
        (ValueError("bad"), False),
    ],
    ids=["refused", "closed", "disk-full", "bad-data", "bug"],
)
def test_only_lost_connections_are_retried(exc, lost):
    assert is_connection_lost(exc) is lost
    clock, calls = FakeClock(), []

    def fn() -> None:
        calls.append(1)
        raise exc

    with pytest.raises((type(exc), StorageUnavailableError)):
        ConnectionRetry(URL, 5, clock=clock, sleep=clock.sleep).call(fn)
    assert (len(calls) > 1) is lost


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), True, "5"])
def test_a_bad_retry_window_is_one_line(value):
    with pytest.raises(StorageError, match=r"storage_retry_s = .*: must be a number of seconds, 0 or more"):
        check_retry_s(value)


def test_cli_rejects_a_negative_retry_window(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "--storage-retry-s", "-1"])
    assert info.value.code == 2
    assert "--storage-retry-s: '-1' must be 0 or a positive number" in capsys.readouterr().err


def test_sqlite_and_journal_storages_are_not_wrapped(tmp_path):
    """Only servers get the retrying storage (a SQLite error is a local file's, not a network's)."""
    import optuna

    st = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert type(st) is optuna.storages.RDBStorage
    st.engine.dispose()


def test_every_storage_call_optuna_makes_is_covered():
    """Optuna wraps an RDB storage in its cache layer, which calls some of the storage's private
    methods; each one that reaches the database must be retried or handled (an Optuna upgrade
    that calls another one fails here rather than in production)."""
    import inspect
    import re

    import optuna.storages._cached_storage as cached

    from ghostnas.storage import retrying_rdb_class

    called = set(re.findall(r"_backend\.(\w+)", inspect.getsource(cached)))
    local = {"get_heartbeat_interval", "get_heartbeat_stale_trial_callback"}  # no database call
    cls = retrying_rdb_class()
    missing = [name for name in sorted(called - local) if name not in vars(cls)]
    assert missing == []


class Lossy:
    """A retrying storage (on SQLite, so no server is needed) whose next commit of a chosen
    statement succeeds and then reports a lost connection, as when a server dies before it
    answers. ``arm("INSERT INTO trials ")`` picks the statement; ``fired`` counts the losses."""

    def __init__(self, path) -> None:
        import sqlite3

        from sqlalchemy import event

        from ghostnas.storage import retrying_rdb_class

        self.storage = retrying_rdb_class()(
            f"sqlite:///{path}", ConnectionRetry("test", 30), heartbeat_interval=60
        )
        self.prefix: str | None = None
        self.pending = False
        self.fired = 0
        dialect = self.storage.engine.dialect
        original = dialect.do_commit

        def seen(_conn, _cursor, statement, *_args) -> None:
            if self.prefix and statement.lstrip().upper().startswith(self.prefix):
                self.pending = True

        def do_commit(dbapi_connection) -> None:
            original(dbapi_connection)
            if self.pending:
                self.pending, self.prefix = False, None
                self.fired += 1
                raise sqlite3.OperationalError("server closed the connection unexpectedly")

        event.listen(self.storage.engine, "before_cursor_execute", seen)
        dialect.do_commit = do_commit

    def arm(self, prefix: str) -> None:
        self.prefix = prefix


@pytest.fixture
def lossy(tmp_path):
    import warnings

    import optuna

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    lossy = Lossy(tmp_path / "s.db")
    yield lossy
    lossy.storage.engine.dispose()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_tell_committed_before_the_connection_dropped_counts_once(lossy):
    """Optuna alone raises the lost connection and ends the worker; retried naively, the tell
    would raise "trial already finished". The retry sees the trial stored as told and goes on."""
    import optuna

    study = optuna.create_study(storage=lossy.storage, study_name="s")
    trial = study.ask()
    lossy.arm("UPDATE TRIALS SET STATE")
    study.tell(trial, 0.25)
    assert lossy.fired == 1  # the commit did report a lost connection
    trials = study.get_trials()
    assert [(t.state.name, t.values) for t in trials] == [("COMPLETE", [0.25])]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.parametrize("enqueued", [False, True], ids=["new", "enqueued"])
def test_a_trial_created_before_the_connection_dropped_is_not_left_behind(lossy, enqueued):
    """Optuna's own retry of a trial creation makes a second trial when the first was committed;
    the copy is failed at once (outcome duplicate) instead of staying RUNNING or WAITING."""
    import optuna

    study = optuna.create_study(storage=lossy.storage, study_name="s")
    lossy.arm("INSERT INTO TRIALS ")
    if enqueued:
        study.enqueue_trial({"x": 0.5})
    trial = study.ask()
    assert lossy.fired == 1
    trials = study.get_trials()
    running = [t for t in trials if t.state.name == "RUNNING"]
    assert [t.number for t in running] == [trial.number]
    assert running[0].user_attrs["worker"]["pid"] > 0  # owned from its first commit
    assert not [t for t in trials if t.state.name == "WAITING"]
    others = [t for t in trials if t.number != trial.number]
    assert others and all(t.state.name == "FAIL" and t.user_attrs["outcome"] == "duplicate" for t in others)
    if enqueued:
        assert trial.suggest_float("x", 0, 1) == 0.5


# --------------------------------------------------------------------------------------------
# a real PostgreSQL server, stopped, restarted and cutting connections under worker processes


@pytest.fixture(scope="module")
def pg():
    """A server of this module's own (its tests stop and restart it)."""
    import os

    from ghostnas.testing import postgres

    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; scripts/setup.sh should have installed it")
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs it)")
    with postgres.running_server() as server:
        yield server


def _lines(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.strip()]


def _nothing_lost(trials, completed_before: dict[int, list[float]]) -> None:
    by_number = {t.number: t for t in trials}
    for number, values in completed_before.items():  # nothing completed before the fault changed
        assert by_number[number].state.name == "COMPLETE" and by_number[number].values == values
    # no worker died; the only trials failed are copies made when a creation's answer was lost
    failed = [(t.number, t.user_attrs.get("outcome")) for t in trials if t.state.name == "FAIL"]
    assert all(outcome == "duplicate" for _, outcome in failed), failed


@pytest.mark.postgres
@pytest.mark.slow  # two worker processes' start-up on a loaded machine
def test_server_restarted_mid_trial_search_carries_on(pg, tmp_path):
    """The server stops while a trial is being evaluated and comes back 3 s later: the worker
    waits (one line), carries on (one line) and ends with exactly the requested trials."""
    target, study = 6, "restart"
    proc = start_worker(
        search_command(tmp_path / "out", target, storage=pg.url, study=study),
        0.8,
        tmp_path,
        tmp_path / "w.log",
    )
    try:
        before = wait_mid_trial(pg.url, study, proc)
        pg.stop()
        time.sleep(3)
    finally:
        pg.start()
    assert proc.wait(timeout=120) == 0
    trials = load_trials(pg.url, study)
    assert check_study(trials, target) == []
    _nothing_lost(trials, {t.number: t.values for t in before if t.state.name == "COMPLETE"})
    text = (tmp_path / "w.log").read_text()
    assert text.count("stopped answering") == 1 and text.count("answers again after") == 1, text
    assert "Traceback" not in text


@pytest.mark.postgres
@pytest.mark.slow  # a worker start-up and twelve trials with connections cut every 0.3 s
def test_connections_terminated_search_carries_on(pg, tmp_path):
    """Every connection of the worker is cut (pg_terminate_backend) every 0.3 s while it runs."""
    target, study = 12, "terminate"
    proc = start_worker(
        search_command(tmp_path / "out", target, storage=pg.url, study=study),
        0.1,
        tmp_path,
        tmp_path / "w.log",
    )
    cut, stop = [], threading.Event()

    def cutter() -> None:
        while not stop.wait(0.3):
            cut.append(pg.terminate_connections())

    wait_mid_trial(pg.url, study, proc)  # (its own connection is cut too: it reconnects)
    thread = threading.Thread(target=cutter)
    thread.start()
    try:
        status = proc.wait(timeout=120)
    finally:
        stop.set()
        thread.join()
    text = (tmp_path / "w.log").read_text()
    assert status == 0, text
    assert sum(cut) >= 5, cut  # connections really were cut, again and again
    trials = load_trials(pg.url, study)
    assert check_study(trials, target) == []
    _nothing_lost(trials, {})
    assert "Traceback" not in text


@pytest.mark.postgres
@pytest.mark.slow
def test_server_down_past_the_window_stops_in_one_line_and_resumes_exactly(pg, tmp_path):
    """With --storage-retry-s 2 the worker gives up while the server is down: exit 1, one line
    naming the storage and the resume command. Once the server is back the same command finishes
    the study exactly; the trial that was running is failed and its config evaluated again."""
    target, study = 8, "outage"
    cmd = search_command(
        tmp_path / "out", target, storage=pg.url, study=study, extra=["--storage-retry-s", "2"]
    )
    proc = start_worker(cmd, 1.0, tmp_path, tmp_path / "first.log")
    try:
        wait_mid_trial(pg.url, study, proc)
        pg.stop()
        status = proc.wait(timeout=60)
    finally:
        pg.start()
    lines = _lines(tmp_path / "first.log")
    assert status == 1, lines
    assert "Traceback" not in "\n".join(lines)
    last = lines[-1]
    assert last.startswith("ghostnas search: error: the study storage postgresql+psycopg://")
    assert "stopped answering" in last and "the trials completed so far are safe" in last
    assert "resume with: ghostnas search " in last and "--storage-retry-s 2" in last
    before = load_trials(pg.url, study)  # what the worker left: its last trial still RUNNING
    left = [t for t in before if t.state.name == "RUNNING"]
    assert len(left) <= 1, [(t.number, t.state.name) for t in before]  # (0: it stopped between trials)

    resume = start_worker(cmd, 0.2, tmp_path, tmp_path / "resume.log")
    assert resume.wait(timeout=120) == 0, (tmp_path / "resume.log").read_text()
    trials = load_trials(pg.url, study)
    assert check_study(trials, target) == []
    by_number = {t.number: t for t in trials}
    for was in left:  # failed as a dead worker's trial; its config evaluated again if it had been
        stale = by_number[was.number]
        assert stale.state.name == "FAIL" and stale.user_attrs["outcome"] == "worker_died"
        retries = [t for t in trials if t.user_attrs.get("retry_of") == stale.number]
        assert len(retries) == (1 if was.user_attrs.get("outcome") == "evaluating" else 0)
        assert all(r.params == stale.params for r in retries)
    completed = {t.number: t.values for t in before if t.state.name == "COMPLETE"}
    assert completed and all(by_number[n].values == v for n, v in completed.items())


@pytest.mark.postgres
@pytest.mark.slow  # a minute or more: eight worker start-ups (torch imports) on a 2-core machine
def test_chaos_workers_killed_and_server_restarted_totals_exact(pg, tmp_path):
    """Three workers on one study; five SIGKILLs of a worker in the middle of a trial (each
    started again at once) and one server restart half-way; then the same command once more.
    Exactly the requested trials are COMPLETE, trial numbers are distinct, nothing is RUNNING,
    each dead worker's trial is retried at most once with its own config, and no worker failed
    because of the restart (one that was starting while the server was down may not open it:
    that is one line and exit status 2, and it is started again)."""
    target, kills, study = 30, 5, "chaos"

    def restart() -> None:
        pg.stop()
        time.sleep(2)
        pg.start()

    report = run_chaos(
        tmp_path, pg.url, study, trials=target, n_workers=3, kills=kills, restart=restart, seed=15
    )
    timeline = "\n".join(f"{s:6.1f} s {what}" for s, what in report.events)
    trials = report.trials
    assert report.kills == kills and report.restarts == 1, timeline
    for status, log in report.exits:
        lines = _lines(log)
        assert "Traceback" not in log.read_text(), log.read_text()
        if status != 0:  # only a worker that could not open the study while it was down
            assert status == 2 and "cannot open storage" in lines[-1], lines[-1]
    assert report.statuses[-1] == 0  # the final resume
    assert check_study(trials, target) == [], timeline
    assert sum(t.state.name == "COMPLETE" for t in trials) == target
    by_number = {t.number: t for t in trials}
    retried = Counter(t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs)
    assert all(n == 1 for n in retried.values()), retried
    for number, _ in retried.items():
        retry = next(t for t in trials if t.user_attrs.get("retry_of") == number)
        assert retry.params == by_number[number].params and by_number[number].state.name == "FAIL"
    died = [t for t in trials if t.user_attrs.get("outcome") == "worker_died"]
    assert 1 <= len(died) <= kills and retried, timeline
    assert not [t for t in trials if t.user_attrs.get("outcome") == "duplicate"]
    logs = "\n".join(p.read_text() for p in report.logs)
    assert "stopped answering" in logs and "answers again after" in logs
    print(
        f"chaos: {report.seconds} s, {report.kills} kills, {report.restarts} restart, {report.spawned} "
        f"workers started, {len(trials)} trials, {target} COMPLETE, {len(died)} worker_died, "
        f"{len(retried)} retried\n{timeline}"
    )
