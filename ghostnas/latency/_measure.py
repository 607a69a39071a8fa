"""Timing a deploy model: BN folding, thread pinning, warm-up, repeated blocks, median and IQR.

A wall-clock number from a shared 2-core machine is only worth something if it is repeatable.
The recipe follows ``torch.utils.benchmark``: warm up, then time many short *blocks* of calls
(each long enough that the clock's resolution vanishes) and summarise the per-block means by
their median and inter-quartile range.

Interference from other processes only ever *adds* time. On a shared 2-core machine it is
mostly time-sharing: with three runnable processes on two cores, a 20 ms forward pass is
preempted in most calls and its wall time grows by up to 60%, while each 5 ms block of a small
part often runs undisturbed, so wall-clock tables and wall-clock network timings disagree for
reasons that have nothing to do with the network. Two defences:

* The clock. With one intra-op thread on the CPU, all of PyTorch's work runs on the calling
  thread, so the thread's CPU time (``time.thread_time``) is the time the inference computes
  and excludes the time another process held the core. On a quiet machine it equals wall time
  (checked in README "Latency"); on a busy one it stays put where wall time jumps. With more
  threads, or on CUDA, CPU time is not latency and the wall clock is used. Which clock was used
  is part of the table's device fingerprint (:func:`clock_name`).
* The statistic. The number used as "the latency" everywhere in ghostnas
  (:attr:`Timing.latency_ms`, the table, the predictor, budgets) is the 20th percentile of the
  block means, the undisturbed speed of the code, in the spirit of ``timeit``'s advice to look
  at the fastest repeats. Median and IQR are recorded beside it so the reader sees how noisy the
  run was; on a quiet machine they agree within a few percent.

The thread count is part of what is measured: intra-op parallelism changes latency by up to 2x,
so it is set explicitly for each measurement, recorded in the table's device fingerprint, and
restored afterwards (measuring must not leave the process in a different state).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ghostnas.errors import GhostnasError
from ghostnas.stats import quantile

__all__ = [
    "DEFAULT_THREADS",
    "LatencyError",
    "MeasureSettings",
    "Timing",
    "clock_name",
    "fold_bn",
    "resolve_device",
    "thread_count",
    "time_callable",
    "time_module",
]

logger = logging.getLogger(__name__)

# One intra-op thread: on this shared 2-core machine it gives the most repeatable numbers (another
# process on either core stalls a 2-thread run at every barrier), and a single big core is what a
# phone-class deployment gets per model. See README "Latency" for the 1-vs-2 thread measurements.
DEFAULT_THREADS = 1


class LatencyError(GhostnasError):
    """A latency table, budget or measurement request is unusable; the message says how to fix it."""


@dataclass(frozen=True)
class Timing:
    """One latency measurement.

    Attributes:
        median_ms: Median over blocks of the mean time per call, in milliseconds.
        iqr_ms: Inter-quartile range of the per-block means, in milliseconds (the spread).
        n: Number of calls timed in all (blocks x calls per block), warm-up excluded.
        p20_ms: 20th percentile of the per-block means, in milliseconds; None in tables that
            only recorded the median.
    """

    median_ms: float
    iqr_ms: float
    n: int
    p20_ms: float | None = None

    @property
    def latency_ms(self) -> float:
        """The latency ghostnas uses: the 20th percentile (see the module docstring)."""
        return self.p20_ms if self.p20_ms is not None else self.median_ms


@dataclass(frozen=True)
class MeasureSettings:
    """How long to time each thing; the defaults take about 0.2 s per block shape.

    Attributes:
        warmup_s: Seconds of untimed calls first (allocator, caches, oneDNN kernel selection).
        blocks: Number of timed blocks; quantiles are taken over them.
        min_block_s: Each block repeats the call until it lasts at least this long, in seconds.
    """

    warmup_s: float = 0.05
    blocks: int = 25
    min_block_s: float = 0.005

    def __post_init__(self) -> None:
        if not (self.warmup_s >= 0 and self.blocks >= 3 and self.min_block_s > 0):
            raise LatencyError("measure settings: need warmup_s >= 0, blocks >= 3, min_block_s > 0")


def clock_name(device: str, threads: int) -> str:
    """``"thread-cpu"`` for single-threaded CPU timing, else ``"wall"`` (see module docstring)."""
    return "thread-cpu" if device == "cpu" and threads == 1 else "wall"


def resolve_device(device: str) -> torch.device:
    """``"cpu"`` or ``"cuda"``; a one-line error when CUDA is asked for but absent."""
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise LatencyError("device cuda: CUDA is not available on this machine; use --device cpu")
        return torch.device("cuda")
    raise LatencyError(f"device {device!r}: unknown; choose cpu or cuda")


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(threads)``, restoring the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_callable(
    fn: Callable[[], object],
    settings: MeasureSettings = MeasureSettings(),
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Median and IQR of ``fn()``'s wall time over blocks of repeated calls.

    Args:
        fn: The call to time; its result is discarded.
        settings: Warm-up length, number of blocks, minimum block length.
        sync: Called before reading the clock (``torch.cuda.synchronize`` on a GPU), so that
            asynchronous work is counted.
        clock: Seconds counter: ``time.perf_counter`` (wall) or ``time.thread_time`` (this
            thread's CPU time).

    Returns:
        The per-call timing in milliseconds (median, IQR and 20th percentile of block means).
    """
    sync = sync or (lambda: None)
    # Warm-up doubles as calibration: the fastest warm-up call sizes the blocks.
    start = clock()
    fastest = float("inf")
    calls = 0
    while calls < 3 or clock() - start < settings.warmup_s:
        t0 = clock()
        fn()
        sync()
        fastest = min(fastest, clock() - t0)
        calls += 1
    per_block = max(1, int(settings.min_block_s / max(fastest, 1e-7)))
    means = []
    for _ in range(settings.blocks):
        t0 = clock()
        for _ in range(per_block):
            fn()
        sync()
        means.append((clock() - t0) / per_block * 1e3)
    means.sort()
    median = statistics.median(means)
    iqr = quantile(means, 0.75) - quantile(means, 0.25)
    return Timing(median_ms=median, iqr_ms=iqr, n=per_block * settings.blocks, p20_ms=quantile(means, 0.2))


