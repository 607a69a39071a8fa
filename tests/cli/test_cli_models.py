"""``ghostnas models`` and ``ghostnas profile`` from the command line, good and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ghostnas
from ghostnas.cli import main
from ghostnas.config import config_to_dict, save_config
from tests.models.test_cost import PAPER


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse exits for usage errors and --help
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(PAPER))
def test_profile_json_gives_the_paper_counts(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run(capsys, "profile", name, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["params"], data["macs"]) == PAPER[name]


def test_profile_verify_and_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "profile", "ghostnet_tiny", "--input-size", "32", "--num-classes", "10", "--verify", "--json"
    )
    data = json.loads(out)
    assert code == 0
    assert (data["hook_params"], data["hook_macs"]) == (data["params"], data["macs"])
    assert data["input_size"] == 32


def test_profile_a_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    save_config(ghostnas.resolve_config("ghostnet_100").with_width(0.5), path)
    code, out, _ = run(capsys, "profile", str(path), "--json")
    assert code == 0
    assert json.loads(out)["macs"] == PAPER["ghostnet_050"][1]


def test_models_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models")
    assert code == 0 and "ghostnet_100" in out and "141,150,512" in out
    code, out, _ = run(capsys, "models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert (rows["ghostnet_130"]["params"], rows["ghostnet_130"]["macs"]) == PAPER["ghostnet_130"]


def _bad_file(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


def _even_kernel(tmp_path: Path) -> str:
    data = config_to_dict(ghostnas.resolve_config("ghostnet_tiny"))
    data["stages"][0]["blocks"][0]["k"] = 4
    return _bad_file(tmp_path, "even.json", json.dumps(data))


BAD = [
    (lambda t: ["profile", "ghostnet_999"], "unknown model"),
    (lambda t: ["profile", str(t / "missing.json")], "no such config file"),
    (lambda t: ["profile", _bad_file(t, "trunc.json", '{"stages": [')], "invalid JSON"),
    (lambda t: ["profile", _even_kernel(t)], "k = 4"),
    (lambda t: ["profile", _bad_file(t, "list.json", "[]")], "expected an object"),
    (lambda t: ["profile", "ghostnet_tiny", "--input-size", "0"], "--input-size"),
    (lambda t: ["profile", "ghostnet_tiny", "--input-size", "abc"], "not an integer"),
    (lambda t: ["profile", "ghostnet_tiny", "--input-size", "100000"], "input size"),
    (lambda t: ["profile", "ghostnet_tiny", "--num-classes", "-5"], "--num-classes"),
    (lambda t: ["profile"], "required"),
    (lambda t: ["frobnicate"], "invalid choice"),
    (lambda t: [], "required"),
]


@pytest.mark.parametrize(("make_args", "needle"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make_args, needle: str
) -> None:
    code, out, err = run(capsys, *make_args(tmp_path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert needle in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point_and_exit_status(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "ghostnas", "profile", "ghostnet_100", "--json"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["macs"] == PAPER["ghostnet_100"][1]
    bad = subprocess.run(
        [sys.executable, "-m", "ghostnas", "profile", "nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
