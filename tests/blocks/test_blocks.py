"""The block-kind registry: every kind round-trips, costs exactly, builds, and keys its latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ghostnas
from ghostnas.blocks import block_kinds
from ghostnas.config import BuildSpec, config_from_dict, config_to_dict, layout
from ghostnas.cost import count_cost, measure_cost
from ghostnas.errors import ConfigError
from ghostnas.latency import NetworkSpec, load_table, network_parts, save_table
from ghostnas.latency._table import LatencyTable
from ghostnas.space import list_spaces, load_space, space_digest

# Digests of the shipped V1 spaces as computed before block kinds existed (commit 5da8e14): runs
# and studies record them, so a change here would stop every old run from resuming.
V1_DIGESTS = {
    "ghostnet_v1": "9d188c6a284fa0ceb733ebc4375929194d2a8e6dbe05a14f6213d45a68338c60",
    "ghostnet_v1_stagewise": "7da867386319ccfd238a039d9a01e6a99495daf3325a7fc3e4bd3609e9e46138",
    "tiny": "cea6ed38e2d9829c476c1ba521130ab3f504da2ad64eb22c58fda80942b03e0f",
}


@pytest.mark.parametrize("name", sorted(V1_DIGESTS))
def test_digests_of_spaces_written_before_kinds_are_unchanged(name: str) -> None:
    assert space_digest(load_space(name)) == V1_DIGESTS[name]


def test_ghost_is_registered_and_the_default_kind() -> None:
    assert "ghost" in block_kinds()
    raw = config_to_dict(ghostnas.resolve_config("ghostnet_tiny"))
    assert all("kind" not in b for st in raw["stages"] for b in st["blocks"])  # old files unchanged
    explicit = json.loads(json.dumps(raw))
    for st in explicit["stages"]:
        for b in st["blocks"]:
            b["kind"] = "ghost"
    assert config_from_dict(explicit) == config_from_dict(raw)


def test_unknown_kind_is_one_line_naming_the_known_kinds() -> None:
    raw = config_to_dict(ghostnas.resolve_config("ghostnet_tiny"))
    raw["stages"][0]["blocks"][0]["kind"] = "resnet"
    with pytest.raises(
        ConfigError, match=r"stages\[0\]\.blocks\[0\]\.kind = 'resnet': unknown block kind"
    ) as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value) and "ghost" in str(info.value)


def _models_per_kind() -> dict[str, str]:
    """For each registered kind, a shipped model that uses it (each kind ships one)."""
    found: dict[str, str] = {}
    for name in ghostnas.list_models():
        for b in ghostnas.resolve_config(name).blocks():
            found.setdefault(b.kind, name)
    return found


@pytest.mark.parametrize("kind", sorted(block_kinds()))
def test_every_kind_costs_exactly_what_it_builds(kind: str) -> None:
    models = _models_per_kind()
    assert kind in models, f"kind {kind} has no shipped model using it"
    cfg = ghostnas.resolve_config(models[kind]).with_width(0.35)
    spec = BuildSpec(input_size=64, in_chans=1, num_classes=7, stem_stride=1)
    model = ghostnas.create_model(cfg, spec=spec)
    got = measure_cost(model, 64, in_chans=1)
    want = count_cost(cfg, spec=spec, training=True)  # the form that is built and trained
    assert (got.params, got.macs) == (want.params, want.macs)
    got = measure_cost(model.reparameterize(), 64, in_chans=1)
    want = count_cost(cfg, spec=spec)  # the deployed form, which budgets count
    assert (got.params, got.macs) == (want.params, want.macs)
    keys = [
        p.key
        for p in network_parts(cfg, NetworkSpec(input_size=64, in_chans=1, num_classes=7, stem_stride=1))
    ]
    assert any(k.startswith(kind + "|") for k in keys)
    assert all(rb.latency_key(8, 1, "relu").startswith(rb.kind + "|") for rb in layout(cfg).blocks)


def test_build_spec_validates_and_small_images_uses_stem_stride_one() -> None:
    assert BuildSpec.small_images(28, 1, 10).stem_stride == 1
    with pytest.raises(ConfigError, match="stem_stride = 3"):
        BuildSpec(stem_stride=3)
    with pytest.raises(ConfigError, match="input_size"):
        BuildSpec(input_size=0)


def test_latency_table_from_before_kinds_reads_ghost_keys(tmp_path: Path) -> None:
    table = LatencyTable(device={"device": "cpu"})
    save_table(table, tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    data["entries"] = {
        "block|b1|r16|i8|m8|o8|k3|st1|se0|s2|d3|relu": {"median_ms": 1.0, "iqr_ms": 0.0, "n": 3}
    }
    (tmp_path / "t.json").write_text(json.dumps(data))
    assert list(load_table(tmp_path / "t.json").entries) == ["ghost|b1|r16|i8|m8|o8|k3|st1|se0|s2|d3|relu"]


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_points_use_registered_kinds(name: str) -> None:
    space = load_space(name)
    kinds = block_kinds()
    for st in space.stages:
        for bs in st.blocks:
            assert bs.kind in kinds and kinds[bs.kind].space is type(bs)


@pytest.mark.parametrize("name", list_spaces())
def test_space_describe_works_for_every_space(name: str) -> None:
    from ghostnas.space import describe_space as describe

    info = describe(name)
    space = load_space(name)
    rng = space.cost_range(224, 1000)
    assert info["macs"] == [rng.min_macs, rng.max_macs] and rng.min_macs < rng.max_macs
    assert set(info["block_kinds"]) <= set(block_kinds())
    if space.reference is not None:
        assert rng.min_macs <= info["reference"]["macs"] <= rng.max_macs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ghostnet_v2", "ghostnet_g_ghost"])
def test_build_table_covers_the_new_spaces(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (tiny, unasserted) timing run: every part of the sampled configs gets an entry."""
    import random

    from ghostnas.cli import main

    table_path = tmp_path / "t.json"
    argv = ["latency", "build-table", "--space", name, "--samples", "1", "--fit", "1", "--rounds", "1"]
    assert main([*argv, "--input-size", "32", "--table", str(table_path)]) == 0
    capsys.readouterr()
    table = load_table(table_path)
    cfg = load_space(name).sample(random.Random(0))  # build-table's first sample (seed 0)
    spec = NetworkSpec(input_size=32, num_classes=1000, stem_stride=2)
    assert {p.key for p in network_parts(cfg, spec)} <= set(table.entries)
