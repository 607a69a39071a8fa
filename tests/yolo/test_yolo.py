"""ghostnas.yolo: Ghost C2f and ghostnas backbones in Ultralytics YOLO, against the seed tables.

The seed tables' conventions (issue 16, REFERENCE.md "YOLO (Ultralytics 8.4)"): YOLOv8 rows are
nc=1, n scale, fused, only the four backbone C2f replaced; their params count the C2f's own 1x1
convs unfolded (the blog's pasted Conv), 960 more than with the stock Conv; GFLOPs are the old
count (<= 8.3). YOLO11m with a GhostNet 1.0 backbone: 14.5M params / 32.0 GFLOPs unfused, beside
the fused baseline's 20.0M / 67.6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Before Ultralytics is imported: no settings file in the real home, nothing fetched.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ghostnas-yolo-settings-"))
os.environ.setdefault("YOLO_OFFLINE", "1")

# ghostnas.yolo before Ultralytics: it keeps Pillow's own Image.open (see ghostnas.yolo), which the
# image-reading tests of other modules, collected into the same process, rely on.
import pytest  # noqa: I001
import torch
import yaml

import ghostnas.yolo as gy
from ghostnas.blocks.base import Counter
from ghostnas.cli import main
from ghostnas.cost import measure_cost
from ghostnas.registry import resolve_config
from ghostnas.yolo.profile import gflops_old, params_pasted_conv

from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel


# kind, seed name, seed params (fused, pasted Conv), seed GFLOPs (old count, fused)
SEED_V8 = [
    ("ghost", "C2f_GhostBottleneck", 2_553_539, 6.8),
    ("ghost_v2:dfc=false", "C2f_GhostBottleneckV2", 2_553_539, 6.8),
    ("regnet", "C2f_g_ghostBottleneck", 2_581_091, 6.9),
]
PASTED_CONV_EXTRA = (
    960  # 8 BN left unfolded in the four C2f's 1x1 convs: 32+32+64+64+128+128+256+256 channels
)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(tmp: Path, name: str, *args: str) -> Path:
    out = tmp / f"{name}.yaml"
    assert main(["yolo", "build", *args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The seed rows' YAMLs, written by `ghostnas yolo build`."""
    tmp = tmp_path_factory.mktemp("yolo")
    out = {"yolov8n": _build(tmp, "v8n", "yolov8n", "--nc", "1")}
    for kind in [k for k, *_ in SEED_V8] + ["ghost_v2"]:
        out[kind] = _build(
            tmp,
            kind.replace(":", "_").replace("=", "_"),
            "yolov8n",
            "--nc",
            "1",
            "--replace",
            f"backbone-c2f={kind}",
        )
    return out


