"""Multi-fidelity promotion: the decision rule, the evaluators' rungs, a search, kill and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from ghostnas.budget import parse_budget
from ghostnas.evaluators import FakeEvaluator, MultiFidelityEvaluator
from ghostnas.noise import noise_floor
from ghostnas.promotion import (
    others_at_rung,
    promotion_margin,
    quota_allows,
    rung_scores,
    rung_units,
    should_promote,
)
from ghostnas.search import SearchSettings, run_search


def _t(n: int, state: str = "COMPLETE", **ua):
    return SimpleNamespace(number=n, state=SimpleNamespace(name=state), user_attrs=ua)


def test_should_promote_compares_with_cheaper_candidates_only() -> None:
    others = [(10.0, 0.70), (20.0, 0.75), (40.0, 0.90)]
    assert should_promote(0.76, 30.0, others, margin=0.0)  # beats everything cheaper
    assert not should_promote(0.74, 30.0, others, margin=0.0)
    assert should_promote(0.74, 30.0, others, margin=0.02)  # within the margin of the front
    assert should_promote(0.10, 5.0, others, margin=0.0)  # nothing is cheaper: on the front
    assert should_promote(0.5, 1.0, [], margin=0.0)


def test_margin_is_the_measured_noise() -> None:
    assert promotion_margin(None) == 0.0
    assert promotion_margin(noise_floor([0.5], [0])) == 0.0
    f = noise_floor([0.80, 0.81, 0.79], [0, 1, 2])
    assert promotion_margin(f) == pytest.approx(0.01 * 2**0.5)


def test_quota_is_successive_halving() -> None:
    # 5 candidates scored at rung 0 (this one included): at most ceil(5 / 3) = 2 promoted
    trials = [_t(i, score_r0=0.5) for i in range(4)]
    assert quota_allows(trials, 0, exclude_number=9)
    trials[0].user_attrs["promoted_r1"] = True
    assert quota_allows(trials, 0, exclude_number=9)
    trials[1].user_attrs["promoted_r1"] = True
    assert not quota_allows(trials, 0, exclude_number=9)
    # a dead worker's trial holds no quota
    trials[1] = _t(1, state="FAIL", score_r0=0.5, promoted_r1=True)
    assert quota_allows(trials, 0, exclude_number=9)
    assert quota_allows([], 0, exclude_number=0)  # the first candidate is always allowed


def test_others_at_rung_skips_self_failures_and_other_rungs() -> None:
    trials = [
        _t(0, score_r0=0.6, macs=5),
        _t(1, score_r0=0.7, score_r1=0.8, macs=6),
        _t(2, state="FAIL", score_r0=0.9, macs=1),
        _t(3, score_r0=0.4, macs=2),
        _t(4, state="RUNNING", score_r0=0.65, macs=3),
    ]
    assert others_at_rung(trials, 0, "macs", exclude_number=3) == [(5.0, 0.6), (6.0, 0.7), (3.0, 0.65)]
    assert others_at_rung(trials, 1, "macs", exclude_number=3) == [(6.0, 0.8)]
    assert rung_scores(trials[1].user_attrs) == [0.7, 0.8] and rung_units(2) == 9


def test_fake_evaluator_rungs_follow_promote() -> None:
    from ghostnas.registry import resolve_config

    cfg = resolve_config("ghostnet_tiny")
    ev = FakeEvaluator()
    assert isinstance(ev, MultiFidelityEvaluator)
    asked = []

    def promote(rung, res):
        asked.append(rung)
        return rung < 1

    res = ev.evaluate_rungs(cfg, 3, 3.0, promote)
    assert len(res) == 2 and asked == [0, 1]
    assert res[0].score == ev.evaluate(cfg).score
    assert len(ev.evaluate_rungs(cfg, 3, 3.0, lambda r, x: False)) == 1


@pytest.mark.slow
def test_train_evaluator_continues_from_its_weights() -> None:
    """Rung 1 trains the rung-0 network on (no retraining): rung-1 images are three times
    rung 0's in total, the score is reproducible, and rung 0 equals a plain evaluation."""
    from ghostnas.data import synthetic_dataset
    from ghostnas.evaluators.proxy import TrainEvaluator
    from ghostnas.registry import resolve_config
    from ghostnas.train import Recipe

    recipe = Recipe(epochs=1, train_images=256, val_images=128, batch_size=64, eval_batch_size=128, lr=0.05)
    ev = TrainEvaluator(synthetic_dataset(n_train=512, n_test=16), recipe=recipe)
    cfg = resolve_config("ghostnet_tiny")
    a = ev.evaluate_rungs(cfg, 2, 3.0, lambda r, x: True)
    b = ev.evaluate_rungs(cfg, 2, 3.0, lambda r, x: True)
    assert [r.score for r in a] == [r.score for r in b]
    assert a[0].score == ev.evaluate(cfg).score
    assert a[0].metrics["images"] == 256 and a[1].metrics["images"] == 3 * 256
    assert a[1].metrics["rung"] == 1 and a[1].metrics["epochs_total"] == 3.0
    assert a[1].metrics["train_loss_mean"] < a[0].metrics["train_loss_mean"]  # it kept learning


