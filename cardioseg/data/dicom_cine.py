"""DICOM short-axis cine series in and out, keeping every cardiac phase.

Why: series loaders built for CT/MR volumes (MONAI Deploy's among them) key instances on slice position and
drop the rest, so a cine series collapses to one phase. Here instances are grouped by position along the
slice normal and ordered by TriggerTime within each position, giving ``(frames, slices, rows, cols)``.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.config import disable_value_validation
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, MRImageStorage
from pydicom.valuerep import DSfloat
from tqdm.auto import tqdm

from ..errors import DataError
from .records import Record
from .validate import check_image, check_spacing, silenced

REQUIRED_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "TriggerTime")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
_POSITION_TOL_MM = 0.01  # instances closer than this along the normal share a slice position
ORIENTATION_TOL = 1e-3  # direction cosines are often rounded to 3 decimals, some files of a series not
_UNIT_TOL = 1e-2  # direction cosines are stored as decimal strings, often with few digits


@dataclass(frozen=True, eq=False)
class CineSeries:
    """One cine series: every phase of every slice, with the geometry and the tags a DICOM writer needs.

    ``pixels`` is float32 ``(frames, slices, rows, cols)`` after RescaleSlope/Intercept; slices run along the
    slice normal (increasing ``SliceLocation``-like position). ``affine`` maps ``(col, row, slice, 1)`` to RAS
    mm. ``trigger_times`` is ``(frames, slices)`` in ms. ``files[frame][slice]`` is the instance's path;
    ``reference`` is the header (no pixel data) of ``files[0][0]``, for patient/study tags.
    """

    series_uid: str
    study_uid: str
    patient_id: str
    pixels: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    trigger_times: np.ndarray
    folder: Path
    files: tuple[tuple[Path, ...], ...]
    reference: Dataset

    @property
    def n_frames(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class _Instance:
    path: Path
    header: Dataset
    pixels: np.ndarray  # float32 (rows, cols)
    position: np.ndarray  # ImagePositionPatient, LPS mm
    orientation: np.ndarray  # ImageOrientationPatient (6,)
    pixel_spacing: tuple[float, float]  # (row, col) mm
    trigger_time: float
    instance_number: int


# --- reading ------------------------------------------------------------------------------------------


def _floats(ds: Dataset, tag: str, n: int, path: Path) -> np.ndarray:
    try:
        values = np.asarray([float(v) for v in np.atleast_1d(ds[tag].value)], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{tag} has a malformed value {ds[tag].value!r}") from exc
    if values.shape != (n,) or not np.isfinite(values).all():
        raise DataError(path, f"{tag} should hold {n} finite numbers, holds {ds[tag].value!r}")
    return values


def _optional_float(ds: Dataset, tag: str, default: float, path: Path) -> float:
    """A one-number tag where present and non-empty, else ``default``; a malformed value is an error."""
    if ds.get(tag) in (None, ""):
        return default
    return float(_floats(ds, tag, 1, path)[0])


def _pixels(ds: Dataset, path: Path) -> np.ndarray:
    """The image after RescaleSlope/Intercept, refused if the rescale gives NaN, inf or one flat value."""
    if "PixelData" not in ds:
        raise DataError(path, "has no pixel data")
    if _optional_float(ds, "NumberOfFrames", 1, path) > 1:
        raise DataError(path, "is a multi-frame (enhanced) instance; only single-frame cine is supported")
    try:
        with warnings.catch_warnings(), silenced(pydicom.config.logger):  # e.g. more pixel data than Rows x Columns
            warnings.simplefilter("error", UserWarning)
            array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for short or undecodable pixel data
        raise DataError(path, f"pixel data is unreadable or truncated ({exc})") from exc
    if array.ndim != 2:
        raise DataError(path, f"expected one greyscale image, pixel data has shape {array.shape}")
    slope = _optional_float(ds, "RescaleSlope", 1.0, path)
    if slope == 0:
        raise DataError(path, "RescaleSlope is 0, which maps every pixel to one value")
    intercept = _optional_float(ds, "RescaleIntercept", 0.0, path)
    return check_image(array.astype(np.float64) * slope + intercept, path)


def _orientation(ds: Dataset, path: Path) -> np.ndarray:
    """ImageOrientationPatient, which must be two orthogonal unit vectors (row and column directions):
    anything else has no slice normal, and slices could not be stacked."""
    orientation = _floats(ds, "ImageOrientationPatient", 6, path)
    row, col = orientation[:3], orientation[3:]
    if not (np.allclose(np.linalg.norm([row, col], axis=1), 1, atol=_UNIT_TOL) and abs(row @ col) < _UNIT_TOL):
        raise DataError(path, f"ImageOrientationPatient {orientation.tolist()} is not two orthogonal unit vectors")
    return orientation


_PART10_MARKER_AT = 128  # a Part 10 file: a 128-byte preamble, then "DICM"
_DATASET_GROUPS = (b"\x02\x00", b"\x08\x00")  # a data set without the preamble starts with group 0002 or 0008
# Character-set problems only touch text values (names, descriptions), and pydicom decodes them anyway
# (a misspelt "ISO IR 100" as ISO_IR 100, undecodable bytes replaced): not a reason to refuse a file.
_CHARSET_WARNINGS = r"(Incorrect value for Specific Character Set|Unknown encoding|Failed to decode|.*code extension)"


def dicom_layout(path: Path) -> str | None:
    """``"part10"`` (preamble and ``DICM``), ``"bare"`` (a data set without them, as older exporters write),
    or None when the file starts like neither."""
    with open(path, "rb") as handle:
        head = handle.read(_PART10_MARKER_AT + 4)
    if head[_PART10_MARKER_AT:] == b"DICM":
        return "part10"
    return "bare" if head[:2] in _DATASET_GROUPS else None


def dcmread_strict(path: Path, *, stop_before_pixels: bool = False, specific_tags: list[str] | None = None) -> Dataset:
    """The whole file parsed now, every element included (but the pixel data with ``stop_before_pixels``,
    only ``specific_tags`` where given).

    pydicom converts element values lazily, so damage in the middle of a file would surface later as an
    odd exception from whichever tag is read first. Its parsing warnings ("Expected explicit VR, but found
    implicit VR") mean the file contradicts its own transfer syntax, and are errors here (pydicom also logs
    them: that copy is dropped); character-set warnings are not. A bare data set (no preamble) is read with
    the transfer syntax its first elements show.
    """
    try:
        with warnings.catch_warnings(), silenced(pydicom.config.logger):
            warnings.simplefilter("error", UserWarning)
            warnings.filterwarnings("ignore", message=_CHARSET_WARNINGS)
            bare = dicom_layout(path) == "bare"
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, specific_tags=specific_tags, force=bare)
            for _ in ds.iterall():
                pass
            if bare and "TransferSyntaxUID" not in ds.file_meta:
                implicit, _little = ds.original_encoding
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    except InvalidDicomError as exc:
        raise DataError(path, f"not a DICOM file ({exc})") from exc
    except (
        OSError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        NotImplementedError,
        BytesLengthException,
        UserWarning,
    ) as exc:
        raise DataError(path, f"unreadable or truncated DICOM file ({type(exc).__name__}: {exc})") from exc
    return ds


def series_uid(ds: Dataset, path: Path) -> str:
    """The instance's SeriesInstanceUID; without one, a file parsed this far is damaged or not an image."""
    uid = ds.get("SeriesInstanceUID")
    if not uid:
        raise DataError(path, "has no SeriesInstanceUID: a truncated or damaged DICOM file, or not an image")
    return str(uid)


