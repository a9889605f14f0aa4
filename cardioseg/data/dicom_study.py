"""A DICOM study folder as a list of series, described from their headers, before any pixel is read.

Why: a real study holds localizers, long-axis cines, scout and derived series beside the short-axis cine,
and often a DICOMDIR, a readme or a viewer's files too. Choosing the series to segment needs each series'
modality, image type, orientation, number of slice positions and of cardiac phases; this module reads
only headers (``stop_before_pixels``) to describe every series. It is lenient where a study is untidy
(files that are not DICOM are skipped and counted; a bare data set without the Part 10 preamble is read)
and strict where data is damaged: a file that says it is DICOM (the ``DICM`` marker) but cannot be parsed
is a DataError naming it. A folder holding several studies (patients) is refused: which one to report is
the user's choice. The chosen series is then read in full by
:func:`cardioseg.data.dicom_cine.read_cine_files`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset
from tqdm.auto import tqdm

from ..errors import DataError
from .dicom_cine import ORIENTATION_TOL, dcmread_strict, dicom_files, dicom_layout, series_uid

logger = logging.getLogger("cardioseg.data.dicom_study")

GEOMETRY_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_POSITION_TOL_MM = 0.01


@dataclass(frozen=True)
class SeriesSummary:
    """What the headers of one series say; ``n_positions``/``n_phases`` are 0 where geometry is missing."""

    uid: str
    study_uid: str
    patient_id: str
    number: int | None
    description: str
    modality: str
    sop_class_uid: str
    image_type: tuple[str, ...]
    paths: tuple[Path, ...]
    missing_tags: dict[str, Path]  # geometry tags or TriggerTime absent from an instance -> the first such file
    orientation: tuple[float, ...] | None  # ImageOrientationPatient of the first instance
    mixed_orientation: bool
    n_positions: int  # distinct slice positions along the normal
    n_phases: int  # most distinct trigger times at one slice position
    multi_frame: bool

    @property
    def normal(self) -> np.ndarray | None:
        """The slice normal (LPS), or None without an orientation."""
        if self.orientation is None:
            return None
        row, col = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        normal = np.cross(row, col)
        return normal / np.linalg.norm(normal)

    def label(self) -> str:
        """How a person names the series in a log line: number, description and UID."""
        number = "?" if self.number is None else self.number
        return f"series {number} {self.description!r} ({len(self.paths)} files, UID {self.uid})"


@dataclass(frozen=True)
class StudyScan:
    """Every series of a study folder, in SeriesNumber order, and the files left out as not DICOM."""

    folder: Path
    series: tuple[SeriesSummary, ...]
    skipped: tuple[tuple[Path, str], ...]


def _numbers(ds: Dataset, tag: str, n: int) -> np.ndarray | None:
    """A numeric tag of ``n`` finite values, or None where it is absent, empty or malformed."""
    value = ds.get(tag)
    if value in (None, "", []):
        return None
    try:
        values = np.asarray([float(v) for v in np.atleast_1d(value)], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.shape == (n,) and np.isfinite(values).all() else None


def _summarise(uid: str, headers: list[tuple[Path, Dataset]]) -> SeriesSummary:
    first = headers[0][1]
    missing: dict[str, Path] = {}
    for path, ds in headers:
        for tag in (*GEOMETRY_TAGS, "TriggerTime"):
            if ds.get(tag) in (None, "", []):
                missing.setdefault(tag, path)
    orientations = [_numbers(ds, "ImageOrientationPatient", 6) for _, ds in headers]
    positions = [_numbers(ds, "ImagePositionPatient", 3) for _, ds in headers]
    orientation = orientations[0]
    n_positions = n_phases = 0
    mixed = False
    if orientation is not None and all(o is not None for o in orientations) and all(p is not None for p in positions):
        mixed = any(not np.allclose(o, orientation, atol=ORIENTATION_TOL) for o in orientations)
        normal = np.cross(orientation[:3], orientation[3:])
        heights = np.sort(np.array([p @ normal for p in positions]))
        n_positions = 1 + int((np.diff(heights) > _POSITION_TOL_MM).sum())
        phases: defaultdict[int, set] = defaultdict(set)
        for (_, ds), position in zip(headers, positions):
            phases[round(float(position @ normal) / _POSITION_TOL_MM)].add(str(ds.get("TriggerTime", "")))
        n_phases = max(len(times) for times in phases.values())
    number = first.get("SeriesNumber")
    return SeriesSummary(
        uid=uid,
        study_uid=str(first.get("StudyInstanceUID", "")),
        patient_id=str(first.get("PatientID", "")),
        number=None if number in (None, "") else int(number),
        description=str(first.get("SeriesDescription", "")),
        modality=str(first.get("Modality", "")),
        sop_class_uid=str(first.get("SOPClassUID", "")),
        image_type=tuple(str(v) for v in np.atleast_1d(first.get("ImageType", []) or [])),
        paths=tuple(path for path, _ in headers),
        missing_tags=dict(sorted(missing.items())),
        orientation=None if orientation is None else tuple(float(v) for v in orientation),
        mixed_orientation=mixed,
        n_positions=n_positions,
        n_phases=n_phases,
        multi_frame=any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in headers),
    )


def _header(path: Path) -> Dataset | None:
    """The header of a DICOM file, or None for a file that is not one.

    A Part 10 file that fails to parse is damaged (a DataError); a file without the marker that starts like
    a bare data set is DICOM only if it parses and names its SOP class.
    """
    layout = dicom_layout(path)
    if layout == "part10":
        return dcmread_strict(path, stop_before_pixels=True)
    if layout == "bare":
        try:
            ds = dcmread_strict(path, stop_before_pixels=True)
        except DataError:
            return None
        return ds if ds.get("SOPClassUID") else None
    return None


def _check_one_study(folder: Path, series: list[SeriesSummary]) -> None:
    """A DataError naming each study when the folder holds more than one."""
    studies = Counter((s.patient_id, s.study_uid) for s in series)
    if len(studies) > 1:
        listing = "; ".join(
            f"patient {pid or '?'}, study {uid or '?'}: {n} series" for (pid, uid), n in studies.items()
        )
        raise DataError(folder, f"holds {len(studies)} studies ({listing}): pass the folder of one study")


def scan_study(folder: str | Path, *, progress: bool = False) -> StudyScan:
    """Describe every series under ``folder`` from the file headers (see the module docstring)."""
    folder = Path(folder)
    by_series: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped: list[tuple[Path, str]] = []
    with disable_value_validation():
        for path in tqdm(dicom_files(folder), desc="scanning study", unit="file", disable=not progress):
            ds = _header(path)
            if ds is None:
                skipped.append((path, "not a DICOM file"))
                continue
            by_series.setdefault(series_uid(ds, path), []).append((path, ds))
    if skipped:
        logger.info("%s: skipped %d file(s) that are not DICOM, e.g. %s", folder, len(skipped), skipped[0][0].name)
    if not by_series:
        raise DataError(folder, f"holds no DICOM files ({len(skipped)} other file(s) skipped)")
    series = sorted(
        (_summarise(uid, headers) for uid, headers in by_series.items()),
        key=lambda s: (s.number is None, s.number or 0, s.uid),
    )
    _check_one_study(folder, series)
    modalities = Counter(s.modality for s in series)
    logger.info("%s: %d series (%s)", folder, len(series), ", ".join(f"{n} {m}" for m, n in modalities.items()))
    return StudyScan(folder=folder, series=tuple(series), skipped=tuple(skipped))
