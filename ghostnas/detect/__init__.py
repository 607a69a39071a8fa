"""Searching Ghost backbones inside a YOLO detector (``ghostnas search --task detect``).

- :mod:`~ghostnas.detect.config`: a candidate as data (the base and one choice per backbone C2f).
- :mod:`~ghostnas.detect.cost`: its cost in Ultralytics' GFLOPs convention, in closed form.
- :mod:`~ghostnas.detect.space`: the search space, read from ``search_spaces/detect/*.yaml``.
- :mod:`~ghostnas.detect.model_yaml`: the Ultralytics model YAML a candidate trains from.
- :mod:`~ghostnas.detect.task`: what the search needs to run a detection study.
- :mod:`~ghostnas.detect.export`: a run's winner as an Ultralytics model YAML.

The detection data is :mod:`ghostnas.data.detect`; the proxy is :mod:`ghostnas.evaluators.detect`.
"""

from __future__ import annotations

from ghostnas.detect.config import C2F_KINDS, C2fChoice, DetectConfig, detect_config_from_dict
from ghostnas.detect.cost import (
    DEFAULT_IMGSZ,
    GFLOPS_CONVENTION,
    BaseDetector,
    base_detector,
    detect_costs,
)

__all__ = [
    "C2F_KINDS",
    "DEFAULT_IMGSZ",
    "GFLOPS_CONVENTION",
    "BaseDetector",
    "C2fChoice",
    "DetectConfig",
    "base_detector",
    "detect_config_from_dict",
    "detect_costs",
]
