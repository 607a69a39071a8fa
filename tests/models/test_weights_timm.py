"""timm's GhostNet weights mapped onto ghostnas models: same outputs, strict key and shape checks.

timm is a dev dependency (scripts/setup.sh installs it beside a matching torchvision), so CI runs
these; a machine without it skips them with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import ghostnas
from ghostnas.errors import GhostnasError
from ghostnas.weights import load_timm_weights, map_timm_state_dict

try:
    import timm
except ImportError:
    if os.environ.get("CI"):
        raise  # scripts/setup.sh installs timm: in CI its absence is a failure, not a skip
    pytest.skip("timm is not installed (scripts/setup.sh installs it)", allow_module_level=True)

PAIRS = [
    ("ghostnet_050", "ghostnet_050"),
    ("ghostnet_100", "ghostnet_100"),
    ("ghostnetv2_100", "ghostnetv2_100"),
    ("ghostnetv3_100", "ghostnetv3_100"),  # the training form, branch for branch
]


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights and batch-norm statistics, so a swapped tensor cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize(("ours", "theirs"), PAIRS)
def test_mapped_timm_weights_give_timms_outputs(ours: str, theirs: str, tmp_path: Path) -> None:
    ref = _randomised(timm.create_model(theirs, pretrained=False), 0)
    model = ghostnas.create_model(ours).eval()
    path = tmp_path / "w.pth"
    torch.save(ref.state_dict(), path)
    load_timm_weights(model, path)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = ref(x), model(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (got - want).abs().max()
    assert len(map_timm_state_dict(ref.state_dict(), model)) == len(model.state_dict())


def test_wrong_variant_or_width_is_one_line() -> None:
    state = timm.create_model("ghostnet_100", pretrained=False).state_dict()
    with pytest.raises(GhostnasError, match="shape") as info:
        map_timm_state_dict(state, ghostnas.create_model("ghostnet_130"))
    assert "\n" not in str(info.value)
    with pytest.raises(GhostnasError, match=r"nothing for the model's .*short_conv"):
        map_timm_state_dict(state, ghostnas.create_model("ghostnetv2_100"))
    v2 = timm.create_model("ghostnetv2_100", pretrained=False).state_dict()
    with pytest.raises(GhostnasError, match=r"short_conv.* has no place"):
        map_timm_state_dict(v2, ghostnas.create_model("ghostnet_100"))
    with pytest.raises(GhostnasError, match="bottlenecks"):
        map_timm_state_dict(state, ghostnas.create_model("ghostnet_tiny"))


def test_official_checkpoint_wrapper_and_thop_counters_are_accepted() -> None:
    state = timm.create_model("ghostnet_050", pretrained=False).state_dict()
    wrapped = {
        "state_dict": {**state, "total_ops": torch.zeros(1), "blocks.0.0.total_params": torch.zeros(1)}
    }
    model = ghostnas.create_model("ghostnet_050")
    assert set(map_timm_state_dict(wrapped, model)) == set(model.state_dict())


def test_official_v3_branch_names_are_accepted() -> None:
    """The official GhostNetV3 code calls a branch's BN ``bn`` (timm: ``bn1``)."""
    state = timm.create_model("ghostnetv3_100", pretrained=False).state_dict()
    official = {
        k.replace(".bn1.", ".bn.") if (".ghost" in k or ".dw_rpr_" in k) else k: v for k, v in state.items()
    }
    assert official != state
    model = ghostnas.create_model("ghostnetv3_100")
    assert set(map_timm_state_dict(official, model)) == set(model.state_dict())
