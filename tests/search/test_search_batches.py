"""``ghostnas search --parallel N``: trials in flight together, with the search's rules unchanged."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.evaluators import EvalResult, EvaluationFailed, FakeEvaluator
from ghostnas.evaluators.proxy import TrainEvaluator, default_recipe
from ghostnas.search import SearchError, SearchSettings, run_search
from ghostnas.testing.workers import check_study, load_trials, search_command, start_worker

BUDGET = parse_budget("10M")  # the tiny space spans 2.7M..24.5M MACs: many proposals are over budget


def settings(tmp_path: Path, name: str = "run", **kw) -> SearchSettings:
    base = {
        "budget": BUDGET,
        "space": "tiny",
        "trials": 9,
        "evaluator": "fake",
        "sampler": "random",
        "out": str(tmp_path / name),
    }
    base.update(kw)
    return SearchSettings(**base)


def trial_rows(out: Path) -> list[tuple]:
    study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")
    return [
        (t.number, t.state.name, t.user_attrs.get("outcome"), t.params, t.values)
        for t in study.get_trials(deepcopy=False)
    ]


class BatchRecorder:
    """A fake batch evaluator: records every batch it is given, scores like the fake."""

    name = "fake"

    def __init__(self, fail_every: int = 0) -> None:
        self.inner = FakeEvaluator()
        self.batches: list[int] = []
        self.fail_every = fail_every
        self.calls = 0

    def evaluate(self, cfg, report=None) -> EvalResult:
        return self.evaluate_many([cfg], [report])[0]

    def evaluate_many(self, cfgs, reports):
        self.batches.append(len(cfgs))
        out = []
        for cfg, report in zip(cfgs, reports, strict=True):
            self.calls += 1
            if self.fail_every and self.calls % self.fail_every == 0:
                out.append(EvaluationFailed("batch recorder: fails every few"))
                continue
            try:
                out.append(self.inner.evaluate(cfg, report))
            except optuna.TrialPruned as exc:
                out.append(exc)
        return out


def test_same_trials_as_one_at_a_time_with_a_history_free_sampler(tmp_path):
    """The random sampler ignores history, so N in flight must give exactly the sequential run."""
    seq = run_search(settings(tmp_path, "seq"))
    rec = BatchRecorder()
    par = run_search(settings(tmp_path, "par", parallel=4), evaluator=rec)
    assert seq.evaluated == par.evaluated == 9
    assert trial_rows(tmp_path / "seq") == trial_rows(tmp_path / "par")
    # batched for real: never more than 4, and several at once
    assert max(rec.batches) == 4 and sum(rec.batches) == 9
    timing = par.run_info["timing"]
    assert timing["parallel"] == 4 and timing["batch_sizes"] == rec.batches
    assert 0 <= timing["evaluation_seconds"] <= timing["loop_seconds"]
    assert any(r[2] == "over_budget" for r in trial_rows(tmp_path / "par"))


def test_tpe_counts_failures_and_resume_are_exact(tmp_path):
    rec = BatchRecorder(fail_every=4)
    first = run_search(settings(tmp_path, sampler="tpe", trials=6, parallel=4), evaluator=rec)
    assert first.evaluated == 6 and sum(rec.batches) == 6 and max(rec.batches) <= 4
    rows = trial_rows(tmp_path / "run")
    assert Counter(r[2] for r in rows)["failed"] == 1
    assert not any(r[1] == "RUNNING" for r in rows)
    # resume to 11: exactly 5 more, and the last batch is only as big as the free slots
    again = run_search(settings(tmp_path, sampler="tpe", trials=11, parallel=4), evaluator=rec)
    assert again.evaluated == 11 and again.evaluated_this_run == 5
    assert sum(rec.batches) == 11 and rec.batches[-1] == 1  # 4 + 1: no surplus trial evaluated
    assert "surplus" not in {r[2] for r in trial_rows(tmp_path / "run")}


def test_single_objective_pruning_in_batches(tmp_path):
    res = run_search(
        settings(tmp_path, objectives="accuracy", trials=12, parallel=3), evaluator=BatchRecorder()
    )
    states = Counter(r[1] for r in trial_rows(tmp_path / "run"))
    assert res.evaluated == 12 and states["RUNNING"] == 0


def test_plain_evaluators_are_called_one_by_one(tmp_path):
    seen = []

    class Plain(FakeEvaluator):
        def evaluate(self, cfg, report=None):
            seen.append(cfg)
            return super().evaluate(cfg, report)

    # noise_seeds=0: the reference's noise probes would add evaluations that are not trials
    res = run_search(settings(tmp_path, parallel=3, trials=5, noise_seeds=0), evaluator=Plain())
    assert res.evaluated == 5 == len(seen)
    assert max(res.run_info["timing"]["batch_sizes"]) == 3


def test_noise_probes_reach_the_real_evaluator_after_the_batch(tmp_path):
    seeds = []

    class Plain(FakeEvaluator):
        def evaluate(self, cfg, report=None):
            seeds.append(self.seed)
            return super().evaluate(cfg, report)

    res = run_search(settings(tmp_path, parallel=3, trials=5, noise_seeds=3), evaluator=Plain())
    assert res.evaluated == 5 and len(seeds) == 5 + 2  # two probes, not trials
    noise = json.loads((tmp_path / "run" / "run.json").read_text())["noise"]
    assert noise["measured"] and noise["n"] == 3


def test_parallel_with_promotion_is_a_one_line_error(tmp_path):
    with pytest.raises(SearchError, match="cannot be combined with parallel > 1"):
        run_search(settings(tmp_path, parallel=2, rungs=2, objectives="accuracy,macs"))
    assert not (tmp_path / "run").exists()


def test_bad_parallel_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SearchError, match="parallel = 0: must be an integer of at least 1"):
        run_search(settings(tmp_path, parallel=0))
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as exc:
        main(["search", "--parallel", "0", "--space", "tiny", "--budget", "10M", "--evaluator", "fake"])
    assert exc.value.code == 2
    assert "--parallel" in capsys.readouterr().err


def test_cli_parallel_records_batches(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "fake", "--trials", "5"]
    assert main([*args, "--parallel", "2", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["timing"]["parallel"] == 2 and sum(info["timing"]["batch_sizes"]) == 5
    assert "evaluated    5 candidates" in capsys.readouterr().out


@pytest.mark.slow
def test_tiny_real_training_in_batches_scores_like_alone(tmp_path):
    ev = TrainEvaluator("synthetic", recipe=replace(default_recipe("synthetic"), epochs=1, train_images=64))
    res = run_search(
        settings(tmp_path, evaluator="train", trials=3, parallel=3, data="synthetic"), evaluator=ev
    )
    assert res.evaluated == 3 and res.run_info["timing"]["batch_sizes"][-1] >= 2
    study = optuna.load_study(study_name="run", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    space_trials = [t for t in study.get_trials() if t.user_attrs.get("outcome") == "ok"]
    from ghostnas.config import config_from_dict

    for t in space_trials:
        alone = ev.evaluate(config_from_dict(t.user_attrs["config"]))
        assert t.user_attrs["accuracy"] == alone.score  # bit for bit on the CPU
        assert t.user_attrs["metric_concurrent"] >= 2


@pytest.mark.slow
def test_two_parallel_workers_share_a_journal_file(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    procs = [
        start_worker(
            [
                *search_command(tmp_path / f"out-{i}", 12, storage=url, study="shared", seed=i),
                "--parallel",
                "3",
            ],
            0.2,
            tmp_path,
            tmp_path / f"worker-{i}.log",
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    statuses = []
    for proc in procs:
        try:
            statuses.append(proc.wait(timeout=max(deadline - time.monotonic(), 0.1)))
        except subprocess.TimeoutExpired:
            proc.kill()
            statuses.append(proc.wait())
    logs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(2)]
    assert statuses == [0, 0], logs
    trials = load_trials(url, "shared")
    assert check_study(trials, 12) == []
    owners = Counter(t.user_attrs["worker"]["pid"] for t in trials if t.user_attrs.get("outcome") == "ok")
    assert len(owners) == 2, owners


def test_ctrl_c_mid_batch_leaves_nothing_running_and_resume_is_exact(tmp_path):
    class CtrlC(BatchRecorder):
        def evaluate_many(self, cfgs, reports):
            if len(self.batches) == 1:  # the second batch: Ctrl-C while training
                self.batches.append(len(cfgs))
                raise KeyboardInterrupt
            return super().evaluate_many(cfgs, reports)

    with pytest.raises(KeyboardInterrupt):
        run_search(settings(tmp_path, trials=8, parallel=3), evaluator=CtrlC())
    rows = trial_rows(tmp_path / "run")
    assert not any(r[1] == "RUNNING" for r in rows)
    outcomes = Counter(r[2] for r in rows)
    assert outcomes["ok"] == 3 and outcomes["interrupted"] == 3
    again = run_search(settings(tmp_path, trials=8, parallel=3), evaluator=BatchRecorder())
    assert again.evaluated == 8 and again.evaluated_this_run == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_search_trains_candidates_together(tmp_path):  # pragma: no cover - CUDA only
    ev = TrainEvaluator(
        "synthetic", recipe=replace(default_recipe("synthetic"), epochs=1, train_images=64), device="cuda"
    )
    res = run_search(
        settings(tmp_path, evaluator="train", trials=4, parallel=4, data="synthetic", device="cuda"),
        evaluator=ev,
    )
    assert res.evaluated == 4 and max(res.run_info["timing"]["batch_sizes"]) >= 2
    ok = [t for t in load_study_trials(tmp_path / "run") if t.user_attrs.get("outcome") == "ok"]
    assert any(t.user_attrs.get("metric_group_peak_memory_bytes", 0) > 0 for t in ok)


def load_study_trials(out: Path) -> list:
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}").get_trials()
