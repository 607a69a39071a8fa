"""``ghostnas search --parallel N``: N trials in flight in one process, evaluated together.

Why: on a GPU one proxy training at batch 128 leaves most of the device idle, and separate
search processes only time-share it. Here one process keeps up to N trials open (Optuna's
ask/tell) and hands their candidates to the evaluator at once; an evaluator with
``evaluate_many`` (:class:`ghostnas.evaluators.BatchEvaluator`, e.g. the training proxy via
:func:`ghostnas.train_many.fit_many`) trains them together, any other is called once per
candidate.

How it keeps the search's rules. The search's own objective runs unchanged, one thread per
open trial, but only one thread runs at any moment: the driver asks a trial, starts its
objective, and waits until the objective either finishes (over budget, surplus, a failure
before evaluation) or reaches the evaluator, where it blocks; only then is the next trial
asked. So the trials are proposed, priced, budget-checked and given slots
(:func:`ghostnas.workers.claim_slot`) one after another exactly as without ``--parallel`` (a
seeded run is reproducible), and the exact trial count, constraints, resume and several
workers on one study work as before. When N objectives wait at the evaluator (or the study's
remaining slots are all held), the driver runs the batch in its own thread (Ctrl-C reaches
it), hands each objective its result or exception, lets them finish, tells Optuna each
outcome in trial order and calls the callbacks in that order. A batch never holds more trials
than the study has free slots, so no trial of a batch ends surplus behind its own batch.

RDB storages keep Optuna's heartbeat: a thread records one for every open trial, so a live
worker of the same study can still fail (and retry) this process's trials if it dies.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from ghostnas import workers
from ghostnas.config import GhostNetConfig
from ghostnas.evaluators.base import EvalResult, Evaluator, ReportFn

if TYPE_CHECKING:
    import optuna

__all__ = ["BatchingEvaluator", "optimize_in_batches"]

logger = logging.getLogger(__name__)

Callback = Callable[[Any, "optuna.trial.FrozenTrial"], None]


@dataclass
class _Request:
    cfg: GhostNetConfig
    report: ReportFn | None
    done: threading.Event = field(default_factory=threading.Event)
    outcome: EvalResult | BaseException | None = None


class BatchingEvaluator:
    """Stands in for an evaluator inside the search's objective: :meth:`evaluate` queues the
    candidate and blocks until the driver has run the whole batch (:meth:`run_batch`).

    Attributes:
        inner: The real evaluator.
        name: The real evaluator's name (recorded with every trial).
        evaluation_seconds: Wall time spent in :meth:`run_batch` (the search's evaluation time).
        batch_sizes: How many candidates each batch held.
    """

    def __init__(self, inner: Evaluator) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.evaluation_seconds = 0.0
        self.batch_sizes: list[int] = []
        self._queue: list[_Request] = []
        self._lock = threading.Condition()
        self._closed = False

    def evaluate(self, cfg: GhostNetConfig, report: ReportFn | None = None) -> EvalResult:
        req = _Request(cfg, report)
        with self._lock:
            if self._closed:
                raise KeyboardInterrupt  # the run is stopping: this objective records "interrupted"
            self._queue.append(req)
            self._lock.notify_all()
        req.done.wait()
        if isinstance(req.outcome, BaseException):
            raise req.outcome
        assert req.outcome is not None
        return req.outcome

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Block until ``predicate()`` holds; it is re-checked whenever a candidate is queued
        (callers also call :meth:`wake` when something else it reads changes)."""
        with self._lock:
            while not predicate():
                self._lock.wait(timeout=0.5)

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def run_batch(self) -> list[_Request]:
        """Evaluate every queued candidate, together when the evaluator can.

        Returns the requests in the order they were queued, each with its outcome; their
        objectives stay blocked until the caller releases each (``request.done.set()``), so the
        caller decides the order in which they finish.
        """
        with self._lock:
            batch, self._queue = self._queue, []
        if not batch:
            return []
        t0 = time.perf_counter()
        self.batch_sizes.append(len(batch))
        outcomes: Sequence[EvalResult | BaseException]
        try:
            many = getattr(self.inner, "evaluate_many", None)
            if many is not None and len(batch) > 1:
                outcomes = many([r.cfg for r in batch], [r.report for r in batch])
            else:
                outcomes = [_one(self.inner, r) for r in batch]
        except Exception as exc:  # the batch as a whole broke: every candidate in it failed
            outcomes = [exc] * len(batch)
        except BaseException:  # Ctrl-C: release the objectives, then stop
            self.evaluation_seconds += time.perf_counter() - t0
            _interrupt(batch)
            raise
        self.evaluation_seconds += time.perf_counter() - t0
        for req, outcome in zip(batch, outcomes, strict=True):
            req.outcome = outcome
        return batch

    def interrupt_queued(self) -> None:
        """Release every queued objective with KeyboardInterrupt, and any that comes later
        (the run is stopping)."""
        with self._lock:
            batch, self._queue = self._queue, []
            self._closed = True
        _interrupt(batch)


def _one(evaluator: Evaluator, req: _Request) -> EvalResult | BaseException:
    try:
        return evaluator.evaluate(req.cfg, report=req.report)
    except Exception as exc:
        return exc


def _interrupt(batch: Sequence[_Request]) -> None:
    for req in batch:
        if not req.done.is_set():
            req.outcome = KeyboardInterrupt()
            req.done.set()


class _Flight:
    """One open trial whose objective runs in its own thread."""

    def __init__(
        self, trial: optuna.Trial, objective: Callable[[optuna.Trial], Any], batcher: BatchingEvaluator
    ) -> None:
        self.trial = trial
        self.batcher = batcher
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(objective,), daemon=True)

    def _run(self, objective: Callable[[optuna.Trial], Any]) -> None:
        try:
            self.value = objective(self.trial)
        except BaseException as exc:  # delivered to the driver, which tells Optuna
            self.error = exc
        finally:
            self.finished.set()
            self.batcher.wake()


