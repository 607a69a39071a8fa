"""The fidelity benchmark's bookkeeping: extra reference seeds fold into the table correctly."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import fidelity
from ghostnas.data import synthetic_dataset
from ghostnas.registry import resolve_config
from ghostnas.train import Recipe


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
    (tmp_path / "ref-seed-2.run.json").write_text("[]")  # --add-ref-seed's provenance: not a seed

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
    assert (
        "| 1 vs 2 | +0.333 [" in md
        and "| train | +1.000 [" in md
        and "reference 1, 2 (reference accuracy = mean" in md
    )


def test_inline_reference_seeds_give_per_seed_taus_and_band_repeatability(tmp_path: Path) -> None:
    # the rows as the main run writes them with --ref-seeds 1 2 (no ref-seed-N.json files)
    seed1 = [0.80, 0.82, 0.84, 0.86, 0.88]
    seed2 = [0.81, 0.80, 0.85, 0.87, 0.86]
    rows = []
    for i, (a, b) in enumerate(zip(seed1, seed2, strict=True)):
        row = _row(i, a, train=a, band=i >= 2) | {"ref_seed": "1", "extra_reference": {"2": b}}
        rows.append(row)
    (tmp_path / "fidelity.json").write_text(
        json.dumps({"args": {"ref_seed": 1, "ref_seeds": [1, 2], "scale": "cpu"}, "rows": rows})
    )
    out = fidelity.rerender(tmp_path)
    assert out["reference_seeds"] == [1, 2]
    assert [fidelity.reference_acc(r) for r in out["rows"]] == pytest.approx(
        [(a + b) / 2 for a, b in zip(seed1, seed2, strict=True)]
    )
    by_seed = out["correlations_by_seed"]
    assert set(by_seed) == {"1", "2"}
    assert by_seed["1"]["all"]["train"]["kendall_tau"] == pytest.approx(1.0)  # train == seed 1 here
    assert by_seed["2"]["all"]["train"]["kendall_tau"] == pytest.approx(0.6)  # 8 of 10 pairs agree
    rep, band = out["repeatability"]["1 vs 2"], out["repeatability_band"]["1 vs 2"]
    assert rep["n"] == 5 and rep["kendall_tau"] == pytest.approx(0.6)
    assert rep["kendall_tau_ci90"][0] <= rep["kendall_tau"] <= rep["kendall_tau_ci90"][1]
    assert band["n"] == 3 and band["kendall_tau"] == pytest.approx(1 / 3)


def _args(scale: str, **kw: object) -> argparse.Namespace:
    keys = {k for preset in fidelity.PRESETS.values() for k in preset} - {"n_ref_seeds"}
    defaults = {"proxy_epochs": 2, "ref_factor": 10}  # argparse defaults, not preset values
    return argparse.Namespace(
        **dict.fromkeys(keys) | defaults | {"scale": scale, "ref_seed": 1, "ref_seeds": None} | kw
    )


@pytest.mark.parametrize(
    ("scale", "seeds", "proxy_val"), [("cpu", [1, 2], 2000), ("gpu", [1, 2], 2000), ("cpu-quick", [1], 1000)]
)
def test_presets_fill_unset_flags_only(scale: str, seeds: list[int], proxy_val: int) -> None:
    args = _args(scale, ref_epochs=3)
    fidelity.apply_preset(args)
    assert args.ref_seeds == seeds and args.ref_seed == 1 and args.proxy_val_images == proxy_val
    assert args.ref_epochs == 3  # given on the command line: kept
    proxy, ref = fidelity.recipes(args)
    assert ref.epochs == 3 and ref.val_images == args.val_images and proxy.val_images == proxy_val
    if scale != "cpu-quick":  # the repeatable design: the search's default proxy, a cosine reference
        assert (proxy.train_images, proxy.epochs, proxy.batch_size) == (3072, 2.0, 128)
        assert ref.schedule == "cosine" and ref.train_images == args.ref_images


def test_repeated_reference_seeds_are_refused() -> None:
    with pytest.raises(SystemExit, match="repeats a seed"):
        fidelity.apply_preset(_args("cpu", ref_seeds=[3, 3]))


def test_reference_validated_only_at_the_end_scores_the_same_network() -> None:
    """Cutting the per-epoch validations saves time and changes nothing else: the same seed gives
    the same final accuracy, with one validation instead of one per epoch."""
    ds = synthetic_dataset(n_train=400, n_test=10)
    cfg = resolve_config("ghostnet_tiny")
    recipe = Recipe(epochs=2, train_images=128, val_images=64, batch_size=32, schedule="cosine")
    end = fidelity.train_reference(ds, cfg, recipe, "cpu", 5, "end")
    every = fidelity.train_reference(ds, cfg, recipe, "cpu", 5, "epochs")
    assert len(end["epoch_acc"]) == 1 and len(every["epoch_acc"]) == 2
    assert end["val_acc"] == every["val_acc"] == every["epoch_acc"][-1]
    assert end["images"] == 2 * 128
    diverged = fidelity.train_reference(ds, cfg, replace(recipe, lr=1e8, warmup=0.0), "cpu", 5, "end")
    assert "failed" in diverged and "val_acc" not in diverged


def test_reference_noise_separates_seed_noise_from_the_configs_spread() -> None:
    def rows(pairs: list[tuple[float, float]]) -> list[dict]:
        return [
            _row(i, a, train=a, band=False) | {"ref_seed": "1", "extra_reference": {"2": b}}
            for i, (a, b) in enumerate(pairs)
        ]

    clear = fidelity.reference_noise(rows([(0.80, 0.82), (0.84, 0.86), (0.88, 0.90), (0.92, 0.94)]))
    assert clear["seed_sd"] == pytest.approx(0.02 / 2**0.5)  # each config's two seeds differ by 0.02
    # variance of the means 0.0080/3, less the noise's share of a 2-seed mean (0.0002/2)
    assert clear["config_sd"] == pytest.approx((0.008 / 3 - 0.0001) ** 0.5)
    assert clear["expected_tau_one_seed"] > 0.7 and clear["seeds_needed_for_target"] == 1
    noisy = fidelity.reference_noise(rows([(0.80, 0.84), (0.84, 0.80), (0.82, 0.821), (0.81, 0.83)]))
    assert noisy["expected_tau_one_seed"] < 0.2
    assert noisy["seeds_needed_for_target"] is None or noisy["seeds_needed_for_target"] > 10
    assert fidelity.reference_noise(rows([(0.8, 0.81), (0.82, 0.83)])) == {"n": 2}  # too few to say
