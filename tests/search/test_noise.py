"""The noise floor: its statistics, the distinguishability rule, and how a search records it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from ghostnas.budget import parse_budget
from ghostnas.evaluators import FakeEvaluator
from ghostnas.noise import (
    DISTINGUISH_K,
    distinguishable,
    floor_from_trials,
    mark_front,
    noise_floor,
    probe_seeds,
    reseed,
)
from ghostnas.search import SearchSettings, run_search
from ghostnas.stats import mean_sd_se


def test_mean_sd_se_matches_hand_computation() -> None:
    mean, sd, se = mean_sd_se([0.80, 0.81, 0.79])
    assert mean == pytest.approx(0.80)
    assert sd == pytest.approx(0.01)  # sqrt((1e-4 + 1e-4) / 2)
    assert se == pytest.approx(0.01 / math.sqrt(3))
    assert math.isnan(mean_sd_se([0.5])[1])
    with pytest.raises(ValueError):
        mean_sd_se([])


def test_floor_statistics_and_threshold() -> None:
    f = noise_floor([0.80, 0.81, 0.79], [0, 1000, 2000], seconds=12.0)
    assert (f.n, f.dof) == (3, 2)
    assert f.sd == pytest.approx(0.01)
    assert f.sd_se == pytest.approx(0.01 / 2)  # sd / sqrt(2 dof)
    assert f.threshold == pytest.approx(DISTINGUISH_K * 0.01 * math.sqrt(2))
    d = f.as_dict(search_seconds=120.0)
    assert d["share_of_search"] == pytest.approx(0.1) and d["dof"] == 2 and d["seconds"] == 12.0
    assert json.loads(json.dumps(d)) == d
    assert type(f).from_dict(d) == f


def test_one_seed_measures_nothing() -> None:
    f = noise_floor([0.8], [0])
    assert math.isnan(f.sd) and f.as_dict()["sd"] is None
    assert distinguishable(0.8, 0.9, f) is None
    with pytest.raises(ValueError):
        noise_floor([0.8, float("nan")], [0, 1])
    with pytest.raises(ValueError):
        noise_floor([0.8], [0, 1])


def test_distinguishable_uses_the_stated_rule() -> None:
    f = noise_floor([0.80, 0.81, 0.79], [0, 1, 2])  # threshold 0.0283
    assert distinguishable(0.85, 0.80, f) is True
    assert distinguishable(0.82, 0.80, f) is False
    assert distinguishable(0.80, 0.85, f) is True
    assert distinguishable(0.8, 0.9, None) is None


def test_mark_front_against_reference_and_neighbours() -> None:
    f = noise_floor([0.80, 0.81, 0.79], [0, 1, 2])
    front = [
        {"number": 3, "accuracy": 0.70, "macs": 10},
        {"number": 5, "accuracy": 0.71, "macs": 20},
        {"number": 0, "accuracy": 0.80, "macs": 40},
        {"number": 9, "accuracy": 0.85, "macs": 50},
    ]
    marked = mark_front(front, {"number": 0, "accuracy": 0.80}, f)
    assert [m["vs_reference"] for m in marked] == ["worse", "worse", "within noise", "better"]
    assert [m["vs_previous"] for m in marked] == ["first", "within noise", "better", "better"]
    assert marked[3]["delta_reference"] == pytest.approx(0.05)
    assert [m["vs_reference"] for m in mark_front(front, None, f)] == ["unknown"] * 4
    assert mark_front(front, {"accuracy": 0.8}, None)[3]["vs_reference"] == "unknown"


def test_probe_seeds_and_reseed() -> None:
    assert probe_seeds(0, 3) == [1000, 2000]
    assert probe_seeds(7, 1) == [] == probe_seeds(7, 0)
    ev = FakeEvaluator()
    other = reseed(ev, 1000)
    assert other is not ev and other.seed == 1000 and ev.seed == 0
    assert reseed(SimpleNamespace(name="x"), 1) is None


def test_floor_from_trials_reads_the_first_measurement() -> None:
    def t(n, **ua):
        return SimpleNamespace(number=n, user_attrs=ua)

    assert floor_from_trials([t(0), t(1)]) is None
    f = floor_from_trials([t(2, noise_scores=[0.5, 0.6], noise_seeds=[0, 1000], noise_seconds=3.0), t(1)])
    assert f is not None and f.scores == (0.5, 0.6) and f.seconds == 3.0


def test_train_evaluator_reseeds_without_reloading_data() -> None:
    from ghostnas.evaluators.proxy import TrainEvaluator

    ev = TrainEvaluator("synthetic")
    other = reseed(ev, 5)
    assert other.seed == 5 and ev.seed == 0 and other.dataset() is ev.dataset()


def _search(tmp_path: Path, **kw) -> tuple:
    base = {
        "budget": parse_budget("10M"),
        "space": "tiny",
        "trials": 8,
        "evaluator": "fake",
        "out": str(tmp_path / "run"),
    }
    base.update(kw)
    calls = []

    class Counting(FakeEvaluator):
        def evaluate(self, cfg, report=None):
            calls.append(self.seed)
            return super().evaluate(cfg, report)

    result = run_search(SearchSettings(**base), evaluator=Counting())
    return result, calls


def test_search_measures_records_and_reports_the_noise_floor(tmp_path) -> None:
    result, calls = _search(tmp_path)
    out = tmp_path / "run"
    assert calls.count(1000) == 1 and calls.count(2000) == 1  # the probes, after the reference
    assert calls[:3] == [0, 1000, 2000]
    assert len(calls) == 8 + 2 and result.evaluated == 8  # probes are not trials
    info = json.loads((out / "run.json").read_text())
    noise = info["noise"]
    assert noise["measured"] and noise["n"] == 3 and noise["dof"] == 2 and noise["seeds"] == [0, 1000, 2000]
    assert noise["sd"] > 0 and noise["seconds"] >= 0 and 0 <= noise["share_of_search"] < 1
    summary = (out / "summary.md").read_text()
    assert "## Noise floor" in summary and "seed-to-seed SD" in summary
    label = info["settings"]["score_label"]  # the evaluator's own name for its score
    assert f"| trial | {label} | minus reference | vs reference |" in summary
    assert (
        ("within noise of the reference" in summary)
        or ("beyond the noise floor" in summary)
        or ("is the reference itself" in summary)
    )
    ref = next(r for r in (out / "trials.csv").read_text().splitlines()[1:] if ",1," in r)
    assert ref  # the reference is a trial like any other; its probes are attributes, not rows


def test_resume_does_not_measure_again(tmp_path) -> None:
    _search(tmp_path, trials=4)
    _, calls = _search(tmp_path, trials=6)
    assert len(calls) == 2  # only the two new trials, no probes


@pytest.mark.parametrize("k", [0, 1])
def test_noise_seeds_0_or_1_turns_it_off(tmp_path, k) -> None:
    _, calls = _search(tmp_path, noise_seeds=k)
    assert len(calls) == 8
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["noise"] == {"measured": False, "reason": f"turned off (noise seeds {k})"}
    assert "## Noise floor" in (tmp_path / "run" / "summary.md").read_text()


def test_pareto_plot_data_carries_the_noise(tmp_path) -> None:
    from ghostnas.plots import pareto_plot_data, plot_run
    from ghostnas.run_folder import open_run

    _search(tmp_path)
    run = open_run(tmp_path / "run")
    sd = run.info["noise"]["sd"]
    data = pareto_plot_data(run.records, run.budget, run.cost_key, noise_sd=sd)
    assert data.noise_sd == sd and data.reference_trial is not None
    assert next(p.name for p in plot_run(tmp_path / "run")) == "pareto.png"
