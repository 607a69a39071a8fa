"""The latency lookup table: per-part timings for one device, stored as JSON.

Format (``"format": 1``)::

    {"format": 1,
     "device": {"backend": "torch-eager", "device": "cpu", "cpu": "AMD EPYC", "logical_cpus": 2,
                "threads": 1, "clock": "thread-cpu", "torch": "2.13.0+cpu", ...},
     "entries": {"block|b1|r56|...": {"median_ms": 0.41, "iqr_ms": 0.01, "p20_ms": 0.40,
                                      "n": 520}, ...},
     "constant_ms": 0.35, "scale": 1.02,
     "fit": {"networks": 8, "rms_ms": 0.2}}

A prediction is ``scale * sum(p20_ms of the network's parts) + constant_ms`` (see
:attr:`ghostnas.latency.Timing.latency_ms` for why the 20th percentile). The device
fingerprint says what the numbers are valid for; a table whose fingerprint differs from the
current device is refused unless the caller forces it, so numbers from another machine, another
thread count or another torch build are never used silently. The default location is
``$GHOSTNAS_HOME/latency/<fingerprint hash>.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ghostnas._io import read_user_text
from ghostnas.latency._backend import DEFAULT_BACKEND, backend_fingerprint
from ghostnas.latency._measure import LatencyError, Timing, clock_name
from ghostnas.provenance import cpu_model

__all__ = [
    "TABLE_FORMAT",
    "LatencyTable",
    "default_table_path",
    "device_fingerprint",
    "fingerprint_hash",
    "load_table",
    "open_table",
    "save_table",
    "table_from_dict",
]

TABLE_FORMAT = 1
MAX_TABLE_BYTES = 64 << 20


def device_fingerprint(
    device: str = "cpu", threads: int = 1, backend: str = DEFAULT_BACKEND
) -> dict[str, Any]:
    """What a latency number depends on besides the network: hardware, threads, software.

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        threads: Intra-op CPU threads used for timing.
        backend: ``"torch"`` (eager PyTorch) or ``"onnxruntime"``; see :mod:`ghostnas.latency._backend`.

    Returns:
        A JSON-ready dict; two devices with equal fingerprints share tables.
    """
    import torch

    fp: dict[str, Any] = {
        **backend_fingerprint(backend),
        "device": device,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count() or 0,
        "threads": threads,
        "clock": clock_name(device, threads),
        "torch": torch.__version__,
    }
    if device == "cuda":
        fp["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "unavailable"
        fp["cuda"] = torch.version.cuda
    return fp


def fingerprint_hash(fp: Mapping[str, Any]) -> str:
    """Short stable hash of a fingerprint, used as the default table's file name."""
    return hashlib.sha256(json.dumps(dict(fp), sort_keys=True).encode()).hexdigest()[:16]


