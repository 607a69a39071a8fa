"""Many workers on one study, and recovery from workers that died.

A search is one Optuna study that any number of ``ghostnas search`` processes (workers) may run
at once, on one machine or many. This module holds the rules that keep the study right:

Counting. ``--trials N`` counts *evaluated* trials in the whole study: trials whose outcome is
``ok``, ``failed`` (the evaluator could not score the config) or ``pruned`` (stopped by the
pruner). A trial that passes the budget check is marked ``evaluating`` and then asks for a slot
(:func:`claim_slot`): it reads the study and is evaluated only if the finished evaluated trials
plus the ``evaluating`` trials created before it (lower storage id) leave room. Trial ids are
assigned by the storage, so two workers never both take the last slot: the later trial always
sees the earlier one, already claimed or still undecided (then it waits a moment until that one
is decided). A trial that finds no room ends PRUNED with outcome ``surplus`` and does not count.

Dead workers. Each trial records its worker (host, pid and process start time) in the
``worker`` user attribute. A trial left RUNNING by a dead worker is found in two ways:

* RDB storages (PostgreSQL, MySQL, SQLite): Optuna's heartbeat. Every running trial writes a
  heartbeat every :data:`HEARTBEAT_INTERVAL` seconds; a live worker that finds one older than
  :data:`GRACE_PERIOD` marks it FAIL and :func:`on_heartbeat_stale` re-enqueues its config.
* every storage, when a worker starts and while it waits for slots: :func:`sweep_stale` fails
  RUNNING trials whose owner is on this host and no longer alive (immediately), and those of
  other hosts that have run longer than :data:`REMOTE_STALE_SECONDS` (journal files have no
  heartbeat, so a time limit is the only sign of a dead remote worker).

A dead worker's trial ends FAIL with outcome ``worker_died`` and does not count; its config is
enqueued once more (``retry_of`` names the dead trial). A retry whose worker dies too is not
retried again, so a config that kills its worker cannot loop forever.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    import optuna

__all__ = [
    "COUNTED_OUTCOMES",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "REMOTE_STALE_SECONDS",
    "WorkerId",
    "claim_slot",
    "count_evaluated",
    "in_flight",
    "is_evaluated",
    "on_heartbeat_stale",
    "sweep_stale",
    "trial_id",
    "wait_for_others",
]

logger = logging.getLogger(__name__)

COUNTED_OUTCOMES = ("ok", "failed", "pruned")
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
REMOTE_STALE_SECONDS = 24 * 3600
# A RUNNING trial with no worker attribute was killed between its creation and its first write.
UNOWNED_STALE_SECONDS = 60
# How long a slot check waits for an earlier, still undecided trial before ignoring it.
UNDECIDED_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class WorkerId:
    """Who runs a trial: enough to tell a dead local process from a live one or a remote one.

    Attributes:
        host: ``socket.gethostname()``.
        pid: Process id.
        started: The process start time in clock ticks since boot (from ``/proc``), which tells a
            reused pid from the original process; empty where ``/proc`` does not exist.
    """

    host: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> WorkerId:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _process_start(pid) or "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _process_start(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (start time), or None when the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    return stat.rsplit(")", 1)[1].split()[19]


def _local_owner_alive(owner: Mapping[str, Any]) -> bool:
    pid = int(owner.get("pid", -1))
    if pid <= 0:
        return False
    if os.path.isdir("/proc"):
        started = _process_start(pid)
        return started is not None and (not owner.get("started") or started == owner["started"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age_seconds(trial: optuna.trial.FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    start = trial.datetime_start
    now = _dt.datetime.now(start.tzinfo) if start.tzinfo else _dt.datetime.now()
    return (now - start).total_seconds()


def _death_reason(trial: optuna.trial.FrozenTrial, me: WorkerId, remote_stale_s: float) -> str | None:
    """Why this RUNNING trial's worker is dead, or None when it may be alive."""
    owner = trial.user_attrs.get("worker")
    if not isinstance(owner, dict):
        if _age_seconds(trial) > UNOWNED_STALE_SECONDS:
            return "its worker died before recording itself"
        return None
    if owner.get("host") == me.host:
        if owner.get("pid") == me.pid and owner.get("started") == me.started:
            return None
        if _local_owner_alive(owner):
            return None
        return f"its worker (pid {owner.get('pid')} on {me.host}) died"
    if _age_seconds(trial) > remote_stale_s:
        return f"its worker on {owner.get('host')} has run it for more than {remote_stale_s:.0f} s"
    return None


def is_evaluated(trial: optuna.trial.FrozenTrial) -> bool:
    """A finished trial that counts towards ``--trials`` (see the module docstring)."""
    return trial.state.is_finished() and trial.user_attrs.get("outcome") in COUNTED_OUTCOMES