@pytest.fixture(scope="module")
def checkpoints(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each model loaded with ultralytics.YOLO, run, counted, fused, counted, saved; then all
    reloaded in ONE new process (the counts are what the seed-row tests check)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    expected = {}
    for name, yaml_path in built.items():
        model = YOLO(str(yaml_path))
        net = model.model
        net.eval()
        with torch.no_grad():
            assert net(torch.zeros(1, 3, 64, 64))[0].shape[:2] == (1, 4 + 1)
        counts = {
            "c2f": sum(isinstance(m, gy.GhostnasC2f) for m in net.modules()),
            "pasted_conv": params_pasted_conv(net),
        }
        net.fuse(verbose=False)
        counts["gflops_old"] = gflops_old(net, 640)
        pt = tmp / f"{yaml_path.stem}.pt"
        model.save(str(pt))
        expected[name] = {"pt": str(pt), "params": _params(net), **counts}
    script = (
        "import json, sys, torch, ghostnas.yolo\n"
        "from ultralytics import YOLO\n"
        "out = {}\n"
        "for name, pt in json.loads(sys.argv[1]).items():\n"
        "    m = YOLO(pt).model.float().eval()\n"
        "    with torch.no_grad():\n"
        "        y = m(torch.zeros(1, 3, 64, 64))[0]\n"
        "    out[name] = {'params': sum(p.numel() for p in m.parameters()), 'shape': list(y.shape)}\n"
        "print(json.dumps(out))\n"
    )
    pts = json.dumps({k: v["pt"] for k, v in expected.items()})
    proc = subprocess.run(
        [sys.executable, "-c", script, pts], capture_output=True, text=True, timeout=300, cwd=tmp
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    reloaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return {k: {**expected[k], "reloaded": reloaded[k]} for k in expected}


# --------------------------------------------------------------------------------------------
# the seed tables


def test_explicit_yaml_builds_the_stock_model() -> None:
    """No scales table, every channel written out: the same model as Ultralytics' own YAML."""
    for base in ("yolov8n", "yolo11n"):
        ours = DetectionModel(gy.build_yaml(base), verbose=False)
        stock = DetectionModel(f"{base}.yaml", verbose=False)
        assert _params(ours) == _params(stock)
        assert "scales" not in gy.build_yaml(base)


@pytest.mark.parametrize("base", list(gy.BASES))
def test_every_base_gets_explicit_channels_and_its_four_backbone_c2f_replaced(base: str) -> None:
    model = gy.build_yaml(base, nc=3, replace="ghost")
    rows = model["backbone"] + model["head"]
    assert "scales" not in model and all(r[1] == 1 or r[2] in ("C2f", "C3k2", "C2PSA") for r in rows)
    widths = [r[3][0] for r in rows if r[2] in ("Conv", "C2f", "C3k2", "SPPF", "C2PSA")]
    assert all(isinstance(w, int) and w % 8 == 0 for w in widths)
    ghost = [r for r in model["backbone"] if r[2] == gy.C2F_MODULE]
    assert len(ghost) == 4 and all(r[3][3] == "ghost" for r in ghost)
    assert rows[-1][2] == "Detect" and rows[-1][3] == [3]
    assert yaml.safe_load(gy.dump_yaml(model))["backbone"] == model["backbone"]


def test_fair_baseline_yolov8n_nc1(checkpoints: dict) -> None:
    ck = checkpoints["yolov8n"]
    assert (ck["params"], round(ck["gflops_old"], 1), ck["c2f"]) == (3_005_843, 8.1, 0)
    assert ck["reloaded"] == {"params": 3_005_843, "shape": [1, 5, 84]}


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "seed_name", "seed_params", "seed_gflops"), SEED_V8)
def test_yolov8_seed_rows(
    kind: str, seed_name: str, seed_params: int, seed_gflops: float, built: dict[str, Path], checkpoints: dict
) -> None:
    ck = checkpoints[kind]
    assert ck["c2f"] == 4, "only the backbone C2f"
    assert ck["pasted_conv"] == seed_params, seed_name
    assert ck["params"] == seed_params - PASTED_CONV_EXTRA  # stock Conv: its BN folds
    assert round(ck["gflops_old"], 1) == seed_gflops
    assert ck["reloaded"] == {"params": ck["params"], "shape": [1, 5, 84]}


def test_dfc_off_is_the_v1_bottleneck_and_dfc_on_adds_its_branch() -> None:
    v1, off, on = (gy.parse_kind(k).resolve(16) for k in ("ghost", "ghost_v2:dfc=false", "ghost_v2"))
    assert v1 == off
    assert on.blocks[0].kind == "ghost_v2"


@pytest.mark.slow
def test_yolo11m_ghostnet_backbone_seed_row(tmp_path: Path) -> None:
    path = _build(tmp_path, "g11m", "yolo11m", "--nc", "1", "--backbone", "ghostnet_100")
    yolo = YOLO(str(path))
    model = yolo.model
    backbone = model.model[0]
    assert isinstance(backbone, gy.GhostnasBackbone) and backbone.channels == [40, 112, 960]
    assert round(_params(model) / 1e6, 1) == 14.5  # seed: 14.5M, unfused
    assert round(gflops_old(model, 640), 1) == 32.0  # seed: 32.0, unfused, old count
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64))[0].shape == (1, 5, 84)
    model.fuse(verbose=False)
    pt = tmp_path / "g11m.pt"
    yolo.save(str(pt))
    script = "import ghostnas.yolo, sys\nfrom ultralytics import YOLO\nprint(sum(p.numel() for p in YOLO(sys.argv[1]).model.parameters()))"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(pt)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split()[-1]) == _params(model)  # fused, as saved
    baseline = DetectionModel(gy.build_yaml("yolo11m", nc=1), verbose=False).fuse(verbose=False)
    assert _params(baseline) == 20_030_803 and round(gflops_old(baseline, 640), 1) == 67.6


