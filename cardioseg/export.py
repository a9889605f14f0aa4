"""ONNX export of the segmentation network, checked against PyTorch before the file is kept.

Exporter: torch.onnx's default, torch.export-based ("dynamo") path. The legacy TorchScript path
(``dynamo=False``) also exports this network correctly and three times faster, but it is deprecated and
silently turns values it cannot trace into constants: with MONAI's stock ResNet-18/34 encoder it bakes the
example input's shortcut features into the graph (wrong logits for every other image, batch size fixed),
where the torch.export path fails loudly. The optimised dynamo graph also folds batch norm into the convolutions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .atomic import atomic_path
from .checkpoint import file_sha256
from .errors import CardiosegError
from .nets.unet import SIZE_DIVISOR

OPSET = 18  # ONNX Runtime >= 1.14 and TensorRT >= 8.6 run it
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# torch.export specialises a dimension whose example size is 1, so the example batch is 2.
_EXAMPLE_BATCH = 2


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    opset: int
    max_abs_diff: dict[int, float]  # batch size -> max |ONNX Runtime - PyTorch| over the logits
    sha256: str


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    spatial_size: Sequence[int] = (256, 256),
    in_channels: int = 1,
    atol: float = 1e-3,
    check_batches: Sequence[int] = (1, 3),
) -> OnnxExport:
    """Export ``model`` (eval mode, fp32) with a dynamic batch axis; keep the file only if ONNX Runtime
    reproduces PyTorch's logits within ``atol`` (fp32) at each of ``check_batches``."""
    if any(s % SIZE_DIVISOR for s in spatial_size):
        raise CardiosegError(f"spatial_size {tuple(spatial_size)} must be multiples of {SIZE_DIVISOR}")
    path = Path(path)
    model = _cpu_reference(model)
    with atomic_path(path) as tmp:
        example = torch.randn(_EXAMPLE_BATCH, in_channels, *spatial_size)
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            verbose=False,
        )
        program.save(tmp, external_data=False)
        diffs = compare_with_onnxruntime(model, tmp, spatial_size, in_channels, check_batches)
        worst = max(diffs.values())
        if not worst <= atol:  # also refuses NaN
            raise CardiosegError(
                f"{path}: ONNX Runtime differs from PyTorch by {worst:.3g} (> {atol:g}); export not kept"
            )
    return OnnxExport(path=path, opset=OPSET, max_abs_diff=diffs, sha256=file_sha256(path))


def compare_with_onnxruntime(
    model: nn.Module,
    onnx_path: str | Path,
    spatial_size: Sequence[int],
    in_channels: int = 1,
    batch_sizes: Sequence[int] = (1, 3),
    seed: int = 0,
) -> dict[int, float]:
    """Max abs difference of the logits, ONNX Runtime (CPU) vs PyTorch, on fresh random images per batch
    size. Fresh inputs, not the export example, so that a traced-in constant cannot pass."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = _cpu_reference(model)
    generator = torch.Generator().manual_seed(seed)
    diffs = {}
    with torch.no_grad():
        for batch in batch_sizes:
            images = torch.randn(batch, in_channels, *spatial_size, generator=generator)
            expected = model(images).numpy()
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
            if got.shape != expected.shape:
                raise CardiosegError(
                    f"{onnx_path}: ONNX output {got.shape} at batch {batch}, expected {expected.shape}"
                )
            diffs[batch] = float(np.abs(got - expected).max())
    return diffs


def _cpu_reference(model: nn.Module) -> nn.Module:
    """An fp32 CPU copy in eval mode: the graph does not depend on the device, and a GPU reference
    (TF32 convolutions) would differ from ONNX Runtime's CPU result by more than the export does.
    A copy, so the caller's model keeps its device and training mode."""
    return copy.deepcopy(model).to("cpu", torch.float32).eval()
