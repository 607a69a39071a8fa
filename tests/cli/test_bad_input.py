"""The bad-input catalogue: every malformed input gets one line naming the problem, exit status 2,
no traceback, nothing written, and an existing study byte-identical afterwards.

Each CLI row runs in a folder that holds a finished study (``existing/``, SQLite, and
``journal.log``, a journal study); the whole folder is hashed before and after the command, so a
row that wrote a file, created a folder, or touched either study's bytes fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ghostnas.budget import parse_budget
from ghostnas.cli import main
from ghostnas.errors import GhostnasError
from tests._images import png_bytes

BASE = ["search", "--space", "tiny", "--budget", "10M", "--evaluator", "fake", "--no-progress"]
EXISTING = [*BASE, "--out", "existing", "--trials", "3"]
JOURNAL = [*BASE, "--storage", "journal:journal.log", "--study", "j", "--out", "jrun", "--trials", "3"]

SPACE_TAB = "name: t\nnetwork:\n\twidth: 1.0\nstages: []\n"
SPACE_MISSING = "name: t\ndescription: no stages\nnetwork: {width: 1.0, s: 2, d: 3}\n"
SPACE_WRONG_TYPE = "name: t\nnetwork: {width: wide, s: 2, d: 3}\nstages:\n  - depth: [1]\n    blocks: [{k: 3, exp: 2, c: 8, se: 0, stride: 1}]\n"
SPACE_PYTHON_TAG = "name: !!python/object/apply:os.system ['touch pwned']\nstages: []\n"
SPACE_HUGE_DEPTH = (
    "name: t\nnetwork: {width: 1.0, s: 2, d: 3, stem_chs: 8, head_chs: 64}\nstages:\n"
    "  - depth: [100000]\n    blocks: [{k: 3, exp: 2, c: 8, se: 0, stride: 1}]\n"
)


def _idx(dims: tuple[int, ...], data_bytes: int, magic_type: int = 0x08) -> bytes:
    """An idx file header for ``dims`` followed by ``data_bytes`` zero bytes."""
    head = bytes([0, 0, magic_type, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + bytes(data_bytes)


def _fmnist(images: bytes) -> dict[str, bytes]:
    """A Fashion-MNIST folder whose train images file is ``images`` and the rest are right."""
    return {
        "fm/train-images-idx3-ubyte": images,
        "fm/train-labels-idx1-ubyte": _idx((100,), 100, 0x08),
        "fm/t10k-images-idx3-ubyte": _idx((10, 28, 28), 10 * 28 * 28),
        "fm/t10k-labels-idx1-ubyte": _idx((10,), 10),
    }


DATA = [*BASE, "--evaluator", "train", "--data-dir", "fm"]
USER = [*BASE, "--data", "d"]
TRAIN_USER = ["train", "ghostnet_tiny", "--data", "d", "--epochs", "1", "--out", "t", "--no-progress"]


def _folder(classes: dict[str, int], size: tuple[int, int] = (32, 32), **extra: bytes) -> dict[str, bytes]:
    """An image folder ``d/<class>/<i>.png`` with ``classes[name]`` images each, plus ``extra`` files."""
    files = {
        f"d/{c}/{i}.png": png_bytes(size, label, i)
        for label, (c, n) in enumerate(classes.items())
        for i in range(n)
    }
    return {**files, **{f"d/{k.replace('__', '/')}": v for k, v in extra.items()}}


def _npz(**arrays: object) -> dict[str, bytes]:
    """``d.npz`` holding four 16x16 grey images with labels 0, 1, 0, 1 unless overridden."""
    base: dict[str, object] = {"x": np.zeros((4, 16, 16), np.uint8), "y": np.array([0, 1, 0, 1])}
    base.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in base.items() if v is not None})
    return {"d.npz": buf.getvalue()}


NPZ = [*BASE, "--data", "d.npz"]
_PNG = png_bytes()
CFG_HOSTILE = {"__class__": "os.system", "stages": "rm -rf /"}
CFG_WRONG_TYPE = {"stages": [{"blocks": [{"k": "three", "exp": 16, "c": 16}]}]}
CFG_HUGE = {"stages": [{"blocks": [{"k": 3, "exp": 10**9, "c": 10**9}]}]}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _files(root: Path) -> dict[str, str]:
    """Every path under root (folders too) with a hash of its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# (id, argv, files to create first {name: text}, words the error line must contain)
