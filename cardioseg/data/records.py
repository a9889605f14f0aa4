"""The one record type every reader yields, so everything downstream sees the same thing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Phase = Literal["ED", "ES", "other"]


@dataclass(frozen=True)
class Record:
    """One image volume (or one natural image) with what is known about it.

    ``image`` is float32: ``(slices, rows, cols)`` for cardiac volumes, ``(channels, rows, cols)`` for
    natural images. ``label`` has the image's shape, uint8, ACDC convention (0 BG, 1 RV, 2 MYO, 3 LV).
    ``spacing`` is ``(slice, row, col)`` in mm where known. ``affine`` maps ``(col, row, slice, 1)``
    indices to RAS world mm (the NIfTI convention) where known. ``frame`` is the 1-based cine frame.
    ``category`` is an ImageFolder class index, for supervised natural-image pretraining.
    """

    image: np.ndarray
    patient: str
    source: str
    label: np.ndarray | None = None
    spacing: tuple[float, float, float] | None = None
    affine: np.ndarray | None = None
    frame: int | None = None
    phase: Phase = "other"
    category: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_slices(self) -> int:
        return int(self.image.shape[0])
