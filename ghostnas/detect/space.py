"""Detection search spaces: which backbone C2f choices a detector search may propose.

A space file (``search_spaces/detect/*.yaml``, or any path) names the base detector and the
choices every backbone C2f takes: bottleneck ``kind`` (from :data:`~ghostnas.detect.config.C2F_KINDS`),
``depth`` and hidden ``width``. Each C2f chooses independently; the parameter names are
``c2f0_kind``, ``c2f0_depth``, ``c2f0_width``, ``c2f1_kind``... (C2f in layer order), so a
trial's stored params replay to the config it evaluated (:meth:`DetectSpace.params_to_config`).

The space is bound to the data's class count and the cost's imgsz (:meth:`DetectSpace.bind`)
before a search, because the base detector's fixed cost depends on both. Its
:meth:`DetectSpace.gflops_range` is exact: the C2f choices are independent, so the smallest
detector is the sum of each site's cheapest choice.

The reference (the network a search evaluates first, and whose seed-to-seed spread is the noise
floor) is every C2f with the reference kind at the base's depth, at the widest width choice
that fits the budget; with ``kind: ghost`` at width 0.5 it is the seed's C2f_GhostBottleneck
YOLOv8n.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ghostnas._io import read_user_text
from ghostnas._yaml import parse_yaml
from ghostnas.blocks.base import SpaceError
from ghostnas.detect.config import C2F_KINDS, STOCK_KIND, C2fChoice, DetectConfig
from ghostnas.detect.cost import (
    BASES,
    DEFAULT_IMGSZ,
    BaseDetector,
    base_detector,
    bottleneck_spec,
    c2f_cost,
    hidden_channels,
)
from ghostnas.errors import GhostnasError

if TYPE_CHECKING:
    import optuna

__all__ = [
    "DEFAULT_DETECT_SPACE",
    "DetectSpace",
    "GflopsRange",
    "detect_space_dir",
    "list_detect_spaces",
    "load_detect_space",
]

DEFAULT_DETECT_SPACE = "yolov8n_ghost"
_MAX_BYTES = 1 << 16
_KEYS = ("task", "name", "description", "base", "imgsz", "c2f", "reference")


@dataclass(frozen=True)
class GflopsRange:
    """Exact smallest and largest detector of a bound space, in :data:`GFLOPS_CONVENTION`."""

    min_gflops: float
    max_gflops: float
    imgsz: int
    nc: int


@dataclass(frozen=True)
class _Widths:
    """The width choices in the shape the search's reference scaling reads (``values()``)."""

    choices: tuple[float, ...]

    def values(self) -> tuple[float, ...]:
        return tuple(sorted(self.choices))


