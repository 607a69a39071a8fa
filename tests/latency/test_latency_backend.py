"""Latency: the ONNX Runtime backend, real on tiny shapes (:mod:`ghostnas.latency._backend`).

Nothing here asserts a timing: stubs and fake clocks stand in for the machine (see
:mod:`tests.latency.stubs`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ghostnas.latency import (
    LatencyError,
    LatencyTable,
    MeasureSettings,
    default_table_path,
    device_fingerprint,
    network_parts,
    open_table,
    save_table,
)
from tests.latency.stubs import SMALL, TINY

# ------------------------------------------------------------------------------------------
# the ONNX Runtime backend (real, on tiny shapes)


def test_onnx_session_matches_torch() -> None:
    from ghostnas.latency import deploy_model, onnx_session

    model = deploy_model(TINY, SMALL)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    session = onnx_session(model, tuple(x.shape))
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert torch.allclose(torch.from_numpy(out), ref, atol=1e-4)


def test_onnxruntime_backend_times_parts_and_has_its_own_table(tmp_path: Path) -> None:
    from ghostnas.latency import part_timer

    quick = MeasureSettings(warmup_s=0.0, blocks=3, min_block_s=0.0005)
    t = part_timer(settings=quick, backend="onnxruntime")(network_parts(TINY, SMALL)[1])
    assert t.latency_ms > 0 and t.n >= 3
    fp_ort, fp_torch = device_fingerprint("cpu", 1, "onnxruntime"), device_fingerprint("cpu", 1)
    assert fp_ort["backend"] == "onnxruntime" and fp_torch["backend"] == "torch-eager"
    assert default_table_path(fp_ort) != default_table_path(fp_torch)
    save_table(LatencyTable(device=fp_torch), tmp_path / "t.json")
    with pytest.raises(LatencyError, match="backend"):
        open_table("cpu", 1, tmp_path / "t.json", backend="onnxruntime")


@pytest.mark.parametrize(
    ("backend", "device", "match"), [("tvm", "cpu", "unknown"), ("onnxruntime", "cuda", "CPU only")]
)
def test_check_backend_errors(backend: str, device: str, match: str) -> None:
    from ghostnas.latency import check_backend

    with pytest.raises(LatencyError, match=match) as info:
        check_backend(backend, device)
    assert "\n" not in str(info.value)
