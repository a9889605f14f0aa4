"""The other series of a real cardiac MR study, added beside a phantom's short-axis cine.

Why: a scanner's study is never the short-axis cine alone. It opens with a localizer (a few single-phase
planes) and holds long-axis cines (one slice position, every phase) with the same patient, study and frame
of reference. Series selection and the deployment app are tested on such a study; the images of these
extra series are the phantom's own frames placed in other planes, since only their headers matter here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dicom_cine import derived_uid, write_dicom_cine
from .phantom import GENERATOR_VERSION, Patient


def _study_tags(patient: Patient) -> dict:
    """The study-level UIDs of the phantom's short-axis series (same derivation as its writer)."""
    key = f"cardioseg-phantom-v{GENERATOR_VERSION}/{patient.seed[0]}/{patient.name}"
    return {
        "StudyInstanceUID": derived_uid(key, "study"),
        "FrameOfReferenceUID": derived_uid(key, "frame-of-reference"),
    }


def write_survey_series(folder: str | Path, patient: Patient) -> list[Path]:
    """Write a three-plane-stack axial localizer (series 90) and a one-slice long-axis cine (series 91)
    of ``patient`` into ``folder``, sharing its study; returns the written files."""
    folder = Path(folder)
    scan, cine = patient.scan, patient.cine.astype(np.int64).clip(0, None)
    study = _study_tags(patient)
    key = f"cardioseg-phantom-survey-v{GENERATOR_VERSION}/{patient.seed[0]}/{patient.name}"
    axial = np.diag([scan.pixel_mm, scan.pixel_mm, 20.0, 1.0])
    axial[:3, 3] = scan.affine[:3, 3]
    localizer = write_dicom_cine(
        folder / "localizer",
        cine[:1, :3],
        axial,
        patient_id=patient.name,
        frame_interval_ms=scan.rr_ms,
        uid_key=f"{key}/localizer",
        tags={
            **study,
            "SeriesNumber": 90,
            "SeriesDescription": "localizer",
            "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
        },
    )
    col, row, normal = (scan.affine[:3, i] / np.linalg.norm(scan.affine[:3, i]) for i in range(3))
    long_axis = np.eye(4)
    long_axis[:3, 0], long_axis[:3, 1], long_axis[:3, 2] = col * scan.pixel_mm, normal * scan.pixel_mm, row * 8.0
    long_axis[:3, 3] = scan.affine[:3, 3]
    mid = cine.shape[1] // 2
    four_chamber = write_dicom_cine(
        folder / "cine_4ch",
        cine[:, mid : mid + 1],
        long_axis,
        patient_id=patient.name,
        frame_interval_ms=scan.rr_ms / scan.n_frames,
        uid_key=f"{key}/4ch",
        tags={**study, "SeriesNumber": 91, "SeriesDescription": "cine 4ch"},
    )
    return localizer + four_chamber