class _StudyView:
    """The study as the callbacks see it: everything delegates, but ``stop()`` ends the loop
    (Optuna's own ``Study.stop`` only works inside ``Study.optimize``)."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class _Heartbeat:
    """Records Optuna's heartbeat for every open trial, as ``Study.optimize`` does for its one."""

    def __init__(self, storage: Any, study_name: str) -> None:
        # RDB storages with a heartbeat interval (Optuna's own test; its base class is private)
        interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
        enabled = interval is not None and callable(getattr(storage, "record_heartbeat", None))
        self.storage = storage if enabled else None
        self.study_name = study_name
        self.trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.storage is not None:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self.storage is not None

    def add(self, number: int) -> None:
        """Beat for trial ``number`` of the study until :meth:`discard`."""
        if self.storage is not None:
            trial_id = workers.trial_id(self.storage, self.study_name, number)
            self.trial_ids.add(trial_id)
            self.storage.record_heartbeat(trial_id)

    def discard(self, number: int) -> None:
        if self.storage is not None:
            self.trial_ids.discard(workers.trial_id(self.storage, self.study_name, number))

    def _beat(self) -> None:
        assert self.storage is not None
        interval = self.storage.get_heartbeat_interval() or workers.HEARTBEAT_INTERVAL
        while not self._stop.wait(interval):
            for tid in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(tid)
                except Exception as exc:  # a storage hiccup must not kill the search
                    logger.debug("heartbeat for trial id %d failed: %s", tid, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def optimize_in_batches(
    study: optuna.Study,
    storage: Any,
    objective: Callable[[optuna.Trial], Any],
    batcher: BatchingEvaluator,
    parallel: int,
    target: int,
    *,
    timeout: float | None = None,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callback] = (),
) -> None:
    """Run ``objective`` on new trials of ``study``, up to ``parallel`` evaluated together.

    Args:
        study: The study (already created or loaded).
        storage: Its storage (for the heartbeat).
        objective: The search's objective; it must call ``batcher.evaluate`` to evaluate.
        batcher: The evaluator wrapper the objective calls.
        parallel: Most candidates evaluated together.
        target: The study's wanted number of evaluated trials (a batch never holds more
            trials than the slots still free, see :mod:`ghostnas.workers`).
        timeout: Stop opening trials after this many seconds (open trials are finished).
        catch: Exceptions of the objective that mark its trial FAIL and do not stop the run.
        callbacks: Called as ``callback(study, frozen_trial)`` after each trial, in trial
            order; they may call ``study.stop()``.

    Raises:
        KeyboardInterrupt: Ctrl-C; open trials are told FAIL first (their objectives record
            why), so a rerun resumes.
    """
    view = _StudyView(study)
    heartbeat = _Heartbeat(storage, study.study_name)
    t0 = time.perf_counter()
    try:
        while not view.stopped and (timeout is None or time.perf_counter() - t0 < timeout):
            trials = study.get_trials(deepcopy=False)
            free = target - workers.count_evaluated(trials) - workers.in_flight(trials)
            room = max(1, min(parallel, free))  # 1 when full: that trial ends surplus and waits
            batch: list[_Flight] = []
            deferred: list[_Flight] = []
            requests: list[_Request] = []
            flight: _Flight | None = None
            try:
                while len(batch) < room and not view.stopped:
                    if timeout is not None and time.perf_counter() - t0 >= timeout:
                        break
                    flight = _open(study, objective, batcher, heartbeat)
                    batcher.wait_for(partial(_settled, flight, batcher, len(batch)))
                    if not flight.finished.is_set():
                        batch.append(flight)  # waiting at the evaluator
                        continue
                    if batch and flight.trial.user_attrs.get("outcome") == "surplus":
                        deferred.append(flight)  # its callback waits for in-flight trials: ours first
                        break
                    _close(study, flight, heartbeat, catch, callbacks, view)
                requests = batcher.run_batch()
                # one objective at a time finishes, in trial order, then its outcome is told
                for flight, req in zip(batch, requests, strict=True):
                    req.done.set()
                    flight.finished.wait()
                    _close(study, flight, heartbeat, catch, callbacks, view)
                for flight in deferred:
                    _close(study, flight, heartbeat, catch, callbacks, view)
            except BaseException:
                batcher.interrupt_queued()  # and any objective that reaches it from now on
                _interrupt(requests)
                for open_flight in [*batch, *deferred, *([flight] if flight is not None else [])]:
                    open_flight.finished.wait(timeout=10)
                    _tell(study, open_flight, heartbeat)
                raise
    finally:
        heartbeat.close()
    if batcher.batch_sizes:
        sizes = batcher.batch_sizes
        logger.info("%d batch(es) of %.1f candidates on average", len(sizes), sum(sizes) / len(sizes))


