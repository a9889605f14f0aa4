"""Reader for the raw ACDC release: ``patientNNN/Info.cfg``, ED/ES frames with labels, and the 4D cine."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .nifti_io import load_nifti
from .records import Record
from .validate import check_image, check_label

INFO_REQUIRED = ("ED", "ES")
PATIENT_DIR = re.compile(r"^patient\d{3}$")


def parse_info_cfg(path: Path) -> dict[str, object]:
    """Parse ACDC's ``Info.cfg`` (``Key: value`` lines); ED and ES are required 1-based frame numbers."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(path, f"cannot read Info.cfg ({exc.strerror or exc})") from None
    info: dict[str, object] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise DataError(path, f"line {number} is not 'Key: value': {line.strip()!r}")
        info[key.strip()] = value.strip()
    for key in INFO_REQUIRED:
        if key not in info:
            raise DataError(path, f"missing '{key}:' line")
    for key in ("ED", "ES", "NbFrame"):
        if key in info:
            info[key] = _parse_number(path, key, info[key], int)
    for key in ("Height", "Weight"):
        if key in info:
            info[key] = _parse_number(path, key, info[key], float)
    if info["ED"] < 1 or info["ES"] < 1:
        raise DataError(path, f"ED and ES must be 1-based frame numbers, got ED={info['ED']} ES={info['ES']}")
    return info


def _parse_number(path: Path, key: str, value: object, kind: type) -> int | float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"'{key}: {value}' is not a number") from None
    if kind is int and number != int(number):
        raise DataError(path, f"'{key}: {value}' is not a whole number")
    return kind(number)


def find_patient_dirs(root: str | Path) -> list[Path]:
    """Patient folders under ``root`` (ACDC's ``training/``/``testing/`` level or the patients themselves)."""
    root = Path(root)
    dirs = sorted({p.parent for p in root.glob("**/Info.cfg") if PATIENT_DIR.match(p.parent.name)})
    if not dirs:
        raise DataError(root, "no raw ACDC patient folders (patientNNN/Info.cfg) found")
    return dirs


def read_acdc(root: str | Path) -> Iterator[Record]:
    """Yield the labelled ED and ES volumes of every patient, ED first."""
    for patient_dir in find_patient_dirs(root):
        info = parse_info_cfg(patient_dir / "Info.cfg")
        for phase in ("ED", "ES"):
            yield _read_labelled_frame(patient_dir, info, phase)


def read_acdc_cine(root: str | Path) -> Iterator[Record]:
    """Yield every frame of every patient's 4D cine, unlabelled (phase ED/ES where Info.cfg says so)."""
    for patient_dir in find_patient_dirs(root):
        info = parse_info_cfg(patient_dir / "Info.cfg")
        path = patient_dir / f"{patient_dir.name}_4d.nii.gz"
        if not path.exists():
            raise DataError(path, "4D cine file is missing")
        cine, affine, spacing = load_nifti(path)
        if cine.ndim != 4:
            raise DataError(path, f"expected a 4D cine, got an array of shape {cine.shape}")
        cine = check_image(cine, str(path))
        for index, volume in enumerate(cine):
            frame = index + 1
            phase = "ED" if frame == info["ED"] else "ES" if frame == info["ES"] else "other"
            yield Record(
                image=volume,
                patient=patient_dir.name,
                source=str(path),
                spacing=spacing,
                affine=affine,
                frame=frame,
                phase=phase,
                meta=_patient_meta(info),
            )


def _read_labelled_frame(patient_dir: Path, info: dict, phase: str) -> Record:
    frame = int(info[phase])
    stem = f"{patient_dir.name}_frame{frame:02d}"
    image_path = patient_dir / f"{stem}.nii.gz"
    label_path = patient_dir / f"{stem}_gt.nii.gz"
    for path in (image_path, label_path):
        if not path.exists():
            raise DataError(path, f"{phase} frame {frame} named in Info.cfg is missing")
    image, affine, spacing = load_nifti(image_path)
    if image.ndim != 3:
        raise DataError(image_path, f"expected a 3D frame, got an array of shape {image.shape}")
    label, _, _ = load_nifti(label_path)
    return Record(
        image=check_image(image, str(image_path)),
        label=check_label(label, image.shape, str(label_path)),
        patient=patient_dir.name,
        source=str(image_path),
        spacing=spacing,
        affine=affine,
        frame=frame,
        phase=phase,
        meta=_patient_meta(info),
    )


def _patient_meta(info: dict) -> dict[str, object]:
    return {k: info[k] for k in ("Group", "Height", "Weight", "NbFrame") if k in info}
