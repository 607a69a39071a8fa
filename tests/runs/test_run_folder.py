"""The run folder: one typed record per trial, written and read back the same; folders written in
the old format (``tests/fixtures``, made at c1e942d) still read, plot and export; export finds an
old folder's study in whatever storage the run used (SQLite, journal file, PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.evaluators import FakeEvaluator
from ghostnas.export import ExportError, export_trial
from ghostnas.front import best_record
from ghostnas.records import TrialRecord
from ghostnas.run_folder import open_run, read_pareto_json, read_trials_csv, trials_csv_text
from ghostnas.search import SearchSettings, run_search
from tests.paths import FIXTURES


def _copy_fixture(name: str, to: Path) -> Path:
    shutil.copytree(FIXTURES / name, to / name)
    return to / name


def _search(out: Path, storage: str | None = None, trials: int = 5) -> Path:
    settings = SearchSettings(
        budget=parse_budget("10M"),
        space="tiny",
        trials=trials,
        evaluator="fake",
        out=str(out),
        storage=storage,
        noise_seeds=0,
    )
    run_search(settings, evaluator=FakeEvaluator())
    return out


def _to_old_format(run: Path) -> None:
    """Rewrite a run folder's record files as ghostnas wrote them before trials carried their
    config: trials.csv's ``config`` column is the display string, pareto.json says ``cfg``."""
    rows = list(csv.DictReader(io.StringIO((run / "trials.csv").read_text())))
    columns = [c for c in rows[0] if c != "arch"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row["config"] = row.pop("arch")
        writer.writerow(row)
    (run / "trials.csv").write_text(buf.getvalue())
    pareto = json.loads((run / "pareto.json").read_text())
    for entry in pareto:
        entry["cfg"] = entry.pop("config")
    (run / "pareto.json").write_text(json.dumps(pareto))


def test_records_round_trip_through_trials_csv(tmp_path):
    run = open_run(_search(tmp_path / "run"))
    (tmp_path / "again.csv").write_text(trials_csv_text(run.records))
    assert read_trials_csv(tmp_path / "again.csv") == run.records
    assert all(isinstance(r, TrialRecord) and r.config is not None for r in run.records)
    assert all(r.config.short() == r.arch for r in run.records)
    entries = read_pareto_json(run.path / "pareto.json")
    assert entries and all(run.record(e["trial"]).config.short() == e["arch"] for e in entries)


@pytest.mark.parametrize("name", ["old_run", "old_journal_run"])
def test_old_format_folders_read_and_plot(tmp_path, monkeypatch, capsys, name):
    run_dir = _copy_fixture(name, tmp_path)
    monkeypatch.chdir(tmp_path)  # old_journal_run records its storage by a relative path
    run = open_run(run_dir)
    arch = {r.number: r.arch for r in read_trials_csv(FIXTURES / name / "trials.csv")}
    assert [r.arch for r in run.records] == [arch[r.number] for r in run.records] and all(arch.values())
    front = {e["trial"] for e in read_pareto_json(run_dir / "pareto.json")}
    # the front's and the best's configs come from pareto.json and best.json
    assert front and all(run.record(n).config.short() == run.record(n).arch for n in front)
    assert best_record(run.records, run.budget).number in front
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["old_run", "old_journal_run"])
def test_old_format_folders_export_off_the_front_from_their_study(tmp_path, monkeypatch, name):
    """A trial not on the old front has no config in the folder: it is read from the study in the
    storage run.json names (SQLite in the folder, or a journal file), not replayed."""
    run_dir = _copy_fixture(name, tmp_path)
    monkeypatch.chdir(tmp_path)
    run = open_run(run_dir)
    off_front = [r for r in run.records if r.scored and r.config is None]
    assert off_front, "the fixture should have a scored trial off the front"
    result = export_trial(run_dir, "off_front", trial=off_front[0].number, to=tmp_path / "models")
    assert result.config.short() == off_front[0].arch
    best = export_trial(run_dir, "best", to=tmp_path / "models")
    assert best.config.short() == best_record(run.records, run.budget).arch


def test_old_format_folder_without_its_study_says_so(tmp_path):
    run_dir = _copy_fixture("old_run", tmp_path)
    (run_dir / "study.db").unlink()
    off_front = next(r for r in open_run(run_dir).records if r.scored and r.config is None)
    with pytest.raises(ExportError, match="--storage"):
        export_trial(run_dir, "x", trial=off_front.number, to=tmp_path / "models")
    assert export_trial(run_dir, "best", to=tmp_path / "models").trial == 0  # best.json has it


def test_journal_storage_run_exports_from_the_folder_and_from_the_study(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _search(run_dir, storage=f"journal:{tmp_path / 'study.journal'}")
    ok = [r for r in open_run(run_dir).records if r.scored]
    new = export_trial(run_dir, "new", trial=ok[-1].number, to=tmp_path / "models")
    _to_old_format(run_dir)
    (run_dir / "best.json").unlink()
    old = open_run(run_dir)
    off = next(r for r in old.records if r.scored and r.config is None)
    via_study = export_trial(run_dir, "old", trial=off.number, to=tmp_path / "models")
    assert via_study.config.short() == off.arch
    assert export_trial(run_dir, "old2", trial=ok[-1].number, to=tmp_path / "models").config == new.config


@pytest.mark.postgres
def test_postgres_storage_run_exports_from_the_folder_and_from_the_study(tmp_path, postgres_url):
    run_dir = _search(tmp_path / "run", storage=postgres_url, trials=5)
    ok = [r for r in open_run(run_dir).records if r.scored]
    new = export_trial(run_dir, "new", trial=ok[0].number, to=tmp_path / "models")
    assert new.config == ok[0].config
    _to_old_format(run_dir)
    (run_dir / "pareto.json").unlink()
    (run_dir / "best.json").unlink()
    assert all(r.config is None for r in open_run(run_dir).records)
    for r in ok:  # every config now comes from the PostgreSQL study run.json names
        assert (
            export_trial(run_dir, f"pg{r.number}", trial=r.number, to=tmp_path / "models").config == r.config
        )
