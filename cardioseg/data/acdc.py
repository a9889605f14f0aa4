"""Reader for the raw ACDC release: ``patientNNN/Info.cfg``, ED/ES frames with labels, and the 4D cine."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from .nifti_io import load_nifti
from .records import Record
from .validate import check_image, check_label, read_text, require_file

INFO_REQUIRED = ("ED", "ES")
PATIENT_DIR = re.compile(r"^patient\d{3}$")


def parse_info_cfg(path: Path) -> dict[str, object]:
    """Parse ACDC's ``Info.cfg`` (``Key: value`` lines); ED and ES are required 1-based frame numbers,
    distinct and within NbFrame where it is given."""
    info: dict[str, object] = {}
    for number, line in enumerate(read_text(path, "Info.cfg").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise DataError(path, f"line {number} is not 'Key: value': {line.strip()!r}")
        if key.strip() in info:
            raise DataError(path, f"line {number} repeats the key '{key.strip()}'")
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
    _check_phases(path, info)
    return info


def _parse_number(path: Path, key: str, value: object, kind: type) -> int | float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"'{key}: {value}' is not a number") from None
    if not math.isfinite(number):
        raise DataError(path, f"'{key}: {value}' is not a finite number")
    if kind is int and number != int(number):
        raise DataError(path, f"'{key}: {value}' is not a whole number")
    return kind(number)


def _check_phases(path: Path, info: dict) -> None:
    """ED and ES name two different frames of the cine, else a phase's label would be read twice or
    from a frame that does not exist."""
    ed, es, n_frames = info["ED"], info["ES"], info.get("NbFrame")
    if ed < 1 or es < 1:
        raise DataError(path, f"ED and ES must be 1-based frame numbers, got ED={ed} ES={es}")
    if ed == es:
        raise DataError(path, f"ED and ES name the same frame {ed}")
    if n_frames is not None and max(ed, es) > n_frames:
        raise DataError(path, f"ED={ed} ES={es} beyond NbFrame={n_frames}")


def find_patient_dirs(root: str | Path) -> list[Path]:
    """Patient folders under ``root`` (ACDC's ``training/``/``testing/`` level or the patients themselves).

    A ``patientNNN`` folder without ``Info.cfg`` beside ones that have it is refused rather than skipped:
    its volumes would silently go missing from every count and split.
    """
    root = Path(root)
    dirs = sorted({p.parent for p in root.glob("**/Info.cfg") if PATIENT_DIR.match(p.parent.name)})
    if not dirs:
        raise DataError(root, "no raw ACDC patient folders (patientNNN/Info.cfg) found")
    for parent in sorted({d.parent for d in dirs}):
        for sibling in sorted(parent.iterdir()):
            if PATIENT_DIR.match(sibling.name) and sibling.is_dir() and sibling not in dirs:
                raise DataError(sibling, "patient folder has no Info.cfg")
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
        path = require_file(patient_dir / f"{patient_dir.name}_4d.nii.gz", "4D cine file")
        cine, affine, spacing = load_nifti(path, ndim=4)
        if info.get("NbFrame", len(cine)) != len(cine):
            raise DataError(path, f"has {len(cine)} frames; Info.cfg says NbFrame: {info['NbFrame']}")
        if max(info["ED"], info["ES"]) > len(cine):
            raise DataError(path, f"has {len(cine)} frames; Info.cfg names ED={info['ED']} ES={info['ES']}")
        cine = check_image(cine, path)
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
    what = f"{phase} frame {frame} named in Info.cfg"
    image_path = require_file(patient_dir / f"{stem}.nii.gz", what)
    label_path = require_file(patient_dir / f"{stem}_gt.nii.gz", f"label of the {what}")
    image, affine, spacing = load_nifti(image_path, ndim=3)
    label, _, _ = load_nifti(label_path, ndim=3)
    return Record(
        image=check_image(image, image_path),
        label=check_label(label, image.shape, label_path),
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