CLI_ROWS: list[tuple[str, list[str], dict[str, str | bytes], tuple[str, ...]]] = [
    # (150MFLOP, singular, is a valid spelling of 150MFLOPs; a misspelt unit is not)
    ("budget-unit-typo", [*BASE, "--budget", "150MFLOPz"], {}, ("FLOPz",)),
    ("budget-negative", [*BASE, "--budget=-5M"], {}, ("-5M",)),
    ("budget-overflow", [*BASE, "--budget", "1e400M"], {}, ("1e400M",)),
    ("budget-inf", [*BASE, "--budget", "inf"], {}, ("inf",)),
    ("budget-nan", [*BASE, "--budget", "nan"], {}, ("nan",)),
    ("budget-zero", [*BASE, "--budget", "0"], {}, ("0",)),
    ("budget-parsecs", [*BASE, "--budget", "12parsecs"], {}, ("parsecs",)),
    ("budget-unit-split", [*BASE, "--budget", "150", "MFLOPs"], {}, ("150MFLOPs", "quote")),
    ("option-typo", [*BASE, "--budjet", "10M"], {}, ("--budjet", "did you mean --budget")),
    ("sampler-typo", [*BASE, "--sampler", "tpee"], {}, ("did you mean 'tpe'",)),
    ("command-typo", ["serch", "--budget", "10M"], {}, ("did you mean 'search'",)),
    ("trials-zero", [*BASE, "--trials", "0"], {}, ("0",)),
    ("trials-negative", [*BASE, "--trials", "-1"], {}, ("-1",)),
    ("trials-not-int", [*BASE, "--trials", "ten"], {}, ("ten",)),
    ("timeout-negative", [*BASE, "--timeout", "-3"], {}, ("-3",)),
    ("epochs-zero", [*BASE, "--epochs", "0"], {}, ("0",)),
    ("seed-not-int", [*BASE, "--seed", "x1"], {}, ("x1",)),
    ("unknown-sampler", [*BASE, "--sampler", "annealing"], {}, ("annealing",)),
    ("unknown-evaluator", [*BASE, "--evaluator", "oracle"], {}, ("oracle",)),
    ("unknown-space", [*BASE, "--space", "nosuchspace"], {}, ("nosuchspace",)),
    ("unknown-objective", [*BASE, "--objectives", "accuracy,joules"], {}, ("joules",)),
    ("space-tab-indent", [*BASE, "--space", "s.yaml"], {"s.yaml": SPACE_TAB}, ("s.yaml",)),
    ("space-missing-key", [*BASE, "--space", "s.yaml"], {"s.yaml": SPACE_MISSING}, ("stages",)),
    ("space-wrong-type", [*BASE, "--space", "s.yaml"], {"s.yaml": SPACE_WRONG_TYPE}, ("width",)),
    ("space-python-tag", [*BASE, "--space", "s.yaml"], {"s.yaml": SPACE_PYTHON_TAG}, ("python",)),
    ("space-huge-depth", [*BASE, "--space", "s.yaml"], {"s.yaml": SPACE_HUGE_DEPTH}, ("depth",)),
    ("space-huge-file", [*BASE, "--space", "s.yaml"], {"s.yaml": "name: t\n" + "#" * (2 << 20)}, ("s.yaml",)),
    ("space-missing-file", [*BASE, "--space", "gone.yaml"], {}, ("gone.yaml",)),
    ("config-hostile", ["profile", "c.json"], {"c.json": json.dumps(CFG_HOSTILE)}, ("c.json",)),
    ("config-wrong-type", ["profile", "c.json"], {"c.json": json.dumps(CFG_WRONG_TYPE)}, ("k",)),
    ("config-huge-channels", ["profile", "c.json"], {"c.json": json.dumps(CFG_HUGE)}, ("exp",)),
    ("config-truncated", ["profile", "c.json"], {"c.json": '{"stages": [{"blocks": ['}, ("c.json",)),
    ("config-huge-file", ["profile", "c.json"], {"c.json": " " * (2 << 20) + "{}"}, ("c.json",)),
    ("config-not-object", ["profile", "c.json"], {"c.json": "[1, 2, 3]"}, ("c.json",)),
    ("storage-unknown-scheme", [*BASE, "--storage", "nosuchdb://x"], {}, ("nosuchdb",)),
    ("storage-sqlite-unwritable", [*BASE, "--storage", "sqlite:////proc/study.db"], {}, ("/proc/study.db",)),
    ("storage-sqlite-no-folder", [*BASE, "--storage", "sqlite:///nofolder/s.db"], {}, ("nofolder",)),
    (
        "storage-postgres-closed-port",
        [*BASE, "--storage", f"postgresql+psycopg://u:secret@127.0.0.1:{_closed_port()}/db"],
        {},
        ("cannot open storage", "***"),
    ),
    ("storage-journal-no-folder", [*BASE, "--storage", "journal:nofolder/j.log"], {}, ("nofolder",)),
    ("storage-journal-is-folder", [*BASE, "--storage", "journal:existing"], {}, ("folder",)),
    ("out-is-a-file", [*BASE, "--out", "afile"], {"afile": "x"}, ("afile",)),
    # data folders: missing files, truncated or wrong-shape idx files
    ("data-folder-empty", DATA, {"fm/README": "nothing here"}, ("Fashion-MNIST not found",)),
    ("data-idx-truncated", DATA, _fmnist(_idx((100, 28, 28), 1000)), ("truncated",)),
    ("data-idx-header-cut", DATA, _fmnist(b"\x00\x00\x08\x03\x00\x00\x00\x64"), ("header",)),
    ("data-idx-wrong-shape", DATA, _fmnist(_idx((100, 32, 32), 100 * 32 * 32)), ("(100, 32, 32)", "28, 28")),
    ("data-idx-bad-magic", DATA, _fmnist(b"\x1f\x8bnot an idx file at all"), ("magic",)),
    (
        "data-unknown-dataset",
        [*BASE, "--evaluator", "train", "--data", "imagenet-22k"],
        {},
        ("imagenet-22k",),
    ),
    # the user's own data (issue 12): a folder of images or an .npz file
    ("user-one-class", USER, _folder({"a": 2}), ("need at least two",)),
    ("user-no-class-folders", USER, {"d/x.png": _PNG, "d/y.png": _PNG}, ("0 class folders",)),
    ("user-empty-class", USER, _folder({"a": 2}, b__notes_txt=b"no images here"), ("'b'", "no images")),
    ("user-unreadable-image", USER, _folder({"a": 2, "b": 2}, **{"b__bad.jpg": b"not a jpeg"}), ("bad.jpg",)),
    ("user-unreadable-png", USER, _folder({"a": 2, "b": 2}, **{"b__bad.png": b"\x89PNG junk"}), ("bad.png",)),
    (
        "user-truncated-image",
        USER,
        _folder({"a": 2, "b": 2}, **{"b__cut.png": _PNG[: len(_PNG) // 2]}),
        ("cut.png", "decode"),
    ),
    (
        "user-mixed-sizes",
        USER,
        {**_folder({"a": 2, "b": 2}), "d/b/big.png": png_bytes((40, 40))},
        ("--image-size",),
    ),
    (
        "user-image-too-small",
        [*USER, "--space", "ghostnet_v1", "--budget", "150M"],
        _folder({"a": 2, "b": 2}, (8, 8)),
        ("at least 16x16",),
    ),
    (
        "user-image-size-too-small",
        [*USER, "--space", "ghostnet_v1", "--budget", "150M", "--image-size", "12"],
        _folder({"a": 2, "b": 2}),
        ("image size 12", "16x16"),
    ),
    ("user-path-missing", [*BASE, "--data", "nothere/"], {}, ("nothere",)),
    (
        "user-image-size-named",
        [*BASE, "--data", "synthetic", "--image-size", "20"],
        {},
        ("--image-size 20", "synthetic"),
    ),
    ("user-cost-at-unknown", [*USER, "--cost-at", "bogus"], _folder({"a": 2, "b": 2}), ("bogus",)),
    (
        "user-cost-at-data-latency",
        [*USER, "--cost-at", "data", "--budget", "20ms"],
        _folder({"a": 2, "b": 2}),
        ("latency",),
    ),
    (
        "npz-label-out-of-range",
        NPZ,
        _npz(x_val=np.zeros((2, 16, 16), np.uint8), y_val=np.array([0, 5])),
        ("label 5", "y_val"),
    ),
    ("npz-negative-label", NPZ, _npz(y=np.array([0, 1, -1, 1])), ("label -1",)),
    ("npz-class-without-images", NPZ, _npz(y=np.array([0, 2, 0, 2])), ("class 1",)),
    ("npz-length-mismatch", NPZ, _npz(y=np.array([0, 1, 0])), ("3 labels for 4 images",)),
    ("npz-no-x", NPZ, _npz(x=None), ("'x'",)),
    ("npz-object-array", NPZ, _npz(meta=np.array([{"a": 1}], dtype=object)), ("Python objects",)),
    ("npz-float-images", NPZ, _npz(x=np.zeros((4, 16, 16), np.float32)), ("uint8",)),
    ("npz-not-a-zip", NPZ, {"d.npz": b"nope"}, ("d.npz",)),
    ("train-user-one-class", TRAIN_USER, _folder({"a": 2}), ("need at least two",)),
    (
        "train-user-truncated",
        TRAIN_USER,
        _folder({"a": 2, "b": 2}, **{"b__cut.png": _PNG[: len(_PNG) // 2]}),
        ("cut.png",),
    ),
    (
        "train-npz-out-of-range",
        ["train", "ghostnet_tiny", "--data", "d.npz", "--out", "t"],
        _npz(y=np.array([0, 1, -3, 1])),
        ("label -3",),
    ),
    # aimed at the existing studies: refused, and their bytes must not change
    ("existing-other-budget", [*EXISTING, "--budget", "12M"], {}, ("budget",)),
    ("existing-other-objectives", [*EXISTING, "--objectives", "accuracy"], {}, ("objective",)),
    ("existing-other-evaluator-epochs", [*EXISTING, "--epochs", "2"], {}, ("epochs",)),
    ("existing-bad-trials", [*EXISTING[:-1], "-4"], {}, ("-4",)),
    ("existing-bad-timeout", [*EXISTING, "--timeout", "nan"], {}, ("nan",)),
    ("existing-bad-space", [*EXISTING, "--space", "s.yaml"], {"s.yaml": SPACE_PYTHON_TAG}, ("python",)),
    ("journal-other-budget", [*JOURNAL, "--budget", "12M"], {}, ("budget",)),
    ("journal-other-space", [*JOURNAL, "--space", "ghostnet_v1", "--budget", "200M"], {}, ("space",)),
]


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a finished SQLite study (existing/) and a finished journal study."""
    root = tmp_path_factory.mktemp("studies")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert main(EXISTING) == 0
        assert main(JOURNAL) == 0
    return root


@pytest.mark.parametrize(("argv", "files", "words"), [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_cli_bad_input(argv, files, words, studies, tmp_path, monkeypatch, capsys):
    work = tmp_path / "w"
    shutil.copytree(studies, work)
    for name, body in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            (work / name).write_bytes(body)
        else:
            (work / name).write_text(body)
    monkeypatch.chdir(work)
    before = _files(work)
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse rejects a flag's value by exiting
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2, captured.err
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    assert "Traceback" not in captured.err + captured.out
    for word in words:
        assert word in captured.err, captured.err
    assert "secret" not in captured.err  # a password in a storage URL is never echoed
    assert _files(work) == before  # nothing written, both studies byte-identical


def test_the_catalogue_is_large():
    assert len(CLI_ROWS) + len(API_ROWS) >= 25


def _run_search(**kw: object) -> None:
    from ghostnas.search import SearchSettings, run_search

    base: dict[str, object] = {"budget": parse_budget("10M"), "space": "tiny", "evaluator": "fake"}
    run_search(SearchSettings(**{**base, **kw}))  # type: ignore[arg-type]


def _config_from(data: object) -> None:
    from ghostnas.config import config_from_dict

    config_from_dict(data)  # type: ignore[arg-type]


def _open(url: str) -> None:
    from ghostnas.storage import open_storage

    open_storage(url)


def _space_text(text: str) -> Callable[[Path], None]:
    def call(folder: Path) -> None:
        from ghostnas.space import load_space

        (folder / "s.yaml").write_text(text)
        before = _files(folder)
        try:
            load_space(str(folder / "s.yaml"))
        finally:
            assert _files(folder) == before

    return call


# (id, callable taking a scratch folder, words the message must contain)
API_ROWS: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("api-budget-nan", lambda d: parse_budget("nan"), ("nan",)),
    ("api-budget-empty", lambda d: parse_budget(""), ("budget",)),
    ("api-trials-zero", lambda d: _run_search(trials=0, out=str(d / "o")), ("trials",)),
    ("api-trials-bool", lambda d: _run_search(trials=True, out=str(d / "o")), ("trials",)),
    ("api-timeout-negative", lambda d: _run_search(timeout=-3.0, out=str(d / "o")), ("timeout",)),
    ("api-unknown-sampler", lambda d: _run_search(sampler="annealing", out=str(d / "o")), ("annealing",)),
    ("api-storage-scheme", lambda d: _open("nosuchdb://x"), ("nosuchdb",)),
    ("api-config-not-dict", lambda d: _config_from(["stages"]), ("config",)),
    ("api-config-wrong-type", lambda d: _config_from(CFG_WRONG_TYPE), ("k",)),
    ("api-config-huge", lambda d: _config_from(CFG_HUGE), ("exp",)),
    ("api-space-python-tag", _space_text(SPACE_PYTHON_TAG), ("python",)),
    ("api-space-tab", _space_text(SPACE_TAB), ("s.yaml",)),
]


@pytest.mark.parametrize(("call", "words"), [r[1:] for r in API_ROWS], ids=[r[0] for r in API_ROWS])
def test_api_bad_input(call, words, tmp_path):
    with pytest.raises(GhostnasError) as info:
        call(tmp_path)
    message = str(info.value)
    assert message and "\n" not in message
    for word in words:
        assert word in message, message
    assert not (tmp_path / "o").exists()
    assert not Path("pwned").exists()
