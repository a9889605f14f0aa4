"""Study loading: every series of the input folder described from its file headers (no pixels yet).

Files that are not DICOM (a DICOMDIR's companions, a readme) are skipped and counted; a file that says it
is DICOM but cannot be parsed stops the run with its path. Output ``scan``: a ``StudyScan``.
"""

from __future__ import annotations

from pathlib import Path

from cardioseg.data.dicom_study import scan_study

from .stage import StageOperator


class StudyLoaderOperator(StageOperator):
    STAGE = "scan_study"
    OUTPUTS = ("scan",)

    def __init__(self, fragment, *args, input_folder: Path, **kwargs):
        self.input_folder = Path(input_folder)
        super().__init__(fragment, *args, **kwargs)

    def process(self) -> dict:
        return {"scan": scan_study(self.input_folder)}
