"""Detector cost in Ultralytics' convention, in closed form, so over-budget detectors are never built.

The convention is the number detection users compare: **GFLOPs = 2 x conv multiply-accumulates
at imgsz x imgsz (default 640), with the data's class count**, which is exactly what Ultralytics
prints for a fused model (``model.fuse().info()``; checked in the tests: YOLOv8n with 10 classes
gives 8.092416 both ways). Params are the trainable parameters of the unfused model (conv
weights and BN affine parameters), as Ultralytics counts them before fusing.

A candidate changes only the backbone C2f layers, and keeps their input and output channels, so
the rest of the detector (stem, downsampling convs, SPPF, neck, head) has a fixed cost. That
fixed part is measured once per (base, nc, imgsz) by counting the stock model's convs with
forward hooks (:func:`base_detector`, cached); each candidate's C2f layers are then priced in
closed form (:func:`c2f_cost`) from the block registry's own cost of each bottleneck kind. A
proposal costs microseconds to price and nothing is built for it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from ghostnas.blocks.base import Counter
from ghostnas.budget import GFLOPS_CONVENTION
from ghostnas.detect.config import STOCK_KIND, C2fChoice, DetectConfig
from ghostnas.errors import GhostnasError

__all__ = [
    "BASES",
    "DEFAULT_IMGSZ",
    "GFLOPS_CONVENTION",
    "BaseDetector",
    "C2fSite",
    "base_detector",
    "bottleneck_spec",
    "c2f_cost",
    "detect_costs",
    "hidden_channels",
    "ultralytics_offline",
]

DEFAULT_IMGSZ = 640
BASES = ("yolov8n", "yolov8s", "yolov8m", "yolov8l", "yolov8x")


def ultralytics_offline() -> None:
    """Import Ultralytics the one way ghostnas does, through :mod:`ghostnas.yolo`: no network
    (no auto-install of missing packages, no online checks or downloads), Pillow's own
    ``Image.open`` kept, the Ghost modules resolvable in model YAML; plus quiet logs for the
    search's many short runs. Values the user set are kept. A missing Ultralytics is one line."""
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        import ghostnas.yolo  # noqa: F401 -- sets Ultralytics up before anything else imports it
    except ImportError as exc:
        raise GhostnasError(
            f"the detection search needs Ultralytics ({exc}): pip install 'ghostnas[yolo]' or bash scripts/setup.sh"
        ) from None


@dataclass(frozen=True)
class C2fSite:
    """A backbone C2f of the base detector: where a candidate's choice goes.

    Attributes:
        layer: Its index in the Ultralytics layer list.
        c1, c2: Input and output channels (kept by every candidate).
        depth: The base's bottleneck count.
        width: The base's hidden share (``e``, 0.5).
        shortcut: Whether the base's bottlenecks add their input (backbone C2f: yes).
        side: Input side at the cost's imgsz (stride-aligned, so exact for any multiple of 32).
    """

    layer: int
    c1: int
    c2: int
    depth: int
    width: float
    shortcut: bool
    side: int

    def stock(self) -> C2fChoice:
        return C2fChoice(STOCK_KIND, self.depth, self.width)


@dataclass(frozen=True)
class BaseDetector:
    """A stock detector, analysed once: its C2f sites and the fixed cost of everything else.

    Attributes:
        name: ``yolov8n``...
        nc: Classes of the head.
        imgsz: Side the costs are counted at.
        sites: The backbone C2f layers, in order.
        fixed_macs, fixed_params: Conv MACs and params of every layer that is not a site.
        stock_macs, stock_params: The same for the whole stock model.
    """

    name: str
    nc: int
    imgsz: int
    sites: tuple[C2fSite, ...]
    fixed_macs: int
    fixed_params: int
    stock_macs: int
    stock_params: int

    def stock_config(self) -> DetectConfig:
        return DetectConfig(self.name, tuple(s.stock() for s in self.sites))


def check_base(name: str) -> None:
    if name not in BASES:
        raise GhostnasError(f"--base {name!r}: the detection search supports {', '.join(BASES)}")


