"""Which series of a study is the short-axis cine stack: rules on the headers, with the reason for each series.

Why by rules and not by SeriesDescription: descriptions are free text that differs per vendor and site
("SA cine", "sax_retro", "CINE_SAX", a local language). The headers say what matters: an MR image series
(not a localizer, not a multi-frame enhanced object) with full geometry, several cardiac phases at each slice
position (cine), at least three parallel slice positions (a stack: long-axis cines have one) and a double
oblique orientation (the short axis follows the LV long axis, which is never a patient axis; an axial or
coronal cine stack is another kind of series). Among the series that pass, an ORIGINAL one wins over a
DERIVED copy (a colour map, a filtered or cropped export), then the one with the most slice positions, then
the most phases, then the later series number (a repeated acquisition replaces an earlier one). Every series
gets a line in the log saying why it was taken or left. A stack stored as one series per slice is not read
(its slices would need assembling across series, and the SEG referencing several): the error says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.uid import MRImageStorage

from ..data.dicom_study import SeriesSummary, StudyScan
from ..errors import DataError

logger = logging.getLogger("cardioseg.clinical.selection")

MIN_SLICE_POSITIONS = 3
MIN_PHASES = 2
MAX_PATIENT_AXIS_ANGLE_DEG = 15.0  # a stack whose normal lies this close to a patient axis is not short-axis


@dataclass(frozen=True)
class SeriesChoice:
    """The chosen series, and for every series of the study the reason it was taken or left."""

    series: SeriesSummary
    reasons: dict[str, str]  # series UID -> reason

    def describe(self) -> list[dict]:
        """JSON-able record of the decision, for the run's provenance."""
        return [
            {"series_uid": uid, "chosen": uid == self.series.uid, "reason": why} for uid, why in self.reasons.items()
        ]


def _patient_axis_angle(series: SeriesSummary) -> float:
    """Angle in degrees between the slice normal and the nearest patient axis (LR, AP or HF)."""
    normal = np.abs(series.normal)
    return float(np.degrees(np.arccos(np.clip(normal.max(), -1.0, 1.0))))


def rejection(series: SeriesSummary, min_positions: int = MIN_SLICE_POSITIONS) -> str | None:
    """Why ``series`` is not a short-axis cine stack (of ``min_positions`` slices), or None when it is one."""
    if series.modality != "MR":
        return f"modality is {series.modality or 'missing'}, not MR"
    if series.multi_frame:
        return "multi-frame (enhanced) MR objects are not supported; export the series as single-frame images"
    if series.sop_class_uid and series.sop_class_uid != MRImageStorage:
        return f"SOP class {series.sop_class_uid} is not MR Image Storage"
    if any("LOCALIZER" in value.upper() for value in series.image_type):
        return "a localizer (ImageType " + "\\".join(series.image_type) + ")"
    geometry = {tag: path for tag, path in series.missing_tags.items() if tag != "TriggerTime"}
    if geometry:
        return f"geometry tag(s) {', '.join(geometry)} missing (e.g. in {next(iter(geometry.values())).name})"
    if series.mixed_orientation:
        return "its images have different orientations"
    if series.n_phases < MIN_PHASES or "TriggerTime" in series.missing_tags:
        return "not a cine: one image per slice position (or no TriggerTime)"
    if series.n_positions < min_positions:
        return f"{series.n_positions} slice position(s): a long-axis or single-slice cine, not a short-axis stack"
    angle = _patient_axis_angle(series)
    if angle < MAX_PATIENT_AXIS_ANGLE_DEG:
        return f"slice normal within {angle:.0f} degrees of a patient axis: an axial, coronal or sagittal stack"
    return None


def _is_original(series: SeriesSummary) -> bool:
    """Not marked DERIVED in ImageType (a series that does not say is taken as original)."""
    return not series.image_type or series.image_type[0].upper() != "DERIVED"


def _rank(series: SeriesSummary) -> tuple:
    return _is_original(series), series.n_positions, series.n_phases, series.number or 0


def _why_not(series: SeriesSummary, chosen: SeriesSummary) -> str:
    """Why another short-axis stack lost to ``chosen``: the first rule of ``_rank`` that told them apart."""
    if _is_original(chosen) and not _is_original(series):
        return "it is DERIVED and the chosen one ORIGINAL"
    if series.n_positions != chosen.n_positions:
        return "the chosen one has more slices"
    if series.n_phases != chosen.n_phases:
        return "the chosen one has more phases"
    return "the chosen one is later"


def _one_series_per_slice(series: tuple[SeriesSummary, ...]) -> str:
    """A hint when the stack looks stored as one series per slice (a common export), which is not read."""
    single = [s for s in series if s.n_positions == 1 and rejection(s, min_positions=1) is None]
    # long-axis cines (2-, 3-, 4-chamber) are single slices too, but not parallel ones
    parallel = max(
        ([t for t in single if abs(float(s.normal @ t.normal)) > 0.999] for s in single), key=len, default=[]
    )
    if len(parallel) < MIN_SLICE_POSITIONS:
        return ""
    return (
        f"{len(parallel)} parallel cine series hold one slice each: the short-axis stack seems stored as one series "
        "per slice, which is not read; export it as one series. "
    )


def select_short_axis_cine(scan: StudyScan) -> SeriesChoice:
    """The short-axis cine stack of ``scan``; a DataError naming the folder (with each series' reason) if none."""
    reasons: dict[str, str] = {}
    candidates = []
    for series in scan.series:
        why = rejection(series)
        if why is None:
            candidates.append(series)
        else:
            reasons[series.uid] = f"left: {why}"
    if not candidates:
        listing = "; ".join(f"{s.label()}: {reasons[s.uid].removeprefix('left: ')}" for s in scan.series)
        skipped = ""
        if scan.skipped:
            skipped = f"; {len(scan.skipped)} file(s) skipped as not DICOM, e.g. {scan.skipped[0][0]}"
        hint = _one_series_per_slice(scan.series)
        raise DataError(scan.folder, f"no short-axis cine series in the study ({hint}{listing}{skipped})")
    chosen = max(candidates, key=_rank)
    for series in candidates:
        stack = f"{series.n_positions} slices x {series.n_phases} phases"
        reasons[series.uid] = (
            f"chosen: short-axis cine stack, {stack}"
            if series is chosen
            else f"left: also a short-axis cine stack ({stack}), but {_why_not(series, chosen)}: {chosen.label()}"
        )
    for series in scan.series:
        logger.info("%s: %s", series.label(), reasons[series.uid])
    return SeriesChoice(series=chosen, reasons={s.uid: reasons[s.uid] for s in scan.series})
