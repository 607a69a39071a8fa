"""The fidelity benchmark's bookkeeping: extra reference seeds fold into the table correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import fidelity


def _row(i: int, ref: float, train: float, band: bool) -> dict:
    return {
        "config": {"id": i},
        "scores": {"train": train, "macs": float(i)},
        "reference": {"val_acc": ref},
        "in_band": band,
        "group": "band" if band else "spread",
        "macs224": 1e8,
        "params224": 1e6,
        "short": f"cfg{i}",
    }


def test_rerender_averages_reference_seeds_and_reports_their_agreement(tmp_path: Path) -> None:
    refs = [0.80, 0.82, 0.84, 0.86]
    rows = [_row(i, r, train=r, band=i < 2) for i, r in enumerate(refs)]
    result = {"args": {"ref_seed": 1, "scale": "gpu"}, "rows": rows}
    (tmp_path / "fidelity.json").write_text(json.dumps(result))
    # seed 2 reverses the order of the first two configs and has not reached the last one
    extra = {json.dumps({"id": i}, sort_keys=True): {"val_acc": v} for i, v in enumerate([0.83, 0.81, 0.85])}
    (tmp_path / "ref-seed-2.json").write_text(json.dumps(extra))

    out = fidelity.rerender(tmp_path)
    got = [fidelity.reference_acc(r) for r in out["rows"]]
    assert got == pytest.approx([0.815, 0.815, 0.845, 0.86])
    assert out["reference_seeds"] == [1, 2]
    rep = out["repeatability"]["1 vs 2"]
    assert rep["n"] == 3 and rep["kendall_tau"] == pytest.approx(1 / 3)
    train = out["correlations"]["all"]["train"]
    assert (
        train["n"] == 4
        and train["kendall_tau_ci90"][0] <= train["kendall_tau"] <= train["kendall_tau_ci90"][1]
    )
    assert out["correlations"]["band"]["train"]["n"] == 2
    assert "3 configs with 2 reference seeds, 1 configs with 1 reference seed" in out["note"]
    assert json.loads((tmp_path / "fidelity.json").read_text())["repeatability"]["1 vs 2"] == rep
    md = fidelity.markdown(
        out
        | {
            "scale": "test",
            "data": "synthetic",
            "n_in_band": 2,
            "n_sampled": 4,
            "stopped_early": False,
            "resumed_rows": 0,
            "total_s": 1.0,
            "run": {"cpu": "x", "cpu_count": 1, "torch_threads": 1, "torch": "t", "git_commit": "0" * 40},
            "proxy_recipe": {"lr": 0.1},
            "reference_recipe": {"lr": 0.1},
            "mean_seconds": dict.fromkeys(
                ("train", "synflow", "naswot", "zen", "params", "macs", "reference"), 0.0
            ),
            "args": out["args"]
            | {k: 1 for k in ("space", "seed", "spread", "band", "macs_lo", "macs_hi", "band_lo", "band_hi")}
            | {"val_images": 1, "proxy_images": 2, "proxy_epochs": 1, "proxy_batch": 1, "ref_factor": 10}
            | {"ref_epochs": 1, "ref_batch": 1, "device": "cpu"},
        }
    )
    assert "| 1 vs 2 | +0.333 |" in md and "reference 1, 2 (reference accuracy = mean" in md