# --------------------------------------------------------------------------------------------
# checkpoints without ghostnas


@pytest.mark.slow
def test_checkpoint_without_ghostnas_refuses_without_installing(checkpoints: dict, tmp_path: Path) -> None:
    script = "import sys\nsys.modules['ghostnas'] = None\nfrom ultralytics import YOLO\nYOLO(sys.argv[1])"
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, checkpoints["ghost"]["pt"]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "AutoUpdate" not in text and "pip" not in text.lower().replace("pipeline", "")
    assert "Can't get attribute 'GhostnasC2f'" in proc.stderr.strip().splitlines()[-1]


def test_importing_ghostnas_yolo_keeps_pillow_errors(tmp_path: Path) -> None:
    """Ultralytics' Image.open wrapper would try to install pi-heif on an unreadable image."""
    import importlib.util

    from PIL import Image, UnidentifiedImageError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    if importlib.util.find_spec("pi_heif") is None:
        assert Image.open.__module__ == "PIL.Image"
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)


# --------------------------------------------------------------------------------------------
# blocks and backbones: the library's own, counted in closed form


@pytest.mark.parametrize("kind", gy.c2f_kinds())
def test_every_c2f_kind_builds_the_library_block_and_its_closed_form_is_exact(kind: str) -> None:
    spec = gy.parse_kind(kind)
    block = spec.build(16).eval()
    with torch.no_grad():
        assert block(torch.randn(2, 16, 8, 8)).shape == (2, 16, 8, 8)
    c = Counter()
    spec.count(c, 16, 8)
    hooks = measure_cost(block, input_size=8, in_chans=16)
    if kind != "ghost_v3":  # counted deployed; built in its training form (re-parameterisable)
        assert (c.params, c.macs) == (hooks.params, hooks.macs)


@pytest.mark.parametrize(
    ("name", "channels"),
    [("ghostnet_100", (40, 112, 960)), ("ghostnet_050", (20, 56, 480)), ("g_ghost_regnetx_032", None)],
)
def test_backbone_taps_last_tensor_of_each_stride(name: str, channels: tuple[int, int, int] | None) -> None:
    cfg = resolve_config(name)
    backbone = gy.GhostnasBackbone(name).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    assert [f.shape[1] for f in feats] == backbone.channels
    if channels is not None:
        assert tuple(backbone.channels) == channels
    cost = gy.backbone_cost(cfg, 64)
    hooks = measure_cost(backbone, input_size=64)
    assert (cost.params, cost.macs) == (hooks.params, hooks.macs)


def test_backbone_accepts_an_exported_config_file(tmp_path: Path) -> None:
    from ghostnas.config import save_config

    path = tmp_path / "winner.json"
    save_config(resolve_config("ghostnet_050"), path, meta={"source": "test"})
    model = gy.build_yaml("yolo11n", nc=2, backbone=str(path))
    assert model["backbone"][0][2] == "GhostnasBackbone" and model["backbone"][1:4] == [
        [0, 1, "Index", [20, 0]],
        [0, 1, "Index", [56, 1]],
        [0, 1, "Index", [480, 2]],
    ]


# --------------------------------------------------------------------------------------------
# the commands


