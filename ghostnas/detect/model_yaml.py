"""The Ultralytics model YAML of a detector candidate: what the proxy trains and what export writes.

The YAML is written with every channel count and repeat explicit (no ``scales``), so what
Ultralytics builds from it does not depend on its scaling rules: the base's layers are copied
from the installed Ultralytics definition (``yolov8.yaml``) with the chosen scale applied here,
and each backbone C2f becomes the candidate's choice. A stock choice stays Ultralytics' own
``C2f`` (with its depth and hidden share ``e``); a Ghost choice is a C2f whose bottlenecks are a
ghostnas block kind, the module :mod:`ghostnas.yolo` makes resolvable in Ultralytics YAML.

Loading such a YAML needs ``import ghostnas.yolo`` first (Ultralytics has no plugin API); the
header of the file says so.
"""

from __future__ import annotations

from typing import Any

from ghostnas.blocks.base import make_divisible
from ghostnas.detect.config import STOCK_KIND, DetectConfig
from ghostnas.detect.cost import base_detector, check_base, hidden_channels, ultralytics_offline
from ghostnas.errors import GhostnasError

__all__ = ["model_dict", "model_yaml_text"]

# Ultralytics classes whose first argument is an output channel count it scales, and whose
# repeat count it scales (the ones a YOLOv8 definition uses).
_SCALED_CHANNELS = ("Conv", "C2f", "SPPF")
_SCALED_REPEATS = ("C2f",)


def _stock_layers(base: str) -> tuple[dict[str, Any], list[list[Any]], list[list[Any]]]:
    """The base's definition with its scale applied: (top-level fields, backbone, head)."""
    ultralytics_offline()
    from ultralytics.nn.tasks import yaml_model_load

    d = yaml_model_load(f"{base}.yaml")
    depth, width, max_channels = d["scales"][d["scale"]]

    def explicit(row: list[Any]) -> list[Any]:
        f, n, m, args = row
        args = list(args)
        if m in _SCALED_REPEATS and n > 1:
            n = max(round(n * depth), 1)
        if m in _SCALED_CHANNELS:
            args[0] = make_divisible(min(args[0], max_channels) * width, 8)
        return [f, n, m, args]

    top = {k: d[k] for k in ("activation",) if k in d}
    return top, [explicit(r) for r in d["backbone"]], [explicit(r) for r in d["head"]]


def model_dict(cfg: DetectConfig, nc: int) -> dict[str, Any]:
    """The candidate as an Ultralytics model definition (a dict ``YOLO`` accepts as YAML)."""
    check_base(cfg.base)
    top, backbone, head = _stock_layers(cfg.base)
    sites = base_detector(cfg.base, nc).sites
    if len(sites) != len(cfg.c2f):
        raise GhostnasError(f"{cfg.short()}: {cfg.base} has {len(sites)} backbone C2f layers")
    for site, choice in zip(sites, cfg.c2f, strict=True):
        f, _n, m, _args = backbone[site.layer]
        if m != "C2f":
            raise GhostnasError(f"{cfg.base} layer {site.layer} is {m}, not C2f")
        if choice.kind == STOCK_KIND:
            # C2f(c1, c2, n, shortcut, g, e): Ultralytics inserts c1 and n itself.
            backbone[site.layer] = [f, choice.depth, "C2f", [site.c2, site.shortcut, 1, choice.width]]
        else:
            module, args = ghost_c2f_entry(
                site.c1, site.c2, choice.kind, choice.depth, hidden_channels(site, choice.width)
            )
            backbone[site.layer] = [f, 1, module, args]
    return {"nc": nc, **top, "backbone": backbone, "head": head}


def ghost_c2f_entry(c1: int, c2: int, kind: str, depth: int, hidden: int) -> tuple[str, list[Any]]:
    """The ``(module, args)`` of a C2f whose bottlenecks are ghostnas block ``kind``:
    :class:`ghostnas.yolo.GhostnasC2f` (``[c1, c2, n, kind, options, e]``), resolvable in
    Ultralytics YAML once :mod:`ghostnas.yolo` is imported."""
    from ghostnas.yolo import C2F_MODULE

    return C2F_MODULE, [c1, c2, depth, kind, {}, hidden / c2]


def model_yaml_text(cfg: DetectConfig, nc: int, names: Any = None, header: str = "") -> str:
    """:func:`model_dict` as YAML text, with a header saying how to load it."""
    import yaml

    lines = [
        f"# {cfg.short()}: made by ghostnas (detection search). Load it after `import ghostnas.yolo`:",
        "#   import ghostnas.yolo; from ultralytics import YOLO; YOLO(THIS_FILE).train(data=...)",
        "# Channels and repeats are explicit (no scales); the neck and head are the base's.",
    ]
    if header:
        lines += [f"# {h}" for h in header.splitlines()]
    body = model_dict(cfg, nc)

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()

    out = [*lines, f"nc: {body['nc']}"]
    out += [f"{k}: {flow(body[k])}" for k in body if k not in ("nc", "backbone", "head")]
    for part in ("backbone", "head"):
        out.append(f"{part}:")
        out += [f"  - {flow(row)}" for row in body[part]]
    if names is not None:
        out.append(f"names: {flow(names)}")
    return "\n".join(out) + "\n"
