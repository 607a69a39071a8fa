"""File-system faults: a full disk or an output folder that cannot be made is one line, and the
study resumes to exact totals with no trial lost.

Every fault runs twice: on a real size-limited tmpfs that the test mounts (skipped where the
machine does not allow mounting) and on a simulated disk whose writes fail with ENOSPC (every
machine); see ``tests/_disk.py``.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shlex
import socket
import tempfile
import time
from pathlib import Path

import pytest

from ghostnas import workers
from ghostnas.cli import main
from ghostnas.errors import WriteFailedError
from ghostnas.evaluators import FakeEvaluator
from tests._disk import disk, tmpfs

DISKS = ["tmpfs", "simulated"]
STORAGES = ["sqlite", "journal"]
TRIALS = 6

# The disk the running test fills, and when: read by the "filling" evaluator below.
_FILL: dict[str, object] = {}


class FillingEvaluator:
    """The fake evaluator, which fills the disk during its ``at``-th evaluation (1-based)."""

    name = "filling"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = FakeEvaluator()

    def evaluate(self, cfg, report=None):
        self.calls += 1
        if self.calls == _FILL.get("at"):
            _FILL["disk"].fill()
            time.sleep(_FILL.get("sleep", 0))
        return self.inner.evaluate(cfg, report)


def filling_factory(settings):
    return FillingEvaluator()


def _argv(root: Path, storage: str, trials: int = TRIALS) -> list[str]:
    argv = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "filling"]
    argv += ["--trials", str(trials), "--out", str(root / "run"), "--no-progress"]
    if storage == "journal":
        argv += ["--storage", f"journal:{root / 'study.log'}", "--study", "s"]
    return argv


def _study_trials(root: Path, storage: str):
    import optuna

    url = (
        f"journal:{root / 'study.log'}" if storage == "journal" else f"sqlite:///{root / 'run' / 'study.db'}"
    )
    from ghostnas.storage import close_storage, open_storage

    st = open_storage(url)
    try:
        return optuna.load_study(study_name="s" if storage == "journal" else "run", storage=st).get_trials()
    except KeyError:  # the disk was full before the study could be created
        return []
    finally:
        close_storage(st)


def _assert_no_partial_output(folder: Path) -> None:
    if not folder.is_dir():
        return
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.endswith(".tmp")], names
    for p in folder.glob("*.json"):
        json.loads(p.read_text())  # whole, or not there
    if (folder / "trials.csv").exists():
        list(csv.DictReader((folder / "trials.csv").open()))


def _is_progress(line: str) -> bool:
    """The start line of a search or a training run, or train's line before the test set: printed
    on every run before the work, never an error."""
    return line.startswith("ghostnas search: space ") or (
        line.startswith("ghostnas train: ") and not line.startswith("ghostnas train: error:")
    )


def _without_start_line(err: str) -> list[str]:
    """stderr's lines less the progress lines (:func:`_is_progress`)."""
    return [line for line in err.splitlines() if line.strip() and not _is_progress(line)]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = _without_start_line(err)
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def filling(monkeypatch):
    from ghostnas import evaluators

    monkeypatch.setitem(evaluators._FACTORIES, "filling", f"{__name__}:filling_factory")
    _FILL.clear()
    yield _FILL
    _FILL.clear()


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("kind", DISKS)
@pytest.mark.parametrize("when", ["start", "first-trial", "mid-search", "outputs"])
def test_full_disk_is_one_line_and_the_rerun_resumes_to_exact_totals(
    tmp_path, monkeypatch, capsys, filling, kind, storage, when
):
    from ghostnas import results

    with disk(kind, tmp_path / "fs", monkeypatch) as d:
        root = d.root
        argv = _argv(root, storage)
        filling["disk"] = d
        if when == "start":
            d.fill()
        elif when == "first-trial":
            filling["at"] = 1
        elif when == "mid-search":
            filling["at"] = 4
        else:
            real = results.write_outputs

            def fill_then_write(*args, **kwargs):
                if not filling.get("outputs_filled"):
                    filling["outputs_filled"] = True
                    d.fill()
                return real(*args, **kwargs)

            monkeypatch.setattr(results, "write_outputs", fill_then_write)

        with monkeypatch.context() as m:  # the failing run is a process that is gone at the rerun
            m.setattr(
                workers.WorkerId,
                "current",
                classmethod(lambda cls: cls(socket.gethostname(), os.getpid(), "gone")),
            )
            status = main(argv)
        line = _one_line(capsys.readouterr().err)
        assert status == 1, line
        assert line.startswith("ghostnas search: error: disk full: no space left to write "), line
        target = str(root / "run") if when == "outputs" else str(root)
        assert target in line, line
        resume = shlex.join(["ghostnas", *argv])
        assert line.endswith(f"then resume with: {resume}"), line

        d.free()
        _assert_no_partial_output(root / "run")
        before = {t.number: t for t in _study_trials(root, storage) if t.state.name == "COMPLETE"}
        m = re.search(r"(\d+) of 6 trials were evaluated and are safe", line)
        safe = int(m.group(1)) if m else 0
        assert safe == len(before), (line, sorted(before))
        if when == "mid-search":
            assert safe >= 3
        if when == "outputs":
            assert safe == TRIALS

        filling.pop("at", None)
        assert main(argv) == 0
        capsys.readouterr()
        rows = list(csv.DictReader((root / "run" / "trials.csv").open()))
        assert sum(r["outcome"] == "ok" for r in rows) == TRIALS  # exact: nothing lost, nothing extra
        after = {t.number: t for t in _study_trials(root, storage)}
        for number, t in before.items():  # every trial completed before the fault is kept as it was
            assert after[number].state.name == "COMPLETE" and after[number].values == t.values
        _assert_no_partial_output(root / "run")


