"""What ``ghostnas yolo profile`` reports: params, layers and GFLOPs under each convention.

Published YOLO tables mix conventions, and the numbers move by more than the effect being
reported. Each figure here carries its convention (``conventions`` in the result):

* **params**: every trainable tensor of the model as built, and after Ultralytics'
  ``fuse()`` (which folds batch-norm only into its own ``Conv`` layers; the ghostnas blocks keep
  theirs). ``params_fused_pasted_conv`` is the fused count had the two 1x1 convs of each
  :class:`~ghostnas.yolo.GhostnasC2f` not been folded, as happened with the seed blog's C2f
  wrapper (it used a pasted copy of ``Conv`` that ``fuse()`` does not recognise); it is
  measured on a model built that way, not added up.
* **layers**: ``len(list(model.modules()))`` (Ultralytics up to about 8.2) and the number of
  leaf modules (8.4).
* **GFLOPs** = 2 x MACs / 1e9 at ``imgsz``: the ``old`` count (Ultralytics up to 8.3: thop on one
  stride-sized input, 32x32, scaled by ``(imgsz / 32)^2``) and the installed version's own
  ``get_flops``. They differ where the small probe sees different maps (global pooling,
  attention, DFC's pooled branch).
* **ghost_macs**: ghostnas' closed form (conv and linear multiply-accumulates, the GhostNet
  papers' "FLOPs") of the ghostnas parts only, at ``imgsz``.

Latency is measured on the deploy model (``fuse()``, then the remaining conv/BN pairs inside
the ghostnas blocks folded by :func:`ghostnas.latency.fold_bn`, outputs checked unchanged;
eval mode, batch 1) with :func:`ghostnas.latency.time_module`, the latency module's method.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import thop
import torch
import ultralytics
from torch import nn
from ultralytics.nn.modules import Conv
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import get_flops

from ghostnas.blocks.base import Counter
from ghostnas.latency import DEFAULT_THREADS, MeasureSettings, clock_name, fold_bn, time_module
from ghostnas.yolo.build import BASES, build_yaml, read_model_yaml
from ghostnas.yolo.kinds import YoloError, backbone_cost
from ghostnas.yolo.modules import GhostnasBackbone, GhostnasC2f

__all__ = [
    "CONVENTIONS",
    "deploy_model",
    "gflops_old",
    "load_detection_model",
    "measure_latency",
    "params_pasted_conv",
    "profile_yolo",
]

_PROBE = 256  # Ultralytics' own stride probe size
_MAX_IMGSZ = 4096

CONVENTIONS = {
    "params": "trainable tensors of the model as built (batch-norm affine included)",
    "params_fused": "after Ultralytics' fuse(): BN folded into Ultralytics' Conv layers only; ghostnas blocks keep theirs",
    "params_fused_pasted_conv": "as params_fused with each GhostnasC2f's two 1x1 convs left unfolded "
    "(the seed blog's pasted Conv copy, which fuse() skipped): measured on a model built that way",
    "layers_modules": "len(list(model.modules())): Ultralytics <= 8.2's 'layers'",
    "layers_leaf": "modules without children: Ultralytics 8.4's 'layers'",
    "gflops_old": "GFLOPs = 2 x thop MACs of one 32x32 input x (imgsz/32)^2 / 1e9: Ultralytics <= 8.3's count",
    "gflops": "GFLOPs = Ultralytics {version} get_flops(model, imgsz): its stride-aware thop count (2 x MACs / 1e9)",
    "ghost_macs": "ghostnas closed form: conv+linear multiply-accumulates of the ghostnas parts at imgsz x imgsz "
    "(BN, activations not counted; the GhostNet papers' FLOPs)",
    "latency": "deploy model (fuse(), remaining conv/BN folded, eval, batch 1) on the CPU, ghostnas.latency.time_module: "
    "20th percentile of block means; thread CPU time with 1 thread, else wall time",
}


def load_detection_model(
    source: str | os.PathLike[str] | Mapping[str, Any], nc: int | None = None
) -> tuple[DetectionModel, dict[str, Any]]:
    """Build the detection model of a base name, a model YAML, or a definition dict.

    Returns:
        The model (training mode, unfused) and the definition it was built from.
    """
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise YoloError(f"nc = {nc!r}: the number of classes must be an integer >= 1")
    if isinstance(source, Mapping):
        definition, where = copy.deepcopy(dict(source)), "<definition>"
    elif os.fspath(source) in BASES:
        definition, where = build_yaml(os.fspath(source), nc or 80), os.fspath(source)
    else:
        definition, where = read_model_yaml(source), os.fspath(source)
    if nc is not None:
        definition["nc"] = nc
    if not isinstance(definition.get("nc", 80), int) or definition.get("nc", 80) < 1:
        raise YoloError(
            f"{where}: nc = {definition.get('nc')!r}; the number of classes must be an integer >= 1"
        )
    try:
        model = DetectionModel(copy.deepcopy(definition), ch=3, nc=definition.get("nc"), verbose=False)
    except YoloError as exc:
        raise YoloError(f"{where}: {exc}") from None
    except KeyError as exc:
        raise YoloError(
            f"{where}: unknown module {exc.args[0]!r}; Ultralytics knows torch.nn, its own modules and, after "
            "`import ghostnas.yolo`, GhostnasC2f and GhostnasBackbone"
        ) from None
    except (TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise YoloError(
            f"{where}: Ultralytics could not build this model ({type(exc).__name__}: {text})"
        ) from None
    return model, definition


def gflops_old(model: nn.Module, imgsz: int) -> float:
    """Ultralytics <= 8.3's GFLOPs: thop on one stride-sized input, scaled to ``imgsz``."""
    p = next(model.parameters())
    stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
    probe = torch.empty((1, p.shape[1], stride, stride), device=p.device)
    macs = thop.profile(copy.deepcopy(model), inputs=[probe], verbose=False)[0]
    return float(macs) / 1e9 * 2 * (imgsz / stride) ** 2


