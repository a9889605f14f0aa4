"""Segment every phase of a cine stack with a bundle model, exactly as the bundle was trained and evaluated.

Each phase is one short-axis volume and is scaled by its own percentiles (as training scales each frame),
then every slice of every phase goes through the model in batches: a cine of 25 phases x 10 slices is 250
slices, and batching across phases keeps the accelerator busy where one phase alone would not. The slice
resizing is the SSL4MIS protocol of :func:`cardioseg.metrics.predict_volume_ssl4mis`, which treats slices
independently, so the phases are stacked and resized in one call.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from ..data.slicing import normalize_intensity
from ..errors import CardiosegError
from ..metrics import predict_volume_ssl4mis
from .model import BundleModel

DEFAULT_BATCH_SIZE = 32


def segment_cine(
    model: BundleModel, pixels: np.ndarray, *, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False
) -> np.ndarray:
    """uint8 ACDC labels ``(frames, slices, rows, cols)`` of a cine ``pixels`` of that shape."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 4:
        raise CardiosegError(f"expected a cine (frames, slices, rows, cols), got shape {pixels.shape}")
    prep = model.preprocessing
    scaled = np.concatenate([normalize_intensity(frame, *prep.percentiles) for frame in pixels])
    with tqdm(total=len(scaled), desc="segmenting", unit="slice", disable=not progress) as bar:

        def predict(batch: np.ndarray) -> np.ndarray:
            labels = model.predict_slices(batch)
            bar.update(len(batch))
            return labels

        labels = predict_volume_ssl4mis(
            predict, scaled, size=prep.image_size, image_order=prep.image_order, batch_size=batch_size
        )
    return labels.reshape(pixels.shape)
