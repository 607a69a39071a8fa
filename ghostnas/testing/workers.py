"""Run ``ghostnas search`` worker processes, kill them, and check the study they leave.

Used by tests/test_reliability.py and scripts/crash_resume.py: a search is started in a
subprocess with a slowed-down fake evaluator, killed with SIGKILL in the middle of a trial,
started again with the same command, and the trial set is checked (nothing lost, the killed
trial failed and its config retried, exactly the requested number evaluated).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from ghostnas import workers
from ghostnas.evaluators.fake import SLEEP_ENV

__all__ = [
    "ChaosReport",
    "CrashReport",
    "check_study",
    "crash_and_resume",
    "load_trials",
    "run_chaos",
    "run_workers",
    "search_command",
    "start_worker",
    "wait_mid_trial",
]


def search_command(
    out: Path,
    trials: int,
    *,
    storage: str | None = None,
    study: str | None = None,
    seed: int = 0,
    budget: str = "10M",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``ghostnas search`` command line of a worker: tiny space, fake evaluator (``extra``:
    more options)."""
    cmd = [sys.executable, "-m", "ghostnas", "search", "--space", "tiny", "--budget", budget]
    cmd += ["--evaluator", "fake", "--sampler", "random", "--seed", str(seed), "--trials", str(trials)]
    cmd += ["--out", str(out), "--no-progress", "--no-reference"]
    if storage:
        cmd += ["--storage", storage]
    if study:
        cmd += ["--study", study]
    return [*cmd, *extra]


def start_worker(cmd: Sequence[str], sleep: float, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Start one worker; its stdout and stderr go to ``log``."""
    env = {**os.environ, SLEEP_ENV: str(sleep), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open(log, "wb") as fh:
        return subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _sqlite_has_trials(path: str) -> bool:
    """Whether the worker has created Optuna's tables, asked read-only (no lock, no schema)."""
    import sqlite3

    if not Path(path).exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as con:
            names = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error:
        return False
    return {"trials", "alembic_version", "version_info"} <= names


def load_trials(storage_url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    """All trials of the study (empty while it does not exist yet); read-only."""
    if storage_url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = storage_url[len("journal:") :]
        if not Path(path).exists():
            return []
        storage: Any = optuna.storages.JournalStorage(JournalFileBackend(path))
    else:
        if storage_url.startswith("sqlite:///") and not _sqlite_has_trials(storage_url[len("sqlite:///") :]):
            return []  # opening RDBStorage now would race the worker creating Optuna's tables
        storage = optuna.storages.RDBStorage(storage_url)
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.engine.dispose()


def _wait(
    until: Callable[[list[optuna.trial.FrozenTrial]], bool],
    storage_url: str,
    study: str,
    timeout: float,
    proc: subprocess.Popen[bytes],
) -> list[optuna.trial.FrozenTrial]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = load_trials(storage_url, study)
        except Exception:  # the worker is creating the schema: try again
            trials = []
        if until(trials):
            return trials
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}) before the moment to kill it")
        time.sleep(0.05)
    raise TimeoutError(f"the worker did not reach the moment to kill it in {timeout:.0f} s")


def _mid_trial(trials: list[optuna.trial.FrozenTrial]) -> bool:
    ok = sum(t.user_attrs.get("outcome") == "ok" for t in trials)
    running = any(t.state.name == "RUNNING" and t.user_attrs.get("outcome") == "evaluating" for t in trials)
    return ok >= 2 and running


def wait_mid_trial(
    storage_url: str, study: str, proc: subprocess.Popen[bytes], timeout: float = 60.0
) -> list[optuna.trial.FrozenTrial]:
    """Wait until the study has two scored trials and one being evaluated; return its trials."""
    return _wait(_mid_trial, storage_url, study, timeout, proc)


def check_study(trials: list[optuna.trial.FrozenTrial], target: int) -> list[str]:
    """Problems with a finished study's trial set (empty when it is right)."""
    problems = []
    numbers = [t.number for t in trials]
    if len(set(numbers)) != len(numbers):
        problems.append(f"duplicate trial numbers: {sorted(numbers)}")
    evaluated = workers.count_evaluated(trials)
    if evaluated != target:
        problems.append(f"{evaluated} evaluated trials, wanted exactly {target}")
    running = [t.number for t in trials if t.state.name == "RUNNING"]
    if running:
        problems.append(f"trials still RUNNING: {running}")
    return problems


