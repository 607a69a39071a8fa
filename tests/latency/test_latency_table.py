"""Latency: the JSON latency table: round trip, device keys, corrupt files (:mod:`ghostnas.latency._table`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghostnas.latency import (
    LatencyError,
    default_table_path,
    device_fingerprint,
    load_table,
    open_table,
    save_table,
)
from tests.latency.stubs import make_table

# ------------------------------------------------------------------------------------------
# the table


def test_table_round_trip(tmp_path: Path) -> None:
    table = make_table()
    save_table(table, tmp_path / "t.json")
    back = load_table(tmp_path / "t.json", device_fingerprint("cpu", 1))
    assert back == table
    assert back.entries["stem|y"].latency_ms == 0.25  # no p20 recorded: falls back to the median
    assert list(json.loads((tmp_path / "t.json").read_text())["entries"]) == sorted(table.entries)


def test_table_from_another_device_is_refused(tmp_path: Path) -> None:
    save_table(make_table(threads=2), tmp_path / "t.json")
    with pytest.raises(LatencyError, match="another device") as info:
        load_table(tmp_path / "t.json", device_fingerprint("cpu", 1))
    assert "threads" in str(info.value) and "\n" not in str(info.value)
    assert load_table(tmp_path / "t.json", device_fingerprint("cpu", 1), force=True).scale == 1.1


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": 1',  # truncated
        "[1, 2]",
        '{"format": 2, "device": {"a": 1}, "entries": {}}',
        '{"format": 1, "device": {}, "entries": {}}',
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": NaN, "iqr_ms": 0, "n": 1}}}',
        '{"format": 1, "device": {"a": 1}, "entries": {"k": {"median_ms": "1", "iqr_ms": 0, "n": 1}}}',
        '{"format": 1, "device": {"a": 1}, "entries": {}, "scale": 0}',
    ],
)
def test_corrupt_tables_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(LatencyError) as info:
        load_table(path)
    assert "\n" not in str(info.value)


def test_missing_table_and_default_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GHOSTNAS_HOME", str(tmp_path))
    fp = device_fingerprint("cpu", 1)
    assert default_table_path(fp).parent == tmp_path / "latency"
    assert default_table_path(fp) != default_table_path(device_fingerprint("cpu", 2))
    with pytest.raises(LatencyError, match="build-table"):
        open_table("cpu", 1)
    table, path = open_table("cpu", 1, create=True)
    assert table.entries == {} and path == default_table_path(fp)