def _read_instance(path: Path) -> _Instance:
    """Read and check one file: a DICOM MR image carrying the tags cine geometry needs."""
    ds = dcmread_strict(path)
    modality = ds.get("Modality")
    if modality is None and "PixelData" not in ds:
        raise DataError(path, "holds neither Modality nor pixel data: the file is truncated or not an image")
    if modality != "MR":
        raise DataError(path, f"modality is {modality!r}, expected 'MR' (a cardiac cine MRI series)")
    missing = [tag for tag in REQUIRED_TAGS if ds.get(tag) in (None, "", [])]
    if missing:
        raise DataError(path, f"missing required DICOM tag(s) {', '.join(missing)}")
    for tag in ("SliceThickness", "SpacingBetweenSlices"):  # optional, but a zero or negative one is corrupt
        if ds.get(tag) not in (None, ""):
            check_spacing(_floats(ds, tag, 1, path), path, tag)
    pixels = _pixels(ds, path)
    del ds.PixelData
    row_mm, col_mm = check_spacing(_floats(ds, "PixelSpacing", 2, path), path, "PixelSpacing")
    return _Instance(
        path=path,
        header=ds,
        pixels=pixels,
        position=_floats(ds, "ImagePositionPatient", 3, path),
        orientation=_orientation(ds, path),
        pixel_spacing=(row_mm, col_mm),
        trigger_time=_optional_float(ds, "TriggerTime", 0.0, path),
        instance_number=int(_optional_float(ds, "InstanceNumber", 0, path)),
    )


