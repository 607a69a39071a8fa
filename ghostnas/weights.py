"""Saving and loading model weights as plain state dicts, never as pickled objects.

Weights are read with ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled
objects (code execution on load); a file that is not a plain state dict is rejected with a
one-line error rather than trusted.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from ghostnas._io import atomic_write_bytes
from ghostnas.errors import GhostnasError

__all__ = ["load_weights", "save_weights"]


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` atomically."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict saved by :func:`save_weights` into ``model`` (strict key match)."""
    path = Path(path)
    if not path.is_file():
        raise GhostnasError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GhostnasError(
            f"{path}: not a plain state dict loadable with weights_only=True ({first[:120]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GhostnasError(f"{path}: expected a state dict of tensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GhostnasError(f"{path}: weights do not fit this architecture ({first[:160]})") from None
    return model
