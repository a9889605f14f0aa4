"""Everything a study's run writes, into one folder, all or nothing.

The outputs are staged in a temporary folder (beside a new ``out_dir``, inside an existing one, which may be
a container's mounted volume) and moved into place only when every one of them was written, so a failure (a
full disk, a SEG the encoder refuses) leaves no half-written study for a PACS upload or a spreadsheet to pick
up. An existing non-empty ``out_dir`` is refused unless
``overwrite``: a result a person already has is never replaced silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_directory, check_folder_target
from ..data.dicom_cine import CineSeries
from ..data.nifti_io import save_nifti
from .dicom_seg import write_dicom_seg
from .indices import CardiacIndices
from .picture import write_picture
from .report import indices_record, write_indices_json, write_report

SEG_FILE = "segmentation.dcm"
CINE_LABELS, ED_LABELS, ES_LABELS = "labels_cine.nii.gz", "labels_ed.nii.gz", "labels_es.nii.gz"
INDICES_FILE, REPORT_FILE, PICTURE_FILE = "indices.json", "report.txt", "ed_es.png"
OUTPUT_FILES = {
    "seg": SEG_FILE,
    "labels_cine": CINE_LABELS,
    "labels_ed": ED_LABELS,
    "labels_es": ES_LABELS,
    "indices": INDICES_FILE,
    "report": REPORT_FILE,
    "picture": PICTURE_FILE,
}


def check_output_folder(out_dir: str | Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out_dir`` (without ``overwrite``) or one this user cannot write, before any work."""
    check_folder_target(out_dir, overwrite, what="output folder")


def write_study_outputs(
    out_dir: str | Path,
    series: CineSeries,
    labels: np.ndarray,
    indices: CardiacIndices,
    provenance: dict[str, Any],
    *,
    overwrite: bool = False,
) -> dict[str, Path]:
    """DICOM SEG, NIfTI label maps (the cine, ED and ES), indices JSON, a text report and the ED/ES picture."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    with atomic_directory(out_dir, overwrite=overwrite) as stage:
        write_dicom_seg(
            series,
            labels,
            stage / SEG_FILE,
            algorithm_name="cardioseg",
            algorithm_version=__version__,
            model_sha256=provenance.get("model", {}).get("sha256"),
        )
        frame_ms = float(np.median(np.diff(series.trigger_times[:, 0]))) if series.n_frames > 1 else None
        save_nifti(stage / CINE_LABELS, labels, series.affine, frame_interval_ms=frame_ms)
        save_nifti(stage / ED_LABELS, labels[indices.ed_phase], series.affine)
        save_nifti(stage / ES_LABELS, labels[indices.es_phase], series.affine)
        record = indices_record(indices, series, provenance=provenance)
        write_indices_json(record, stage / INDICES_FILE)
        write_report(record, stage / REPORT_FILE)
        write_picture(series, labels, indices, stage / PICTURE_FILE)
    return {key: out_dir / name for key, name in OUTPUT_FILES.items()}
