"""``ghostnas export``: a run's trial becomes a named model with provenance; bad input writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ghostnas
from ghostnas.cli import main
from ghostnas.cost import measure_cost
from ghostnas.export import ExportError, export_trial
from ghostnas.records import TrialRecord
from ghostnas.run_folder import open_run
from tests._runs import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("export") / "run")


def rows_by_outcome(run_dir: Path, outcome: str) -> list[TrialRecord]:
    return [r for r in open_run(run_dir).records if r.outcome == outcome]


def test_export_best_then_create_model_matches_the_run(run_dir, isolated_home, capsys):
    assert main(["export", str(run_dir), "--best", "--name", "my_net"]) == 0
    assert "my_net" in capsys.readouterr().out
    path = isolated_home / "models" / "my_net.json"
    body = json.loads(path.read_text())
    best = json.loads((run_dir / "best.json").read_text())["meta"]
    assert body["meta"]["trial"] == best["trial"]
    assert body["config"] == json.loads((run_dir / "best.json").read_text())["config"]
    # The model built by name has the params and MACs the run recorded (a hook count on the model).
    model = ghostnas.create_model("my_net")
    measured = measure_cost(model, 224)
    assert measured.params == sum(p.numel() for p in model.parameters()) == best["params"]
    assert measured.macs == best["macs"]
    assert "my_net" in ghostnas.list_models()
    assert main(["models", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["my_net"]["source"] == "user" and listed["my_net"]["macs"] == best["macs"]
    assert main(["profile", "my_net", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == best["params"]


def test_export_trial_n_and_provenance(run_dir, isolated_home):
    ok = rows_by_outcome(run_dir, "ok")
    row = min(ok, key=lambda r: r.accuracy)  # not the best: a plain --trial export
    result = export_trial(run_dir, "picked", trial=row.number)
    assert result.path == isolated_home / "models" / "picked.json"
    cost = ghostnas.count_cost(ghostnas.resolve_config("picked"))
    assert (cost.macs, cost.params) == (row.macs, row.params)
    assert ghostnas.resolve_config("picked") == row.config and row.config.short() == row.arch
    meta = json.loads(result.path.read_text())["meta"]
    for key in ("run_dir", "study", "trial", "metrics", "search_space", "ghostnas_version", "exported"):
        assert meta[key] is not None, key
    assert meta["trial"] == row.number and meta["selected"] == "trial"
    assert meta["metrics"]["accuracy"] == pytest.approx(row.accuracy)
    assert meta["metrics"]["macs"] == row.macs and meta["metrics"]["params"] == row.params
    run_info = json.loads((run_dir / "run.json").read_text())
    assert meta["search_space"]["sha256"] == run_info["settings"]["space_sha256"]
    assert len(meta["search_space"]["sha256"]) == 64
    assert meta["search_space"]["name"] == "tiny"
    assert meta["ghostnas_version"] == ghostnas.__version__
    assert meta["run_dir"] == str(run_dir.resolve())


def test_the_run_folder_alone_gives_every_trials_config(run_dir, tmp_path):
    """trials.csv records each trial's config: export needs neither the study nor the space."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("study.db*"))
    rows = rows_by_outcome(copy, "ok")
    assert all(r.config is not None and r.config.short() == r.arch for r in rows)
    a = export_trial(run_dir, "with_db", trial=rows[-1].number, to=tmp_path / "a")
    b = export_trial(copy, "without_db", trial=rows[-1].number, to=tmp_path / "b")
    assert a.config == b.config == rows[-1].config