@pytest.fixture(scope="module")
def profiled(built: dict[str, Path]) -> dict:
    """`ghostnas yolo profile --json` of the C2f_GhostBottleneck row at 320 (to keep it quick)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["yolo", "profile", str(built["ghost"]), "--imgsz", "320", "--json"]) == 0
    return json.loads(buf.getvalue())


def test_profile_json_keys_and_conventions(profiled: dict) -> None:
    info = profiled
    assert {"params", "params_fused", "gflops", "gflops_old", "layers_modules", "layers_leaf"} <= set(info)
    assert info["params_fused_pasted_conv"] == 2_553_539  # the seed's count, whatever imgsz
    assert info["params_fused"] == 2_553_539 - PASTED_CONV_EXTRA and info["params"] > info["params_fused"]
    assert set(info["conventions"]) >= {"params", "params_fused", "gflops", "gflops_old", "ghost_macs"}
    assert [p["input_side"] for p in info["ghost_parts"]] == [80, 40, 20, 10]
    assert info["ghost_macs"] == sum(p["macs"] for p in info["ghost_parts"]) > 0


def test_profile_text_says_every_convention(profiled: dict) -> None:
    from ghostnas.cli._yolo import profile_lines

    out = "\n".join(profile_lines(profiled))
    for label in (
        "fused",
        "pasted-Conv",
        "<= 8.2",
        "<= 8.3",
        "get_flops at 320",
        "closed form",
        "GhostnasC2f",
    ):
        assert label in out


@pytest.mark.slow
def test_latency_measures_the_deploy_model(built: dict[str, Path]) -> None:
    from ghostnas.latency import MeasureSettings

    model = YOLO(str(built["ghost_v2"])).model
    info = gy.measure_latency(model, 64, settings=MeasureSettings(warmup_s=0.0, blocks=3, min_block_s=0.001))
    assert info["latency_ms"] > 0 and info["latency_imgsz"] == 64 and info["latency_threads"] == 1
    assert info["latency_bn_folded"]  # the Ghost blocks' BN folded too, outputs checked unchanged


@pytest.mark.slow
def test_train_one_epoch_offline_and_reload_best(built: dict[str, Path], tmp_path: Path) -> None:
    """`YOLO(yaml).train(data=...)` as the README says, on 4 synthetic images; nothing fetched."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for i in range(4):
            img = (rng.random((64, 64, 3)) * 255).astype("uint8")
            img[16:48, 16:48] = 255
            Image.fromarray(img).save(tmp_path / "images" / split / f"{i}.jpg")
            (tmp_path / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames:\n  0: box\n")
    model = YOLO(str(built["ghost"]))
    model.train(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=4,
        workers=0,
        plots=False,
        device="cpu",
        amp=False,
        project=str(tmp_path / "runs"),
        name="t",
        exist_ok=True,
        verbose=False,
        val=False,
    )
    last = tmp_path / "runs" / "t" / "weights" / "last.pt"
    assert sum(isinstance(m, gy.GhostnasC2f) for m in YOLO(str(last)).model.modules()) == 4


BAD_BUILD = [
    (["yolov9n"], "unknown base"),
    (["yolov8n", "--replace", "backbone-c2f=nope"], "unknown C2f block kind"),
    (["yolov8n", "--replace", "neck=ghost"], "TARGET=KIND"),
    (["yolov8n", "--replace", "backbone-c2f=ghost:k"], "key=value"),
    (["yolov8n", "--replace", "backbone-c2f=regnet:k=3"], "unknown option 'k'"),
    (["yolov8n", "--nc", "0"], "--nc"),
    (["yolov8n", "--backbone", "ghostnet_tiny"], "no feature map at stride"),
    (["yolov8n", "--backbone", "no_such_model"], "unknown model"),
    (["yolov8n", "--backbone", "ghostnet_050", "--replace", "backbone-c2f=ghost"], "use one"),
]


@pytest.mark.parametrize(("args", "message"), BAD_BUILD)
def test_build_bad_input_one_line_exit_2_nothing_written(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.yaml"
    assert _exit_status(["yolo", "build", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def _exit_status(argv: list[str]) -> int:
    """The CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_build_refuses_a_name_ultralytics_would_read_as_another_scale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "yolo11m-small.yaml"
    assert main(["yolo", "build", "yolo11n", "--out", str(out)]) == 2
    assert "scale 'm'" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nc: 1\nbackbone: [[-1, 1, Conv, [16, 3, 2]]\n", "line"),
        ("a: 1\n", "not a YOLO model definition"),
        ("!!python/object/apply:os.system [echo hi]\n", "no tags"),
        ("nc: 0\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]]\n", "nc = 0"),
        (
            "nc: 1\nbackbone:\n  - [-1, 1, Nope, [16]]\nhead:\n  - [[0], 1, Detect, [nc]]\n",
            "unknown module 'Nope'",
        ),
        (
            "nc: 1\nbackbone:\n  - [-1, 1, GhostnasBackbone, [ghostnet_tiny, 3]]\nhead:\n  - [[0], 1, Detect, [nc]]\n",
            "no feature map at stride",
        ),
    ],
)
def test_profile_malformed_yaml_one_line_exit_2(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    assert main(["yolo", "profile", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