def _settings(tmp_path: Path, **kw) -> SearchSettings:
    base = {
        "budget": parse_budget("10M"),
        "space": "tiny",
        "trials": 12,
        "evaluator": "fake",
        "out": str(tmp_path / "run"),
        "rungs": 3,
    }
    base.update(kw)
    return SearchSettings(**base)


def test_search_promotes_a_few_and_reports_every_rung(tmp_path) -> None:
    result = run_search(_settings(tmp_path))
    out = tmp_path / "run"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert {"score_r0", "score_r1", "score_r2"} <= set(rows[0])
    assert all(r["score_r0"] for r in ok)
    reached = [sum(bool(r[f"score_r{i}"]) for r in ok) for i in range(3)]
    assert reached[0] == 12 and 0 < reached[1] < 12 and reached[2] <= reached[1]
    for r in ok:  # the trial's accuracy is its highest rung's score
        top = [r[f"score_r{i}"] for i in range(3) if r[f"score_r{i}"]][-1]
        assert float(r["accuracy"]) == float(top)
    info = json.loads((out / "run.json").read_text())
    assert info["promotion"]["scored_reaching_rung"] == reached
    assert info["settings"]["rungs"] == 3
    best = json.loads((out / "best.json").read_text())
    assert result.best is not None and best["meta"]["accuracy"] == result.best.accuracy
    summary = (out / "summary.md").read_text()
    assert "## Promotion" in summary and ", ".join(str(n) for n in reached) in summary


def test_promotion_refuses_resume_with_other_rungs(tmp_path) -> None:
    from ghostnas.search import SearchError

    run_search(_settings(tmp_path, trials=3))
    with pytest.raises(SearchError, match="rungs"):
        run_search(_settings(tmp_path, trials=4, rungs=2))


@pytest.mark.slow
def test_sigkill_during_a_promoted_rung_then_resume(tmp_path) -> None:
    """A worker killed while a promoted candidate trains its next rung: the trial is failed as
    worker_died, its config retried from rung 0 with the same rung-0 score, and the resumed
    study has exactly --trials evaluated candidates with every rung in trials.csv."""
    from ghostnas.testing.workers import check_study, load_trials, search_command, start_worker

    out = tmp_path / "run"
    cmd = [*search_command(out, 8), "--rungs", "3"]
    url = f"sqlite:///{out / 'study.db'}"
    first = start_worker(cmd, 0.4, tmp_path, tmp_path / "first.log")
    victim = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and victim is None and first.poll() is None:
            time.sleep(0.1)
            if not (out / "study.db").exists():
                continue
            try:
                trials = load_trials(url, out.name)
            except Exception:  # the worker is still creating the schema
                continue
            victim = next(
                (t for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("promoted_r1")), None
            )
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert victim is not None, (tmp_path / "first.log").read_text()[-2000:]
    second = start_worker(cmd, 0.4, tmp_path, tmp_path / "resume.log")
    assert second.wait(timeout=120) == 0, (tmp_path / "resume.log").read_text()[-2000:]
    after = {t.number: t for t in load_trials(url, out.name)}
    dead = after[victim.number]
    assert dead.state.name == "FAIL" and dead.user_attrs["outcome"] == "worker_died"
    retry = next(t for t in after.values() if t.user_attrs.get("retry_of") == victim.number)
    assert retry.state.name == "COMPLETE" and retry.params == victim.params
    assert retry.user_attrs["score_r0"] == victim.user_attrs["score_r0"]
    assert check_study(list(after.values()), 8) == []
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert "score_r1" in rows[0]


def test_noise_floor_sets_the_margin_in_a_search(tmp_path) -> None:
    """With the reference's probes stored, later candidates are judged with a non-zero margin;
    the reference itself (first, nothing cheaper scored yet) is promoted."""
    run_search(_settings(tmp_path, trials=6, noise_seeds=3))
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["noise"]["measured"] and info["noise"]["sd"] > 0
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    ref = next(r for r in rows if r["reference"] == "1")
    assert ref["score_r1"]


def test_replace_keeps_defaults_off() -> None:
    s = _settings(Path("/nonexistent"))
    assert replace(s, rungs=1).rungs == 1 and SearchSettings(budget=s.budget).rungs == 1
