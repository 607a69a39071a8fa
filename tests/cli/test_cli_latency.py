"""``ghostnas latency``: bad input is one line on stderr and exit 2; build, predict, measure (:mod:`ghostnas.cli._latency`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from ghostnas.latency import (
    LatencyTable,
    default_table_path,
    device_fingerprint,
    load_table,
    network_parts,
    save_table,
)
from tests.latency.stubs import SMALL, TINY, NetTimer, make_table, run_cli, stub_part_timer

# ------------------------------------------------------------------------------------------
# the command line: bad input is one line on stderr and exit status 2


@pytest.mark.parametrize(
    "argv",
    [
        ["latency", "predict", "ghostnet_tiny"],  # no table yet
        ["latency", "predict", "ghostnet_tiny", "--table", "nowhere.json"],
        ["latency", "predict", "no_such_model"],
        ["latency", "build-table"],  # nothing to cover
        ["latency", "build-table", "--model", "ghostnet_tiny", "--threads", "0"],
        ["latency", "measure", "ghostnet_tiny", "--batch", "x"],
    ],
)
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_corrupt_and_foreign_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 1, "dev')
    rc, _, err = run_cli(["latency", "predict", "ghostnet_tiny", "--table", str(bad)], capsys)
    assert rc == 2 and "corrupt" in err and len(err.strip().splitlines()) == 1

    foreign = tmp_path / "foreign.json"
    save_table(make_table(cpu="Some Other CPU"), foreign)
    rc, _, err = run_cli(["latency", "predict", "ghostnet_tiny", "--table", str(foreign)], capsys)
    assert rc == 2 and "another device" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cli_cuda_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(["latency", "measure", "ghostnet_tiny", "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA is not available" in err


def test_cli_build_then_predict_tiny(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end on ghostnet_tiny at 32px (about two seconds of real, unasserted timing)."""
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    rc, out, err = run_cli(
        ["latency", "build-table", "--model", "ghostnet_tiny", "--input-size", "32", "--fit", "1"], capsys
    )
    assert rc == 0 and "blocks      6 (6 measured now" in out
    # stderr is not a terminal here: progress is whole lines (first and last), no carriage returns
    assert "\r" not in err and "timing blocks: 0/12" in err and "timing blocks: 12/12" in err
    table = load_table(default_table_path(device_fingerprint("cpu", 1)), device_fingerprint("cpu", 1))
    assert set(table.entries) == {p.key for p in network_parts(TINY, SMALL)}
    rc, out, _ = run_cli(["latency", "predict", "ghostnet_tiny", "--input-size", "32", "--json"], capsys)
    info = json.loads(out)
    assert rc == 0
    assert info["latency_ms_predicted"] == pytest.approx(
        table.scale * info["sum_of_parts_ms"] + table.constant_ms
    )
    # a --model table lacks the reference networks' blocks: plainly uncalibrated, and why
    assert info["calibrated"] is False and info["calibration"] is None
    assert "lacks" in info["uncalibrated_reason"]
    assert info["latency_ms_predicted"] == info["latency_ms_uncalibrated"]
    # another input size has other keys: refused without --measure-missing
    rc, _, err = run_cli(["latency", "predict", "ghostnet_tiny", "--input-size", "64"], capsys)
    assert rc == 2 and "lacks" in err

    rc, out, _ = run_cli(
        ["profile", "ghostnet_tiny", "--input-size", "32", "--latency", "--no-calibration", "--json"], capsys
    )
    info = json.loads(out)
    assert rc == 0 and info["latency_ms_predicted"] > 0 and info["latency_ms_measured"] > 0
    assert info["latency_device"] == device_fingerprint("cpu", 1)
    assert not info["latency_calibrated"] and info["latency_uncalibrated_reason"]


def test_cli_build_table_from_a_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ghostnas.space import load_space

    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    argv = ["latency", "build-table", "--space", "tiny", "--samples", "2", "--fit", "1", "--rounds", "1"]
    rc, out, _ = run_cli([*argv, "--input-size", "32", "--table", str(tmp_path / "t.json")], capsys)
    assert rc == 0, out
    table = load_table(tmp_path / "t.json")
    rng = random.Random(0)
    space = load_space("tiny")
    for cfg in (space.sample(rng), space.sample(rng)):
        assert {p.key for p in network_parts(cfg, SMALL)} <= set(table.entries)


def test_cli_profile_latency_without_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    rc, out, err = run_cli(["profile", "ghostnet_tiny", "--latency"], capsys)
    assert rc == 2 and out == "" and "build-table" in err and len(err.strip().splitlines()) == 1


def test_cli_predict_says_how_it_was_calibrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ghostnas.latency._predict as predict_mod

    monkeypatch.setattr(predict_mod, "part_timer", stub_part_timer)
    monkeypatch.setattr(predict_mod, "measure_network", NetTimer(1.5))
    fp = device_fingerprint("cpu", 1)
    save_table(LatencyTable(device=fp, constant_ms=0.25, fit={"rel_rms": 0.05}), default_table_path(fp))
    argv = ["latency", "predict", "ghostnet_tiny", "--measure-missing"]
    rc, out, _ = run_cli([*argv, "--json"], capsys)
    info = json.loads(out)
    assert rc == 0 and info["calibrated"] and not info["calibration"]["from_cache"]
    assert info["calibration"]["factor"] == pytest.approx(1.5) and info["calibration"]["max_age_s"] == 600
    assert info["latency_ms_predicted"] == pytest.approx(1.5 * info["latency_ms_uncalibrated"])
    # every reference network is exactly 1.5x: no calibration spread, only the fit residual
    assert info["uncertainty_ms"] == pytest.approx(0.05 * info["latency_ms_predicted"])
    rc, out, _ = run_cli(argv, capsys)
    assert rc == 0 and "x 1.500" in out and "cached" in out and "reused for 600 s" in out
    rc, out, _ = run_cli([*argv, "--no-calibration"], capsys)
    assert rc == 0 and "UNCALIBRATED" in out


def test_cli_measure_onnxruntime(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(
        ["latency", "measure", "ghostnet_tiny", "--input-size", "32", "--backend", "onnxruntime", "--json"],
        capsys,
    )
    info = json.loads(out)
    assert rc == 0 and info["latency_ms"] > 0 and info["device"]["backend"] == "onnxruntime"