def count_evaluated(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(is_evaluated(t) for t in trials)


# Outcomes of a RUNNING trial that holds a slot: claimed, or evaluated and about to be stored.
_HOLDING = ("evaluating", *COUNTED_OUTCOMES)


def in_flight(trials: list[optuna.trial.FrozenTrial], exclude: int | None = None) -> int:
    """RUNNING trials that hold a slot (being evaluated), other than trial number ``exclude``."""
    from optuna.trial import TrialState

    return sum(
        t.state == TrialState.RUNNING and t.user_attrs.get("outcome") in _HOLDING and t.number != exclude
        for t in trials
    )


def claim_slot(study: optuna.Study, number: int, target: int, me: WorkerId | None = None) -> bool:
    """Whether the claimed trial ``number`` may be evaluated without the study exceeding
    ``target`` evaluated trials (the trial must already have outcome ``evaluating``).

    Only trials with a lower number (created earlier) are counted ahead of it: those that hold a slot, and those not
    yet decided (RUNNING without an outcome, or WAITING: an enqueued config some worker is
    popping), which it waits for unless their worker is known dead (``me``: this worker, to
    judge local owners). So of two trials racing for the last slot the later one always sees
    the earlier one, and at most one takes it.
    """
    from optuna.trial import TrialState

    deadline = time.monotonic() + UNDECIDED_WAIT_SECONDS
    while True:
        trials = study.get_trials(deepcopy=False)
        ahead, undecided = 0, False
        for t in trials:
            if t.number >= number:
                continue
            outcome = t.user_attrs.get("outcome")
            if t.state == TrialState.RUNNING and outcome in _HOLDING:
                ahead += 1
            elif t.state == TrialState.WAITING or (
                t.state == TrialState.RUNNING
                and outcome is None
                and _age_seconds(t) < UNDECIDED_WAIT_SECONDS
                and (me is None or _death_reason(t, me, REMOTE_STALE_SECONDS) is None)
            ):
                undecided = True  # (one undecided for longer than that belongs to a dead worker)
        if count_evaluated(trials) + ahead >= target:
            return False
        if not undecided or time.monotonic() > deadline:
            return True
        time.sleep(0.02)


def trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of study ``study_name``, through the storage's public
    API (``get_study_id_from_name``, ``get_trial_id_from_study_id_trial_number``): what the
    storage's write methods take, without reading Optuna's private ``Trial._trial_id``."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def _fail_dead(
    study: optuna.Study, storage: optuna.storages.BaseStorage, trial: optuna.trial.FrozenTrial, reason: str
) -> bool:
    """Mark a dead worker's trial FAIL (not counted); False when another worker got there first."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        tid = trial_id(storage, study.study_name, trial.number)
        storage.set_trial_user_attr(tid, "outcome", "worker_died")
        storage.set_trial_user_attr(tid, "reason", f"not counted: {reason}")
        if not storage.set_trial_state_values(tid, TrialState.FAIL):
            return False
    except (UpdateFinishedTrialError, RuntimeError):
        return False
    _retry(study, trial)
    return True


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue the dead trial's config once more, if it had reached the evaluator."""
    if trial.user_attrs.get("outcome") != "evaluating":
        return  # it never claimed a slot: its proposal is simply dropped
    if "retry_of" in trial.user_attrs:
        logger.warning(
            "trial %d was already a retry of trial %d and its worker died again; not retrying its config",
            trial.number,
            trial.user_attrs["retry_of"],
        )
        return
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    logger.warning("trial %d: its worker died; its config is queued to be evaluated again", trial.number)


def on_heartbeat_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna's ``heartbeat_stale_trial_callback``: the trial is already FAIL; retry its config.

    (Optuna sets the state before calling this, so the trial keeps outcome ``evaluating``; the
    results treat a FAIL trial with that outcome as ``worker_died``.)
    """
    _retry(study, trial)


def sweep_stale(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    me: WorkerId,
    remote_stale_s: float = REMOTE_STALE_SECONDS,
) -> int:
    """Fail (and retry) the RUNNING trials whose worker is dead; return how many."""
    from optuna.trial import TrialState

    swept = 0
    for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        reason = _death_reason(t, me, remote_stale_s)
        if reason is not None and _fail_dead(study, storage, t, reason):
            swept += 1
    if swept:
        logger.warning("marked %d trial(s) left running by dead workers as failed", swept)
    return swept


def wait_for_others(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    me: WorkerId,
    target: int,
    deadline: float | None,
) -> None:
    """After a surplus trial: wait while other workers' trials fill the remaining slots, so that
    a slot freed by a dying worker is taken by this one (its config retried) rather than lost.
    Stops at ``deadline`` (``--timeout``); Ctrl-C stops it safely too."""
    from optuna.storages import fail_stale_trials

    told = False
    while deadline is None or time.perf_counter() < deadline:
        trials = study.get_trials(deepcopy=False)
        running = in_flight(trials)
        if count_evaluated(trials) >= target or running == 0:
            return
        if not told:
            logger.warning(
                "the last %d slot(s) are taken by trials running in other workers; waiting for them "
                "(their configs are retried here if their workers die); Ctrl-C stops, rerun resumes",
                running,
            )
            told = True
        time.sleep(0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)  # heartbeat storages; a no-op for the others
        sweep_stale(study, storage, me)