def _check_consistent(instances: list[_Instance]) -> None:
    """One orientation, matrix size and pixel spacing across the series, else the geometry is undefined."""
    first = instances[0]
    for inst in instances[1:]:
        if not np.allclose(inst.orientation, first.orientation, atol=ORIENTATION_TOL):
            raise DataError(inst.path, "ImageOrientationPatient differs from the rest of its series")
        if inst.pixels.shape != first.pixels.shape:
            raise DataError(inst.path, f"image size {inst.pixels.shape} differs from {first.pixels.shape}")
        if not np.allclose(inst.pixel_spacing, first.pixel_spacing, atol=1e-4):
            raise DataError(inst.path, f"PixelSpacing {inst.pixel_spacing} differs from {first.pixel_spacing}")


def _group_by_position(instances: list[_Instance], normal: np.ndarray) -> list[list[_Instance]]:
    """Instances grouped by position along the slice normal (ascending), each group ordered by TriggerTime."""
    ordered = sorted(instances, key=lambda inst: float(inst.position @ normal))
    groups: list[list[_Instance]] = [[ordered[0]]]
    for inst in ordered[1:]:
        if float((inst.position - groups[-1][-1].position) @ normal) > _POSITION_TOL_MM:
            groups.append([])
        groups[-1].append(inst)
    return [sorted(g, key=lambda inst: (inst.trigger_time, inst.instance_number)) for g in groups]


def _check_frames(slices: list[list[_Instance]], normal: np.ndarray) -> None:
    """Every slice position must hold the same number of phases, each at a distinct trigger time."""
    counts = Counter(len(s) for s in slices)
    expected = counts.most_common(1)[0][0]
    for s in slices:
        where = f"slice at {float(s[0].position @ normal):.2f} mm along the normal"
        if len(s) != expected:
            raise DataError(s[0].path, f"{where} has {len(s)} frames, other slices of the series have {expected}")
        times = [inst.trigger_time for inst in s]
        if len(set(times)) != len(times):
            raise DataError(s[0].path, f"{where} has instances with the same TriggerTime")


def _affine(slices: list[list[_Instance]], normal: np.ndarray) -> np.ndarray:
    """RAS affine of (col, row, slice): DICOM's LPS geometry with the stack's real slice step."""
    first = slices[0][0]
    row_mm, col_mm = first.pixel_spacing
    positions = np.array([s[0].position for s in slices])
    if len(slices) > 1:
        gaps = np.diff(positions @ normal)
        if np.ptp(gaps) > max(0.05 * gaps.mean(), 0.01):
            odd = int(np.argmax(np.abs(gaps - np.median(gaps)))) + 1  # the slice after the odd gap
            raise DataError(slices[odd][0].path, f"slices are not evenly spaced (gaps {np.round(gaps, 2).tolist()} mm)")
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
    else:
        step = normal * float(first.header.get("SpacingBetweenSlices") or first.header.get("SliceThickness") or 1.0)
    lps = np.eye(4)
    lps[:3, 0] = first.orientation[:3] * col_mm
    lps[:3, 1] = first.orientation[3:] * row_mm
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return LPS_TO_RAS @ lps


