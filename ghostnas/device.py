"""Which torch device a command runs on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

``ghostnas search`` and ``ghostnas train`` take the same ``--device`` values with the same
default, ``auto`` (CUDA when available, else the CPU), decided here once.
"""

from __future__ import annotations

import re

from ghostnas.errors import GhostnasError

__all__ = ["DEVICES_HELP", "DeviceError", "resolve_device"]

DEVICES_HELP = "auto (CUDA when available, else cpu), cpu, cuda or cuda:N"


class DeviceError(GhostnasError):
    """A device name that is malformed or not available on this machine."""


def resolve_device(name: str) -> str:
    """The concrete device for ``name``: ``auto`` becomes ``cuda`` or ``cpu``.

    Raises:
        DeviceError: a malformed name, or CUDA asked for where it is not available.
    """
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name or ""):
        raise DeviceError(f"device {name!r}: use {DEVICES_HELP}")
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r}: CUDA is not available here; use --device cpu or auto")
    return name
