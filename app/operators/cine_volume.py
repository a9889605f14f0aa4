"""Cine-aware series to volume: the chosen series read in full as ``(frames, slices, rows, cols)``.

Unlike the SDK's ``DICOMSeriesToVolumeOperator``, which keys instances on slice position and so keeps one
image per position (one cardiac phase of a cine), every phase is kept: instances are grouped by position
along the slice normal and ordered by TriggerTime. Input ``selection``; output ``series``: a ``CineSeries``.
"""

from __future__ import annotations

import logging

from cardioseg.clinical.pipeline import read_short_axis_cine

from .stage import StageOperator

logger = logging.getLogger("app.operators.cine_volume")


class CineVolumeOperator(StageOperator):
    STAGE = "read_cine"
    INPUTS = ("selection",)
    OUTPUTS = ("series",)

    def process(self, selection) -> dict:
        scan, choice = selection
        series = read_short_axis_cine(scan, choice)
        frames, slices, rows, cols = series.pixels.shape
        spacing = " x ".join(f"{s:.3g}" for s in series.spacing)
        logger.info("cine: %d phases x %d slices of %d x %d pixels, spacing %s mm", frames, slices, rows, cols, spacing)
        return {"series": series}