# --------------------------------------------------------------------------------------------
# output folders that cannot be created or written: one line, exit 2, before any work


SEARCH = [
    "search",
    "--space",
    "tiny",
    "--budget",
    "10M",
    "--evaluator",
    "fake",
    "--trials",
    "2",
    "--no-progress",
]


def _fail_probe(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def _unwritable(case: str, tmp: Path, mp: pytest.MonkeyPatch) -> Path:
    """An --out that cannot be made or written, the real way where root allows it, else simulated
    (root may write anywhere its permission bits say no, so "no permission" is an EACCES probe)."""
    if case == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc on this machine")
        return Path("/proc/ghostnas-out")
    if case == "under-a-file":
        (tmp / "file").write_text("x")
        return tmp / "file" / "run"
    if case == "existing-read-only":
        (tmp / "run").mkdir()
        mp.setattr(tempfile, "mkstemp", _fail_probe(errno.EROFS))
        return tmp / "run"
    mp.setattr(tempfile, "mkdtemp", _fail_probe(errno.EROFS if case == "read-only" else errno.EACCES))
    return tmp / "new" / "run"


UNWRITABLE = {
    "proc": "cannot create it in /proc (this file system does not take new files or folders there)",
    "under-a-file": "is a file, not a folder",
    "read-only": "(Read-only file system)",
    "no-permission": "(Permission denied)",
    "existing-read-only": "cannot write in this folder (Read-only file system)",
}


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_search_out_that_cannot_be_written_is_one_line_before_any_work(tmp_path, monkeypatch, capsys, case):
    out = _unwritable(case, tmp_path, monkeypatch)
    existed = out.exists()
    calls = []
    monkeypatch.setattr(FakeEvaluator, "evaluate", lambda *a, **k: calls.append(1))
    status = main([*SEARCH, "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert status == 2 and calls == []
    assert line.startswith(f"ghostnas search: error: --out {out}: ") and UNWRITABLE[case] in line, line
    assert line.endswith("choose another --out"), line
    assert out.exists() == existed and (not existed or list(out.iterdir()) == [])


def test_read_only_mount_is_refused_before_any_work(tmp_path, capsys):
    """The real thing behind the simulated EROFS rows: a tmpfs mounted read-only."""
    with tmpfs(tmp_path / "ro", size="1m", options="ro") as d:
        out = d.root / "run"
        status = main([*SEARCH, "--out", str(out)])
        line = _one_line(capsys.readouterr().err)
        assert status == 2 and line.startswith(f"ghostnas search: error: --out {out}: "), line
        assert "(Read-only file system)" in line, line
        journal = ["--storage", f"journal:{d.root / 'study.log'}", "--study", "s"]
        status = main([*SEARCH, "--out", str(tmp_path / "elsewhere"), *journal])
        line = _one_line(capsys.readouterr().err)
        assert status == 2 and line.startswith(
            f"ghostnas search: error: --storage journal:{d.root / 'study.log'}: "
        ), line
        assert not (tmp_path / "elsewhere").exists()


def test_journal_tail_left_by_a_short_write_is_dropped_under_the_lock(tmp_path):
    from ghostnas._fs import repair_journal_tail

    path = tmp_path / "j.log"
    path.write_bytes(b'{"op": 1}\n{"op": 2}\n{"op": 3, "half')
    assert repair_journal_tail(path) == len(b'{"op": 3, "half')
    assert path.read_bytes() == b'{"op": 1}\n{"op": 2}\n'
    assert repair_journal_tail(path) == 0
    path.write_bytes(b'{"half')
    assert repair_journal_tail(path) == 6 and path.read_bytes() == b""
    assert not list(tmp_path.glob("*.lock*"))  # the lock was released


def test_write_failed_error_names_the_file_and_the_fix():
    e = WriteFailedError(
        "the latency table", "/t/cpu.json", "No space left on device", disk_full=True, free=0
    )
    e.kept, e.rerun, e.command = (
        "3 of 6 trials were evaluated and are safe",
        "resume",
        "ghostnas search --out r",
    )
    assert str(e) == (
        "disk full: no space left to write the latency table /t/cpu.json (No space left on device; 0 B free "
        "there now); 3 of 6 trials were evaluated and are safe; free some space on that file system, then resume "
        "with: ghostnas search --out r"
    )
    e = WriteFailedError(None, "/t/x", "Read-only file system", disk_full=False)
    assert str(e) == "cannot write /t/x (Read-only file system); fix that, then run again the same command"


# --------------------------------------------------------------------------------------------
# ghostnas train and ghostnas export


@pytest.mark.slow  # two short trainings
@pytest.mark.parametrize("kind", DISKS)
def test_train_on_a_full_disk_is_one_line_and_the_same_command_runs_again(
    tmp_path, monkeypatch, capsys, kind
):
    from ghostnas import weights

    real = weights.save_weights
    with disk(kind, tmp_path / "fs", monkeypatch) as d:
        out = d.root / "run"
        argv = [
            "train",
            "ghostnet_tiny",
            "--data",
            "synthetic",
            "--epochs",
            "0.1",
            "--train-images",
            "64",
            "--out",
            str(out),
            "--no-progress",
        ]

        def fill_then_save(*args, **kwargs):
            d.fill()
            return real(*args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(weights, "save_weights", fill_then_save)
            status = main(argv)
        line = _one_line(capsys.readouterr().err)
        assert status == 1, line
        assert line.startswith(
            f"ghostnas train: error: disk full: no space left to write {out / 'weights.pt'} "
        ), line
        assert "the training must be redone" in line and line.endswith(
            f"run again: {shlex.join(['ghostnas', *argv])}"
        )
        d.free()
        assert sorted(p.name for p in out.iterdir()) == []  # no partial weights, no metrics.json
        assert main(argv) == 0
        assert {"weights.pt", "metrics.json", "config.json", "run.json"} <= {p.name for p in out.iterdir()}


def test_train_out_that_cannot_be_made_is_refused_before_training(tmp_path, monkeypatch, capsys):
    from ghostnas import data

    monkeypatch.setattr(
        data, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the --out check")
    )
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    status = main(["train", "ghostnet_tiny", "--data", "synthetic", "--epochs", "1", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert status == 2 and line.startswith(f"ghostnas train: error: --out {out}: ") and "is a file" in line, (
        line
    )


@pytest.mark.parametrize("kind", DISKS)
def test_export_on_a_full_disk_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, kind):
    from tests._runs import make_run

    run = make_run(tmp_path / "run", trials=4)
    capsys.readouterr()  # the library run's own Optuna log lines
    with disk(kind, tmp_path / "fs", monkeypatch) as d:
        to = d.root / "models"
        to.mkdir()
        argv = ["export", str(run), "--best", "--name", "my_net", "--to", str(to)]
        d.fill()
        status = main(argv)
        line = _one_line(capsys.readouterr().err)
        assert status == 1, line
        assert line.startswith(
            f"ghostnas export: error: disk full: no space left to write {to / 'my_net.json'} "
        ), line
        assert "nothing was exported" in line and line.endswith(
            f"run again: {shlex.join(['ghostnas', *argv])}"
        )
        assert list(to.iterdir()) == []
        d.free()
        assert main(argv) == 0
        assert json.loads((to / "my_net.json").read_text())["meta"]["name"] == "my_net"


def test_export_to_a_folder_that_cannot_be_made_is_refused(tmp_path, capsys):
    from tests._runs import make_run

    run = make_run(tmp_path / "run", trials=3)
    capsys.readouterr()
    status = main(["export", str(run), "--best", "--name", "n", "--to", "/proc/ghostnas-models"])
    line = _one_line(capsys.readouterr().err)
    assert status == 2 and line.startswith("ghostnas export: error: --to /proc/ghostnas-models: "), line


def test_a_heartbeat_that_cannot_be_written_is_one_warning_not_a_traceback(
    tmp_path, monkeypatch, capsys, filling
):
    """Optuna writes heartbeats from a thread; on a full disk that thread dies mid-trial."""
    monkeypatch.setattr(workers, "HEARTBEAT_INTERVAL", 1)
    with disk("simulated", tmp_path / "fs", monkeypatch) as d:
        filling.update(disk=d, at=2, sleep=2.5)
        argv = _argv(d.root, "sqlite", trials=3)
        with monkeypatch.context() as m:
            m.setattr(
                workers.WorkerId,
                "current",
                classmethod(lambda cls: cls(socket.gethostname(), os.getpid(), "gone")),
            )
            assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "Exception in thread" not in err, err
        lines = _without_start_line(err)
        assert len(lines) == 2, err
        assert lines[0].startswith(
            "ghostnas search: a background write to the study failed (database or disk is full)"
        )
        assert lines[1].startswith("ghostnas search: error: disk full: ")
        d.free()
        filling.pop("at")
        assert main(argv) == 0


class CacheFullEvaluator:
    """Scores like the fake evaluator but its second call fails as a full data cache would."""

    name = "cache-full"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = FakeEvaluator()

    def evaluate(self, cfg, report=None):
        self.calls += 1
        if self.calls == 2 and not _FILL.get("freed"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/fashion-mnist.npz")
        return self.inner.evaluate(cfg, report)


def cache_full_factory(settings):
    return CacheFullEvaluator()


def test_a_full_disk_inside_the_evaluator_ends_the_run_instead_of_failing_trials(
    tmp_path, monkeypatch, capsys
):
    """A data cache (or any evaluator write) that hits a full disk is the machine's fault: the run
    stops with one line naming the file; the candidate is not recorded as a failed trial."""
    from ghostnas import evaluators

    monkeypatch.setitem(evaluators._FACTORIES, "cache-full", f"{__name__}:cache_full_factory")
    monkeypatch.setitem(_FILL, "freed", False)
    argv = [*_argv(tmp_path, "sqlite", trials=4)]
    argv[argv.index("filling")] = "cache-full"
    with monkeypatch.context() as m:
        m.setattr(
            workers.WorkerId,
            "current",
            classmethod(lambda cls: cls(socket.gethostname(), os.getpid(), "gone")),
        )
        assert main(argv) == 1
    line = _one_line(capsys.readouterr().err)
    assert "disk full: no space left to write /cache/fashion-mnist.npz (No space left on device" in line, line
    assert "1 of 4 trials were evaluated and are safe" in line, line
    _FILL["freed"] = True
    assert main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    assert sum(r["outcome"] == "ok" for r in rows) == 4 and not [r for r in rows if r["outcome"] == "failed"]


def test_export_takes_back_its_onnx_file_when_the_config_cannot_be_written(tmp_path, monkeypatch, capsys):
    from ghostnas import onnx_export
    from tests._runs import make_run

    run = make_run(tmp_path / "run", trials=3)
    capsys.readouterr()
    with disk("simulated", tmp_path / "fs", monkeypatch) as d:

        def fake_onnx(cfg, path, **kwargs):  # the real exporter is slow; this one writes a file
            Path(path).write_bytes(b"onnx")
            d.fill()  # ...and the disk is full right after it
            return {
                "path": str(path),
                "max_abs_diff": None,
                "onnxruntime": False,
                "weights": None,
                "random_weights": True,
            }

        monkeypatch.setattr(onnx_export, "export_onnx", fake_onnx)
        onnx = d.root / "net.onnx"
        argv = ["export", str(run), "--best", "--name", "n", "--to", str(d.root), "--onnx", str(onnx)]
        assert main(argv) == 1
        line = _one_line(capsys.readouterr().err)
        assert f"no space left to write {d.root / 'n.json'} " in line and "nothing was exported" in line, line
        assert sorted(p.name for p in d.root.iterdir()) == []


def test_write_faults_are_found_behind_library_wrappers():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from ghostnas._fs import is_write_fault, write_fault

    full = OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise full
        except OperationalError:
            raise AssertionError("Should not reach.")  # noqa: B904 - what Optuna raises on top of it
    except AssertionError as exc:
        assert write_fault(exc) == write_fault(full) and write_fault(exc).disk_full
    assert write_fault(OSError(errno.EROFS, "Read-only file system", "/x")).filename == "/x"
    assert not is_write_fault(ValueError("bad")) and not is_write_fault(OSError(errno.ENOENT, "gone"))
    hidden = ValueError("cannot parse")
    hidden.__context__, hidden.__suppress_context__ = OSError(errno.ENOSPC, "full"), True
    assert not is_write_fault(hidden)  # `raise ... from None` hid it: not the write that failed


class DyingThreadsEvaluator:
    """Scores like the fake evaluator; on its first call two background threads die of a full
    disk, as two heartbeat threads can under load before the main thread writes again."""

    name = "dying-threads"

    def __init__(self) -> None:
        self.calls = 0
        self.inner = FakeEvaluator()

    def evaluate(self, cfg, report=None):
        import threading

        self.calls += 1
        if self.calls == 1:

            def die() -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/study/heartbeat")

            for _ in range(2):
                thread = threading.Thread(target=die)
                thread.start()
                thread.join()
        return self.inner.evaluate(cfg, report)


def dying_threads_factory(settings):
    return DyingThreadsEvaluator()


def test_background_write_faults_are_said_once_per_run(tmp_path, monkeypatch, capsys):
    """Two background threads failing on a full disk give one warning line, not two, and the run
    (whose own writes still succeed) finishes."""
    from ghostnas import evaluators

    monkeypatch.setitem(evaluators._FACTORIES, "dying-threads", f"{__name__}:dying_threads_factory")
    argv = [*_argv(tmp_path, "sqlite", trials=2)]
    argv[argv.index("filling")] = "dying-threads"
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "Exception in thread" not in err, err
    assert err.count("a background write to the study failed") == 1, err
