"""Saving and loading model weights as plain state dicts, never as pickled objects.

:func:`load_timm_weights` maps timm's GhostNet V1/V2/V3 state dicts (and the official code's,
which share its layout up to V3's ``bn``/``bn1`` branch names) onto ghostnas models, strictly:
every key used, every shape equal.

Weights are read with ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled
objects (code execution on load); a file that is not a plain state dict is rejected with a
one-line error rather than trusted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ghostnas._io import atomic_write_bytes
from ghostnas.errors import GhostnasError

__all__ = ["load_timm_weights", "load_weights", "map_timm_state_dict", "save_weights"]


def _load_safely(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers only, never
    arbitrary pickles; any failure is one line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GhostnasError(
            f"{path}: not a plain state dict loadable with weights_only=True ({first[:120]})"
        ) from None


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
    state = _load_safely(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GhostnasError(f"{path}: expected a state dict of tensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise GhostnasError(f"{path}: weights do not fit this architecture ({first[:160]})") from None
    return model


# --------------------------------------------------------------------------------------------
# timm and the official GhostNet code

_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")
# thop leaves these counters in some published checkpoints; they are not weights.
_NOT_WEIGHTS = ("total_ops", "total_params")


def map_timm_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a timm ``ghostnet_*`` / ``ghostnetv2_*`` / ``ghostnetv3_*`` state dict (or an official
    GhostNet V1/V2/V3 checkpoint, which has the same layout) to ``model``'s keys, strictly.

    timm groups the bottlenecks as ``blocks.N.M`` (its own stage grouping) and keeps the final
    1x1 conv as the last group ``blocks.L.0.conv`` / ``.bn1``; inside a block the names agree
    with ghostnas'. Blocks are matched in network order, so a config whose stages group the same
    blocks differently maps as well.

    Args:
        state: The source state dict (a ``{"state_dict": ...}`` wrapper is unwrapped).
        model: The ghostnas model the weights are for.

    Returns:
        A state dict with exactly ``model``'s keys.

    Raises:
        GhostnasError: a key left unused or missing, a shape that differs, or a different number
            of blocks; the message names the first one.
    """
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    src = {k: v for k, v in state.items() if not k.endswith(_NOT_WEIGHTS)}
    groups = sorted({int(m.group(1)) for k in src if (m := _TIMM_BLOCK.match(k))})
    if not groups:
        raise GhostnasError("not a timm GhostNet state dict: it has no 'blocks.N.M.' keys")
    last = groups[-1]
    src_blocks = sorted(
        {
            (int(m.group(1)), int(m.group(2)))
            for k in src
            if (m := _TIMM_BLOCK.match(k)) and int(m.group(1)) != last
        }
    )
    ours = model.state_dict()
    n_ours = sum(len(stage) for stage in getattr(model, "stages", []))
    if len(src_blocks) != n_ours:
        raise GhostnasError(
            f"the weights have {len(src_blocks)} bottlenecks, the model {n_ours}; load them into the matching "
            "model (e.g. ghostnet_100 for timm's ghostnet_100)"
        )
    flat = [(si, bi) for si, stage in enumerate(model.stages) for bi in range(len(stage))]
    rename_block = dict(zip(src_blocks, flat, strict=True))
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        m = _TIMM_BLOCK.match(key)
        if m and int(m.group(1)) == last:
            rest = m.group(3)
            layer, _, field = rest.partition(".")
            index = {"conv": "0", "bn1": "1"}.get(layer)
            if m.group(2) != "0" or index is None:
                raise GhostnasError(
                    f"weights key {key!r} is not a timm GhostNet final conv; not a GhostNet state dict?"
                )
            new = f"conv_final.{index}.{field}"
        elif m:
            si, bi = rename_block[(int(m.group(1)), int(m.group(2)))]
            new = f"stages.{si}.{bi}.{m.group(3)}"
        else:
            new = key
        if new not in ours and ".bn." in new:
            # The official GhostNetV3 code names the BN of a conv-BN branch ``bn`` where timm
            # says ``bn1`` (timm renames them on load the same way).
            new = new.replace(".bn.", ".bn1.")
        if new not in ours:
            raise GhostnasError(
                f"weights key {key!r} has no place in this model ({new!r} does not exist); wrong model?"
            )
        if tuple(value.shape) != tuple(ours[new].shape):
            raise GhostnasError(
                f"weights key {key!r} has shape {tuple(value.shape)}, the model's {new!r} {tuple(ours[new].shape)}; "
                "wrong width or variant?"
            )
        out[new] = value
    missing = [k for k in ours if k not in out]
    if missing:
        raise GhostnasError(
            f"the weights have nothing for the model's {missing[0]!r} ({len(missing)} keys in all); wrong variant?"
        )
    return out


def load_timm_weights(model: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load timm's (or the official code's) GhostNet weights into a ghostnas model, strictly.

    Args:
        model: The ghostnas model (e.g. ``create_model("ghostnetv2_100")``).
        source: A state dict, or a file: ``.safetensors`` (needs the safetensors package), or a
            ``.pth``/``.pt``/``.bin`` read with ``weights_only=True``.

    Returns:
        ``model`` with the weights loaded.
    """
    state = source if isinstance(source, Mapping) else _read_state(Path(source))
    model.load_state_dict(map_timm_state_dict(state, model), strict=True)
    return model


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise GhostnasError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise GhostnasError(
                f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
            ) from None
        return load_file(str(path))
    state = _load_safely(path)
    if not isinstance(state, Mapping):
        raise GhostnasError(f"{path}: expected a state dict")
    return state