@dataclass(frozen=True)
class DetectSpace:
    """A detector search space; read one with :func:`load_detect_space`.

    Attributes:
        name, description: For listings and outputs.
        base: The base detector (its C2f sites, neck and head).
        kinds, depths, widths: The choices every backbone C2f takes.
        reference_kind: The kind of the reference network (None: no reference).
        imgsz: Where GFLOPs are counted (Ultralytics' default 640).
        nc: The class count the costs assume (set by :meth:`bind`; 80 until then).
        source: Where the space was read from.
    """

    name: str
    description: str
    base: str
    kinds: tuple[str, ...]
    depths: tuple[int, ...]
    widths: tuple[float, ...]
    reference_kind: str | None = "ghost"
    imgsz: int = DEFAULT_IMGSZ
    nc: int = 80
    source: str = field(default="<string>", compare=False)

    # ---------------------------------------------------------------- binding and the base

    def bind(self, nc: int, imgsz: int | None = None, base: str | None = None) -> DetectSpace:
        """This space for ``nc`` classes (and another imgsz or base detector); checks that every
        width choice gives whole channel counts at every C2f of the base."""
        space = dataclasses.replace(
            self, nc=nc, imgsz=imgsz if imgsz is not None else self.imgsz, base=base or self.base
        )
        space.check_widths()
        return space

    def detector(self) -> BaseDetector:
        return base_detector(self.base, self.nc, self.imgsz)

    def check_widths(self) -> None:
        for site in self.detector().sites:
            for w in self.widths:
                c = hidden_channels(site, w)
                if c < 4 or c % 4:
                    raise SpaceError(
                        f"{self.source}: width {w:g} gives {c} hidden channels at the C2f of layer "
                        f"{site.layer} ({site.c2} out); choose widths that give multiples of 4"
                    )
            for kind in self.kinds:
                if kind != STOCK_KIND:
                    bottleneck_spec(kind).resolve(hidden_channels(site, min(self.widths)))

    # ---------------------------------------------------------------- the one builder

    def _build(self, pick: Any) -> DetectConfig:
        choices = []
        for j, _site in enumerate(self.detector().sites):
            kind = pick(f"c2f{j}_kind", self.kinds)
            depth = pick(f"c2f{j}_depth", self.depths)
            width = pick(f"c2f{j}_width", self.widths)
            choices.append(C2fChoice(kind, depth, width))
        return DetectConfig(self.base, tuple(choices))

    def suggest(self, trial: optuna.Trial) -> DetectConfig:
        """Ask Optuna for one choice per parameter; returns the config."""
        return self._build(lambda name, values: trial.suggest_categorical(name, list(values)))

    def sample(self, rng: random.Random) -> DetectConfig:
        return self._build(lambda _name, values: rng.choice(list(values)))

    def params_to_config(self, params: Mapping[str, Any]) -> DetectConfig:
        """Replay a trial's stored params; :class:`SpaceError` when one is missing or no choice."""

        def pick(name: str, values: Sequence[Any]) -> Any:
            if name not in params:
                raise SpaceError(f"parameter {name!r} is missing")
            value = params[name]
            if value not in values:
                raise SpaceError(f"{name} = {value!r} is not a choice of space {self.name}")
            return value

        return self._build(pick)

    def config_to_params(self, cfg: DetectConfig) -> dict[str, Any]:
        """The params that :meth:`params_to_config` turns into ``cfg``."""
        sites = self.detector().sites
        if cfg.base != self.base or len(cfg.c2f) != len(sites):
            raise SpaceError(f"{cfg.short()} is not a detector of space {self.name} (base {self.base})")
        out: dict[str, Any] = {}
        for j, c in enumerate(cfg.c2f):
            for key, value, values in (
                ("kind", c.kind, self.kinds),
                ("depth", c.depth, self.depths),
                ("width", c.width, self.widths),
            ):
                if value not in values:
                    raise SpaceError(f"c2f{j}_{key} = {value!r} is not a choice of space {self.name}")
                out[f"c2f{j}_{key}"] = value
        return out

    def contains(self, cfg: DetectConfig) -> bool:
        try:
            self.config_to_params(cfg)
        except SpaceError:
            return False
        return True

    def parameter_names(self) -> list[str]:
        return [f"c2f{j}_{k}" for j in range(len(self.detector().sites)) for k in ("kind", "depth", "width")]

    def size(self) -> int:
        return (len(self.kinds) * len(self.depths) * len(self.widths)) ** len(self.detector().sites)

    # ---------------------------------------------------------------- the reference and costs

    @property
    def width(self) -> _Widths:
        """The width choices the reference is scaled over (widest that fits the budget first)."""
        return _Widths(self.widths)

    @property
    def reference(self) -> DetectConfig | None:
        """The reference kind in every C2f at the base's depth and width."""
        if self.reference_kind is None:
            return None
        return DetectConfig(
            self.base, tuple(C2fChoice(self.reference_kind, s.depth, s.width) for s in self.detector().sites)
        )

    def reference_at_width(self, width: float) -> DetectConfig | None:
        ref = self.reference
        return None if ref is None else ref.with_width(width)

    def gflops_range(self) -> GflopsRange:
        """The smallest and largest detector of the space, exactly (sites are independent)."""
        base = self.detector()
        lo = hi = base.fixed_macs
        for site in base.sites:
            costs = [
                c2f_cost(site, C2fChoice(k, d, w))[0]
                for k in self.kinds
                for d in self.depths
                for w in self.widths
            ]
            lo += min(costs)
            hi += max(costs)
        return GflopsRange(2 * lo / 1e9, 2 * hi / 1e9, self.imgsz, self.nc)


# --------------------------------------------------------------------------------------------
# reading


