"""Checks every reader applies, so bad data fails at the file that holds it, with a clear message."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .labels import NUM_CLASSES


def check_image(image: np.ndarray, path: str) -> np.ndarray:
    """Return ``image`` as float32, refusing empty arrays and NaN/inf values."""
    if image.size == 0:
        raise DataError(path, f"image is empty (shape {image.shape})")
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise DataError(path, f"image has {int((~np.isfinite(image)).sum())} NaN or infinite values")
    return image


def check_label(label: np.ndarray, image_shape: tuple[int, ...], path: str) -> np.ndarray:
    """Return ``label`` as uint8, refusing shape mismatches and values outside 0..3."""
    if tuple(label.shape) != tuple(image_shape):
        raise DataError(path, f"label shape {tuple(label.shape)} differs from image shape {tuple(image_shape)}")
    if label.size and not np.isfinite(label).all():
        raise DataError(path, "label has NaN or infinite values")
    values = np.unique(label)
    bad = values[(values < 0) | (values >= NUM_CLASSES) | (values != np.round(values))]
    if bad.size:
        raise DataError(path, f"label values {bad.tolist()[:5]} outside 0..{NUM_CLASSES - 1} (ACDC convention)")
    return label.astype(np.uint8)
