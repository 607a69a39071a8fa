"""One registry for every named architecture: shipped configs and the user's exported ones.

Named models are JSON config files. Shipped ones live in the package (``ghostnas/model_configs``);
the user's model library is ``$GHOSTNAS_HOME/models`` (default ``~/.ghostnas/models``), which is
where ``ghostnas export`` writes search winners. A name resolves to the shipped model first, so an
exported file can never shadow ``ghostnet_100``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ghostnas.config import BuildSpec, GhostNetConfig, config_from_dict, load_config
from ghostnas.errors import ConfigError, UnknownModelError

__all__ = [
    "ModelEntry",
    "create_model",
    "list_models",
    "model_entries",
    "resolve_config",
    "user_model_dir",
    "valid_model_name",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, its config file, and where it comes from."""

    name: str
    path: Path
    source: str  # "builtin" or "user"


def valid_model_name(name: str) -> bool:
    """Lower-case letters, digits, ``_ . -``; starts with a letter; at most 64 characters."""
    return bool(_NAME_RE.match(name))


def user_model_dir() -> Path:
    """The user's model library: ``$GHOSTNAS_HOME/models``, default ``~/.ghostnas/models``."""
    home = os.environ.get("GHOSTNAS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".ghostnas"
    return base / "models"


def _builtin_dir() -> Path:
    return Path(str(resources.files("ghostnas") / "model_configs"))


def _scan(folder: Path, source: str) -> dict[str, ModelEntry]:
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.json")):
        if valid_model_name(path.stem):
            out[path.stem] = ModelEntry(path.stem, path, source)
    return out


def model_entries() -> dict[str, ModelEntry]:
    """All registered models by name, shipped ones first; a user file never shadows a shipped name."""
    entries = _scan(_builtin_dir(), "builtin")
    for name, entry in _scan(user_model_dir(), "user").items():
        entries.setdefault(name, entry)
    return entries


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style ``pattern``."""
    names = sorted(model_entries())
    return [n for n in names if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def resolve_config(model: str | os.PathLike[str] | GhostNetConfig | Mapping[str, Any]) -> GhostNetConfig:
    """Turn a registered name, a path to a config JSON file, a dict, or a config into a config."""
    if isinstance(model, GhostNetConfig):
        return model
    if isinstance(model, Mapping):
        return config_from_dict(model)
    if not isinstance(model, (str, os.PathLike)):
        raise ConfigError(
            f"cannot make a model from {type(model).__name__}; pass a name, a .json path or a GhostNetConfig"
        )
    text = os.fspath(model)
    entries = model_entries()
    if text in entries:
        return load_config(entries[text].path)
    if text.endswith(".json") or os.sep in text or _exists(text):
        return load_config(text)
    known = sorted(entries)
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    raise UnknownModelError(
        f"unknown model {text!r}: not a registered name ({shown}) nor a config .json file; "
        "see `ghostnas models`"
    )


def _exists(text: str) -> bool:
    try:
        return Path(text).exists()
    except (OSError, ValueError):  # names too long, NUL bytes
        return False


def create_model(
    model: str | os.PathLike[str] | GhostNetConfig | Mapping[str, Any],
    num_classes: int = 1000,
    in_chans: int = 3,
    stem_stride: int = 2,
    *,
    spec: BuildSpec | None = None,
) -> Any:
    """Build a GhostNet from a registered name, a config JSON path, a dict or a config.

    Args:
        model: What to build.
        num_classes: Classifier outputs; 0 gives a feature extractor.
        in_chans: Input image channels.
        stem_stride: 2 as in the paper; 1 for small inputs such as 28x28 or 32x32.
        spec: The build (input size, channels, classes, stem stride) decided once by the caller;
            when given it replaces the three arguments above.

    Returns:
        A :class:`ghostnas.models.GhostNet` in training mode.
    """
    from ghostnas.models.ghostnet import GhostNet

    if spec is not None:
        return GhostNet(resolve_config(model), spec=spec)
    for name, value, lo in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= 1_000_000:
            raise ConfigError(f"{name} = {value!r}: must be an integer >= {lo}")
    if stem_stride not in (1, 2):
        raise ConfigError(f"stem_stride = {stem_stride!r}: must be 1 or 2")
    return GhostNet(
        resolve_config(model), num_classes=num_classes, in_chans=in_chans, stem_stride=stem_stride
    )
