"""DICOM test material: edit a file's tags, and build a study folder as a scanner exports one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom


def edit_dicom(path: Path, **changes) -> Path:
    """Set tags to new values (``None`` deletes the tag) and save the file in place."""
    ds = pydicom.dcmread(path)
    for tag, value in changes.items():
        if value is None:
            delattr(ds, tag)
        else:
            setattr(ds, tag, value)
    ds.save_as(path)
    return path


def phantom_study(phantom_dir: Path, patient: str, study: Path, *, survey: bool = True) -> Path:
    """``study/`` holding the phantom patient's short-axis cine (``sax/``) and, with ``survey``, a localizer,
    a four-chamber cine and a README, as a scanner's export holds them. ``phantom_dir`` was written by
    ``write_cohort(..., seed=0)`` with its default sizes."""
    from cardioseg.data.phantom import make_patient, write_survey_series

    shutil.copytree(phantom_dir / "dicom" / patient, study / "sax")
    if survey:
        write_survey_series(study, make_patient(0, int(patient.removeprefix("patient"))))
        (study / "README.txt").write_text("exported by a PACS viewer\n")
    return study
