"""The search-quality benchmark's plumbing at toy scale: fake proxy, tiny space, synthetic data.

This checks that one command produces the table, the JSON, the plot and the provenance from its
own runs; it measures nothing (the real run is under results/).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import search_quality


@pytest.mark.slow  # the slowest tests of the suite (minutes on a loaded 2-core machine)
def test_benchmark_writes_table_json_plot_and_provenance(tmp_path, capsys):
    out = tmp_path / "sq"
    argv = ["--out", str(out), "--budget", "10M", "--space", "tiny", "--trials", "3", "--evaluator", "fake"]
    argv += ["--data", "synthetic", "--train-epochs", "1", "--train-images", "128", "--seeds", "0", "1", "2"]
    assert search_quality.main(argv) == 0
    for name in ("table.md", "results.json", "search_quality.png", "run.json", "command.txt"):
        assert (out / name).is_file(), name
    res = json.loads((out / "results.json").read_text())
    assert "REDUCED SCALE" in res["scale"]
    assert set(res["searches"]) == {"tpe", "random"}
    for s in res["searches"].values():
        assert s["evaluated"] == 3 and 0 < s["hypervolume"] < 1
    models = {r["model"]: r for r in res["models"]}
    assert set(models) == {"search-tpe-winner", "search-random-winner", "ghostnet_100"}
    assert models["ghostnet_100"]["macs"] == 141_150_512
    for r in models.values():
        assert r["seeds"] == [0, 1, 2] and len(r["test_acc"]) == 3
    table = (out / "table.md").read_text()
    assert "ghostnet_100" in table and "hypervolume" in table and res["verdict"][0] in table
    # the noise-aware search: each search's own noise floor and the winners' standard errors
    assert "proxy noise SD (reference)" in table and "| SE |" in table
    assert all("noise_sd" in s and "noise_threshold" in s for s in res["searches"].values())
    assert len(res["verdict"]) == 3  # both winners vs ghostnet_100, then TPE's winner vs random's
    assert res["verdict"][-1].startswith("search-tpe-winner")
    assert all("standard error" in v for v in res["verdict"] if "same network" not in v)
    assert "search_quality.py" in (out / "command.txt").read_text()
    assert not list(out.rglob("weights.pt"))  # not kept unless --keep-weights
    # A re-run reuses the finished searches and training runs.
    assert search_quality.main(argv) == 0
    assert "reusing the finished run" in capsys.readouterr().out
