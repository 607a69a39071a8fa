"""Optuna's RDB storage on a real PostgreSQL server: the scale-out path of `ghostnas search`."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

pytestmark = pytest.mark.postgres

_WORKER = """
import sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="shared", storage=sys.argv[1])
study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, callbacks=[optuna.study.MaxTrialsCallback(int(sys.argv[2]))])
"""


def test_two_processes_share_one_study(postgres_url: str) -> None:
    storage = optuna.storages.RDBStorage(postgres_url)
    optuna.create_study(study_name="shared", storage=storage)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, postgres_url, "12"]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 12 <= len(done) <= 13  # MaxTrialsCallback may let the other worker finish one in flight
    assert len({t.number for t in trials}) == len(trials)
