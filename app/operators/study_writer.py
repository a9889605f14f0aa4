"""Writers: DICOM SEG (every phase), NIfTI label maps (cine, ED, ES), ``indices.json`` with the run's
provenance (input, series choice and reasons, model and its sha256, stage times), ``report.txt`` and the
ED/ES picture. All are staged, then moved into the output folder together: a failure leaves nothing
half-written. Inputs ``selection``, ``series``, ``labels`` and ``indices``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cardioseg.clinical.model import BundleModel
from cardioseg.clinical.outputs import write_study_outputs
from cardioseg.clinical.pipeline import provenance

from .stage import StageOperator

logger = logging.getLogger("app.operators.study_writer")


class StudyWriterOperator(StageOperator):
    STAGE = "write_outputs"
    INPUTS = ("selection", "series", "labels", "indices")

    def __init__(self, fragment, *args, output_folder: Path, model: BundleModel, overwrite: bool = False, **kwargs):
        self.output_folder = Path(output_folder)
        self.overwrite = overwrite
        self.model = model
        super().__init__(fragment, *args, **kwargs)

    def process(self, selection, series, labels, indices) -> dict:
        scan, choice = selection
        record = provenance(scan, choice, self.model, dict(self.run_state.timings))  # stage times so far
        outputs = write_study_outputs(self.output_folder, series, labels, indices, record, overwrite=self.overwrite)
        self.run_state.outputs.update(outputs)
        logger.info("wrote %s: %s", self.output_folder, ", ".join(path.name for path in outputs.values()))
        return {}