class PastedConv(nn.Module):
    """Conv + BN + act that is *not* Ultralytics' ``Conv`` class, so ``fuse()`` leaves it as is:
    the structure of the seed blog's C2f wrapper, for :func:`params_pasted_conv`."""

    def __init__(self, conv: Conv) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv.conv, conv.bn, conv.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def params_pasted_conv(model: DetectionModel) -> int:
    """Fused params of a copy whose GhostnasC2f 1x1 convs are :class:`PastedConv` (unfolded)."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, GhostnasC2f):
            m.cv1, m.cv2 = PastedConv(m.cv1), PastedConv(m.cv2)
    twin.fuse(verbose=False)
    return sum(p.numel() for p in twin.parameters())


def _layers(model: nn.Module) -> tuple[int, int]:
    modules = list(model.modules())
    return len(modules), sum(1 for m in modules if next(m.children(), None) is None)


def ghost_parts(model: DetectionModel, imgsz: int) -> list[dict[str, Any]]:
    """Closed-form params and MACs of every ghostnas layer at ``imgsz`` (sides from a probe)."""
    sides: dict[int, int] = {}
    layers = [m for m in model.model if isinstance(m, (GhostnasC2f, GhostnasBackbone))]
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp: sides.__setitem__(id(mod), inp[0].shape[-1]))
        for m in layers
    ]
    try:
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, _PROBE, _PROBE))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    parts = []
    for m in layers:
        side = sides[id(m)] * imgsz // _PROBE
        if isinstance(m, GhostnasBackbone):
            c = backbone_cost(m.cfg, imgsz)
            what = {"module": "GhostnasBackbone", "arch": m.cfg.short(), "taps": list(m.taps.channels)}
        else:
            c = Counter()
            for _ in m.m:
                m.spec.count(c, m.c, side)
            what = {"module": "GhostnasC2f", "kind": m.spec.short(), "c": m.c, "n": len(m.m)}
        parts.append({"layer": int(m.i), **what, "input_side": side, "params": c.params, "macs": c.macs})
    return parts


def deploy_model(model: DetectionModel) -> tuple[nn.Module, bool]:
    """Fused, eval copy with the ghostnas blocks' conv/BN pairs folded too, when that leaves the
    outputs unchanged (checked); returns the model and whether the extra folding was kept."""
    fused = copy.deepcopy(model).fuse(verbose=False).eval()
    folded = fold_bn(fused)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = fused(x)[0], folded(x)[0]
    same = torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(a.abs().max()))
    return (folded if same else fused), same


def measure_latency(
    model: DetectionModel, imgsz: int, threads: int = DEFAULT_THREADS, settings: MeasureSettings | None = None
) -> dict[str, Any]:
    """CPU latency of the deploy model at ``imgsz``, batch 1 (see :data:`CONVENTIONS`)."""
    deploy, folded = deploy_model(model)
    timing = time_module(deploy, (1, 3, imgsz, imgsz), "cpu", threads, settings or MeasureSettings())
    return {
        "latency_ms": round(timing.latency_ms, 3),
        "latency_median_ms": round(timing.median_ms, 3),
        "latency_iqr_ms": round(timing.iqr_ms, 3),
        "latency_calls": timing.n,
        "latency_imgsz": imgsz,
        "latency_threads": threads,
        "latency_clock": clock_name("cpu", threads),
        "latency_bn_folded": folded,
        "latency_device": "cpu",
    }


def profile_yolo(
    source: str | os.PathLike[str] | Mapping[str, Any],
    nc: int | None = None,
    imgsz: int = 640,
    latency: bool = False,
    threads: int = DEFAULT_THREADS,
) -> dict[str, Any]:
    """Every count of :data:`CONVENTIONS` for a base name, a model YAML or a definition.

    Returns:
        A JSON-ready dict; keys include ``params``, ``params_fused`` and ``gflops``.
    """
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or not 32 <= imgsz <= _MAX_IMGSZ or imgsz % 32:
        raise YoloError(
            f"imgsz = {imgsz!r}: must be a multiple of 32 (the largest stride) in [32, {_MAX_IMGSZ}]"
        )
    model, definition = load_detection_model(source, nc)
    parts = ghost_parts(model, imgsz)
    out: dict[str, Any] = {
        "model": os.fspath(source) if not isinstance(source, Mapping) else "<definition>",
        "ghostnas": definition.get("ghostnas", {}),
        "nc": int(model.yaml["nc"]),
        "imgsz": imgsz,
        "ultralytics": ultralytics.__version__,
        "params": sum(p.numel() for p in model.parameters()),
    }
    out["layers_modules"], out["layers_leaf"] = _layers(model)
    out["gflops"] = round(get_flops(model, imgsz), 4)
    out["gflops_old"] = round(gflops_old(model, imgsz), 4)
    if parts and any(p["module"] == "GhostnasC2f" for p in parts):
        out["params_fused_pasted_conv"] = params_pasted_conv(model)
    fused = copy.deepcopy(model).fuse(verbose=False)
    out["params_fused"] = sum(p.numel() for p in fused.parameters())
    out["layers_modules_fused"], out["layers_leaf_fused"] = _layers(fused)
    out["gflops_fused"] = round(get_flops(fused, imgsz), 4)
    out["gflops_old_fused"] = round(gflops_old(fused, imgsz), 4)
    out["ghost_params"] = sum(p["params"] for p in parts)
    out["ghost_macs"] = sum(p["macs"] for p in parts)
    out["ghost_parts"] = parts
    if latency:
        out |= measure_latency(model, imgsz, threads)
    conventions = dict(CONVENTIONS)
    conventions["gflops"] = conventions["gflops"].format(version=ultralytics.__version__)
    out["conventions"] = {k: v for k, v in conventions.items() if k != "latency" or latency}
    return out
