"""G-Ghost stages (stage kind ``g_ghost``) and RegNet bottlenecks (kind ``regnet``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ghostnas
from ghostnas.blocks.regnet import regnet_groups
from ghostnas.cli import main
from ghostnas.config import BuildSpec, config_from_dict, config_to_dict, layout
from ghostnas.cost import count_cost, measure_cost
from ghostnas.errors import ConfigError
from ghostnas.latency import NetworkSpec, network_parts
from ghostnas.space import load_space, loads_space

# The G-Ghost RegNetX-3.2GF of the official code: 10,511,000 params, about 1.80G MACs at 224.
REGNETX_032 = (10_511_000, 1_801_746_240)


def test_g_ghost_regnetx_032_counts_closed_form_and_hooks() -> None:
    cfg = ghostnas.resolve_config("g_ghost_regnetx_032")
    cost = count_cost(cfg)
    assert (cost.params, cost.macs) == REGNETX_032
    hooked = measure_cost(ghostnas.create_model(cfg))
    assert (hooked.params, hooked.macs) == REGNETX_032
    kinds = [st.kind for st in cfg.stages]
    assert kinds == ["sequential", "g_ghost", "g_ghost", "sequential"]
    rs = layout(cfg).stages[2]
    assert (rs.planes, rs.raw, rs.cheap, len(rs.deep)) == (432, 216, 216, 13)


def test_stage_forward_is_first_deep_cheap_mix_end() -> None:
    torch.manual_seed(0)
    cfg = ghostnas.resolve_config("g_ghost_regnetx_032").with_width(0.25)
    model = ghostnas.create_model(cfg, num_classes=4).eval()
    stage = model.stages[1]
    x = torch.randn(2, stage.base.conv1.in_channels, 16, 16)
    with torch.no_grad():
        x0 = stage.base(x)
        feats, e = [x0], x0[:, : stage.raw]
        for layer in stage.layers:
            e = layer(e)
            feats.append(e)
        pooled = torch.cat([f.mean((2, 3), keepdim=True) for f in feats], 1)
        mix = stage.merge[1:](pooled)
        c = torch.relu(stage.cheap(x0[:, stage.raw :]) + mix)
        want = stage.end(torch.cat([e, c], 1))
        assert torch.allclose(stage(x), want, atol=1e-5)


@pytest.mark.parametrize(
    ("width", "gw", "groups"), [(96, 48, 2), (72, 36, 2), (1008, 48, 21), (100, 30, 2), (16, 48, 1)]
)
def test_regnet_groups(width: int, gw: int, groups: int) -> None:
    assert regnet_groups(width, gw) == groups and width % groups == 0


def test_json_round_trip_names_stage_kind_and_head() -> None:
    cfg = ghostnas.resolve_config("g_ghost_regnetx_032")
    raw = config_to_dict(cfg)
    assert (
        raw["head"] == "pool_fc" and raw["stages"][1]["kind"] == "g_ghost" and "kind" not in raw["stages"][0]
    )
    assert config_from_dict(json.loads(json.dumps(raw))) == cfg
    assert "head" not in config_to_dict(ghostnas.resolve_config("ghostnet_100"))


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda r: r["stages"][1].update(kind="branchy"),
            r"stages\[1\]\.kind = 'branchy': unknown stage kind",
        ),
        (lambda r: r["stages"][1]["blocks"][2].update(c=80), r"stages\[1\]\..*one output width"),
        (lambda r: r["stages"][1]["blocks"][2].update(stride=2), r"stages\[1\]\..*only the first block"),
        (lambda r: r["stages"][1]["blocks"].__delitem__(slice(1, 5)), r"stages\[1\]\..*first, deep and end"),
        (lambda r: r.update(head="mlp"), r"head = 'mlp': unknown head"),
    ],
)
def test_bad_g_ghost_configs_are_one_line(edit, pattern: str) -> None:
    raw = config_to_dict(ghostnas.resolve_config("g_ghost_regnetx_032"))
    edit(raw)
    with pytest.raises(ConfigError, match=pattern) as info:
        config_from_dict(raw)
    assert "\n" not in str(info.value)


def test_latency_parts_key_the_stage_and_the_head() -> None:
    cfg = ghostnas.resolve_config("g_ghost_regnetx_032").with_width(0.25)
    keys = [p.key for p in network_parts(cfg, NetworkSpec(input_size=32, num_classes=10, stem_stride=1))]
    assert [k.split("|")[0] for k in keys] == [
        "stem",
        "regnet",
        "regnet",
        "g_ghost",
        "g_ghost",
        "regnet",
        "regnet",
        "head_pool_fc",
    ]


TINY_GG = """
name: tiny_gg
network: {width: {low: 1.0, high: 1.5, step: 0.5}, s: [2], d: [3], stem_chs: 8, head_chs: 32, dropout: 0.0}
stages:
  - depth: [1]
    blocks:
      - {k: 3, exp: 1, c: 8, se: 0, stride: 1}
  - depth: [2, 3, 4]
    g_ghost: [false, true]
    cheap_ratio: [0.25, 0.5]
    blocks:
      - {k: 3, exp: [2, 3], c: [16, 24], se: 0, stride: 2}
      - {k: [3, 5], exp: 2, c: [16, 24], se: 0, stride: 1}
      - {k: 3, exp: [2, 3], c: [16, 24], se: [0, 0.25], stride: 1}
      - {k: 3, exp: 2, c: 24, se: 0, stride: 1}
