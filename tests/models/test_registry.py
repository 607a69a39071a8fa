from __future__ import annotations

import json
from pathlib import Path

import pytest

import ghostnas
from ghostnas.config import save_config
from ghostnas.errors import ConfigError, UnknownModelError
from ghostnas.registry import model_entries, user_model_dir


def test_shipped_models_are_listed() -> None:
    assert {"ghostnet_050", "ghostnet_100", "ghostnet_130", "ghostnet_tiny"} <= set(ghostnas.list_models())
    assert ghostnas.list_models("ghostnet_1*") == ["ghostnet_100", "ghostnet_130"]


def test_user_library_is_resolvable(isolated_home: Path) -> None:
    assert user_model_dir() == isolated_home / "models"
    cfg = ghostnas.resolve_config("ghostnet_100").with_width(0.6)
    save_config(cfg, user_model_dir() / "my_net.json", meta={"trial": 1})
    assert "my_net" in ghostnas.list_models()
    assert model_entries()["my_net"].source == "user"
    assert ghostnas.resolve_config("my_net") == cfg
    assert ghostnas.create_model("my_net").cfg == cfg


def test_user_file_never_shadows_a_shipped_name() -> None:
    tiny = ghostnas.resolve_config("ghostnet_tiny")
    save_config(tiny, user_model_dir() / "ghostnet_100.json")
    assert ghostnas.resolve_config("ghostnet_100") != tiny
    assert model_entries()["ghostnet_100"].source == "builtin"


def test_resolve_from_path_dict_and_object(tmp_path: Path) -> None:
    cfg = ghostnas.resolve_config("ghostnet_tiny")
    path = tmp_path / "x.json"
    save_config(cfg, path)
    assert ghostnas.resolve_config(str(path)) == cfg
    assert ghostnas.resolve_config(path) == cfg
    assert ghostnas.resolve_config(json.loads(path.read_text())) == cfg
    assert ghostnas.resolve_config(cfg) is cfg


@pytest.mark.parametrize("name", ["ghostnet_999", "", "GHOSTNET_100", "a\0b"])
def test_unknown_model_names(name: str) -> None:
    with pytest.raises((UnknownModelError, ConfigError)) as info:
        ghostnas.create_model(name)
    assert "\n" not in str(info.value)


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(UnknownModelError, match="ghostnet_100"):
        ghostnas.resolve_config("resnet50")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_classes": -1}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"stem_stride": 3}, "stem_stride"),
    ],
)
def test_bad_build_arguments(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ghostnas.create_model("ghostnet_tiny", **kwargs)


def test_broken_user_file_is_reported_not_hidden(tmp_path: Path) -> None:
    folder = user_model_dir()
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text('{"stages": 3}')
    with pytest.raises(ConfigError, match=r"broken\.json"):
        ghostnas.resolve_config("broken")