@dataclass
class CrashReport:
    """What :func:`crash_and_resume` saw. ``problems`` is empty when every check passed."""

    target: int
    killed_pid: int
    completed_before: dict[int, float]
    stale_number: int | None
    stale_reason: str
    retry_number: int | None
    retry_outcome: str | None
    evaluated: int
    trials: int
    resume_status: int
    outputs: list[str]
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def crash_and_resume(
    workdir: Path, trials: int = 8, sleep: float = 0.6, timeout: float = 60.0, journal: bool = False
) -> CrashReport:
    """Start a search, SIGKILL it mid-trial, run the same command again, and check the study.

    Args:
        workdir: Empty folder for the run folder and the worker logs.
        trials: ``--trials`` of the search.
        sleep: Seconds the fake evaluator takes per trial (so there is a trial to kill).
        timeout: Seconds to wait for each phase.
        journal: Keep the study in a journal file (``--storage journal:...``, no heartbeat)
            instead of the run folder's SQLite file.
    """
    out = workdir / "run"
    if journal:
        url, study = f"journal:{workdir / 'study.log'}", "crash"
        cmd = search_command(out, trials, storage=url, study=study)
    else:
        url, study = f"sqlite:///{out / 'study.db'}", out.name
        cmd = search_command(out, trials)
    first = start_worker(cmd, sleep, workdir, workdir / "first.log")
    try:
        before = _wait(_mid_trial, url, study, timeout, first)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.wait()
    completed = {t.number: t.values[0] for t in before if t.state.name == "COMPLETE"}
    mid = [t for t in before if t.state.name == "RUNNING" and t.user_attrs.get("outcome") == "evaluating"]

    second = start_worker(cmd, sleep, workdir, workdir / "resume.log")
    status = second.wait(timeout=timeout)
    after = load_trials(url, study)
    by_number = {t.number: t for t in after}
    checks, problems = [], []

    def check(ok: bool, text: str) -> None:
        (checks if ok else problems).append(text)

    check(status == 0, f"the resumed run exited with status {status}")
    kept = all(
        n in by_number and by_number[n].state.name == "COMPLETE" and by_number[n].values[0] == v
        for n, v in completed.items()
    )
    check(kept, f"the {len(completed)} trials completed before the kill are kept unchanged")
    stale = by_number.get(mid[0].number) if mid else None
    stale_reason = stale.user_attrs.get("reason", "") if stale else ""
    check(
        stale is not None
        and stale.state.name == "FAIL"
        and stale.user_attrs.get("outcome") == "worker_died"
        and "died" in stale_reason,
        f"the trial running at the kill (#{mid[0].number if mid else '?'}) is FAIL, worker_died",
    )
    retry = next((t for t in after if stale and t.user_attrs.get("retry_of") == stale.number), None)
    check(
        retry is not None and stale is not None and retry.params == stale.params,
        "its config was evaluated again in a new trial with the same parameters",
    )
    retries = [t for t in after if stale and t.user_attrs.get("retry_of") == stale.number]
    check(len(retries) == 1, f"the config was retried once ({len(retries)} retries)")
    for problem in check_study(after, trials):
        problems.append(problem)
    if not check_study(after, trials):
        checks.append(f"exactly {trials} trials evaluated, distinct numbers, none left running")
    outputs = []
    for name in ("pareto.json", "best.json", "run.json"):
        try:
            json.loads((out / name).read_text())
            outputs.append(name)
        except (OSError, ValueError) as exc:
            problems.append(f"{name} is not valid JSON: {exc}")
    if len(outputs) == 3:
        checks.append("pareto.json, best.json and run.json are valid JSON")
    return CrashReport(
        target=trials,
        killed_pid=first.pid,
        completed_before=completed,
        stale_number=stale.number if stale else None,
        stale_reason=stale_reason,
        retry_number=retry.number if retry else None,
        retry_outcome=retry.user_attrs.get("outcome") if retry else None,
        evaluated=workers.count_evaluated(after),
        trials=len(after),
        resume_status=status,
        outputs=outputs,
        checks=checks,
        problems=problems,
    )


