"""Label clean-up after segmentation, one home for evaluation, file inference and the clinical app.

A U-Net's argmax leaves specks (a few LV pixels in the liver, an RV island in a mid slice) and pinholes,
and every speck counts in a volume, an ejection fraction or an HD95. Two levels, chosen by name
(``POSTPROCESSING``) so a run can record which it used:
- ``largest``: per class in 3D, the largest connected component (MONAI's ``KeepLargestConnectedComponent``);
- ``clean``: ``largest``, then holes filled per slice: holes of the RV and LV cavities (MONAI's
  ``FillHoles``); the myocardium is a ring around the LV cavity, so MONAI's hole filling would turn the
  cavity into muscle: only background enclosed by the myocardium and the cavity together becomes
  myocardium (hand-written with scipy, which MONAI does not offer).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import FillHoles, KeepLargestConnectedComponent
from scipy import ndimage

from .data.labels import FOREGROUND
from .settings import choice

RV, MYO, LV = (next(k for k, v in FOREGROUND.items() if v == name) for name in ("RV", "MYO", "LV"))
POSTPROCESSING = ("none", "largest", "clean")


def _check_volume(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected (slices, rows, cols) labels, got shape {labels.shape}")
    return labels


def keep_largest_components(labels: np.ndarray) -> np.ndarray:
    """``(slices, rows, cols)`` labels with each class reduced to its largest 3D component; input unchanged."""
    labels = _check_volume(labels)
    largest = KeepLargestConnectedComponent(applied_labels=[RV, MYO, LV], independent=True)
    return np.asarray(largest(torch.as_tensor(labels[None].astype(np.int64))))[0].astype(labels.dtype)


def clean_labels(labels: np.ndarray) -> np.ndarray:
    """``(slices, rows, cols)`` ACDC labels of one phase, cleaned; the input is not changed."""
    cleaned = keep_largest_components(labels)
    fill_cavities = FillHoles(applied_labels=[RV, LV], connectivity=1)
    out = np.stack([np.asarray(fill_cavities(torch.as_tensor(s[None])))[0] for s in cleaned])
    for s, slice_labels in enumerate(out):
        wall = ndimage.binary_fill_holes((slice_labels == MYO) | (slice_labels == LV))
        slice_labels[wall & (slice_labels == 0)] = MYO
        out[s] = slice_labels
    return out.astype(cleaned.dtype)


def clean_cine(labels: np.ndarray) -> np.ndarray:
    """:func:`clean_labels` for each phase of ``(phases, slices, rows, cols)`` labels."""
    labels = np.asarray(labels)
    if labels.ndim != 4:
        raise ValueError(f"expected (phases, slices, rows, cols) labels, got shape {labels.shape}")
    return np.stack([clean_labels(phase) for phase in labels])


def check_postprocessing(name: str) -> str:
    """``name`` if it is one of ``POSTPROCESSING``; a bad setting is refused by name."""
    return choice("postprocess", name, POSTPROCESSING)


def postprocess_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """One volume's labels after the post-processing called ``name`` (``none`` returns them as they are)."""
    name = check_postprocessing(name)
    if name == "none":
        return _check_volume(labels)
    return keep_largest_components(labels) if name == "largest" else clean_labels(labels)
