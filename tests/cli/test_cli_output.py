"""What a new user meets (issue 13): progress without a terminal, the run history, scores named
by their evaluator, plots in the budget's metric, file modes, ONNX warnings, typo hints."""

from __future__ import annotations

import io
import json
import os
import re
import time

import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import build_parser, main
from ghostnas.cli._progress import ProgressDisplay
from ghostnas.plots import hypervolume_history, pareto_plot_data
from ghostnas.run_folder import open_run, run_score_label
from ghostnas.search import SearchSettings, run_search
from tests.paths import REPO

BASE = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "fake"]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


# --------------------------------------------------------------------------------------------
# progress (items 1 and 5)


def test_search_without_a_terminal_prints_a_start_line_and_a_line_per_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run([*BASE, "--trials", "4"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    start = lines[0]
    for words in ("space tiny", "10M MACs", "224x224", "fake", "ghostnas-runs/search-tiny", "resumes"):
        assert words in start, start
    trial_lines = [line for line in lines if re.match(r"trial \d+ ok: fake score ", line)]
    assert len(trial_lines) == 4, err
    assert "[4/4 trials" in trial_lines[-1]
    assert "left]" in trial_lines[1]  # a time left once two trials of this run are done
    assert "left]" not in trial_lines[0]
    assert "\r" not in err  # no bar redraws in a log file
    assert "run folder" in out and "best" in out  # the summary on stdout


def test_no_progress_keeps_the_start_line_only(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run([*BASE, "--trials", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("ghostnas search: space tiny") and err.count("\n") == 1


def test_a_terminal_bar_exists_from_the_start_and_its_first_rate_is_sane():
    stream = io.StringIO()
    display = ProgressDisplay(total=3, unit="trial", desc="search", stream=stream, tty=True)
    assert "0/3" in stream.getvalue()  # drawn before the first trial finishes
    time.sleep(0.3)
    display.step(1, status="best 0.5")
    display.close()
    text = stream.getvalue()
    rates = [float(r) for r in re.findall(r"([\d.]+)trial/s", text)]
    per_trial = [float(r) for r in re.findall(r"([\d.]+)s/trial", text)]
    # 1 trial in about 0.3 s: at most a few trials per second, never thousands
    assert all(r < 10 for r in rates) and (rates or per_trial), text


def test_a_terminal_without_a_size_gets_plain_lines(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(stream, "fileno", lambda: 99999, raising=False)  # no such terminal
    assert ProgressDisplay(total=2, unit="trial", stream=stream).tty is False


def test_plain_lines_give_an_estimate_only_after_two_steps():
    stream = io.StringIO()
    with ProgressDisplay(total=4, unit="epoch", stream=stream, tty=False) as display:
        display.line("start")
        for i in range(1, 5):
            display.step(i, line=f"epoch {i}")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "start" and len(lines) == 5
    assert "left" not in lines[1] and "left" in lines[2] and "left" not in lines[4]


def test_train_without_a_terminal_prints_epochs_and_the_test_set(tmp_path, capsys):
    out_dir = tmp_path / "run"
    argv = ["train", "ghostnet_tiny", "--data", "synthetic", "--epochs", "2", "--out", str(out_dir)]
    assert _run(argv) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0].startswith("ghostnas train: ghostnet_tiny") and str(out_dir) in lines[0]
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1/2", "epoch 2/2"]
    assert "official test set" in lines[3] and len(lines) == 4
    assert "short run for the full recipe" in out  # why 2 epochs score below the proxy


# --------------------------------------------------------------------------------------------
# the run history (item 2)


def test_a_rerun_keeps_the_first_runs_timing(tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTNAS_FAKE_SLEEP", "0.2")
    out = tmp_path / "run"
    argv = [*BASE, "--trials", "3", "--no-progress", "--out", str(out)]
    assert _run(argv) == 0
    first = json.loads((out / "run.json").read_text())
    assert len(first["runs"]) == 1 and first["runs"][0]["evaluated"] == 3
    assert first["runs"][0]["loop_seconds"] >= 0.6
    assert _run(argv) == 0  # nothing left to do
    again = json.loads((out / "run.json").read_text())
    assert again["runs"][0] == first["runs"][0]
    assert again["runs"][1]["evaluated"] == 0 and again["timing"]["proposals_this_run"] == 0
    assert again["totals"]["loop_seconds"] >= first["runs"][0]["loop_seconds"]
    assert again["totals"]["evaluated"] == 3 and again["totals"]["first_started"] == first["started"]
    summary = (out / "summary.md").read_text()
    assert f"{again['totals']['loop_seconds']:.1f} s in the search loop" in summary
    assert "2 invocation" in summary and first["started"] in summary


def test_a_run_json_without_history_is_read_as_its_first_run(tmp_path):
    out = tmp_path / "run"
    argv = [*BASE, "--trials", "2", "--no-progress", "--out", str(out)]
    assert _run(argv) == 0
    old = json.loads((out / "run.json").read_text())
    legacy = {k: v for k, v in old.items() if k not in ("runs", "totals")}
    legacy["settings"].pop("score_label")
    (out / "run.json").write_text(json.dumps(legacy))
    assert open_run(out).settings["evaluator"] == "fake"  # still readable
    assert run_score_label(legacy["settings"]) == "fake score"
    assert _run(argv) == 0
    runs = json.loads((out / "run.json").read_text())["runs"]
    assert runs[0]["reconstructed"] is True and runs[0]["started"] == old["started"]
    assert runs[0]["loop_seconds"] == old["timing"]["loop_seconds"] and len(runs) == 2


# --------------------------------------------------------------------------------------------
# the score's name (item 3) and the budget's metric (item 4)


def test_synflow_never_says_accuracy(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "synflow", "--trials", "2"]
    assert _run([*argv, "--out", str(out)]) == 0
    printed = "".join(capsys.readouterr())
    assert "synflow score (log)" in printed
    summary = (out / "summary.md").read_text()
    assert "synflow score (log)" in summary
    run = open_run(out)
    label = run_score_label(run.settings)
    data = pareto_plot_data(run.records, run.budget, run.cost_key, label)
    best_meta = json.loads((out / "best.json").read_text())["meta"]
    for text in (printed, summary, label, data.score_label, best_meta["score_label"]):
        assert "accuracy" not in text.lower(), text


def test_a_params_budget_draws_and_measures_in_params(tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["search", "--space", "tiny", "--budget", "70Kparams", "--evaluator", "fake", "--trials", "6"]
    assert _run([*argv, "--no-progress", "--out", str(out)]) == 0
    run = open_run(out)
    assert run.settings["objectives"] == ["accuracy", "params"] and run.cost_key == "params"
    data = pareto_plot_data(run.records, run.budget, run.cost_key)
    assert data.cost_key == "params" and data.budget == 70_000
    assert all(cost <= 70_000 for cost, _, _ in data.front)
    assert all(cost > 70_000 for cost in data.rejected)  # ticks right of the budget line
    history = hypervolume_history(run.records, run.budget, run.cost_key)
    assert history.reference_cost == 70_000
    assert "Hypervolume (reference: score 0, params = the budget" in (out / "summary.md").read_text()


@pytest.mark.parametrize("budget", ["70Kparams", "10M"])
def test_a_single_objective_run_tracks_the_budgets_metric(tmp_path, budget):
    seen = []
    s = SearchSettings(
        budget=parse_budget(budget),
        space="tiny",
        trials=2,
        evaluator="fake",
        objectives="accuracy",
        out=str(tmp_path),
    )
    run_search(s, progress=seen.append)
    assert {p.cost_key for p in seen} == {parse_budget(budget).metric}


# --------------------------------------------------------------------------------------------
# file modes (item 6) and ONNX (item 7)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert _run([*BASE, "--trials", "2", "--no-progress", "--out", str(out)]) == 0
        assert _run(["export", str(out), "--best", "--name", "mine", "--to", str(tmp_path / "lib")]) == 0
    finally:
        os.umask(old)
    files = [p for p in out.iterdir() if p.suffix != ".db" and not p.name.startswith("study.db")]
    files.append(tmp_path / "lib" / "mine.json")
    assert {p.name for p in files} >= {"trials.csv", "summary.md", "best.json", "pareto.png", "run.json"}
    for p in files:
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p


@pytest.mark.slow
def test_onnx_without_weights_warns_and_records_it(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    assert _run(["onnx", "ghostnet_tiny", str(tmp_path / "m.onnx"), "--input-size", "32", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "random initial weights" in err and "--weights" in err
    assert json.loads(out)["random_weights"] is True
    assert (tmp_path / "m.onnx").stat().st_mode & 0o777 == 0o666 & ~_umask()


@pytest.mark.slow
def test_export_onnx_with_a_dynamic_batch_records_it_in_meta(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    out = tmp_path / "run"
    assert _run([*BASE, "--trials", "2", "--no-progress", "--out", str(out)]) == 0
    model = tmp_path / "m.onnx"
    argv = ["export", str(out), "--best", "--name", "mine", "--to", str(tmp_path), "--onnx", str(model)]
    assert _run([*argv, "--input-size", "32", "--dynamic-batch"]) == 0
    assert "random initial weights" in capsys.readouterr().err
    meta = json.loads((tmp_path / "mine.json").read_text())["meta"]["onnx"]
    assert meta["random_weights"] is True and meta["weights"] is None and meta["batch"] == "dynamic"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    # unset ONNX options take the run's data shape: Fashion-MNIST is 1 channel, 10 classes
    assert (meta["in_chans"], meta["num_classes"]) == (1, 10)
    (logits,) = session.run(None, {"input": np.zeros((5, 1, 32, 32), dtype=np.float32)})
    assert logits.shape == (5, 10)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------------------------
# small ones (item 8)


@pytest.mark.parametrize("command", ["search", "train"])
def test_search_and_train_default_to_the_same_device(command):
    extra = ["m"] if command == "train" else []
    assert build_parser().parse_args([command, *extra]).device == "auto"


def test_a_search_records_the_device_it_resolved(tmp_path):
    out = tmp_path / "run"
    assert _run([*BASE, "--trials", "1", "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["device"] in ("cpu", "cuda")


def test_default_folders_are_not_the_repositorys_results():
    from ghostnas.full_training import TrainSettings, default_train_dir
    from ghostnas.search import default_out_dir

    s = SearchSettings(budget=parse_budget("150MFLOPs"))
    assert default_out_dir(s, "ghostnet_v1").parts[0] == "ghostnas-runs"
    assert default_train_dir(TrainSettings("ghostnet_100")).parts[0] == "ghostnas-runs"


# --------------------------------------------------------------------------------------------
# the README (item 9)


def test_readme_opens_with_the_main_job_and_the_test_suite():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == [
        "bash scripts/setup.sh && .venv/bin/ghostnas search --budget 150MFLOPs",
        "bash scripts/setup.sh && .venv/bin/python -m pytest -q",
    ]
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:3] == ["## Quick start", "## A first search, step by step", "## Your own data"]
    assert {"## How it works", "## Measured"} <= set(headings)
    assert "hypervolume.png" in readme and "3:48>24/2se" in readme and '-m "not slow"' in readme


def test_a_search_refused_by_its_settings_leaves_no_handler_behind(tmp_path, capsys):
    """A bad setting found after the arguments parse (a params budget for a detection search, which
    is budgeted in GFLOPs) is one line, and the next search in the process says each line once."""
    import logging

    before = list(logging.getLogger("ghostnas").handlers)
    argv = ["search", "--task", "detect", "--budget", "3Mparams"]
    assert main([*argv, "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert logging.getLogger("ghostnas").handlers == before
    capsys.readouterr()
    good = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "fake", "--trials", "2"]
    assert main([*good, "--out", str(tmp_path / "run"), "--no-progress", "--verbose"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ghostnas search: ")]
    assert err and len(err) == len(set(err)), err
