from __future__ import annotations

import copy
import json
import random

import pytest

import ghostnas
from ghostnas.config import (
    BlockConfig,
    GhostNetConfig,
    StageConfig,
    config_from_dict,
    config_to_dict,
    layout,
    load_config,
    loads_config,
    make_divisible,
    save_config,
)
from ghostnas.errors import ConfigError
from tests.conftest import random_config


@pytest.mark.parametrize(
    ("value", "expected"),
    [(16 * 0.5, 8), (960 * 1.3, 1248), (72 * 0.5, 36), (1, 4), (4.0, 4), (10, 12), (18, 20), (0.1, 4)],
)
def test_make_divisible(value: float, expected: int) -> None:
    assert make_divisible(value, 4) == expected


@pytest.mark.parametrize("name", ghostnas.list_models())
def test_registered_configs_round_trip_through_json(name: str) -> None:
    cfg = ghostnas.resolve_config(name)
    text = json.dumps(config_to_dict(cfg))
    assert loads_config(text) == cfg
    assert hash(loads_config(text)) == hash(cfg)


def test_random_configs_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(200):
        cfg = random_config(rng)
        assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg


def test_save_and_load_with_meta(tmp_path) -> None:
    cfg = ghostnas.resolve_config("ghostnet_tiny")
    path = tmp_path / "sub" / "net.json"
    save_config(cfg, path, meta={"trial": 3})
    assert load_config(path) == cfg
    assert json.loads(path.read_text())["meta"] == {"trial": 3}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_short_string_is_one_line_and_distinguishes_configs() -> None:
    a = ghostnas.resolve_config("ghostnet_100")
    b = a.with_width(0.75)
    assert "\n" not in a.short()
    assert a.short() != b.short()
    assert str(a) == a.short()


def test_overrides_are_inherited_block_over_stage_over_network() -> None:
    cfg = ghostnas.resolve_config("ghostnet_tiny")
    blocks = layout(cfg).blocks
    assert [(b.s, b.d) for b in blocks] == [(2, 3), (3, 3), (3, 5), (4, 1)]


def _base() -> dict:
    return copy.deepcopy(config_to_dict(ghostnas.resolve_config("ghostnet_tiny")))


def _set(path: list, value: object) -> dict:
    data = _base()
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()
_B = ["stages", 1, "blocks", 0]

BAD_CONFIGS = [
    # (case id, dict, substrings the message must contain)
    ("even kernel", _set([*_B, "k"], 4), ["stages[1].blocks[0].k", "4", "odd"]),
    ("negative kernel", _set([*_B, "k"], -3), ["stages[1].blocks[0].k", "-3"]),
    ("float kernel", _set([*_B, "k"], 3.5), ["k", "3.5", "integer"]),
    ("bool kernel", _set([*_B, "k"], True), ["k", "True"]),
    ("string channels", _set([*_B, "c"], "16"), ["c", "'16'", "integer"]),
    ("zero channels", _set([*_B, "exp"], 0), ["exp", "0"]),
    ("absurd channels", _set([*_B, "c"], 10**9), ["c", "1000000000"]),
    ("stride 3", _set([*_B, "stride"], 3), ["stride", "3", "1 or 2"]),
    ("ratio 1", _set(["s"], 1), ["s", "1", "Ghost ratio"]),
    ("stage ratio 0", _set(["stages", 1, "s"], 0), ["stages[1].s", "0"]),
    ("block d even", _set([*_B, "d"], 2), ["stages[1].blocks[0].d", "2"]),
    ("se ratio > 1", _set([*_B, "se_ratio"], 1.5), ["se_ratio", "1.5"]),
    ("unknown block key", _set([*_B, "kernel"], 3), ["unknown key", "'kernel'", "stages[1].blocks[0]"]),
    ("unknown net key", _set(["depth"], 3), ["unknown key", "'depth'"]),
    ("missing c", _set([*_B, "c"], _DELETE), ["missing", "'c'"]),
    ("missing stages", _set(["stages"], _DELETE), ["missing", "'stages'"]),
    ("empty stages", _set(["stages"], []), ["stages", "at least one stage"]),
    ("empty blocks", _set(["stages", 0, "blocks"], []), ["blocks", "at least one block"]),
    ("stages not list", _set(["stages"], {"a": 1}), ["stages", "list"]),
    ("width zero", _set(["width"], 0), ["width", "0"]),
    ("width huge", _set(["width"], 100.0), ["width", "100"]),
    ("width makes absurd layers", {**_set([*_B, "exp"], 8000), "width": 4.0}, ["width", "channels wide"]),
    ("dropout 1", _set(["dropout"], 1.0), ["dropout", "1.0"]),
    ("unknown act", _set(["act"], "mish"), ["act", "'mish'", "relu"]),
    ("stage not object", _set(["stages", 0], [1, 2]), ["stages[0]", "expected an object"]),
]


@pytest.mark.parametrize(("data", "needles"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_configs_name_the_field_and_value(data: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "invalid JSON at line 1"),
        ('{"stages": [], "stages": []}', "duplicate key 'stages'"),
        ('{"width": NaN, "stages": []}', "NaN"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_bad_json_text(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=r"^src:") as info:
        loads_config(text, "src")
    assert needle in str(info.value)


def test_load_config_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    big = tmp_path / "big.json"
    big.write_text(" " * (2 << 20))
    with pytest.raises(ConfigError, match="over"):
        load_config(big)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="stride"):
        BlockConfig(k=3, exp=16, c=16, stride=0)
    with pytest.raises(ConfigError, match="at least one block"):
        StageConfig(blocks=())
    with pytest.raises(ConfigError, match="Ghost ratio"):
        GhostNetConfig(stages=(StageConfig((BlockConfig(3, 16, 16),)),), s=1)


def test_configs_are_frozen_and_hashable() -> None:
    cfg = ghostnas.resolve_config("ghostnet_100")
    with pytest.raises(AttributeError):
        cfg.width = 2.0  # type: ignore[misc]
    assert len({cfg, ghostnas.resolve_config("ghostnet_100"), cfg.with_width(0.5)}) == 2
