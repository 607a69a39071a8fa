"""GhostNetV2 (kind ``ghost_v2``): published counts, DFC attention's computation, the V2 space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ghostnas
from ghostnas.cli import main
from ghostnas.config import config_from_dict, config_to_dict, layout
from ghostnas.cost import count_cost, measure_cost
from ghostnas.latency import NetworkSpec, network_parts
from ghostnas.space import load_space, loads_space

# timm 1.0.31's parameter counts; MACs are conv+linear at 224x224, 1000 classes (REFERENCE.md:
# about 167.05M / 269.32M / 398.61M).
V2_MODELS = {
    "ghostnetv2_100": (6_156_908, 167_048_288),
    "ghostnetv2_130": (8_960_404, 269_322_976),
    "ghostnetv2_160": (12_392_698, 398_607_224),
}


@pytest.mark.parametrize("name", sorted(V2_MODELS))
def test_published_counts_closed_form_and_hook_count(name: str) -> None:
    cfg = ghostnas.resolve_config(name)
    params, macs = V2_MODELS[name]
    cost = count_cost(cfg)
    assert (cost.params, cost.macs) == (params, macs)
    hooked = measure_cost(ghostnas.create_model(cfg))
    assert (hooked.params, hooked.macs) == (params, macs)


def test_dfc_sits_in_every_bottleneck_but_the_first_two() -> None:
    kinds = [b.kind for b in ghostnas.resolve_config("ghostnetv2_100").blocks()]
    assert kinds == ["ghost", "ghost"] + ["ghost_v2"] * 14
    v1 = ghostnas.resolve_config("ghostnet_100")
    assert [b.short().removesuffix("+dfc") for b in ghostnas.resolve_config("ghostnetv2_100").blocks()] == [
        b.short() for b in v1.blocks()
    ]


def test_dfc_branch_params_are_in_times_out_plus_16_out() -> None:
    model = ghostnas.create_model("ghostnetv2_100")
    for rb, block in zip(
        layout(ghostnas.resolve_config("ghostnetv2_100")).blocks, _blocks(model), strict=True
    ):
        branch = getattr(block.ghost1, "short_conv", None)
        if rb.kind == "ghost":
            assert branch is None
        else:
            assert sum(p.numel() for p in branch.parameters()) == rb.in_chs * rb.mid_chs + 16 * rb.mid_chs


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [b for stage in model.stages for b in stage]


@pytest.mark.parametrize("side", [7, 8, 1])
def test_dfc_gate_is_pooled_convolved_sigmoid_upsampled(side: int) -> None:
    torch.manual_seed(0)
    block = _blocks(ghostnas.create_model("ghostnetv2_100").eval())[5]
    module = block.ghost1
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, module.primary_conv[0].in_channels, side, side)
    with torch.no_grad():
        y = module(x)
        # An independent reference: the same layers, called one by one.
        pooled = F.avg_pool2d(x, 2) if side >= 2 else x
        a = module.short_conv[1](module.short_conv[0](pooled))
        a = module.short_conv[3](module.short_conv[2](a))
        a = module.short_conv[5](module.short_conv[4](a))
        x1 = module.primary_conv(x)
        ghost = torch.cat([x1, module.cheap_operation(x1)], 1)[:, : module.out_chs]
        # nearest upsampling: output pixel i reads input pixel floor(i * in / out)
        low = a.shape[-1]
        idx = torch.tensor([i * low // side for i in range(side)])
        gate = torch.sigmoid(a)[:, :, idx][:, :, :, idx]
        assert torch.allclose(y, ghost * gate, atol=1e-6)
    assert pooled.shape[-1] == (side // 2 if side >= 2 else 1)


def test_cost_counts_dfc_at_small_inputs_exactly() -> None:
    cfg = ghostnas.resolve_config("ghostnetv2_100").with_width(0.5)
    for size, stem in ((32, 1), (28, 1), (64, 2)):
        model = ghostnas.create_model(cfg, num_classes=10, in_chans=1, stem_stride=stem)
        got = measure_cost(model, size, in_chans=1)
        want = count_cost(cfg, size, 10, in_chans=1, stem_stride=stem)
        assert (got.params, got.macs) == (want.params, want.macs)


def test_json_names_the_kind_and_round_trips() -> None:
    cfg = ghostnas.resolve_config("ghostnetv2_100")
    raw = config_to_dict(cfg)
    assert raw["stages"][1]["blocks"][1]["kind"] == "ghost_v2"
    assert "kind" not in raw["stages"][0]["blocks"][0]
    assert config_from_dict(json.loads(json.dumps(raw))) == cfg


def test_latency_key_names_the_kind() -> None:
    v1, v2 = ghostnas.resolve_config("ghostnet_100"), ghostnas.resolve_config("ghostnetv2_100")
    k1 = [p.key for p in network_parts(v1, NetworkSpec())]
    k2 = [p.key for p in network_parts(v2, NetworkSpec())]
    assert k1[:3] == k2[:3]  # stem and the two plain bottlenecks
    assert all(
        b.startswith("ghost_v2|") and a.startswith("ghost|") for a, b in zip(k1[3:-1], k2[3:-1], strict=True)
    )
    assert [a.split("|", 1)[1] for a in k1[3:-1]] == [b.split("|", 1)[1] for b in k2[3:-1]]


@pytest.mark.parametrize("name", ["ghostnetv2_100", "ghostnetv2_130", "ghostnetv2_160", "ghostnet_100"])
def test_v2_and_v1_models_are_points_of_the_v2_space(name: str) -> None:
    space = load_space("ghostnet_v2")
    cfg = ghostnas.resolve_config(name)
    params = space.config_to_params(cfg)
    assert space.params_to_config(params) == cfg
    assert params["s2_b0_dfc"] is (name != "ghostnet_100")


TINY_V2 = """
name: tiny_v2
network: {width: 1.0, s: [2], d: [3], stem_chs: 8, head_chs: 32, dropout: 0.0}
stages:
  - depth: [1]
    blocks:
      - {k: 3, exp: [1, 2], c: [8, 12], se: 0, stride: 1}
  - depth: [1, 2]
    blocks:
      - {kind: ghost_v2, dfc: [false, true], k: 3, exp: [2, 3], c: [8, 12], se: [0, 0.25], stride: 2}
      - {kind: ghost_v2, dfc: [false, true], k: [3, 5], exp: 2, c: [12, 16], se: 0, stride: 1}