def time_module(
    module: nn.Module,
    input_shape: tuple[int, ...],
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    settings: MeasureSettings = MeasureSettings(),
) -> Timing:
    """Latency of one forward pass of ``module`` (already in deploy form) on a random input.

    Runs under ``torch.inference_mode`` with ``threads`` intra-op threads, restored afterwards,
    timed with the clock :func:`clock_name` names for this device and thread count.
    """
    dev = resolve_device(device)
    clock = time.thread_time if clock_name(device, threads) == "thread-cpu" else time.perf_counter
    module = module.to(dev).eval()
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    with thread_count(threads), torch.inference_mode():
        x = torch.randn(input_shape, device=dev)
        timing = time_callable(lambda: module(x), settings, sync, clock)
    logger.debug(
        "timed %s %s: %.4f ms (iqr %.4f)", type(module).__name__, input_shape, timing.median_ms, timing.iqr_ms
    )
    return timing


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv whose output equals ``bn(conv(x))`` in eval mode."""
    fused = copy.deepcopy(conv)
    w = conv.weight.detach()
    mean = bn.running_mean.detach()  # type: ignore[union-attr]
    var = bn.running_var.detach()  # type: ignore[union-attr]
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(mean)
    fused.weight = nn.Parameter(w * scale.reshape(-1, *([1] * (w.dim() - 1))))
    fused.bias = nn.Parameter((bias - mean) * scale + beta)
    return fused


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every batch-norm folded into the conv before it.

    The rule is structural: inside any module, a ``Conv2d`` child registered immediately before a
    ``BatchNorm2d`` child of matching width is taken to feed it directly. That holds for every
    ghostnas block (``nn.Sequential`` conv/BN/act stacks, ``conv_stem``/``bn1``,
    ``conv_dw``/``bn_dw``); the tests check outputs are unchanged. The folded BN becomes
    ``nn.Identity`` so the module structure, and hence ``forward``, stays the same.
    """
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        names = list(parent._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = parent._modules[first], parent._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(bn, nn.BatchNorm2d)
                and bn.num_features == conv.out_channels
                and bn.track_running_stats
            ):
                parent._modules[first] = _fold_pair(conv, bn)
                parent._modules[second] = nn.Identity()
    return model