def _assemble(instances: list[_Instance], folder: Path) -> CineSeries:
    _check_consistent(instances)
    orientation = instances[0].orientation
    normal = np.cross(orientation[:3], orientation[3:])
    slices = _group_by_position(instances, normal)
    _check_frames(slices, normal)
    affine = _affine(slices, normal)
    by_frame = list(zip(*slices, strict=True))  # [frame][slice]
    ref = by_frame[0][0].header
    row_mm, col_mm = instances[0].pixel_spacing
    return CineSeries(
        series_uid=str(ref.SeriesInstanceUID),
        study_uid=str(ref.get("StudyInstanceUID", "")),
        patient_id=str(ref.get("PatientID", "")),
        pixels=np.stack([np.stack([inst.pixels for inst in frame]) for frame in by_frame]),
        affine=affine,
        spacing=(round(float(np.linalg.norm(affine[:3, 2])), 6), row_mm, col_mm),
        trigger_times=np.array([[inst.trigger_time for inst in frame] for frame in by_frame]),
        folder=folder,
        files=tuple(tuple(inst.path for inst in frame) for frame in by_frame),
        reference=ref,
    )


def files_under(folder: Path):
    """Every file under ``folder``, following linked folders (each real folder once, so a link loop ends)."""
    seen = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            if path.is_file():
                yield path


def dicom_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder`` (recursively, through linked folders) that may be a DICOM instance:
    hidden files and DICOMDIR are left out. A missing folder, a file, or a folder with no such files is a
    DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "DICOM folder does not exist" if not folder.exists() else "is not a folder")
    paths = sorted(p for p in files_under(folder) if not p.name.startswith(".") and p.name != "DICOMDIR")
    if not paths:
        raise DataError(folder, "folder holds no DICOM files")
    return paths


def read_dicom_cine(folder: str | Path, *, progress: bool = False) -> list[CineSeries]:
    """Read every cine series under ``folder`` (searched recursively): one ``CineSeries`` per series UID.

    Strict: any file that is not an MR image with cine geometry and trigger times raises ``DataError``
    naming that file (hidden files and DICOMDIR are skipped). For a whole study, which also holds
    localizers and other series, pick the series first (:mod:`cardioseg.data.dicom_study`) and read it
    with :func:`read_cine_files`.
    """
    return read_cine_files(dicom_files(folder), folder, progress=progress)


def read_cine_files(paths: list[Path], folder: str | Path, *, progress: bool = False) -> list[CineSeries]:
    """Read these files as cine series (one ``CineSeries`` per series UID, in SeriesNumber order).

    pydicom's value validation is off while reading: the tags used here are checked and a malformed one is
    an error naming the file, while a malformed tag that is not used would only print a warning.
    """
    folder = Path(folder)
    with disable_value_validation():
        by_series: dict[str, list[_Instance]] = {}
        for path in tqdm(paths, desc="reading DICOM", unit="file", disable=not progress):
            inst = _read_instance(Path(path))
            by_series.setdefault(series_uid(inst.header, path), []).append(inst)
        series = [_assemble(instances, folder) for instances in by_series.values()]
        return sorted(series, key=_series_order)


def _series_order(series: CineSeries) -> tuple[float, str]:
    return _optional_float(series.reference, "SeriesNumber", 0, series.files[0][0]), series.series_uid


def cine_to_records(series: CineSeries) -> list[Record]:
    """One ``Record`` per cine frame (phase unknown from DICOM alone, so ``"other"``; frames 1-based)."""
    source = str(series.folder)
    meta = {"series_uid": series.series_uid, "study_uid": series.study_uid}
    return [
        Record(
            image=series.pixels[f],
            patient=series.patient_id,
            source=source,
            spacing=series.spacing,
            affine=series.affine.copy(),
            frame=f + 1,
            phase="other",
            meta={**meta, "trigger_time_ms": float(np.median(series.trigger_times[f]))},
        )
        for f in range(series.n_frames)
    ]


