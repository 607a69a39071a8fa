"""``ghostnas search --task detect`` end to end: outputs, export to an Ultralytics YAML that trains,
the budget checked before any training, kill -9 and resume, and bad input."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ghostnas.cli import main
from ghostnas.detect import detect_costs
from ghostnas.evaluators import EvalResult
from ghostnas.search import SearchSettings, run_search
from ghostnas.testing.workers import check_study, load_trials
from tests.paths import REPO

# Skip without Ultralytics, without importing it while the suite is collected (its import patches
# PIL.Image.open for the whole process).
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None, reason="needs ghostnas[yolo]"
)

FAST = ["--epochs", "1", "--image-size", "64"]


@pytest.fixture(scope="module")
def detect_run(tiny_detect_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detect_search") / "run"
    argv = ["search", "--task", "detect", "--base", "yolov8n", "--budget", "6.5GFLOPs", "--data"]
    argv += [str(tiny_detect_data), "--trials", "2", *FAST, "--noise-seeds", "2", "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_detect_search_writes_the_usual_outputs_with_map_as_the_score(detect_run: Path) -> None:
    for name in (
        "trials.csv",
        "pareto.json",
        "best.json",
        "pareto.png",
        "hypervolume.png",
        "summary.md",
        "run.json",
    ):
        assert (detect_run / name).is_file(), name
    info = json.loads((detect_run / "run.json").read_text())
    s = info["settings"]
    assert s["task"] == "detect" and s["evaluator"] == "detect"
    assert s["score_label"] == "proxy mAP50-95 (val)" and s["budget_metric"] == "gflops"
    assert "Ultralytics" in s["budget_convention"] and "640x640" in s["cost_convention"]
    assert info["counts"]["evaluated"] == 2
    assert info["noise"]["measured"]  # the reference was scored at a second seed
    best = json.loads((detect_run / "best.json").read_text())
    assert best["config"]["task"] == "detect" and best["meta"]["gflops"] <= 6.5
    summary = (detect_run / "summary.md").read_text()
    assert "GFLOPs" in summary and "proxy mAP50-95 (val)" in summary
    header = (detect_run / "trials.csv").read_text().splitlines()[0].split(",")
    assert "gflops" in header
    (detect_run / "pareto.png").unlink()
    assert main(["plot", str(detect_run)]) == 0  # the plots read back from the run folder
    assert (detect_run / "pareto.png").is_file()


@pytest.mark.slow
def test_exported_yaml_trains_through_ultralytics(
    detect_run: Path, tiny_detect_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "winner.yaml"
    argv = ["export", str(detect_run), "--best", "--name", "det_winner", "--yolo-yaml", str(path)]
    assert main(argv) == 0
    assert "GFLOPs" in capsys.readouterr().out
    from ultralytics import YOLO

    import ghostnas.yolo  # noqa: F401 -- what a user's script imports first
    from ghostnas.evaluators.detect import offline_ultralytics

    with offline_ultralytics():  # (no font lookup on the web)
        model = YOLO(str(path))
        metrics = model.train(
            data=str(tiny_detect_data),
            epochs=1,
            imgsz=64,
            batch=4,
            workers=0,
            plots=False,
            amp=False,
            device="cpu",
            project=str(tmp_path / "ul"),
            name="t",
            verbose=False,
        )
    assert metrics is not None and 0.0 <= metrics.box.map <= 1.0
    assert main(argv) == 2  # exists: refused without --force


class Recorder:
    """An instant evaluator that remembers what it was asked to score."""

    name = "detect"
    seed = 0

    def __init__(self) -> None:
        self.seen: list[object] = []

    def evaluate(self, cfg: object, report: object = None) -> EvalResult:
        self.seen.append(cfg)
        digest = hashlib.sha256(cfg.short().encode()).digest()  # type: ignore[attr-defined]
        return EvalResult(score=digest[0] / 255)


def test_over_budget_detectors_are_never_trained(tiny_detect_data: Path, tmp_path: Path) -> None:
    from ghostnas.budget import parse_budget

    recorder = Recorder()
    settings = SearchSettings(
        budget=parse_budget("6.8GFLOPs"),  # the space spans 6.24 to 13.6: many proposals are over
        task="detect",
        data=str(tiny_detect_data),
        trials=4,
        sampler="random",
        noise_seeds=0,
        out=str(tmp_path / "run"),
    )
    result = run_search(settings, evaluator=recorder)
    counts = result.run_info["counts"]
    assert counts["over_budget"] > 0 and counts["evaluated"] == 4 == len(recorder.seen)
    assert all(detect_costs(cfg, 10)["gflops"] <= 6.8 for cfg in recorder.seen)  # type: ignore[arg-type]
    shorts = {cfg.short() for cfg in recorder.seen}  # type: ignore[attr-defined]
    rows = (tmp_path / "run" / "trials.csv").read_text().splitlines()
    over = [r for r in rows if ",over_budget," in r]
    assert over and not any(r.split('"')[1] in shorts for r in over)


@pytest.mark.slow
def test_kill_9_mid_trial_then_resume(tiny_detect_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ghostnas", "search", "--task", "detect", "--data", str(tiny_detect_data)]
    cmd += ["--trials", "2", *FAST, "--noise-seeds", "0", "--no-reference", "--sampler", "random"]
    cmd += ["--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    url, study = f"sqlite:///{out / 'study.db'}", out.name
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    running = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and first.poll() is None and running is None:
            time.sleep(0.5)
            if (out / "study.db").exists():
                try:
                    trials = load_trials(url, study)
                except Exception:  # the schema is still being made
                    continue
                running = next((t for t in trials if t.user_attrs.get("outcome") == "evaluating"), None)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert running is not None, (tmp_path / "first.log").read_text()[-2000:]
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = load_trials(url, study)
    assert check_study(after, 2) == []
    dead = next(t for t in after if t.number == running.number)
    assert dead.state.name == "FAIL" and dead.user_attrs.get("outcome") == "worker_died"
    assert any(t.user_attrs.get("retry_of") == running.number and t.params == dead.params for t in after)
    assert json.loads((out / "run.json").read_text())["counts"]["evaluated"] == 2


def _no_val(root: Path) -> None:
    (root / "data.yaml").write_text((root / "data.yaml").read_text().replace("val: images/val\n", ""))


def _bad_label(root: Path) -> None:
    (root / "labels" / "train" / "000000.txt").write_text("10 0.5 0.5 0.2 0.2\n")


@pytest.mark.parametrize(
    "edit, extra, words",
    [
        (lambda root: (root / "data.yaml").unlink(), [], "no such file"),
        (_no_val, [], "no 'val' split"),
        (_bad_label, [], "out of range"),
        (None, ["--budget", "5GFLOPs"], "below the smallest detector"),
        (None, ["--budget", "5Mparams"], "budgeted in GFLOPs"),
    ],
    ids=["missing-data-yaml", "no-val-split", "label-out-of-range", "budget-below-smallest", "params-budget"],
)
def test_bad_input_is_one_line_exit_2_nothing_written(
    tiny_detect_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, extra, words
) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_detect_data.parent, root)
    if edit is not None:
        edit(root)
    out = tmp_path / "run"
    argv = ["search", "--task", "detect", "--data", str(root / "data.yaml"), "--out", str(out), *FAST, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not out.exists()
