"""Ghost blocks and ghostnas backbones inside Ultralytics YOLO (optional extra ``ghostnas[yolo]``).

Importing this package makes two layers resolvable in Ultralytics model YAMLs (it puts them in
the ``ultralytics.nn.tasks`` namespace, where ``parse_model`` looks names up; Ultralytics has no
plugin API):

* ``GhostnasC2f`` (:class:`GhostnasC2f`), YAML args ``[c1, c2, n, kind, options, e]``: a C2f
  whose ``n`` bottlenecks are ghostnas blocks of ``kind`` (:func:`c2f_kinds`: ``ghost``,
  ``ghost_v2`` (``options = {dfc: false}`` for the V1 bottleneck), ``ghost_v3``, ``regnet``,
  the stage kind ``g_ghost``, ...) with ``options`` (a mapping, see :mod:`ghostnas.yolo.kinds`).
* ``GhostnasBackbone`` (:class:`GhostnasBackbone`), YAML args ``[config, in_chans]``: any
  ghostnas network (a registered name, a config JSON path, an exported search winner, or the
  config dict itself) returning ``[P3, P4, P5]``, the last tensors at strides 8/16/32, picked by
  three stock ``Index`` rows.

Public API (stable):

* :func:`build_yaml` ``(base, nc=80, replace=None, backbone=None) -> dict`` -- a stock
  ``yolov8{n,s,m,l,x}`` / ``yolo11{n,s,m,l,x}`` with explicit channels, optionally with every
  backbone C2f's bottleneck of kind ``replace`` (``"ghost"``, ``"ghost_v2:dfc=false"``, a
  :class:`C2fBlockSpec`) or with ``backbone`` as its backbone; :func:`write_yaml` ``(model,
  path)`` writes it, :func:`dump_yaml` gives the text, :func:`read_model_yaml` reads one back.
* :func:`profile_yolo` ``(source, nc=None, imgsz=640, latency=False, threads=1) -> dict`` --
  params (unfused, fused), layers and GFLOPs under both Ultralytics conventions, ghostnas'
  closed-form MACs of the Ghost parts, optional CPU latency; :func:`load_detection_model`.
* :func:`parse_kind` / :class:`C2fBlockSpec`, :func:`c2f_kinds`, :func:`backbone_taps`,
  :data:`BASES`, :class:`YoloError` (every user mistake; one line).

Usage::

    import ghostnas.yolo
    from ultralytics import YOLO

    ghostnas.yolo.write_yaml(ghostnas.yolo.build_yaml("yolov8n", nc=1, replace="ghost"), "v8-ghost.yaml")
    YOLO("v8-ghost.yaml").train(data="data.yaml", epochs=100)

Checkpoints saved by Ultralytics load in any process that has imported ``ghostnas.yolo``; a
process without ghostnas refuses them with ``AttributeError: Can't get attribute 'GhostnasC2f'``
(or ``'GhostnasBackbone'``) and never tries to pip-install anything (see
:mod:`ghostnas.yolo.modules`).

Nothing here downloads: unless already set, importing this package sets ``YOLO_OFFLINE=1`` and
``YOLO_AUTOINSTALL=False`` before Ultralytics is imported (set them yourself first to let
Ultralytics fetch datasets or fonts). No ``.pt`` weights are ever loaded from the hub.
"""

from __future__ import annotations

import os

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

try:
    import ultralytics.nn.tasks as _tasks
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"ghostnas.yolo needs Ultralytics ({exc}); pip install 'ghostnas[yolo]'") from None

from ghostnas.yolo.build import (
    BACKBONE_MODULE,
    BASES,
    C2F_MODULE,
    REPLACE_TARGETS,
    base_definition,
    build_yaml,
    dump_yaml,
    parse_replace,
    read_model_yaml,
    write_yaml,
)
from ghostnas.yolo.kinds import (
    TAP_STRIDES,
    BackboneTaps,
    C2fBlockSpec,
    YoloError,
    backbone_cost,
    backbone_taps,
    c2f_kinds,
    load_backbone_config,
    parse_kind,
)
from ghostnas.yolo.modules import GhostnasBackbone, GhostnasC2f
from ghostnas.yolo.profile import CONVENTIONS, load_detection_model, measure_latency, profile_yolo

for _cls in (GhostnasC2f, GhostnasBackbone):
    setattr(_tasks, _cls.__name__, _cls)
del _cls

__all__ = [
    "BACKBONE_MODULE",
    "BASES",
    "C2F_MODULE",
    "CONVENTIONS",
    "REPLACE_TARGETS",
    "TAP_STRIDES",
    "BackboneTaps",
    "C2fBlockSpec",
    "GhostnasBackbone",
    "GhostnasC2f",
    "YoloError",
    "backbone_cost",
    "backbone_taps",
    "base_definition",
    "build_yaml",
    "c2f_kinds",
    "dump_yaml",
    "load_backbone_config",
    "load_detection_model",
    "measure_latency",
    "parse_kind",
    "parse_replace",
    "profile_yolo",
    "read_model_yaml",
    "write_yaml",
]
