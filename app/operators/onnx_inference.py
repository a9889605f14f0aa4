"""Inference: every slice of every phase through the bundle's ONNX model in ONNX Runtime.

The model is loaded and checked (sha256 against ``large_files.yml``, input and output shapes) before the
graph starts; ONNX Runtime runs it with its CUDA execution provider where ``onnxruntime-gpu`` provides one,
else on the CPU. Slices are scaled and resized exactly as the bundle was trained (the SSL4MIS protocol)
and batched across phases. Input ``series``; output ``raw_labels``: uint8 ``(frames, slices, rows, cols)``.
"""

from __future__ import annotations

from cardioseg.clinical.model import BundleModel
from cardioseg.clinical.segment import DEFAULT_BATCH_SIZE, segment_cine

from .stage import StageOperator


class OnnxInferenceOperator(StageOperator):
    STAGE = "segment"
    INPUTS = ("series",)
    OUTPUTS = ("raw_labels",)

    def __init__(self, fragment, *args, model: BundleModel, batch_size: int = DEFAULT_BATCH_SIZE, **kwargs):
        self.model = model
        self.batch_size = batch_size
        super().__init__(fragment, *args, **kwargs)

    def process(self, series) -> dict:
        return {"raw_labels": segment_cine(self.model, series.pixels, batch_size=self.batch_size)}
