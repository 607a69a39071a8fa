"""Model YAMLs with explicit channels: a stock YOLOv8/YOLO11 with Ghost parts put in.

The stock definitions are read from the installed Ultralytics package (``cfg/models``) with a
safe YAML loader, and their compound scaling is applied *here*: every row gets its final
channel count and repeat count, and the file has no ``scales`` table. Ultralytics therefore
builds exactly what the file says (width and depth multipliers of 1, ``make_divisible(c, 8)``
is ``c``), and neither the stock rows nor the injected ghostnas layers, which Ultralytics
would not scale, depend on how its ``parse_model`` scales. The tests check that an unmodified
base built from our YAML has the stock model's parameter count.

Two edits are offered:

* ``replace``: every C2f of the backbone (in YOLO11, its C2f subclass C3k2) becomes a
  :class:`~ghostnas.yolo.GhostnasC2f` with the given bottleneck kind, keeping its width, repeat
  count and hidden-width ratio (the seed tables' edit);
* ``backbone``: the stock backbone up to the stride-32 stage becomes one
  :class:`~ghostnas.yolo.GhostnasBackbone` (its config is written into the YAML, so the file
  stands alone) and three ``Index`` rows for P3/P4/P5; the rest (SPPF, C2PSA) and the head are
  unchanged, with their ``from`` indices renumbered.

One Ultralytics quirk is left to the file name: for YOLO11 it forces C3k2's ``c3k`` on when the
file name says scale m, l or x (``yolo11m-...yaml``), so :func:`write_yaml` refuses a name that
would change an n or s model that way.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ghostnas._io import atomic_write_text
from ghostnas._yaml import parse_yaml
from ghostnas.config import GhostNetConfig, config_to_dict
from ghostnas.yolo.kinds import C2fBlockSpec, YoloError, backbone_taps, load_backbone_config, parse_kind

__all__ = [
    "BACKBONE_MODULE",
    "BASES",
    "C2F_MODULE",
    "REPLACE_TARGETS",
    "base_definition",
    "build_yaml",
    "dump_yaml",
    "parse_replace",
    "read_model_yaml",
    "write_yaml",
]

C2F_MODULE = "GhostnasC2f"
BACKBONE_MODULE = "GhostnasBackbone"
REPLACE_TARGETS = ("backbone-c2f",)
BASES: dict[str, tuple[str, str]] = {
    **{f"yolov8{s}": ("v8/yolov8.yaml", s) for s in "nsmlx"},
    **{f"yolo11{s}": ("11/yolo11.yaml", s) for s in "nsmlx"},
}
"""Base name -> (file under Ultralytics' ``cfg/models``, scale)."""

# Stock modules whose first argument is the output width (scaled); the others keep their input's.
_WIDTH_MODULES = frozenset({"Conv", "C2f", "C3k2", "SPPF", "C2PSA"})
_REPEAT_MODULES = frozenset({"C2f", "C3k2", "C2PSA"})
_PASS_MODULES = frozenset({"nn.Upsample", "Concat", "Detect"})
_C2F_FAMILY = frozenset({"C2f", "C3k2"})
_MAX_YAML_BYTES = 4 << 20


def _ultralytics_models_dir() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise YoloError("ultralytics is not installed; pip install 'ghostnas[yolo]'")
    return Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"


def base_definition(base: str) -> dict[str, Any]:
    """The stock YAML of ``base`` (e.g. ``yolov8n``) as a plain dict, read safely."""
    if base not in BASES:
        raise YoloError(f"unknown base {base!r}; choose one of {', '.join(BASES)}")
    path = _ultralytics_models_dir() / BASES[base][0]
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YoloError(f"cannot read Ultralytics' {path}: {exc.strerror}; reinstall ultralytics") from None
    return _plain(parse_yaml(text, str(path), YoloError))


def _plain(value: Any) -> Any:
    """Line-annotated YAML containers back to plain dicts and lists (for dumping)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _divisible8(x: float) -> int:
    return math.ceil(x / 8) * 8


def _rows(section: Any, where: str) -> list[list[Any]]:
    if not isinstance(section, list) or not all(isinstance(r, list) and len(r) == 4 for r in section):
        raise YoloError(f"{where}: expected a list of [from, repeats, module, args] rows")
    return [list(r) for r in section]


def _scale_rows(base: str, nc: int) -> tuple[list[list[Any]], list[list[Any]], list[int], list[int]]:
    """The base's rows with explicit widths and repeats, each row's channels and stride."""
    d = base_definition(base)
    scale = BASES[base][1]
    depth, width, max_ch = d["scales"][scale]
    backbone, head = _rows(d["backbone"], f"{base} backbone"), _rows(d["head"], f"{base} head")
    ch: list[int] = []
    strides: list[int] = []
    out: list[list[Any]] = []
    for f, n, m, args in [*backbone, *head]:
        args = list(args)
        prev = ch[f] if isinstance(f, int) and ch else 3
        stride = strides[f] if isinstance(f, int) and strides else 1
        n = max(round(n * depth), 1) if n > 1 else n
        if m in _WIDTH_MODULES:
            c2 = _divisible8(min(args[0], max_ch) * width)
            args[0] = c2
            if m == "C3k2" and scale in "mlx":
                args[1:2] = [True]  # what Ultralytics does for m/l/x: C3k blocks everywhere
            if m == "Conv" and len(args) > 2:
                stride *= args[2]
        elif m == "nn.Upsample":
            c2 = prev
            stride //= args[1]
        elif m == "Concat":
            c2 = sum(ch[x] for x in f)
            stride = strides[f[0]]
        elif m == "Detect":
            args = [nc if a == "nc" else a for a in args]
            c2 = 0
        else:
            raise YoloError(
                f"{base}: module {m!r} in Ultralytics' YAML is not one ghostnas knows how to scale"
            )
        ch.append(c2)
        strides.append(stride)
        out.append([f, n, m, args])
    return out[: len(backbone)], out[len(backbone) :], ch, strides


def parse_replace(text: str) -> C2fBlockSpec:
    """``backbone-c2f=KIND[:key=value,...]`` (the CLI's ``--replace``) to the bottleneck spec."""
    target, eq, kind = text.partition("=")
    if not eq or target not in REPLACE_TARGETS:
        raise YoloError(
            f"--replace {text!r}: write TARGET=KIND with TARGET one of {', '.join(REPLACE_TARGETS)}, "
            "e.g. --replace backbone-c2f=ghost"
        )
    return parse_kind(kind)


def build_yaml(
    base: str,
    nc: int = 80,
    replace: C2fBlockSpec | str | None = None,
    backbone: str | os.PathLike[str] | Mapping[str, Any] | GhostNetConfig | None = None,
) -> dict[str, Any]:
    """A YOLO model definition with explicit channels (see the module docstring).

    Args:
        base: ``yolov8{n,s,m,l,x}`` or ``yolo11{n,s,m,l,x}``.
        nc: Number of classes (at least 1).
        replace: Bottleneck kind for every backbone C2f (``"ghost"``, ``"ghost_v2:dfc=false"``,
            ``"regnet"``, ``"g_ghost"``, ... or a :class:`C2fBlockSpec`); None keeps them.
        backbone: A ghostnas network to use as the backbone (registered name, config JSON,
            exported winner, dict or config); None keeps the stock backbone.

    Returns:
        A dict to pass to ``ultralytics.nn.tasks.DetectionModel`` or to :func:`write_yaml`.
    """
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= 100_000:
        raise YoloError(f"nc = {nc!r}: the number of classes must be an integer >= 1")
    if replace is not None and backbone is not None:
        raise YoloError("--replace backbone-c2f edits the stock backbone; --backbone replaces it: use one")
    spec = parse_kind(replace) if isinstance(replace, str) else replace
    rows_b, rows_h, ch, strides = _scale_rows(base, nc)
    meta: dict[str, Any] = {"base": base}
    if spec is not None:
        meta["replace"] = f"backbone-c2f={spec.short()}"
        for i, (f, n, m, args) in enumerate(rows_b):
            if m in _C2F_FAMILY:
                e = args[2] if m == "C3k2" and len(args) > 2 else 0.5
                rows_b[i] = [
                    f,
                    1,
                    C2F_MODULE,
                    [ch[i - 1] if f == -1 else ch[f], args[0], n, spec.kind, spec.options_dict, e],
                ]
    if backbone is not None:
        cfg = load_backbone_config(backbone)
        meta["backbone"] = os.fspath(backbone) if isinstance(backbone, (str, os.PathLike)) else "<config>"
        rows_b, rows_h = _swap_backbone(base, rows_b, rows_h, strides, cfg)
    return {"nc": nc, "ghostnas": meta, "backbone": rows_b, "head": rows_h}


def _swap_backbone(
    base: str, rows_b: list[list[Any]], rows_h: list[list[Any]], strides: list[int], cfg: GhostNetConfig
) -> tuple[list[list[Any]], list[list[Any]]]:
    taps = backbone_taps(cfg)
    names = [r[2] for r in rows_b]
    if "SPPF" not in names:
        raise YoloError(f"{base}: no SPPF row to attach a ghostnas backbone's P5 to")
    sppf = names.index("SPPF")
    old = {}  # old backbone index -> new index
    for new, s in enumerate((8, 16, 32), start=1):
        old[max(i for i in range(sppf) if strides[i] == s)] = new
    new_rows: list[list[Any]] = [[-1, 1, BACKBONE_MODULE, [config_to_dict(cfg), 3]]]
    new_rows += [[0, 1, "Index", [c, k]] for k, c in enumerate(taps.channels)]
    shift = len(new_rows) - sppf
    for i in range(sppf, len(rows_b)):
        old[i] = i + shift
    n_old = len(rows_b)

    def remap(f: Any) -> Any:
        if isinstance(f, list):
            return [remap(x) for x in f]
        if f == -1:
            return f
        if f >= n_old:
            return f + shift
        if f not in old:
            raise YoloError(
                f"{base}: the head reads backbone row {f}, which a ghostnas backbone does not provide"
            )
        return old[f]

    tail = [[remap(f), n, m, a] for f, n, m, a in rows_b[sppf:]]
    head = [[remap(f), n, m, a] for f, n, m, a in rows_h]
    return new_rows + tail, head


def dump_yaml(model: Mapping[str, Any], comment: str = "") -> str:
    """The definition as YAML text, one row per line (flow style), with an optional header."""

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False).strip()

    lines = [f"# {c}" if c else "#" for c in comment.splitlines()]
    lines.append(f"nc: {int(model['nc'])}")
    if "ghostnas" in model:
        lines.append(f"ghostnas: {flow(model['ghostnas'])}")
    for section in ("backbone", "head"):
        lines.append(f"{section}:")
        lines += [f"  - {flow(row)} # {i}" for i, row in _numbered(model, section)]
    return "\n".join(lines) + "\n"


def _numbered(model: Mapping[str, Any], section: str) -> list[tuple[int, list[Any]]]:
    start = 0 if section == "backbone" else len(model["backbone"])
    return [(start + i, row) for i, row in enumerate(model[section])]


_SCALE_RE = re.compile(r"yolo(e-)?v?\d+([nslmx])")


def write_yaml(model: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the definition atomically; refuse a file name that Ultralytics would misread."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise YoloError(f"--out {path}: Ultralytics reads model definitions from .yaml files; name it *.yaml")
    base = model.get("ghostnas", {}).get("base", "")
    named = _SCALE_RE.search(path.stem)
    uses_c3k2 = any(r[2] == "C3k2" for r in [*model["backbone"], *model["head"]])
    if uses_c3k2 and named and named[2] in "mlx" and BASES.get(base, ("", "?"))[1] not in "mlx":
        raise YoloError(
            f"--out {path.name}: Ultralytics reads scale {named[2]!r} from that name and would turn on C3k "
            f"blocks in this {base} model; choose a name without 'yolo11{named[2]}' (e.g. {base}-ghost.yaml)"
        )
    comment = (
        "Written by `ghostnas yolo build`: explicit channels, no scales table (Ultralytics builds it as is).\n"
        "Load with: import ghostnas.yolo; from ultralytics import YOLO; YOLO(this_file)"
    )
    atomic_write_text(path, dump_yaml(model, comment))
    return path


def read_model_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model definition file (ours or any Ultralytics detection YAML), read safely."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise YoloError(
            f"cannot read {path}: {exc.strerror}; give a model .yaml or a base name ({', '.join(BASES)})"
        ) from None
    if size > _MAX_YAML_BYTES:
        raise YoloError(f"{path}: over {_MAX_YAML_BYTES >> 20} MiB; not a model definition")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YoloError(f"cannot read {path}: {exc}") from None
    data = _plain(parse_yaml(text, str(path), YoloError))
    if not isinstance(data, dict) or "backbone" not in data or "head" not in data:
        raise YoloError(f"{path}: not a YOLO model definition (needs 'backbone' and 'head' lists of rows)")
    _rows(data["backbone"], f"{path}: backbone")
    _rows(data["head"], f"{path}: head")
    return data
