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
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas import workers
from ghostnas._fs import as_write_failed, repair_journal_tail
from ghostnas.errors import GhostnasError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "StorageError",
    "close_storage",
    "default_storage_url",
    "open_storage",
    "redact",
    "storage_path",
]

logger = logging.getLogger(__name__)


class StorageError(GhostnasError):
    """A storage URL cannot be opened (bad scheme, missing folder, server not answering)."""


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


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open an Optuna storage: an RDB URL (``sqlite:///...``, ``postgresql://...``) or
    ``journal:PATH`` for a journal file.

    RDB storages get Optuna's heartbeat (see :mod:`ghostnas.workers`): a trial whose worker
    stops beating for :data:`ghostnas.workers.GRACE_PERIOD` seconds is failed by a live worker
    and its config retried. A PostgreSQL or MySQL server that does not answer fails within
    10 seconds instead of hanging.

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
        if url.startswith(("postgresql", "mysql")):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        return _rdb_with_retry(url, engine_kwargs)
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


def _rdb(url: str, engine_kwargs: dict[str, Any] | None = None) -> optuna.storages.RDBStorage:
    """An RDB storage with the heartbeat on (Optuna marks the heartbeat experimental)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=workers.HEARTBEAT_INTERVAL,
            grace_period=workers.GRACE_PERIOD,
            heartbeat_stale_trial_callback=workers.on_heartbeat_stale,
        )


def _rdb_with_retry(url: str, engine_kwargs: dict[str, Any]) -> optuna.storages.RDBStorage:
    """:func:`_rdb`, tried again when it lost a race: workers that start together on an empty
    database all try to create Optuna's tables, and all but one see "already exists"."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(4):
        try:
            return _rdb(url, engine_kwargs)
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
