"""The search loop end to end on CPU: fake evaluator, tiny space, seconds per run."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import ghostnas
from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.cost import count_cost
from ghostnas.evaluators import EvalResult, FakeEvaluator
from ghostnas.search import NoResultError, SearchError, SearchSettings, default_out_dir, run_search
from ghostnas.space import load_space
from tests.paths import REPO

BUDGET = parse_budget("10M")  # tiny spans 2.7M..24.5M MACs; its reference at width 1.0 is 9.95M


def settings(tmp_path: Path, **kw) -> SearchSettings:
    base = {"budget": BUDGET, "space": "tiny", "trials": 8, "evaluator": "fake", "out": str(tmp_path / "run")}
    base.update(kw)
    return SearchSettings(**base)


class Recorder:
    """A fake evaluator that remembers what it was asked to score."""

    name = "recorder"

    def __init__(self, inner=None):
        self.inner = inner or FakeEvaluator()
        self.seen = []

    def evaluate(self, cfg, report=None):
        self.seen.append(cfg)
        return self.inner.evaluate(cfg, report)


def load_study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")


def test_full_loop_outputs_are_valid(tmp_path):
    rec = Recorder()
    result = run_search(settings(tmp_path), evaluator=rec)
    out = tmp_path / "run"
    assert result.evaluated == 8 == len(rec.seen)
    for name in (
        "trials.csv",
        "pareto.json",
        "best.json",
        "pareto.png",
        "summary.md",
        "run.json",
        "study.db",
    ):
        assert (out / name).is_file(), name
    # Nothing over budget reached the evaluator, by an independent count.
    assert all(count_cost(cfg).macs <= BUDGET.limit for cfg in rec.seen)
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto
    for entry in pareto:
        assert {"trial", "macs", "params", "accuracy", "arch", "config"} <= set(entry)
        cost = count_cost(ghostnas.config_from_dict(entry["config"]))
        assert cost.macs == entry["macs"] <= BUDGET.limit
        assert cost.params == entry["params"]
    accs = [e["accuracy"] for e in pareto]
    assert accs == sorted(accs)  # by increasing cost, accuracy must rise along a front
    best = ghostnas.load_config(out / "best.json")
    model = ghostnas.create_model(out / "best.json", num_classes=10, in_chans=1)
    assert model is not None
    assert max(accs) == json.loads((out / "best.json").read_text())["meta"]["accuracy"]
    assert best == ghostnas.config_from_dict(max(pareto, key=lambda e: e["accuracy"])["config"])
    run = json.loads((out / "run.json").read_text())
    for key in ("command", "ghostnas_version", "git", "machine", "versions", "started", "ended"):
        assert key in run
    assert run["versions"]["optuna"] == optuna.__version__
    assert run["counts"]["evaluated"] == 8
    assert set(run["over_budget"]) >= {"share_first_half", "share_second_half"}
    assert "224x224" in (out / "summary.md").read_text()
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trials_csv_and_replay_of_every_trial(tmp_path):
    run_search(settings(tmp_path, trials=10))
    out = tmp_path / "run"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    study = load_study(out)
    assert [int(r["number"]) for r in rows] == [t.number for t in study.trials]
    space = load_space("tiny")
    for row, t in zip(rows, study.trials, strict=True):
        assert set(row) >= {
            "number",
            "state",
            "macs",
            "params",
            "accuracy",
            "seconds",
            "reason",
            "arch",
            "config",
        }
        # The stored params (from the storage and from the CSV) replay to the config evaluated,
        # which the study and trials.csv record under one name, "config" (display string "arch").
        cfg = space.params_to_config(t.params)
        assert cfg.short() == t.user_attrs["arch"] == row["arch"]
        assert (
            cfg
            == ghostnas.config_from_dict(t.user_attrs["config"])
            == ghostnas.config_from_dict(json.loads(row["config"]))
        )
        assert space.params_to_config(json.loads(row["trial_params"])).short() == row["arch"]
        if row["outcome"] == "over_budget":
            assert row["state"] == "PRUNED" and row["accuracy"] == "" and "over budget" in row["reason"]
            assert t.constraints["macs"] > 0
        else:
            assert int(row["macs"]) <= BUDGET.limit and t.constraints["macs"] <= 0


def test_reference_is_first_and_widest_that_fits(tmp_path):
    run_search(settings(tmp_path, trials=3, budget=parse_budget("8M")))
    first = load_study(tmp_path / "run").trials[0]
    space = load_space("tiny")
    cfg = space.params_to_config(first.params)
    assert first.user_attrs["reference"] is True
    assert cfg.stages == space.reference.stages
    assert count_cost(cfg).macs <= 8e6
    wider = [w for w in space.width.values() if w > cfg.width]
    assert all(count_cost(space.reference.with_width(w)).macs > 8e6 for w in wider)


def test_resume_continues_without_duplicates(tmp_path):
    first = run_search(settings(tmp_path, trials=4))
    study = load_study(tmp_path / "run")
    before = [(t.number, t.params) for t in study.trials]
    second = run_search(settings(tmp_path, trials=9))
    assert (first.evaluated, second.evaluated, second.evaluated_this_run) == (4, 9, 5)
    after = load_study(tmp_path / "run").trials
    assert [(t.number, t.params) for t in after[: len(before)]] == before
    assert [t.number for t in after] == list(range(len(after)))
    assert sum(t.user_attrs.get("reference", False) for t in after) == 1
    third = run_search(settings(tmp_path, trials=9))
    assert third.evaluated_this_run == 0 and len(load_study(tmp_path / "run").trials) == len(after)


def test_resume_refuses_other_settings(tmp_path):
    run_search(settings(tmp_path, trials=2))
    with pytest.raises(SearchError, match="created with budget"):
        run_search(settings(tmp_path, trials=3, budget=parse_budget("12M")))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", pytest.param("gp", marks=pytest.mark.slow)])
def test_every_sampler_runs(tmp_path, sampler):
    # Three trials: the reference, then proposals from the sampler (past its start-up for TPE/GP).
    result = run_search(settings(tmp_path, trials=3, sampler=sampler))
    assert result.evaluated == 3
    assert result.run_info["settings"]["sampler"] == sampler


def test_any_optuna_sampler_through_the_api(tmp_path):
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        qmc = optuna.samplers.QMCSampler(seed=1, warn_independent_sampling=False)
    result = run_search(settings(tmp_path, trials=4), sampler=qmc)
    assert result.evaluated == 4
    assert result.run_info["settings"]["sampler_class"] == "QMCSampler"


def test_single_objective_reports_for_pruning(tmp_path):
    result = run_search(settings(tmp_path, trials=8, objectives="accuracy"))
    trials = load_study(tmp_path / "run").trials
    evaluated = [t for t in trials if t.user_attrs.get("outcome") in ("ok", "pruned")]
    assert len(evaluated) == result.evaluated == 8
    assert all(t.intermediate_values for t in evaluated)
    assert (tmp_path / "run" / "best.json").is_file()


def test_failures_are_recorded_and_the_search_goes_on(tmp_path):
    def bad(cfg):
        return cfg.s == 3

    result = run_search(settings(tmp_path, trials=10), evaluator=FakeEvaluator(fail_if=bad))
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    failed = [r for r in rows if r["outcome"] == "failed"]
    assert failed and all(r["state"] == "FAIL" and "configured to fail" in r["reason"] for r in failed)
    assert result.evaluated == 10
    assert all(e["config"]["s"] != 3 for e in result.pareto)


class Crashing:
    name = "crashing"

    def evaluate(self, cfg, report=None):
        raise RuntimeError("CUDA out of memory (simulated)")


class NotFinite:
    name = "nan"

    def evaluate(self, cfg, report=None):
        return EvalResult(score=float("nan"))


@pytest.mark.parametrize(
    ("evaluator", "reason"), [(Crashing(), "RuntimeError: CUDA out of memory"), (NotFinite(), "non-finite")]
)
def test_every_trial_failing_is_a_clear_error(tmp_path, evaluator, reason):
    with pytest.raises(NoResultError, match="no candidate was evaluated successfully"):
        run_search(settings(tmp_path, trials=3), evaluator=evaluator)
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert sum(r["outcome"] == "failed" for r in rows) == 3
    assert all(reason in r["reason"] for r in rows if r["outcome"] == "failed")
    assert not (tmp_path / "run" / "best.json").exists()


def test_journal_storage_and_study_name(tmp_path):
    journal = tmp_path / "study.log"
    kw = {"trials": 3, "storage": f"journal:{journal}", "study": "mine"}
    run_search(settings(tmp_path, **kw))
    result = run_search(settings(tmp_path, **{**kw, "trials": 5}))
    assert result.evaluated == 5 and result.study_name == "mine"
    assert journal.is_file() and not (tmp_path / "run" / "study.db").exists()


def test_default_out_dir_is_deterministic():
    s = SearchSettings(budget=parse_budget("150MFLOPs"))
    assert default_out_dir(s, "ghostnet_v1") == default_out_dir(s, "ghostnet_v1")
    assert str(
        default_out_dir(s, "ghostnet_v1")
    ) == "ghostnas-runs/search-ghostnet_v1-150MMACs-fake-tpe-seed0".replace("fake", s.evaluator)
    # the budget's own objectives are the default, so they are not named in the folder
    p = SearchSettings(budget=parse_budget("5Mparams"))
    assert (
        str(default_out_dir(p, "ghostnet_v1")) == "ghostnas-runs/search-ghostnet_v1-5Mparams-train-tpe-seed0"
    )
    m = SearchSettings(budget=parse_budget("5Mparams"), objectives="accuracy,macs")
    assert "accuracy+macs" in str(default_out_dir(m, "ghostnet_v1"))


BAD_CLI = [
    ["--budget", "abc"],
    ["--budget", "0M"],
    ["--budget", "-5MFLOPs"],
    ["--budget", "1e999M"],
    ["--budget", "5Mbytes"],
    ["--budget", "12ms"],
    ["--budget", "1M"],  # below the smallest config of ghostnet_v1
    ["--trials", "0"],
    ["--trials", "x"],
    ["--timeout", "-1"],
    ["--sampler", "cmaes2"],
    ["--space", "nope"],
    ["--space", "SPACE_FILE"],
    ["--evaluator", "nope"],
    ["--objectives", "macs"],
    ["--storage", "foo://bar"],
    ["--storage", "sqlite:////nonexistent/dir/study.db"],
    ["--storage", "journal:/nonexistent/dir/study.log"],
    ["--epochs", "0"],
    ["--noise-seeds", "-1"],
    ["--noise-seeds", "x"],
    ["--rungs", "0"],
    ["--rungs", "9"],
    ["--rungs", "2", "--objectives", "accuracy"],
    ["--rungs", "2", "--evaluator", "params"],
]


def run_cli(args: list[str]) -> int:
    """``ghostnas.cli.main`` in-process; argparse usage errors exit through SystemExit."""
    try:
        return main(args)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("extra", BAD_CLI, ids=lambda a: " ".join(a))
def test_bad_input_one_line_exit_2_no_results_folder(tmp_path, monkeypatch, capsys, extra):
    monkeypatch.chdir(tmp_path)
    bad_space = tmp_path / "bad.yaml"
    bad_space.write_text("name: x\nnetwork: [\n")
    extra = [str(bad_space) if a == "SPACE_FILE" else a for a in extra]
    assert run_cli(["search", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_cli_runs_and_resumes_in_process(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def args(trials: str) -> list[str]:
        return [
            "search",
            "--space",
            "tiny",
            "--budget",
            "10M",
            "--trials",
            trials,
            "--evaluator",
            "fake",
            "--no-progress",
        ]

    assert run_cli(args("3")) == 0
    out = capsys.readouterr().out
    assert "run folder" in out and "best" in out
    folder = next((tmp_path / "ghostnas-runs").iterdir())
    assert json.loads((folder / "run.json").read_text())["command"] == ["ghostnas", *args("3")]
    assert run_cli(args("5")) == 0
    assert "(2 this run)" in capsys.readouterr().out
    assert json.loads((folder / "run.json").read_text())["counts"]["evaluated"] == 5


def test_python_m_ghostnas_bad_budget_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "ghostnas", "search", "--budget", "150parsecs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown unit 'parsecs'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_timeout_stops_early_and_a_killed_runs_trial_is_marked_failed(tmp_path):
    slow = FakeEvaluator(sleep=0.3)
    result = run_search(settings(tmp_path, trials=50, timeout=0.5), evaluator=slow)
    assert 1 <= result.evaluated < 50
    # Simulate a run killed mid-trial: a trial left RUNNING by a process that no longer exists
    # (tests/test_reliability.py does it for real with SIGKILL).
    study = load_study(tmp_path / "run")
    trial = study.ask()
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": 2**22 + 17, "started": "1"})
    resumed = run_search(settings(tmp_path, trials=result.evaluated + 1))
    killed = [t for t in load_study(tmp_path / "run").trials if t.user_attrs.get("outcome") == "worker_died"]
    assert len(killed) == 1 and killed[0].state.name == "FAIL"
    assert "pid 4194321" in killed[0].user_attrs["reason"] and "died" in killed[0].user_attrs["reason"]
    assert resumed.evaluated == result.evaluated + 1


def test_reference_widths_of_the_main_job():
    # The bare command's reference: GhostNet 1.0x (141.2M MACs) is the widest grid width under 150M.
    from ghostnas.search_plan import plan_search, reference_params

    plan = plan_search(SearchSettings(budget=parse_budget("150MFLOPs")))
    cfg, params = reference_params(plan)
    assert cfg == ghostnas.resolve_config("ghostnet_100") and params["width"] == 1.0
    assert count_cost(cfg.with_width(1.05)).macs > 150e6


class InterruptOnThird:
    name = "interrupt"

    def __init__(self):
        self.calls = 0

    def evaluate(self, cfg, report=None):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return FakeEvaluator().evaluate(cfg, report)


def test_ctrl_c_writes_outputs_and_the_interrupted_trial_is_not_counted(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_search(settings(tmp_path, trials=6), evaluator=InterruptOnThird())
    out = tmp_path / "run"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["outcome"] for r in rows if r["outcome"] != "over_budget"] == ["ok", "ok", "interrupted"]
    assert json.loads((out / "run.json").read_text())["interrupted"] is True
    resumed = run_search(settings(tmp_path, trials=6))
    assert resumed.evaluated == 6 and resumed.evaluated_this_run == 4


@pytest.mark.slow  # the slowest tests of the suite (minutes on a loaded 2-core machine)
def test_tpe_learns_the_budget_boundary_from_rejected_proposals(tmp_path):
    # Over-budget proposals end PRUNED with a positive constraint; TPE ranks them as infeasible.
    # Under a tight budget (5M MACs: most of tiny is over it) it should propose far fewer
    # over-budget candidates than random sampling, and fewer late than early.
    shares = {}
    for sampler in ("tpe", "random"):
        run = tmp_path / sampler
        result = run_search(
            settings(
                run,
                trials=30,
                budget=parse_budget("5M"),
                sampler=sampler,
                storage=f"journal:{tmp_path}/{sampler}.log",
            )
        )
        shares[sampler] = result.run_info["over_budget"]
    assert shares["random"]["share_all"] > 0.8
    assert shares["tpe"]["share_all"] < shares["random"]["share_all"] - 0.2
    assert shares["tpe"]["share_second_half"] < shares["tpe"]["share_first_half"]