# --- writing ------------------------------------------------------------------------------------------


def _ds(value: float) -> DSfloat:
    """A DICOM decimal string of at most 16 characters keeping as many digits as fit."""
    return DSfloat(float(value), auto_format=True)


def derived_uid(key: str, *parts: object) -> str:
    """A UID derived from ``key`` and ``parts``, so the same input gives the same UIDs.

    A name-based (SHA-1) UUID under the 2.25 root (ISO/IEC 9834-8); pydicom's ``generate_uid`` with the
    2.25 root ignores its entropy sources and is random.
    """
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '/'.join([key, *map(str, parts)])).int}"


def _series_dataset(key: str, patient_id: str, tags: dict) -> Dataset:
    """Patient, study, series and frame-of-reference tags shared by every instance of the series."""
    ds = Dataset()
    ds.SOPClassUID = MRImageStorage
    ds.Modality = "MR"
    ds.PatientID = patient_id
    ds.PatientName = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = derived_uid(key, "study")
    ds.SeriesInstanceUID = derived_uid(key, "series")
    ds.FrameOfReferenceUID = derived_uid(key, "frame-of-reference")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "120000"
    ds.SeriesNumber = 1
    ds.SeriesDescription = "SA cine"
    ds.BodyPartExamined = "HEART"
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "cardioseg"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SS"
    ds.ScanOptions = "CG"
    ds.MRAcquisitionType = "2D"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for name, value in tags.items():
        setattr(ds, name, value)
    return ds


def write_dicom_cine(
    folder: str | Path,
    cine: np.ndarray,
    affine: np.ndarray,
    *,
    patient_id: str,
    frame_interval_ms: float,
    uid_key: str,
    slice_thickness_mm: float | None = None,
    tags: dict | None = None,
) -> list[Path]:
    """Write a cine ``(frames, slices, rows, cols)`` as one MR series, one instance per slice and phase.

    Pixel values must be integers in 0..65535 and are stored as they are (no rescale), so reading back gives
    the same numbers. ``affine`` is the cardioseg/NIfTI RAS affine; UIDs derive from ``uid_key`` (same key,
    same UIDs, same bytes). ``tags`` adds or overrides series-level tags (e.g. PatientWeight).
    """
    cine = np.asarray(cine)
    if cine.ndim != 4:
        raise ValueError(f"expected (frames, slices, rows, cols), got shape {cine.shape}")
    if cine.min() < 0 or cine.max() > 65535 or not np.array_equal(cine, np.rint(cine)):
        raise ValueError("cine pixel values must be integers in 0..65535")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_frames, n_slices, rows, cols = cine.shape
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    col_mm, row_mm, slice_mm = np.linalg.norm(lps[:3, :3], axis=0)
    normal = lps[:3, 2] / slice_mm
    base = _series_dataset(
        uid_key,
        patient_id,
        {
            "Rows": rows,
            "Columns": cols,
            "PixelSpacing": [_ds(row_mm), _ds(col_mm)],
            "ImageOrientationPatient": [_ds(v) for v in (*lps[:3, 0] / col_mm, *lps[:3, 1] / row_mm)],
            "SliceThickness": _ds(slice_thickness_mm or slice_mm),
            "SpacingBetweenSlices": _ds(slice_mm),
            "CardiacNumberOfImages": n_frames,
            "NominalInterval": round(frame_interval_ms * n_frames),
            **(tags or {}),
        },
    )
    paths = []
    for s in range(n_slices):
        position = lps[:3, :3] @ np.array([0.0, 0.0, s]) + lps[:3, 3]
        for f in range(n_frames):
            number = s * n_frames + f + 1
            ds = Dataset(dict(base))  # shares the series-level elements; only new per-instance ones are set
            ds.SOPInstanceUID = derived_uid(uid_key, "instance", s, f)
            ds.InstanceNumber = number
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(position @ normal)
            ds.TriggerTime = _ds(f * frame_interval_ms)
            ds.PixelData = cine[f, s].astype("<u2").tobytes()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            path = folder / f"IM{number:05d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths
