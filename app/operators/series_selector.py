"""Series selection: the study's short-axis cine stack, chosen by rules on the headers, with the reason
logged for every series (taken or left). A study without one stops the run, each series' reason in the
message. Input ``scan``; output ``selection``: the ``(StudyScan, SeriesChoice)`` pair.
"""

from __future__ import annotations

import logging

from cardioseg.clinical.selection import select_short_axis_cine

from .stage import StageOperator

logger = logging.getLogger("app.operators.series_selector")


class SeriesSelectorOperator(StageOperator):
    STAGE = "select_series"
    INPUTS = ("scan",)
    OUTPUTS = ("selection",)

    def process(self, scan) -> dict:
        choice = select_short_axis_cine(scan)  # logs one line per series: why it was taken or left
        logger.info("selected %s", choice.series.label())
        return {"selection": (scan, choice)}