def _settled(flight: _Flight, batcher: BatchingEvaluator, queued_before: int) -> bool:
    """The new trial's objective finished, or it waits at the evaluator."""
    return flight.finished.is_set() or batcher.queued > queued_before


def _open(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    batcher: BatchingEvaluator,
    heartbeat: _Heartbeat,
) -> _Flight:
    """Ask a trial and start its objective (after failing stale trials, as Optuna does)."""
    if heartbeat.enabled:
        from optuna.storages import fail_stale_trials

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)
    with warnings.catch_warnings():
        # Optuna warns that its heartbeat belongs to Study.optimize; _Heartbeat beats for us
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask()
    flight = _Flight(trial, objective, batcher)
    heartbeat.add(flight.trial.number)
    flight.thread.start()
    return flight


def _tell(study: optuna.Study, flight: _Flight, heartbeat: _Heartbeat) -> optuna.trial.FrozenTrial:
    """Tell Optuna how the trial ended: its values, PRUNED, or FAIL."""
    import optuna
    from optuna.trial import TrialState

    heartbeat.discard(flight.trial.number)
    err = flight.error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns when a told value is not a finite number
        if err is None and flight.finished.is_set():
            return study.tell(flight.trial, flight.value, skip_if_finished=True)
        if isinstance(err, optuna.TrialPruned):
            return study.tell(flight.trial, state=TrialState.PRUNED, skip_if_finished=True)
        return study.tell(flight.trial, state=TrialState.FAIL, skip_if_finished=True)


def _close(
    study: optuna.Study,
    flight: _Flight,
    heartbeat: _Heartbeat,
    catch: tuple[type[Exception], ...],
    callbacks: Sequence[Callback],
    view: _StudyView,
) -> None:
    """Tell the trial's outcome, re-raise an uncaught error, run the callbacks."""
    import optuna

    frozen = _tell(study, flight, heartbeat)
    err = flight.error
    if err is not None and not isinstance(err, (optuna.TrialPruned, *catch)):
        raise err
    if err is not None and not isinstance(err, optuna.TrialPruned):
        logger.debug("trial %d failed: %r", frozen.number, err)
    for callback in callbacks:
        callback(view, frozen)