def run_workers(
    workdir: Path,
    storage_url: str,
    study: str,
    n_workers: int,
    trials: int,
    sleep: float = 0.0,
    timeout: float = 120.0,
    budget: str = "10M",
) -> list[int]:
    """Run ``n_workers`` searches on one study at once (each with its own run folder); return
    their exit statuses. Logs are in ``workdir/worker-<i>.log``."""
    procs = [
        start_worker(
            search_command(
                workdir / f"out-{i}", trials, storage=storage_url, study=study, seed=i, budget=budget
            ),
            sleep,
            workdir,
            workdir / f"worker-{i}.log",
        )
        for i in range(n_workers)
    ]
    deadline = time.monotonic() + timeout
    statuses = []
    for proc in procs:
        try:
            statuses.append(proc.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            proc.kill()
            statuses.append(proc.wait())
    return statuses


@dataclass
class ChaosReport:
    """What :func:`run_chaos` did and saw.

    Attributes:
        seconds: Wall time from the first worker's start to the end of the final resume.
        kills: Workers SIGKILLed (each was started again).
        restarts: Database restarts.
        spawned: Worker processes started in all (the final resume included).
        statuses: Exit statuses of the workers that were not killed (the final resume last).
        exits: ``(status, log)`` of each of those.
        trials: The study's trials after the final resume.
        logs: The workers' log files.
        events: ``(seconds since the start, what happened)``, in order.
    """

    seconds: float
    kills: int
    restarts: int
    spawned: int
    statuses: list[int]
    exits: list[tuple[int, Path]]
    trials: list[optuna.trial.FrozenTrial]
    logs: list[Path]
    events: list[tuple[float, str]] = field(default_factory=list)


def run_chaos(
    workdir: Path,
    storage_url: str,
    study: str,
    *,
    trials: int,
    n_workers: int = 3,
    kills: int = 6,
    restart: Callable[[], None] | None = None,
    sleep: float = 0.2,
    seed: int = 0,
    timeout: float = 240.0,
    extra: Sequence[str] = (),
) -> ChaosReport:
    """Run ``n_workers`` workers on one study, SIGKILL one at random ``kills`` times (each is
    started again at once), call ``restart`` (a database restart) once half the trials are
    evaluated, then run the same command once more after the others have ended (the resume).

    The kills happen at random points of progress (evaluated counts drawn with ``seed`` from the
    first two thirds of the study), so their number does not depend on the machine's speed; only a worker that is evaluating a
    trial is killed, so that its trial is left RUNNING for the others to recover.

    A worker that ends by itself before the study is complete is started again too: one started
    while the server was down cannot open the study and exits with status 2 (see
    :func:`ghostnas.storage.open_storage`); ``exits`` records each such end with its log.
    """
    import random

    rng = random.Random(seed)
    # Kill points fall in the first two thirds of the study: a kill needs a worker mid-trial, and on
    # a fast machine the last few trials end before a late kill point finds one.
    kill_at = sorted(rng.sample(range(2, max(2 * trials // 3, kills + 2)), kills))
    restart_at = trials // 2 if restart is not None else None
    logs: list[Path] = []
    statuses: list[int] = []
    exits: list[tuple[int, Path]] = []
    log_of: dict[int, Path] = {}
    done_kills = restarts = 0
    events: list[tuple[float, str]] = []

    def event(text: str) -> None:
        events.append((round(time.monotonic() - t0, 1), text))

    def spawn(slot: int) -> subprocess.Popen[bytes]:
        log = workdir / f"worker-{slot}-{len(logs)}.log"
        logs.append(log)
        cmd = search_command(
            workdir / f"out-{slot}", trials, storage=storage_url, study=study, seed=slot, extra=extra
        )
        proc = start_worker(cmd, sleep, workdir, log)
        log_of[proc.pid] = log
        return proc

    def ended(proc: subprocess.Popen[bytes], status: int) -> None:
        statuses.append(status)
        exits.append((status, log_of[proc.pid]))

    t0 = time.monotonic()
    procs = {slot: spawn(slot) for slot in range(n_workers)}
    evaluated = 0
    while procs and time.monotonic() - t0 < timeout:
        try:
            current = load_trials(storage_url, study)
        except Exception:  # the schema is being created, or the server is restarting
            current = []
        evaluated = workers.count_evaluated(current)
        for slot, proc in list(procs.items()):
            if proc.poll() is not None:  # ended by itself: done, or it failed (recorded)
                ended(proc, proc.returncode)
                event(f"worker {slot} exited {proc.returncode} at {evaluated} evaluated")
                del procs[slot]
                if evaluated < trials and proc.returncode != 0:
                    procs[slot] = spawn(slot)
        if done_kills < kills and evaluated >= kill_at[done_kills] and procs:
            busy = {
                t.user_attrs.get("worker", {}).get("pid")
                for t in current
                if t.state.name == "RUNNING" and t.user_attrs.get("outcome") == "evaluating"
            }
            slots = [s for s, p in procs.items() if p.pid in busy]
            if slots:  # (none busy: try again at the next look)
                slot = rng.choice(slots)
                os.kill(procs[slot].pid, signal.SIGKILL)
                procs[slot].wait()
                done_kills += 1
                event(f"killed worker {slot} mid-trial at {evaluated} evaluated")
                procs[slot] = spawn(slot)
        if restart_at is not None and restarts == 0 and evaluated >= restart_at:
            event(f"restarting the database at {evaluated} evaluated")
            restart()
            restarts += 1
            event("database back")
        time.sleep(0.05)
    for proc in procs.values():  # the study is complete (or the time is up): let them finish
        try:
            ended(proc, proc.wait(timeout=max(timeout - (time.monotonic() - t0), 1.0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            ended(proc, proc.wait())
    event("all workers ended; final resume")
    final = spawn(n_workers)
    ended(final, final.wait(timeout=120))
    event(f"final resume exited {statuses[-1]}")
    return ChaosReport(
        seconds=round(time.monotonic() - t0, 1),
        kills=done_kills,
        restarts=restarts,
        spawned=len(logs),
        statuses=statuses,
        exits=exits,
        trials=load_trials(storage_url, study),
        logs=logs,
        events=events,
    )