def test_a_recorded_config_that_disagrees_with_the_run_is_refused(run_dir, tmp_path):
    """The recorded config is checked against the run's own params and MACs, never trusted blindly."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    text = (copy / "trials.csv").read_text()
    row = rows_by_outcome(copy, "ok")[-1]
    (copy / "trials.csv").write_text(
        text.replace(f"\n{row.number},COMPLETE,ok,{row.macs},", f"\n{row.number},COMPLETE,ok,{row.macs + 1},")
    )
    with pytest.raises(ExportError, match="macs"):
        export_trial(copy, "bad", trial=row.number, to=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_name_clashes_are_refused(run_dir, isolated_home, capsys):
    assert main(["export", str(run_dir), "--best", "--name", "taken"]) == 0
    path = isolated_home / "models" / "taken.json"
    before = path.read_text()
    ok = rows_by_outcome(run_dir, "ok")
    other = next(r.number for r in ok if r.number != json.loads(before)["meta"]["trial"])
    capsys.readouterr()
    assert main(["export", str(run_dir), "--trial", str(other), "--name", "taken"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert path.read_text() == before
    assert main(["export", str(run_dir), "--trial", str(other), "--name", "taken", "--force"]) == 0
    assert json.loads(path.read_text())["meta"]["trial"] == other
    # A shipped name is refused, --force or not: shipped names always win in the registry.
    for extra in ([], ["--force"]):
        assert main(["export", str(run_dir), "--best", "--name", "ghostnet_100", *extra]) == 2
        assert "shipped" in capsys.readouterr().err
    assert not (isolated_home / "models" / "ghostnet_100.json").exists()


def _bad_cases(run_dir: Path) -> dict[str, list[str]]:
    failed = rows_by_outcome(run_dir, "failed")[0].number
    over = rows_by_outcome(run_dir, "over_budget")[0].number
    return {
        "missing run folder": [str(run_dir.parent / "nope"), "--best", "--name", "x"],
        "not a run folder": [str(run_dir.parent), "--best", "--name", "x"],
        "trial does not exist": [str(run_dir), "--trial", "999", "--name", "x"],
        "failed trial": [str(run_dir), "--trial", str(failed), "--name", "x"],
        "over-budget trial": [str(run_dir), "--trial", str(over), "--name", "x"],
        "path in name": [str(run_dir), "--best", "--name", "../x"],
        "space in name": [str(run_dir), "--best", "--name", "Ghost Net"],
        "empty name": [str(run_dir), "--best", "--name", ""],
        "negative trial": [str(run_dir), "--trial", "-1", "--name", "x"],
        "both selectors": [str(run_dir), "--best", "--trial", "0", "--name", "x"],
        "no selector": [str(run_dir), "--name", "x"],
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing run folder",
        "not a run folder",
        "trial does not exist",
        "failed trial",
        "over-budget trial",
        "path in name",
        "space in name",
        "empty name",
        "negative trial",
        "both selectors",
        "no selector",
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(run_dir, isolated_home, tmp_path, capsys, case):
    onnx = tmp_path / "m.onnx"
    assert run_cli(["export", *_bad_cases(run_dir)[case], "--onnx", str(onnx)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    assert not (isolated_home / "models").exists() or not any((isolated_home / "models").iterdir())
    assert not onnx.exists() and not (run_dir.parent / "x.json").exists()


def run_cli(argv: list[str]) -> int:
    """The CLI's exit status, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_library_errors_are_export_errors(run_dir):
    with pytest.raises(ExportError, match="no trial 999"):
        export_trial(run_dir, "x", trial=999)
    with pytest.raises(ExportError, match="bad model name"):
        export_trial(run_dir, "../x")


def test_export_onnx_writes_a_checked_file(run_dir, isolated_home, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    onnx_path = tmp_path / "best.onnx"
    argv = ["export", str(run_dir), "--best", "--name", "with_onnx", "--onnx", str(onnx_path)]
    argv += ["--input-size", "32", "--num-classes", "10", "--in-chans", "1", "--stem-stride", "1"]
    assert main(argv) == 0
    assert "onnx.checker ok" in capsys.readouterr().out
    import onnx

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 32, 32]
    meta = json.loads((isolated_home / "models" / "with_onnx.json").read_text())["meta"]
    assert meta["onnx"]["input_size"] == 32 and meta["onnx"]["num_classes"] == 10
    if meta["onnx"]["max_abs_diff"] is not None:  # onnxruntime installed: outputs were compared
        assert meta["onnx"]["max_abs_diff"] < 1e-4
    # An existing ONNX file is not replaced without --force, and then nothing is written.
    argv[argv.index("with_onnx")] = "second"
    assert main(argv) == 2
    assert not (isolated_home / "models" / "second.json").exists()