"""


def test_tiny_g_ghost_space_size_cost_range_and_replay_match_brute_force() -> None:
    from tests.search.test_space import enumerate_space

    space = loads_space(TINY_GG)
    configs = list(enumerate_space(space))
    assert len(set(configs)) == len(configs) == space.size()
    assert {st.kind for c in configs for st in c.stages} == {"sequential", "g_ghost"}
    costs = [count_cost(c) for c in configs]
    crange = space.cost_range()
    assert (crange.min_macs, crange.max_macs) == (min(c.macs for c in costs), max(c.macs for c in costs))
    assert (crange.min_params, crange.max_params) == (
        min(c.params for c in costs),
        max(c.params for c in costs),
    )
    for cfg in configs[:: max(1, len(configs) // 150)]:
        assert space.params_to_config(space.config_to_params(cfg)) == cfg
        model = ghostnas.create_model(cfg, spec=BuildSpec.small_images(16, 1, 3))
        got, want = (
            measure_cost(model, 16, in_chans=1),
            count_cost(cfg, spec=BuildSpec.small_images(16, 1, 3)),
        )
        assert (got.params, got.macs) == (want.params, want.macs)


def test_g_ghost_choices_that_collide_are_refused() -> None:
    bad = TINY_GG.replace("cheap_ratio: [0.25, 0.5]", "cheap_ratio: [0.25, 0.3]")
    with pytest.raises(ghostnas.GhostnasError, match="same deep width"):
        loads_space(bad)
    with pytest.raises(ghostnas.GhostnasError, match="at least 3 blocks"):
        loads_space(
            TINY_GG.replace("depth: [2, 3, 4]", "depth: [1, 2]").replace(
                "      - {k: 3, exp: [2, 3], c: [16, 24], se: [0, 0.25], stride: 1}\n      - {k: 3, exp: 2, c: 24, se: 0, stride: 1}\n",
                "",
            )
        )


def test_v1_models_are_points_of_the_g_ghost_space() -> None:
    space = load_space("ghostnet_g_ghost")
    for name in ("ghostnet_050", "ghostnet_100", "ghostnet_130"):
        params = space.config_to_params(ghostnas.resolve_config(name))
        assert params["s3_gghost"] is False and params["s5_gghost"] is False


@pytest.mark.slow
def test_cli_search_on_the_g_ghost_space_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [
        "search",
        "--space",
        "ghostnet_g_ghost",
        "--budget",
        "150M",
        "--trials",
        "8",
        "--evaluator",
        "fake",
    ]
    assert main([*args, "--no-progress", "--out", str(tmp_path / "run")]) == 0
    cfg = ghostnas.load_config(tmp_path / "run" / "best.json")
    assert count_cost(cfg).macs <= 150_000_000
    assert load_space("ghostnet_g_ghost").contains(cfg)
    assert "run folder" in capsys.readouterr().out
