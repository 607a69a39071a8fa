"""Several candidates trained at once in one process, on one device, from one copy of the data.

Why: at the proxy's batch of 128 one small candidate leaves most of a large GPU idle, and
separate search processes on one GPU only time-share it (three processes made 15,193 img/s
together against 15,162 for one on an H100, results/throughput-gpu-2026-11-23). Here the
candidates live in one process: the data is on the device once, and each candidate's training
step (already a fixed kernel sequence with device-side learning rate and loss log, see
:mod:`ghostnas.train`) is captured in its own CUDA graph and replayed on its own CUDA stream,
so the GPU can run the steps of several candidates at the same time.

On the CPU the same code runs the candidates one step each in turn. Each candidate owns its
model, optimizer state, batch order and loss log, and its own random stream (torch's generator
states are swapped in around each of its steps, see :class:`~ghostnas.train.TrainingRun`), and
only reads the shared data, so its result is the same as training it alone with the same seed,
bit for bit (tests check this, dropout included).

A candidate that fails (divergence, out of memory) or whose ``report`` callback raises (a
pruner) stops alone; the others go on. :func:`fit_many` returns, per candidate, either its
:class:`~ghostnas.train.FitResult` or the exception that stopped it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ghostnas.train import (
    FitResult,
    ModelFactory,
    Recipe,
    ReportFn,
    TrainingRun,
    prepare_data,
    sync,
)

__all__ = ["fit_many"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _on(stream: torch.cuda.Stream | None) -> Iterator[None]:
    """Queue the enclosed work on ``stream`` (None: the current stream, e.g. on the CPU)."""
    if stream is None:
        yield
        return
    with torch.cuda.stream(stream):  # pragma: no cover - CUDA only
        yield


def fit_many(
    models: Sequence[nn.Module | ModelFactory],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    recipe: Recipe,
    device: str | torch.device = "cpu",
    seeds: Sequence[int] | None = None,
    reports: Sequence[ReportFn | None] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> list[FitResult | Exception]:
    """Train every model in ``models`` at once with the same recipe and data.

    Arguments are those of :func:`ghostnas.train.fit`, one per candidate for ``models``,
    ``seeds`` (default all 0) and ``reports`` (default none).

    Returns:
        Per candidate, in order, its result or the exception that stopped it
        (:class:`~ghostnas.train.TrainingFailed`, an out-of-memory error, or whatever its
        ``report`` raised). On CUDA every result's ``extra`` holds ``concurrent`` (candidates
        in the group) and ``group_peak_memory_bytes`` (the group's peak device memory, data
        included). ``train_s`` is the wall time of the group's training phases while the
        candidate was in it, so ``images_per_s`` is its share of the aggregate.

    Raises:
        ValueError: ``seeds`` or ``reports`` do not match ``models`` in length, or no data.
        KeyboardInterrupt: propagates at once; every candidate is abandoned.
    """
    n = len(models)
    seeds = list(seeds) if seeds is not None else [0] * n
    reports = list(reports) if reports is not None else [None] * n
    if len(seeds) != n or len(reports) != n:
        raise ValueError(f"fit_many: {n} models but {len(seeds)} seeds and {len(reports)} reports")
    if n == 0:
        return []
    t0 = time.perf_counter()
    data = prepare_data(train, val, recipe, device, mean, std)
    dev = data.device
    cuda = dev.type == "cuda"
    if cuda:  # pragma: no cover - CUDA only
        torch.cuda.reset_peak_memory_stats(dev)
        streams: list[torch.cuda.Stream | None] = [torch.cuda.Stream(dev) for _ in range(n)]
        for s in streams:
            s.wait_stream(torch.cuda.current_stream(dev))  # the data was written on this stream
    else:
        streams = [None] * n

    outcomes: list[FitResult | Exception | None] = [None] * n
    runs: dict[int, TrainingRun] = {}
    for i, model in enumerate(models):
        try:
            with _on(streams[i]):
                runs[i] = TrainingRun(model, data, seeds[i], reports[i])
        except Exception as exc:  # a model that cannot be built or moved (e.g. out of memory)
            outcomes[i] = exc
    sync(dev)
    setup_s = time.perf_counter() - t0
    train_s = dict.fromkeys(runs, 0.0)

    def stop(i: int, exc: Exception) -> None:
        log.debug("candidate %d of %d stopped: %s", i, n, exc)
        outcomes[i] = exc
        runs.pop(i).release()

    try:
        while runs:
            # One training phase: every run steps until it reaches its next report point.
            t1 = time.perf_counter()
            phase = list(runs)
            stepping = list(phase)
            while stepping:
                for i in stepping:
                    try:
                        with _on(streams[i]):
                            runs[i].advance()
                    except Exception as exc:  # out of memory in a step, a capture failure
                        stop(i, exc)
                due = [i for i in stepping if i in runs and runs[i].check_due]
                if due:
                    sync(dev)  # one wait for all streams, then every due run reads its loss log
                    for i in due:
                        try:
                            runs[i].check()
                        except Exception as exc:
                            stop(i, exc)
                stepping = [i for i in stepping if i in runs and not runs[i].at_report_point]
            sync(dev)
            elapsed = time.perf_counter() - t1
            for i in phase:
                if i in train_s:
                    train_s[i] += elapsed
            for i in [i for i in phase if i in runs]:
                try:
                    with _on(streams[i]):
                        runs[i].validate()
                except Exception as exc:  # divergence, or the caller's report stopping it
                    stop(i, exc)
                    continue
                if runs[i].done:
                    extra = {"concurrent": float(n)}
                    if cuda:  # pragma: no cover - CUDA only
                        extra["group_peak_memory_bytes"] = float(torch.cuda.max_memory_allocated(dev))
                    outcomes[i] = runs[i].result(setup_s, train_s[i], extra)
                    runs.pop(i).release()
    finally:
        for run in runs.values():
            run.release()
    return [o if o is not None else RuntimeError("fit_many: no outcome") for o in outcomes]