"""


def test_tiny_v2_space_size_and_cost_range_match_brute_force() -> None:
    from tests.search.test_space import enumerate_space

    space = loads_space(TINY_V2)
    configs = list(enumerate_space(space))
    assert len(set(configs)) == len(configs) == space.size()
    costs = [count_cost(c) for c in configs]
    crange = space.cost_range()
    assert (crange.min_macs, crange.max_macs) == (min(c.macs for c in costs), max(c.macs for c in costs))
    assert (crange.min_params, crange.max_params) == (
        min(c.params for c in costs),
        max(c.params for c in costs),
    )
    assert {b.kind for c in configs for b in c.blocks()} == {"ghost", "ghost_v2"}
    for cfg in configs:
        assert space.params_to_config(space.config_to_params(cfg)) == cfg


def test_dfc_must_be_true_or_false() -> None:
    bad = TINY_V2.replace("dfc: [false, true], k: 3", "dfc: [0, 1], k: 3")
    with pytest.raises(ghostnas.GhostnasError, match=r"dfc: 0 is not true or false"):
        loads_space(bad)


def test_cli_search_on_the_v2_space_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["search", "--space", "ghostnet_v2", "--budget", "200MFLOPs", "--trials", "4"]
    assert main([*args, "--evaluator", "fake", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    cfg = ghostnas.load_config(tmp_path / "run" / "best.json")
    assert count_cost(cfg).macs <= 200_000_000
    assert load_space("ghostnet_v2").contains(cfg.with_width(cfg.width))
    assert "run folder" in capsys.readouterr().out
