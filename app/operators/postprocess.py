"""Post-processing: per phase, the largest connected structure of each class and the cavities' holes filled.

Input ``raw_labels``; output ``labels``: cleaned uint8 ``(frames, slices, rows, cols)``.
"""

from __future__ import annotations

from cardioseg.postprocess import clean_cine

from .stage import StageOperator


class PostprocessOperator(StageOperator):
    STAGE = "postprocess"
    INPUTS = ("raw_labels",)
    OUTPUTS = ("labels",)

    def process(self, raw_labels) -> dict:
        return {"labels": clean_cine(raw_labels)}
