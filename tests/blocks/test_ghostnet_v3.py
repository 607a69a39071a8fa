"""GhostNetV3 (kind ``ghost_v3``): training form, re-parameterisation, deploy-form costs, --reparam."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ghostnas
from ghostnas.cli import main
from ghostnas.config import BuildSpec, config_from_dict, config_to_dict
from ghostnas.cost import count_cost, measure_cost
from ghostnas.errors import ConfigError
from ghostnas.latency import NetworkSpec, deploy_model, network_parts

TRAINING_PARAMS, DEPLOYED_PARAMS = 8_129_028, 6_147_588  # timm 1.0.31's ghostnetv3_100


def _random_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Batch-norm statistics and affine parameters away from their initial values, so a fold
    that ignored any of them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def test_published_training_and_deployed_counts() -> None:
    cfg = ghostnas.resolve_config("ghostnetv3_100")
    model = ghostnas.create_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == TRAINING_PARAMS
    assert count_cost(cfg, training=True).params == TRAINING_PARAMS
    assert count_cost(cfg).params == DEPLOYED_PARAMS
    assert measure_cost(model.reparameterize()).params == DEPLOYED_PARAMS
    # The deploy form computes what GhostNetV2 1.0x computes: same MACs.
    assert count_cost(cfg).macs == count_cost(ghostnas.resolve_config("ghostnetv2_100")).macs


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_reparameterize_keeps_outputs_within_1e5(width: float) -> None:
    cfg = ghostnas.resolve_config("ghostnetv3_100").with_width(width)
    model = _random_bn(ghostnas.create_model(cfg, num_classes=10))
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        after = model.reparameterize()(x)
    assert (before - after).abs().max().item() < 1e-5
    assert not model.reparameterizable
    hooked = measure_cost(model, 96)
    want = count_cost(cfg, 96, 10)
    assert (hooked.params, hooked.macs) == (want.params, want.macs)


def test_training_form_cost_equals_a_hook_count() -> None:
    cfg = ghostnas.resolve_config("ghostnetv3_100").with_width(0.5)
    spec = BuildSpec.small_images(32, 1, 10)
    got = measure_cost(ghostnas.create_model(cfg, spec=spec), 32, in_chans=1)
    want = count_cost(cfg, spec=spec, training=True)
    assert (got.params, got.macs) == (want.params, want.macs)


def test_ratio_three_has_no_identity_branch_and_still_folds() -> None:
    raw = config_to_dict(ghostnas.resolve_config("ghostnetv3_100").with_width(0.35))
    raw["s"] = 3
    cfg = config_from_dict(raw)
    model = _random_bn(ghostnas.create_model(cfg, num_classes=5))
    assert all(b.ghost1.cheap_rpr_skip is None for stage in model.stages for b in stage)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        assert (before - model.reparameterize()(x)).abs().max().item() < 1e-5
    assert measure_cost(model, 64).params == count_cost(cfg, 64, 5).params


def test_config_fields_are_validated_and_round_trip() -> None:
    raw = config_to_dict(ghostnas.resolve_config("ghostnetv3_100"))
    assert raw["stages"][0]["blocks"][0] == {
        **raw["stages"][0]["blocks"][0],
        "kind": "ghost_v3",
        "dfc": False,
    }
    assert config_from_dict(json.loads(json.dumps(raw))) == ghostnas.resolve_config("ghostnetv3_100")
    raw["stages"][0]["blocks"][0]["branches"] = 0
    with pytest.raises(ConfigError, match=r"stages\[0\]\.blocks\[0\]\.branches = 0"):
        config_from_dict(raw)


def test_latency_parts_and_deploy_model_use_the_deploy_form() -> None:
    cfg = ghostnas.resolve_config("ghostnetv3_100").with_width(0.35)
    spec = NetworkSpec(input_size=32, num_classes=10, stem_stride=1)
    parts = network_parts(cfg, spec)
    assert all(p.key.startswith("ghost_v3|") for p in parts[1:-1])
    block = parts[3].build()
    assert not hasattr(block, "reparameterize") and not hasattr(block.ghost1, "primary_rpr_conv")
    net = deploy_model(cfg, spec)
    assert not any(hasattr(m, "primary_rpr_conv") for m in net.modules())


@pytest.mark.slow
def test_cli_train_reparam_saves_deploy_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = tmp_path / "v3.json"
    ghostnas.save_config(ghostnas.resolve_config("ghostnetv3_100").with_width(0.2), cfg_path)
    out = tmp_path / "run"
    args = ["train", str(cfg_path), "--data", "synthetic", "--epochs", "1", "--train-images", "64"]
    assert main([*args, "--device", "cpu", "--reparam", "--out", str(out), "--no-progress", "--json"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights_form"].startswith("deploy")
    state = torch.load(out / "weights.pt", weights_only=True)
    assert not any("rpr" in k for k in state)
    b = metrics["build"]
    deployed = ghostnas.create_model(out / "config.json", b["num_classes"], b["in_chans"], b["stem_stride"])
    deployed.reparameterize().load_state_dict(state, strict=True)
    assert (
        sum(t.numel() for k, t in state.items() if "running" not in k and "num_batches" not in k)
        == metrics["trained_params"]
    )
    capsys.readouterr()


def test_cli_train_reparam_refuses_a_model_without_training_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "ghostnet_tiny", "--data", "synthetic", "--epochs", "1", "--reparam"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "drop --reparam" in err
