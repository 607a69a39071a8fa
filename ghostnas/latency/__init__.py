"""Latency: measuring deploy models, a per-block lookup table, and the predictor built on it.

MACs are not speed: depthwise convolutions and the Ghost module's concatenation are memory-bound,
so GhostNet runs slower on a CPU than its MAC count suggests. This package measures what users
deploy (eval mode, batch-norm folded, fixed threads, batch 1), stores per-block timings in a JSON
table keyed by device and backend (eager PyTorch or ONNX Runtime), and predicts a network's
latency as the sum of its blocks plus a fitted correction, rescaled to the machine's speed now
(one cached calibration for every caller) and given with an uncertainty, cheaply enough for the
search to use as a budget or an objective.

Measuring needs torch; importing :mod:`ghostnas` does not import this package.
"""

from __future__ import annotations

from ghostnas.latency._accuracy import accuracy_report, kendall_tau
from ghostnas.latency._backend import (
    BACKENDS,
    DEFAULT_BACKEND,
    ONNX_OPSET,
    backend_fingerprint,
    check_backend,
    onnx_session,
    time_deployed,
)
from ghostnas.latency._coverage import (
    FIT_SEED_OFFSET,
    TableNetworks,
    space_extremes,
    space_sample,
    table_networks,
)
from ghostnas.latency._measure import (
    DEFAULT_THREADS,
    LatencyError,
    MeasureSettings,
    Timing,
    clock_name,
    fold_bn,
    resolve_device,
    thread_count,
    time_callable,
    time_module,
)
from ghostnas.latency._parts import NetworkSpec, Part, block_key, deploy_model, network_parts
from ghostnas.latency._predict import (
    CALIBRATION_MAX_AGE_S,
    REFERENCE_NETWORKS,
    Calibration,
    Estimate,
    Fit,
    LatencyPredictor,
    MeasureFn,
    build_table,
    calibrate,
    calibrate_session,
    calibration_cache_path,
    fit_correction,
    fit_table,
    measure_network,
    open_predictor,
    parse_latency_ms,
    part_timer,
    try_calibrate,
)
from ghostnas.latency._table import (
    TABLE_FORMAT,
    LatencyTable,
    default_table_path,
    device_fingerprint,
    fingerprint_hash,
    load_table,
    open_table,
    save_table,
    table_from_dict,
)

__all__ = [
    "BACKENDS",
    "CALIBRATION_MAX_AGE_S",
    "DEFAULT_BACKEND",
    "DEFAULT_THREADS",
    "FIT_SEED_OFFSET",
    "ONNX_OPSET",
    "REFERENCE_NETWORKS",
    "TABLE_FORMAT",
    "Calibration",
    "Estimate",
    "Fit",
    "LatencyError",
    "LatencyPredictor",
    "LatencyTable",
    "MeasureFn",
    "MeasureSettings",
    "NetworkSpec",
    "Part",
    "TableNetworks",
    "Timing",
    "accuracy_report",
    "backend_fingerprint",
    "block_key",
    "build_table",
    "calibrate",
    "calibrate_session",
    "calibration_cache_path",
    "check_backend",
    "clock_name",
    "default_table_path",
    "deploy_model",
    "device_fingerprint",
    "fingerprint_hash",
    "fit_correction",
    "fit_table",
    "fold_bn",
    "kendall_tau",
    "load_table",
    "measure_network",
    "network_parts",
    "onnx_session",
    "open_predictor",
    "open_table",
    "parse_latency_ms",
    "part_timer",
    "resolve_device",
    "save_table",
    "space_extremes",
    "space_sample",
    "table_from_dict",
    "table_networks",
    "thread_count",
    "time_callable",
    "time_deployed",
    "time_module",
    "try_calibrate",
]
