"""End-diastole, end-systole and the clinical indices: LV/RV volumes and ejection fractions, LV mass.

ED is the phase of the largest LV cavity, ES of the smallest; volumes by summation of discs with the
series' real spacing. Inputs ``series`` and ``labels``; output ``indices``: a ``CardiacIndices``.
"""

from __future__ import annotations

import logging

from cardioseg.clinical.indices import cardiac_indices

from .stage import StageOperator

logger = logging.getLogger("app.operators.cardiac_indices")


class CardiacIndicesOperator(StageOperator):
    STAGE = "indices"
    INPUTS = ("series", "labels")
    OUTPUTS = ("indices",)

    def process(self, series, labels) -> dict:
        indices = cardiac_indices(labels, series.spacing)
        logger.info(
            "ED phase %d, ES phase %d: LVEF %.1f %%, RVEF %.1f %%, LV mass %.1f g",
            indices.ed_phase,
            indices.es_phase,
            indices.lvef_percent,
            indices.rvef_percent,
            indices.lv_mass_g,
        )
        return {"indices": indices}
