"""What ``ghostnas models`` and ``ghostnas profile`` report: costs of named or file configs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ghostnas.config import GhostNetConfig, config_to_dict
from ghostnas.cost import count_cost, measure_cost
from ghostnas.errors import GhostnasError
from ghostnas.registry import create_model, model_entries, resolve_config

__all__ = ["MACS_CONVENTION", "model_table", "profile_latency", "profile_model"]

MACS_CONVENTION = "conv+linear multiply-accumulates (the papers' FLOPs); BN/activations not counted"


def model_table(input_size: int = 224, num_classes: int = 1000) -> list[dict[str, Any]]:
    """One row per registered model: name, source, params and MACs at ``input_size``."""
    rows = []
    for name, entry in sorted(model_entries().items()):
        try:
            cost = count_cost(resolve_config(name), input_size, num_classes)
        except GhostnasError as exc:  # a broken user file must not hide the others
            rows.append({"name": name, "source": entry.source, "error": str(exc)})
            continue
        rows.append({"name": name, "source": entry.source, "params": cost.params, "macs": cost.macs})
    return rows


def profile_model(
    model: str | os.PathLike[str] | GhostNetConfig | Mapping[str, Any],
    input_size: int = 224,
    num_classes: int = 1000,
    verify: bool = False,
) -> dict[str, Any]:
    """Closed-form cost of a model, plus (``verify=True``) a hook count on the built model.

    Returns:
        A JSON-ready dict with at least ``params`` and ``macs``.
    """
    cfg = resolve_config(model)
    cost = count_cost(cfg, input_size, num_classes)
    out: dict[str, Any] = {
        "model": model
        if isinstance(model, str)
        else os.fspath(model)
        if isinstance(model, os.PathLike)
        else "<config>",
        "params": cost.params,
        "macs": cost.macs,
        "input_size": input_size,
        "num_classes": num_classes,
        "macs_convention": MACS_CONVENTION,
        "blocks": cfg.num_blocks,
        "arch": cfg.short(),
        "config": config_to_dict(cfg),
    }
    trained = count_cost(cfg, input_size, num_classes, training=True)
    if trained != cost:  # re-parameterisable kinds (ghost_v3): the counts above are the deployed form's
        out["training_params"] = trained.params
        out["training_macs"] = trained.macs
    if verify:
        # Hooks count the deployed network, as the closed form does.
        measured = measure_cost(create_model(cfg, num_classes=num_classes).reparameterize(), input_size)
        out["hook_params"] = measured.params
        out["hook_macs"] = measured.macs
    return out


def profile_latency(
    model: str | os.PathLike[str] | GhostNetConfig | Mapping[str, Any],
    input_size: int = 224,
    num_classes: int = 1000,
    device: str = "cpu",
    threads: int | None = None,
    table: str | os.PathLike[str] | None = None,
    force_table: bool = False,
    backend: str = "torch",
    calibrate: bool = True,
) -> dict[str, Any]:
    """Predicted (lookup table, calibrated) and measured latency of the model's deploy form, batch 1.

    The prediction goes through the same cached calibration as ``ghostnas latency predict`` and
    the search (:func:`ghostnas.latency.try_calibrate`); when it cannot be calibrated the output
    says so. Block shapes missing from this device's table are timed and added to it; a device
    without a table is a one-line error telling the user to build one.

    Returns:
        ``latency_ms_predicted`` (with ``latency_uncertainty_ms``, ``latency_ms_uncalibrated``,
        ``latency_calibrated``, ``latency_calibration``), ``latency_ms_measured`` (20th
        percentile of repeated timings), ``latency_median_ms``, ``latency_iqr_ms``,
        ``latency_backend``, ``latency_device`` and ``latency_table``.
    """
    from ghostnas.latency import (
        DEFAULT_THREADS,
        NetworkSpec,
        device_fingerprint,
        measure_network,
        open_predictor,
        save_table,
        try_calibrate,
    )

    threads = threads or DEFAULT_THREADS
    cfg = resolve_config(model)
    spec = NetworkSpec(input_size=input_size, num_classes=num_classes)
    predictor, path = open_predictor(device, threads, table, spec=spec, force=force_table, backend=backend)
    before = len(predictor.table.entries)
    cal, why = try_calibrate(predictor, path, enabled=calibrate)
    measured = measure_network(cfg, spec, device, threads, backend=backend)
    est = predictor.estimate(cfg)
    if len(predictor.table.entries) != before:
        save_table(predictor.table, path)
    d = est.to_dict()
    return {
        "latency_ms_predicted": est.latency_ms,
        "latency_uncertainty_ms": est.uncertainty_ms,
        "latency_ms_uncalibrated": est.uncalibrated_ms,
        "latency_calibrated": cal is not None,
        "latency_calibration": d["calibration"],
        "latency_uncalibrated_reason": why,
        "latency_ms_measured": measured.latency_ms,
        "latency_median_ms": measured.median_ms,
        "latency_iqr_ms": measured.iqr_ms,
        "latency_backend": backend,
        "latency_device": device_fingerprint(device, threads, backend),
        "latency_table": str(path),
    }
