"""Where a deploy model runs when it is timed: eager PyTorch or ONNX Runtime.

Users deploy small CNNs on CPUs through ONNX Runtime as often as through PyTorch, and the two do
not agree on what is cheap: ONNX Runtime fuses convolution, bias and activation into one kernel
and plans memory ahead, so the per-call overhead of a small block shrinks and the ranking of
blocks moves. A latency table is therefore valid for one backend only; the backend is part of
the table's device fingerprint (:func:`backend_fingerprint`), and every timing function of
:mod:`ghostnas.latency` takes a ``backend`` argument that reaches :func:`time_deployed`.

ONNX Runtime is timed the way :mod:`ghostnas.latency._measure` times PyTorch: the module is
exported once (TorchScript-based exporter, opset :data:`ONNX_OPSET`, fixed batch-1 shape), a
CPU session with ``intra_op_num_threads = threads``, sequential execution and all graph
optimisations is created, and ``session.run`` is timed with :func:`time_callable`. With one
intra-op thread ONNX Runtime runs every kernel on the calling thread, so the thread's CPU time
is again the time the inference computes (the clock :func:`clock_name` picks). Needs the
``onnx`` extra (``pip install 'ghostnas[onnx]'``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ghostnas.latency._measure import (
    DEFAULT_THREADS,
    LatencyError,
    MeasureSettings,
    Timing,
    clock_name,
    resolve_device,
    time_callable,
    time_module,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "ONNX_OPSET",
    "backend_fingerprint",
    "check_backend",
    "onnx_session",
    "time_deployed",
]

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
DEFAULT_BACKEND = "torch"
ONNX_OPSET = 17
# The fingerprint's name for eager PyTorch predates ONNX Runtime support; tables written before
# it say "torch-eager", so that string is kept.
_FINGERPRINT_NAME = {"torch": "torch-eager", "onnxruntime": "onnxruntime"}


def check_backend(backend: str, device: str = "cpu") -> None:
    """A one-line error for an unknown backend, a missing package or an unsupported device."""
    if backend not in BACKENDS:
        raise LatencyError(f"backend {backend!r}: unknown; choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise LatencyError(
                f"backend onnxruntime needs the {missing[0]!r} package: pip install 'ghostnas[onnx]'"
            )
        if device != "cpu":
            raise LatencyError("backend onnxruntime is timed on the CPU only; use --device cpu")


def backend_fingerprint(backend: str = DEFAULT_BACKEND) -> dict[str, Any]:
    """The fingerprint fields a backend adds: its name, and for ONNX Runtime its version and opset."""
    check_backend(backend)
    fp: dict[str, Any] = {"backend": _FINGERPRINT_NAME[backend]}
    if backend == "onnxruntime":
        import onnxruntime

        fp |= {"onnxruntime": onnxruntime.__version__, "onnx_opset": ONNX_OPSET}
    return fp


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter warns about the legacy path and prints diagnostics: keep them off the console."""
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_log.setLevel(level)


def onnx_session(module: nn.Module, input_shape: tuple[int, ...], threads: int = DEFAULT_THREADS) -> Any:
    """An ONNX Runtime CPU session running ``module`` (deploy form) on inputs of ``input_shape``.

    The graph is exported in memory (nothing is written to disk) with the TorchScript-based
    exporter: it takes a fraction of a second per block where the dynamo exporter takes several,
    and a table has a thousand blocks.
    """
    import onnxruntime as ort

    module = module.eval()
    x = torch.zeros(input_shape)
    buf = io.BytesIO()
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(
            module,
            (x,),
            buf,
            input_names=["input"],
            output_names=["output"],
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def time_deployed(
    module: nn.Module,
    input_shape: tuple[int, ...],
    device: str = "cpu",
    threads: int = DEFAULT_THREADS,
    settings: MeasureSettings | None = None,
    backend: str = DEFAULT_BACKEND,
) -> Timing:
    """Latency of one forward pass of ``module`` (deploy form) on ``backend``; see the module docstring."""
    check_backend(backend, device)
    settings = settings or MeasureSettings()
    if backend == "torch":
        return time_module(module, input_shape, device, threads, settings)
    resolve_device(device)
    session = onnx_session(module, input_shape, threads)
    feed = {"input": torch.randn(input_shape).numpy()}
    clock: Callable[[], float] = (
        time.thread_time if clock_name(device, threads) == "thread-cpu" else time.perf_counter
    )
    timing = time_callable(lambda: session.run(None, feed), settings, None, clock)
    logger.debug("timed %s %s on onnxruntime: %.4f ms", type(module).__name__, input_shape, timing.latency_ms)
    return timing
