"""ghostnas.detect and the detect evaluator: closed-form GFLOPs against Ultralytics, the detection
spaces, the model YAML, and the short-training proxy."""

from __future__ import annotations

import importlib.util
import math
import random
import tempfile
from pathlib import Path

import pytest
import torch

from ghostnas.detect import C2fChoice, DetectConfig, base_detector, detect_costs
from ghostnas.detect.config import detect_config_from_dict
from ghostnas.detect.model_yaml import model_yaml_text
from ghostnas.detect.space import list_detect_spaces, load_detect_space
from ghostnas.errors import GhostnasError

# Skip without Ultralytics, without importing it while the suite is collected (its import patches
# PIL.Image.open for the whole process).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None, reason="needs ghostnas[yolo]"
)

NC = 10
CONFIGS = {
    "stock": DetectConfig(
        "yolov8n",
        (
            C2fChoice("c2f", 1, 0.5),
            C2fChoice("c2f", 2, 0.5),
            C2fChoice("c2f", 2, 0.5),
            C2fChoice("c2f", 1, 0.5),
        ),
    ),
    "seed-ghost": DetectConfig(
        "yolov8n",
        (
            C2fChoice("ghost", 1, 0.5),
            C2fChoice("ghost", 2, 0.5),
            C2fChoice("ghost", 2, 0.5),
            C2fChoice("ghost", 1, 0.5),
        ),
    ),
    "mixed": DetectConfig(
        "yolov8n",
        (
            C2fChoice("ghost_v2", 2, 0.25),
            C2fChoice("regnet", 1, 0.75),
            C2fChoice("c2f", 3, 0.375),
            C2fChoice("ghost", 1, 0.125),
        ),
    ),
}


def _build(cfg: DetectConfig, nc: int = NC) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    import ghostnas.yolo  # noqa: F401

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(model_yaml_text(cfg, nc))
        return DetectionModel(str(path), nc=nc, verbose=False).eval()


def _conv_macs(model: torch.nn.Module, imgsz: int) -> int:
    total = [0]

    def hook(mod: torch.nn.Conv2d, _i: object, out: torch.Tensor) -> None:
        k = mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += out.shape[2] * out.shape[3] * k * mod.in_channels // mod.groups * mod.out_channels

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, imgsz, imgsz))
    for h in hooks:
        h.remove()
    return total[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_closed_form_cost_matches_the_built_model(name: str) -> None:
    """GFLOPs and params in closed form equal the built model's conv count and parameter count
    exactly, and Ultralytics' own GFLOPs of the fused model (exactly for its own layers; Ghost
    blocks keep their BN, which it also counts)."""
    from ultralytics.utils.torch_utils import get_flops

    cfg = CONFIGS[name]
    costs = detect_costs(cfg, NC)
    model = _build(cfg)
    assert sum(p.numel() for p in model.parameters()) == costs["params"]
    assert 2 * _conv_macs(model, 640) / 1e9 == pytest.approx(costs["gflops"], rel=1e-12)
    ultralytics = get_flops(model.fuse(verbose=False), 640)
    if name == "stock":
        assert ultralytics == pytest.approx(costs["gflops"], rel=1e-9)
    else:
        assert costs["gflops"] < ultralytics < costs["gflops"] * 1.005


def test_stock_yolov8n_matches_the_reference_table() -> None:
    """YOLOv8n nc=1 fused: 8.1 GFLOPs (REFERENCE.md); the stock config's params equal the
    stock model's."""
    base = base_detector("yolov8n", 1)
    costs = detect_costs(base.stock_config(), 1)
    assert round(costs["gflops"], 1) == 8.1
    assert costs["params"] == base.stock_params


def test_config_round_trips() -> None:
    for cfg in CONFIGS.values():
        assert detect_config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GhostnasError, match="kind"):
        C2fChoice("conv", 1, 0.5)


@pytest.mark.parametrize("name", list_detect_spaces())
def test_detect_space_files(name: str) -> None:
    space = load_detect_space(name).bind(NC)
    rng = random.Random(0)
    for _ in range(20):
        cfg = space.sample(rng)
        assert space.params_to_config(space.config_to_params(cfg)) == cfg
    assert space.reference is not None and space.contains(space.reference)
    lo = space.gflops_range()
    cheapest = []
    for site in space.detector().sites:
        options = [C2fChoice(k, d, w) for k in space.kinds for d in space.depths for w in space.widths]
        from ghostnas.detect.cost import c2f_cost

        cheapest.append(min(options, key=lambda c, s=site: c2f_cost(s, c)[0]))
    assert detect_costs(DetectConfig(space.base, tuple(cheapest)), NC)["gflops"] == pytest.approx(
        lo.min_gflops
    )
    samples = [detect_costs(space.sample(rng), NC)["gflops"] for _ in range(50)]
    assert lo.min_gflops <= min(samples) and max(samples) <= lo.max_gflops


def test_task_refuses_a_budget_below_the_smallest_detector(tiny_detect_data: Path) -> None:
    from ghostnas.budget import Budget
    from ghostnas.detect.task import open_detect_task

    with pytest.raises(GhostnasError, match="below the smallest detector"):
        open_detect_task(None, str(tiny_detect_data), Budget("gflops", 1.0))
    task = open_detect_task(None, str(tiny_detect_data), Budget("gflops", 6.5))
    assert task.nc == 10 and task.costs(task.space.reference)["gflops"] > 6.5  # the seed's is over 6.5


# --------------------------------------------------------------------------------------------
# the proxy


@pytest.mark.slow
def test_proxy_trains_and_scores_on_val(
    tiny_detect_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ghostnas.evaluators.detect import DetectProxyEvaluator, DetectRecipe

    monkeypatch.chdir(tmp_path)
    ev = DetectProxyEvaluator(str(tiny_detect_data), NC, DetectRecipe(epochs=1, imgsz=64, batch=4))
    result = ev.evaluate(CONFIGS["seed-ghost"])
    assert 0.0 <= result.score <= 1.0 and math.isfinite(result.score)
    assert set(result.metrics) >= {"map50", "precision", "recall"}
    assert result.metrics["epochs"] == 1 and result.metrics["imgsz"] == 64
    assert list(tmp_path.iterdir()) == []  # Ultralytics' run folder was temporary
    assert ev.with_seed(3).seed == 3


def test_proxy_failures_are_failed_trials(monkeypatch: pytest.MonkeyPatch, tiny_detect_data: Path) -> None:
    from ultralytics.models.yolo.detect import DetectionTrainer

    from ghostnas.evaluators import EvaluationFailed
    from ghostnas.evaluators.detect import DetectProxyEvaluator, DetectRecipe

    ev = DetectProxyEvaluator(str(tiny_detect_data), NC, DetectRecipe(epochs=1, imgsz=64))

    def diverged(self: DetectionTrainer) -> None:
        self.metrics = {"metrics/mAP50-95(B)": float("nan")}

    monkeypatch.setattr(DetectionTrainer, "train", diverged)
    with pytest.raises(EvaluationFailed, match="val map is nan"):
        ev.evaluate(CONFIGS["stock"])

    def oom(self: DetectionTrainer) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(DetectionTrainer, "train", oom)
    with pytest.raises(EvaluationFailed, match="out of memory"):
        ev.evaluate(CONFIGS["stock"])
