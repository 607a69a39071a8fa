"""Where a study lives: opening Optuna storages, and saying their URLs without passwords.

A search's study is kept in one of three kinds of storage, named by a URL:

* ``sqlite:///PATH`` (the default, ``RUN/study.db``): Optuna's RDB storage on SQLite, in WAL mode
  with ``synchronous=NORMAL`` (see :func:`open_storage` for why).
* ``postgresql://...`` or ``mysql://...``: the same RDB storage on a server, for many workers on
  many machines. A server that does not answer fails within 10 seconds instead of hanging.
* ``journal:PATH``: Optuna's journal file (append-only, no server; a line left unfinished by a
  failed write is dropped when it is opened).

RDB storages get Optuna's heartbeat, so that a trial whose worker died is found and retried (the
rules are in :mod:`ghostnas.workers`). Every URL that reaches a message, ``run.json`` or a start
line goes through :func:`redact` first.

A database server that goes away. A PostgreSQL or MySQL server may restart, fail over or drop
connections in the middle of a search. Every call the search makes to such a storage is retried
while the connection is lost, with exponential backoff, for at most ``retry_s`` seconds
(``--storage-retry-s``, default :data:`DEFAULT_RETRY_S`) from the moment the server stopped
answering; the search logs one line when it starts waiting and one when the server answers again,
and carries on. Past that time it stops with :class:`StorageUnavailableError` (one line, exit
status 1); its running trial stays RUNNING in the study and the next run, once the server is back,
fails it as a dead worker's trial and evaluates its config again (:mod:`ghostnas.workers`).

Retrying a write is safe only if doing it twice is the same as doing it once. Setting a parameter
or an attribute twice is. Two writes are not, and both are made safe here, because a write whose
answer was lost may or may not have been committed:

* finishing a trial (``tell``): if the retry finds the trial already finished with exactly the
  state and values being written, the first attempt was committed and only its answer was lost;
  that counts as done (Optuna alone would raise "trial already finished" and end the worker);
* creating a trial: each new trial carries a random token (system attribute
  :data:`CREATE_TOKEN_KEY`); a retry first looks for a trial with its token, and a second copy
  made by a retry (Optuna's own, inside the same call) is failed with outcome ``duplicate``.

A trial is owned from its first commit: a new trial is created with its ``worker`` attribute,
and a queued one gets it as soon as it is taken, so a worker killed right after creating a trial
leaves one that the next worker recognises as a dead worker's at once (see
:func:`ghostnas.workers.sweep_stale`) instead of after a minute.

Heartbeats are sent once and never waited for (a missed beat is harmless, and the heartbeat
thread must not block the trial's end). While the server was unreachable nobody could beat, so
for one grace period after it answers again this process does not judge other workers' trials
stale by their heartbeat.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ghostnas import workers
from ghostnas._fs import as_write_failed, exception_chain, repair_journal_tail, write_fault
from ghostnas.errors import GhostnasError, WriteFailedError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "BACKOFF_FIRST_S",
    "BACKOFF_MAX_S",
    "CREATE_TOKEN_KEY",
    "DEFAULT_RETRY_S",
    "ConnectionRetry",
    "StorageError",
    "StorageUnavailableError",
    "check_retry_s",
    "close_storage",
    "default_storage_url",
    "is_connection_lost",
    "open_storage",
    "redact",
    "retrying_rdb_class",
    "storage_path",
]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_S = 300.0
"""How long a search waits for a database server that stopped answering before it stops (five
minutes: a restart or a fail-over takes seconds to a minute; a server down for longer needs a
person, and the search resumes when it is back)."""
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 8.0
CREATE_TOKEN_KEY = "ghostnas:create_token"

_T = TypeVar("_T")


class StorageError(GhostnasError):
    """A storage URL cannot be opened (bad scheme, missing folder, server not answering)."""


class StorageUnavailableError(WriteFailedError):
    """The database server stopped answering in the middle of a run and did not come back within
    the retry window.

    A :class:`~ghostnas.errors.WriteFailedError` (exit status 1, not 2): it is not the user's
    input, and :func:`ghostnas.search.run_search` adds what is safe and the command that resumes.

    Attributes:
        waited: Seconds since the server stopped answering.
    """

    def __init__(self, url: str, reason: str, waited: float) -> None:
        super().__init__("the study storage", url, reason, disk_full=False, rerun="resume")
        self.waited = waited

    def __str__(self) -> str:
        parts = [f"the study storage {self.path} stopped answering {self.waited:.0f} s ago ({self.reason})"]
        if self.kept:
            parts.append(self.kept)
        command = f": {self.command}" if self.command else " the same command"
        parts.append(f"once it answers again, resume with{command} (--storage-retry-s waits longer)")
        return "; ".join(parts)


def check_retry_s(value: float) -> float:
    """``value`` as a retry window in seconds (``>= 0``, finite), or a one-line :class:`StorageError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise StorageError(f"storage_retry_s = {value!r}: must be a number of seconds, 0 or more")
    return float(value)


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the database connection was lost or could not be made (server down,
    restarting, connection terminated, network) rather than a bad statement or a full disk."""
    from sqlalchemy import exc as sa_exc

    if write_fault(exc) is not None:  # a full disk on the server: waiting does not fix it
        return False
    for e in exception_chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)):
            return True
    return False


def _reason(exc: BaseException) -> str:
    """The driver's words for a lost connection: its first line, short."""
    chain = list(exception_chain(exc))
    drivers = [e.orig for e in chain if isinstance(getattr(e, "orig", None), BaseException)]
    for e in [*drivers, *chain]:
        if type(e).__module__.startswith("optuna"):
            continue  # "An exception is raised during the commit": says nothing here
        line = str(e).strip().split("\n")[0].strip()
        if line and line != "()":
            return line[:160]
    return type(drivers[0] if drivers else exc).__name__


class ConnectionRetry:
    """Retries calls while the database connection is lost, for at most ``window_s`` seconds per
    outage, and says so in one line when the wait starts and one when it ends.

    One object is shared by every thread of a storage. A single dropped connection (the server
    cut it, a pooled one had died) is retried at once and only logged at INFO: the pool opens a
    new one and nothing is waited for. When that retry fails too, the server is down: the outage
    starts (one WARNING line), calls are retried with a wait that doubles from
    :data:`BACKOFF_FIRST_S` to :data:`BACKOFF_MAX_S` (with jitter, so many workers do not
    reconnect in step), and the first call that works ends it (one WARNING line). Once the window
    has passed, every call fails at once with :class:`StorageUnavailableError`, so the run ends
    promptly instead of waiting again in each clean-up call.

    Args:
        url: The storage URL as messages show it (already redacted).
        window_s: The retry window in seconds (0: give up as soon as the server is down).
        clock, sleep: Injected for tests.
    """

    def __init__(
        self,
        url: str,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.window_s = window_s
        self.clock = clock
        self.sleep = sleep
        self.down_since: float | None = None
        self.recovered_at: float | None = None
        self.gave_up: StorageUnavailableError | None = None
        self.outages = 0
        self.dropped = 0
        self._announced = False
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], _T]) -> _T:
        """``fn()``, retried while :func:`is_connection_lost` says its error is a lost connection."""
        delay = BACKOFF_FIRST_S
        first = True
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_connection_lost(exc):
                    raise
                if first and self.down_since is None and self.gave_up is None:
                    first = False
                    self.dropped += 1
                    logger.info("the study storage dropped a connection (%s); reconnecting", _reason(exc))
                    continue
                first = False
                self.failed(exc)
                since = self.down_since
                remaining = self.window_s - (self.clock() - since) if since is not None else self.window_s
                self.sleep(max(0.0, min(delay * random.uniform(0.8, 1.2), remaining)))
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self.succeeded()
            return result

    def failed(self, exc: BaseException, *, wait: bool = True) -> None:
        """Note that the server does not answer; raise :class:`StorageUnavailableError` once the
        window has passed. ``wait=False`` (a heartbeat, which is never retried) only notes when
        the outage started, without a line."""
        with self._lock:
            if self.gave_up is not None:
                if not wait:
                    return
                raise self.gave_up from exc
            now = self.clock()
            if self.down_since is None:
                self.down_since = now
            if not wait:
                return
            if not self._announced:
                self._announced = True
                self.outages += 1
                logger.warning(
                    "the study storage %s stopped answering (%s); retrying for up to %.0f s (--storage-retry-s)",
                    self.url,
                    _reason(exc),
                    self.window_s,
                )
            waited = now - self.down_since
            if waited >= self.window_s:
                self.gave_up = StorageUnavailableError(self.url, _reason(exc), waited)
                raise self.gave_up from exc

    def succeeded(self) -> None:
        """Note a call that worked: an outage, if there was one, is over."""
        if self.down_since is None:  # (read without the lock: the common case stays cheap)
            return
        with self._lock:
            if self.down_since is None:
                return
            now = self.clock()
            if self._announced:
                logger.warning(
                    "the study storage %s answers again after %.1f s; carrying on",
                    self.url,
                    now - self.down_since,
                )
            self.down_since = None
            self._announced = False
            self.recovered_at = now

    def recovered_within(self, seconds: float) -> bool:
        """Whether an outage is going on, or ended less than ``seconds`` ago."""
        if self.down_since is not None:
            return True
        return self.recovered_at is not None and self.clock() - self.recovered_at < seconds


def default_storage_url(out_dir: Path) -> str:
    """The study's storage when ``--storage`` is not given: SQLite in the run folder."""
    return f"sqlite:///{out_dir / 'study.db'}"


def redact(url: str) -> str:
    """The storage URL without a password (it goes into run.json and messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def storage_path(url: str) -> str:
    """The file behind a SQLite or journal storage URL; the (redacted) URL for a server."""
    if url.startswith("journal:"):
        return url[len("journal:") :]
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return url[len("sqlite:///") :]
    return redact(url)


def open_storage(url: str, retry_s: float = DEFAULT_RETRY_S) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: an RDB URL (``sqlite:///...``, ``postgresql://...``) or
    ``journal:PATH`` for a journal file.

    RDB storages get Optuna's heartbeat (see :mod:`ghostnas.workers`): a trial whose worker
    stops beating for :data:`ghostnas.workers.GRACE_PERIOD` seconds is failed by a live worker
    and its config retried. A PostgreSQL or MySQL server that does not answer when the storage is
    opened fails within 10 seconds instead of hanging; one that stops answering later is waited
    for, for at most ``retry_s`` seconds (see the module docstring).

    Raises:
        StorageError: the URL cannot be opened; one line with the reason.
        WriteFailedError: the disk under a SQLite or journal file is full (not a bad URL).
    """
    import optuna

    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:") :])
            if not path.parent.is_dir():
                raise StorageError(f"storage {url!r}: folder {path.parent} does not exist")
            if path.is_dir():
                raise StorageError(f"storage {url!r}: {path} is a folder; give a journal file path")
            from optuna.storages.journal import JournalFileBackend

            if repair_journal_tail(path):  # an append that failed part-way (disk full, kill -9)
                logger.warning("%s: dropped an unfinished last line left by a failed write", path)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("sqlite:///"):
            db = url[len("sqlite:///") :]
            if db and not Path(db).expanduser().parent.is_dir():
                raise StorageError(f"storage {redact(url)!r}: folder {Path(db).parent} does not exist")
        if url.startswith("sqlite:"):
            return _fast_sqlite(url)
        engine_kwargs: dict[str, Any] = {}
        retry = None
        if url.startswith(("postgresql", "mysql")):
            # (no pool pre-ping: a round trip per call; a pooled connection that died with a server
            # restart fails its first statement, before any write, and is retried at once)
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
            retry = ConnectionRetry(redact(url), check_retry_s(retry_s))
        return _rdb_with_retry(url, engine_kwargs, retry)
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy and drivers raise many kinds; all mean "cannot open"
        fault = as_write_failed(exc, storage_path(url), "the study storage")
        if fault is not None:  # a full disk is not a bad URL
            raise fault from exc
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise StorageError(
            f"cannot open storage {redact(url)!r}: {reason}; give an Optuna storage URL such as "
            "sqlite:///path/study.db or journal:path/study.log"
        ) from None


def close_storage(storage: optuna.storages.BaseStorage | None) -> None:
    """Release an RDB storage's connections (SQLite then folds its WAL back into the database
    file, so the study is one self-contained file again)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _rdb(
    url: str, engine_kwargs: dict[str, Any] | None = None, retry: ConnectionRetry | None = None
) -> optuna.storages.RDBStorage:
    """An RDB storage with the heartbeat on (Optuna marks the heartbeat experimental); with
    ``retry``, one that waits for a server that stopped answering."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if retry is not None:
            return retrying_rdb_class()(
                url,
                retry,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=workers.HEARTBEAT_INTERVAL,
                grace_period=workers.GRACE_PERIOD,
                heartbeat_stale_trial_callback=workers.on_heartbeat_stale,
            )
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=workers.HEARTBEAT_INTERVAL,
            grace_period=workers.GRACE_PERIOD,
            heartbeat_stale_trial_callback=workers.on_heartbeat_stale,
        )


def _rdb_with_retry(
    url: str, engine_kwargs: dict[str, Any], retry: ConnectionRetry | None = None
) -> optuna.storages.RDBStorage:
    """:func:`_rdb`, tried again when it lost a race: workers that start together on an empty
    database all try to create Optuna's tables, and all but one see "already exists"."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(4):
        try:
            return _rdb(url, engine_kwargs, retry)
        except (IntegrityError, OperationalError, ProgrammingError) as exc:
            lost_race = "already exists" in str(exc) or "database is locked" in str(exc)
            if attempt == 3 or not lost_race:
                raise
            time.sleep(0.2 + 0.3 * attempt)
    raise AssertionError("unreachable")


def _fast_sqlite(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage on SQLite in WAL mode with ``synchronous=NORMAL``.

    Optuna commits once per suggested parameter and per attribute; with SQLite's default
    rollback journal every commit waits for an fsync (~7 ms here), which made the storage the
    largest cost of a trial. WAL with NORMAL sync still never corrupts the database on a crash
    (at worst the last commits before a power loss are lost, and a resumed run redoes them);
    readers such as optuna-dashboard can read while the search writes.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # A reader (optuna-dashboard, another worker) may hold SQLite's lock for a moment: wait for
    # it rather than failing the run.
    storage = _rdb_with_retry(url, {"connect_args": {"timeout": 30}})
    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened while creating the schema do not have the pragmas
    return storage


# Optuna's RDBStorage methods retried as they are: reads, and writes that are the same done twice
# (``create_new_study`` done twice raises DuplicatedStudyError, which create_study(load_if_exists)
# turns into loading it). Optuna's cache layer calls some private ones (``_get_trials``...);
# tests/test_storage_faults.py checks that every method it calls is covered.
_RETRIED_AS_IS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "set_trial_param",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_best_trial",
    "_get_best_trial_id",
)


@functools.cache
def retrying_rdb_class() -> type[optuna.storages.RDBStorage]:
    """Optuna's RDBStorage whose calls wait for a server that stopped answering (built on first
    use, so that importing ghostnas does not import Optuna)."""
    import copy
    import datetime as _dt
    import uuid

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import FrozenTrial, TrialState
    from sqlalchemy import event

    rdb = optuna.storages.RDBStorage

    class RetryingRDBStorage(rdb):  # type: ignore[misc,valid-type]
        """See the module docstring, "A database server that goes away"."""

        def __init__(self, url: str, retry: ConnectionRetry, **kwargs: Any) -> None:
            super().__init__(url, **kwargs)
            self.retry = retry
            self.me = workers.WorkerId.current().as_dict()
            self._local = threading.local()
            event.listen(self.engine, "handle_error", self._count_error)

        def _count_error(self, _context: Any) -> None:
            # Every database error in this thread, also those Optuna retried by itself inside one
            # call: a call that saw one may have committed a write whose answer was lost.
            self._local.errors = self._errors() + 1

        def _errors(self) -> int:
            return int(getattr(self._local, "errors", 0))

        def _retried(self, fn: Callable[[], _T]) -> _T:
            if getattr(self._local, "depth", 0):  # inside a retried call: the outer one retries
                return fn()
            self._local.depth = 1
            try:
                return self.retry.call(fn)
            finally:
                self._local.depth = 0

        def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
            mark = self._errors()
            wanted = None if values is None else [float(v) for v in values]
            tries = [0]

            def attempt() -> bool:
                tries[0] += 1
                try:
                    return bool(rdb.set_trial_state_values(self, trial_id, state, values))
                except UpdateFinishedTrialError:
                    if (tries[0] == 1 and self._errors() == mark) or not state.is_finished():
                        raise
                    stored = rdb.get_trial(self, trial_id)
                    if stored.state != state or stored.values != wanted:
                        raise
                    logger.info("trial %d: its end was stored before the connection dropped", stored.number)
                    return True

            done = self._retried(attempt)
            if done and state == TrialState.RUNNING:  # taken from the queue: now ours
                self._retried(lambda: rdb.set_trial_user_attr(self, trial_id, "worker", self.me))
            return done

        def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
            token = uuid.uuid4().hex
            if template_trial is None:  # what Optuna creates without a template
                template_trial = FrozenTrial(
                    number=-1,
                    state=TrialState.RUNNING,
                    value=None,
                    values=None,
                    datetime_start=_dt.datetime.now(),
                    datetime_complete=None,
                    params={},
                    distributions={},
                    user_attrs={},
                    system_attrs={},
                    intermediate_values={},
                    trial_id=-1,
                )
            template = copy.copy(template_trial)
            template.system_attrs = {**template_trial.system_attrs, CREATE_TOKEN_KEY: token}
            if template.state == TrialState.RUNNING:  # owned from its first commit (not when enqueued)
                template.user_attrs = {**template_trial.user_attrs, "worker": self.me}
            mark = self._errors()

            def attempt() -> FrozenTrial:
                if self._errors() != mark:
                    mine = self._with_token(study_id, token)
                    if mine:
                        return mine[0]
                return rdb._create_new_trial(self, study_id, template)

            trial = self._retried(attempt)
            if self._errors() != mark:
                self._retried(lambda: self._fail_copies(study_id, token, trial._trial_id))
            return trial

        def _with_token(self, study_id: int, token: str) -> list[FrozenTrial]:
            trials = rdb.get_all_trials(self, study_id, deepcopy=False)
            return [t for t in trials if t.system_attrs.get(CREATE_TOKEN_KEY) == token]

        def _fail_copies(self, study_id: int, token: str, keep: int) -> None:
            for t in self._with_token(study_id, token):
                if t._trial_id == keep or t.state.is_finished():
                    continue
                rdb.set_trial_user_attr(self, t._trial_id, "outcome", "duplicate")
                rdb.set_trial_user_attr(
                    self,
                    t._trial_id,
                    "reason",
                    "not counted: a copy made when the database connection dropped",
                )
                rdb.set_trial_state_values(self, t._trial_id, TrialState.FAIL)
                logger.warning("trial %d: a copy made when the database connection dropped; failed", t.number)

        def record_heartbeat(self, trial_id: int) -> None:
            # Once, never waited for: a missed beat is harmless, a blocked heartbeat thread is not.
            if self.retry.gave_up is not None:
                return
            try:
                rdb.record_heartbeat(self, trial_id)
            except Exception as exc:
                if not is_connection_lost(exc):
                    raise
                self.retry.failed(exc, wait=False)
                return
            self.retry.succeeded()

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
            if self.retry.recovered_within(grace):
                return []  # nobody could beat while the server was away: their silence says nothing
            return self._retried(lambda: rdb._get_stale_trial_ids(self, study_id))

    def retried(name: str) -> Callable[..., Any]:
        fn = getattr(rdb, name)

        @functools.wraps(fn)
        def method(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
            return self._retried(lambda: fn(self, *args, **kwargs))

        return method

    for name in _RETRIED_AS_IS:
        setattr(RetryingRDBStorage, name, retried(name))
    return RetryingRDBStorage
