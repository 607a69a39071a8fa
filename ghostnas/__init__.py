"""ghostnas: neural architecture search over the GhostNet design space.

The public API is small: configs (:class:`GhostNetConfig`), the registry (:func:`create_model`,
:func:`list_models`) and the closed-form cost model (:func:`count_cost`). Importing ghostnas does
not import torch; building a model does.
"""

from __future__ import annotations

from ghostnas.config import (
    BlockConfig,
    GhostNetConfig,
    StageConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    make_divisible,
    save_config,
)
from ghostnas.cost import Cost, count_cost
from ghostnas.errors import ConfigError, GhostnasError, UnknownModelError
from ghostnas.registry import create_model, list_models, resolve_config, user_model_dir
from ghostnas.version import VERSION

__version__ = VERSION

__all__ = [
    "BlockConfig",
    "ConfigError",
    "Cost",
    "GhostNetConfig",
    "GhostnasError",
    "StageConfig",
    "UnknownModelError",
    "__version__",
    "config_from_dict",
    "config_to_dict",
    "count_cost",
    "create_model",
    "list_models",
    "load_config",
    "make_divisible",
    "resolve_config",
    "save_config",
    "user_model_dir",
]
