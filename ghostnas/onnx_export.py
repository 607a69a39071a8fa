"""Export a config (optionally with trained weights) to ONNX and check the file.

The check has two parts: ``onnx.checker`` validates the graph, and, when onnxruntime is
installed, the ONNX model's outputs are compared with PyTorch's on a random input. Needs the
``onnx`` extra (``pip install 'ghostnas[onnx]'``); the file is written atomically, so a failed
export or check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ghostnas._io import temp_file_beside
from ghostnas.config import GhostNetConfig
from ghostnas.errors import GhostnasError
from ghostnas.registry import create_model

__all__ = ["export_onnx"]

log = logging.getLogger(__name__)


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise GhostnasError(
            f"ONNX export needs the {module!r} package: pip install 'ghostnas[onnx]'"
        ) from None


def export_onnx(
    model: str | os.PathLike[str] | GhostNetConfig | Mapping[str, Any],
    path: str | Path,
    input_size: int = 224,
    num_classes: int = 1000,
    in_chans: int = 3,
    stem_stride: int = 2,
    weights: str | Path | None = None,
    atol: float = 1e-4,
    dynamic_batch: bool = False,
) -> dict[str, Any]:
    """Write ``model`` as ONNX (``in_chans x input_size x input_size`` inputs) and verify it.

    Without ``weights`` the file holds the network's random initial weights: right for timing
    or for checking a deployment path, useless for predictions. The result says so
    (``random_weights``), so that callers can tell the user.

    Args:
        model: Registered name, config JSON path, dict or config.
        path: Output ``.onnx`` file.
        input_size: Square input side the graph is exported at.
        num_classes: Classifier width.
        in_chans: Input channels.
        stem_stride: As for :func:`ghostnas.create_model`.
        weights: Optional state-dict file (loaded with ``weights_only=True``); random init otherwise.
        atol: Largest allowed absolute difference between onnxruntime and PyTorch outputs.
        dynamic_batch: Export the batch axis as dynamic (named ``batch``) instead of fixed at 1;
            the check then runs at batch 3, a size the export never saw.

    Returns:
        ``path``, ``max_abs_diff`` (None when onnxruntime is absent), ``onnxruntime`` (bool),
        ``weights`` (the file, or None), ``random_weights`` (bool) and ``dynamic_batch`` (bool).
    """
    onnx = _require("onnx")
    _require("onnxscript")
    import torch

    from ghostnas.weights import load_weights

    net = create_model(model, num_classes=num_classes, in_chans=in_chans, stem_stride=stem_stride)
    if weights is not None:
        try:
            load_weights(net, weights)
        except GhostnasError:
            if not net.reparameterizable:
                raise
            net.reparameterize()  # deploy weights, as `ghostnas train --reparam` saves them
            load_weights(net, weights)
    net.reparameterize()  # kinds with a training form (ghost_v3) are exported as deployed
    net.eval()
    path = Path(path)
    if path.is_dir():
        raise GhostnasError(f"{path}: is a directory; give the .onnx file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    # torch.export fixes a dimension of size 1, so a dynamic batch is traced at 2 and checked at 3
    x = torch.randn(2 if dynamic_batch else 1, in_chans, input_size, input_size, generator=generator)
    check_x = torch.randn(3, in_chans, input_size, input_size, generator=generator) if dynamic_batch else x
    dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic_batch else {}
    fd, tmp_name = temp_file_beside(path)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                net,
                (x,),
                str(tmp),
                input_names=["input"],
                output_names=["logits"],
                dynamo=True,
                external_data=False,
                **dynamic,
            )
        onnx.checker.check_model(onnx.load(str(tmp)))
        diff = _compare(tmp, net, check_x)
        if diff is not None and diff > atol:
            raise GhostnasError(f"ONNX outputs differ from PyTorch by {diff:.2e} (> {atol:g}); not written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (max |onnx - torch| = %s)", path, diff)
    if weights is None:
        log.info("%s holds random initial weights (no weights file given): not a trained model", path)
    return {
        "path": str(path),
        "max_abs_diff": diff,
        "onnxruntime": diff is not None,
        "weights": None if weights is None else str(weights),
        "random_weights": weights is None,
        "dynamic_batch": dynamic_batch,
    }


@contextlib.contextmanager
def _quiet() -> Any:
    """The exporter prints progress and logs warnings about optional packages: keep them out."""
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    torch_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_log.setLevel(level)


def _compare(onnx_path: Path, net: Any, x: Any) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = net(x).numpy()
    return float(abs(out - ref).max())