@functools.lru_cache(maxsize=16)
def base_detector(name: str, nc: int, imgsz: int = DEFAULT_IMGSZ) -> BaseDetector:
    """Analyse the stock ``name`` detector with ``nc`` classes at ``imgsz`` (about a second; cached).

    The model is built from the installed Ultralytics' own definition (no weights), run once on
    a zero image with hooks on every conv, and split into the backbone C2f layers and the rest.
    """
    check_base(name)
    if not 32 <= imgsz <= 4096 or imgsz % 32:
        raise GhostnasError(f"imgsz {imgsz}: must be a multiple of 32 from 32 to 4096")
    ultralytics_offline()
    import torch

    try:
        from ultralytics.nn.modules import C2f
        from ultralytics.nn.tasks import DetectionModel, yaml_model_load
    except ImportError as exc:
        raise GhostnasError(
            f"the detection search needs Ultralytics ({exc}): pip install 'ghostnas[yolo]' or bash scripts/setup.sh"
        ) from None

    definition = yaml_model_load(f"{name}.yaml")
    definition["nc"] = nc  # (passing nc= instead makes Ultralytics log that it overrides the file's)
    model = DetectionModel(definition, verbose=False).eval()
    n_backbone = len(model.yaml["backbone"])
    macs_by_layer: dict[int, int] = {}
    sides: dict[int, int] = {}
    hooks = []
    for i, layer in enumerate(model.model):

        def count(mod: torch.nn.Module, _inp: object, out: torch.Tensor, i: int = i) -> None:
            kh, kw = mod.kernel_size
            macs = out.shape[2] * out.shape[3] * kh * kw * (mod.in_channels // mod.groups) * mod.out_channels
            macs_by_layer[i] = macs_by_layer.get(i, 0) + int(macs)

        def side(_mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], i: int = i) -> None:
            x = inp[0]
            if isinstance(x, torch.Tensor):
                sides[i] = int(x.shape[-1])

        hooks.append(layer.register_forward_pre_hook(side))
        hooks += [m.register_forward_hook(count) for m in layer.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    sites = []
    for i, layer in enumerate(model.model[:n_backbone]):
        if type(layer) is C2f:
            sites.append(
                C2fSite(
                    layer=i,
                    c1=layer.cv1.conv.in_channels,
                    c2=layer.cv2.conv.out_channels,
                    depth=len(layer.m),
                    width=layer.c / layer.cv2.conv.out_channels,
                    shortcut=bool(layer.m[0].add),
                    side=sides[i],
                )
            )
    site_layers = {s.layer for s in sites}
    params = {i: sum(p.numel() for p in layer.parameters()) for i, layer in enumerate(model.model)}
    return BaseDetector(
        name=name,
        nc=nc,
        imgsz=imgsz,
        sites=tuple(sites),
        fixed_macs=sum(v for i, v in macs_by_layer.items() if i not in site_layers),
        fixed_params=sum(v for i, v in params.items() if i not in site_layers),
        stock_macs=sum(macs_by_layer.values()),
        stock_params=sum(params.values()),
    )


def hidden_channels(site: C2fSite, width: float) -> int:
    """A C2f's hidden channels for a width share: Ultralytics' ``int(c2 * e)``."""
    return int(site.c2 * width)


def bottleneck_spec(kind: str) -> Any:
    """The :class:`ghostnas.yolo.C2fBlockSpec` of ``kind`` with the seed's defaults: ``ghost`` is
    the official GhostBottleneck (mid width ``c``, ratio 2, depthwise 3x3 cheap operation, no
    SE), ``ghost_v2`` adds DFC attention, ``regnet`` is the G-Ghost code's RegNet bottleneck with
    group width 1 (a depthwise 3x3). Built and counted by the model library's own blocks."""
    from ghostnas.yolo import C2fBlockSpec

    return C2fBlockSpec.make(kind)


def c2f_cost(site: C2fSite, choice: C2fChoice) -> tuple[int, int]:
    """Conv MACs and params (BN included) of ``site`` rebuilt with ``choice``, in closed form.

    cv1: 1x1 conv ``c1 -> 2c`` + BN; ``depth`` bottlenecks at ``c`` channels; cv2: 1x1 conv
    ``(2 + depth) c -> c2`` + BN; all at the site's side (C2f keeps the resolution).
    """
    c = hidden_channels(site, choice.width)
    hw = site.side * site.side
    counter = Counter()
    counter.conv(site.c1, 2 * c, 1, 1, hw)
    counter.bn(2 * c)
    if choice.kind == STOCK_KIND:  # Ultralytics' Bottleneck(c, c, e=1.0): two 3x3 Conv + BN
        for _ in range(choice.depth):
            for _ in range(2):
                counter.conv(c, c, 3, 1, hw)
                counter.bn(c)
    else:
        spec = bottleneck_spec(choice.kind)
        for _ in range(choice.depth):
            spec.count(counter, c, site.side)
    counter.conv((2 + choice.depth) * c, site.c2, 1, 1, hw)
    counter.bn(site.c2)
    return counter.macs, counter.params


def detect_costs(cfg: DetectConfig, nc: int, imgsz: int = DEFAULT_IMGSZ) -> dict[str, float]:
    """``gflops`` (the budget's metric, :data:`GFLOPS_CONVENTION`), ``macs`` (conv MACs at
    ``imgsz``) and ``params`` (unfused) of a candidate, without building it."""
    base = base_detector(cfg.base, nc, imgsz)
    if len(cfg.c2f) != len(base.sites):
        raise GhostnasError(
            f"config has {len(cfg.c2f)} C2f choices but {cfg.base} has {len(base.sites)} backbone C2f layers"
        )
    macs, params = base.fixed_macs, base.fixed_params
    for site, choice in zip(base.sites, cfg.c2f, strict=True):
        m, p = c2f_cost(site, choice)
        macs += m
        params += p
    return {"gflops": 2 * macs / 1e9, "macs": float(macs), "params": float(params)}