def _choices(source: str, raw: Any, key: str, line: int, ok: Any, what: str) -> tuple[Any, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(ok(v) for v in values):
        raise SpaceError(f"{source}:{line}: c2f.{key} must be {what} (or a list of them)")
    if len(set(values)) != len(values):
        raise SpaceError(f"{source}:{line}: c2f.{key} lists a choice twice")
    return tuple(values)


def detect_space_from_dict(data: Any, source: str = "<string>") -> DetectSpace:
    """Validate a parsed space file; errors name the file, the line and the key."""
    if not isinstance(data, dict):
        raise SpaceError(f"{source}: expected a mapping with task: detect, base and c2f")
    line = getattr(data, "key_lines", {})
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise SpaceError(
            f"{source}:{line.get(unknown[0], 0)}: unknown key {unknown[0]!r}; allowed: {', '.join(_KEYS)}"
        )
    if data.get("task") != "detect":
        raise SpaceError(f"{source}: not a detection space (it needs task: detect)")
    base = data.get("base")
    if base not in BASES:
        raise SpaceError(f"{source}:{line.get('base', 0)}: base {base!r}: choose one of {', '.join(BASES)}")
    imgsz = data.get("imgsz", DEFAULT_IMGSZ)
    if isinstance(imgsz, bool) or not isinstance(imgsz, int) or imgsz % 32 or not 32 <= imgsz <= 4096:
        raise SpaceError(f"{source}:{line.get('imgsz', 0)}: imgsz must be a multiple of 32 from 32 to 4096")
    c2f = data.get("c2f")
    if not isinstance(c2f, dict):
        raise SpaceError(f"{source}:{line.get('c2f', 0)}: c2f must be a mapping with kind, depth and width")
    cl = getattr(c2f, "key_lines", {})
    extra = [k for k in c2f if k not in ("kind", "depth", "width")]
    if extra or set(c2f) != {"kind", "depth", "width"}:
        raise SpaceError(f"{source}:{line.get('c2f', 0)}: c2f takes exactly kind, depth and width")
    kinds = _choices(
        source,
        c2f["kind"],
        "kind",
        cl.get("kind", 0),
        lambda v: v in C2F_KINDS,
        f"one of {', '.join(C2F_KINDS)}",
    )
    depths = _choices(
        source,
        c2f["depth"],
        "depth",
        cl.get("depth", 0),
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 12,
        "an integer from 1 to 12",
    )
    widths = _choices(
        source,
        c2f["width"],
        "width",
        cl.get("width", 0),
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 2,
        "a number in (0, 2]",
    )
    ref = data.get("reference", {"kind": "ghost"})
    ref_kind = None
    if ref is not None:
        if not isinstance(ref, dict) or set(ref) != {"kind"} or ref["kind"] not in kinds:
            raise SpaceError(
                f"{source}:{line.get('reference', 0)}: reference must be {{kind: K}} with K one of the c2f kinds, or null"
            )
        ref_kind = ref["kind"]
    name = data.get("name") or Path(source).stem
    return DetectSpace(
        name=str(name),
        description=str(data.get("description", "")),
        base=base,
        kinds=kinds,
        depths=depths,
        widths=tuple(float(w) for w in widths),
        reference_kind=ref_kind,
        imgsz=imgsz,
        source=source,
    )


def detect_space_dir() -> Path:
    """The folder of shipped detection spaces inside the installed package."""
    return Path(str(resources.files("ghostnas") / "search_spaces" / "detect"))


def list_detect_spaces() -> list[str]:
    folder = detect_space_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_detect_space(name_or_path: str | os.PathLike[str]) -> DetectSpace:
    """A shipped detection space by name (``yolov8n_ghost``) or any space file by path.

    Raises:
        SpaceError: unknown name, unreadable file, or invalid content.
    """
    text = os.fspath(name_or_path)
    if text in list_detect_spaces():
        path = detect_space_dir() / f"{text}.yaml"
    elif text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
    else:
        raise GhostnasError(
            f"unknown detection space {text!r}; choose one of {', '.join(list_detect_spaces())} or give a .yaml path"
        )
    body = read_user_text(path, _MAX_BYTES, "detection search-space file", SpaceError)
    data = parse_yaml(body, str(path), SpaceError)
    return detect_space_from_dict(data, str(path))