def default_table_path(fp: Mapping[str, Any]) -> Path:
    """``$GHOSTNAS_HOME/latency/<hash>.json`` (default home ``~/.ghostnas``)."""
    home = os.environ.get("GHOSTNAS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".ghostnas"
    return base / "latency" / f"{fingerprint_hash(fp)}.json"


@dataclass
class LatencyTable:
    """Per-part timings for one device plus the fitted whole-network correction.

    Attributes:
        device: The fingerprint the entries were measured on.
        entries: Part key to timing.
        constant_ms: Fitted per-network overhead added to the sum of parts.
        scale: Fitted multiplier on the sum of parts (1 until fitted).
        fit: Free-form record of how the correction was fitted.
    """

    device: dict[str, Any]
    entries: dict[str, Timing] = field(default_factory=dict)
    constant_ms: float = 0.0
    scale: float = 1.0
    fit: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "device": self.device,
            "entries": {
                k: {"median_ms": t.median_ms, "iqr_ms": t.iqr_ms, "p20_ms": t.p20_ms, "n": t.n}
                for k, t in sorted(self.entries.items())
            },
            "constant_ms": self.constant_ms,
            "scale": self.scale,
            "fit": self.fit,
        }

    def check_device(self, fp: Mapping[str, Any], source: str) -> None:
        """Refuse a table measured on another device (one-line error naming the difference)."""
        diff = sorted(k for k in set(fp) | set(self.device) if fp.get(k) != self.device.get(k))
        if diff:
            k = diff[0]
            raise LatencyError(
                f"{source}: latency table was measured on another device ({k}: table "
                f"{self.device.get(k)!r}, here {fp.get(k)!r}); run `ghostnas latency build-table` "
                "on this machine (or pass --force-table to use it anyway)"
            )


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def table_from_dict(data: Any, source: str) -> LatencyTable:
    """Validate a parsed table; every defect is a one-line :class:`LatencyError`."""

    def bad(why: str) -> LatencyError:
        return LatencyError(
            f"{source}: not a valid latency table ({why}); rebuild it with `ghostnas latency build-table`"
        )

    if not isinstance(data, dict):
        raise bad("top level is not an object")
    if data.get("format") != TABLE_FORMAT:
        raise bad(f"format {data.get('format')!r}, expected {TABLE_FORMAT}")
    device, entries = data.get("device"), data.get("entries")
    if not isinstance(device, dict) or not device:
        raise bad("missing device fingerprint")
    if not isinstance(entries, dict):
        raise bad("missing entries")
    parsed = {}
    for key, e in entries.items():
        if not (
            isinstance(e, dict)
            and _number(e.get("median_ms"))
            and e["median_ms"] >= 0
            and _number(e.get("iqr_ms"))
            and isinstance(e.get("n"), int)
            and (e.get("p20_ms") is None or (_number(e["p20_ms"]) and e["p20_ms"] >= 0))
        ):
            raise bad(f"entry {key!r} needs numbers median_ms, iqr_ms, p20_ms and an integer n")
        p20 = None if e.get("p20_ms") is None else float(e["p20_ms"])
        # Tables written before block kinds named the Ghost bottleneck ``block|``; it is the same
        # computation as kind ``ghost`` (see ghostnas.latency._parts), so the entry carries over.
        key = "ghost|" + key[len("block|") :] if key.startswith("block|") else key
        parsed[key] = Timing(float(e["median_ms"]), float(e["iqr_ms"]), int(e["n"]), p20)
    constant, scale = data.get("constant_ms", 0.0), data.get("scale", 1.0)
    if not _number(constant) or not _number(scale) or scale <= 0:
        raise bad("constant_ms and scale must be finite numbers, scale > 0")
    fit = data.get("fit", {})
    return LatencyTable(
        dict(device), parsed, float(constant), float(scale), fit if isinstance(fit, dict) else {}
    )


def load_table(path: str | Path, fp: Mapping[str, Any] | None = None, force: bool = False) -> LatencyTable:
    """Read a table file; check it belongs to device ``fp`` unless ``force``.

    Raises:
        LatencyError: the file is missing, unreadable, not valid JSON, not a table, or from
            another device.
    """
    path = Path(path)
    if not path.exists():
        raise LatencyError(
            f"{path}: no latency table for this device; build one with `ghostnas latency build-table`"
        )
    text = read_user_text(path, MAX_TABLE_BYTES, "latency table .json", LatencyError)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise LatencyError(
            f"{path}: corrupt latency table (invalid JSON{where}); rebuild it with `ghostnas latency build-table`"
        ) from None
    table = table_from_dict(data, str(path))
    if fp is not None and not force:
        table.check_device(fp, str(path))
    return table


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def save_table(table: LatencyTable, path: str | Path) -> None:
    """Write the table atomically (readers never see a half-written file)."""
    from ghostnas._io import atomic_write_text

    atomic_write_text(path, json.dumps(table.to_dict(), indent=1) + "\n")


def open_table(
    device: str = "cpu",
    threads: int = 1,
    path: str | Path | None = None,
    *,
    force: bool = False,
    create: bool = False,
    backend: str = DEFAULT_BACKEND,
) -> tuple[LatencyTable, Path]:
    """The table for this device: from ``path`` or the default location.

    Args:
        device: ``"cpu"`` or ``"cuda"``.
        threads: Intra-op threads the table is for (part of the fingerprint).
        path: Table file; None means :func:`default_table_path`.
        force: Use a table from another device anyway.
        create: Start an empty table when the file does not exist (``build-table``); otherwise a
            missing file is a one-line error telling the user to build one.
        backend: ``"torch"`` or ``"onnxruntime"`` (part of the fingerprint).

    Returns:
        The table and the path it belongs at.
    """
    fp = device_fingerprint(device, threads, backend)
    target = Path(path) if path is not None else default_table_path(fp)
    if create and not target.exists():
        return LatencyTable(device=fp), target
    return load_table(target, fp, force=force), target
