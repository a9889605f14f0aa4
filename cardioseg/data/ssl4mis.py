"""Reader for SSL4MIS h5 volumes (``volumes/patientNNN_frameFF.h5``), the format most semi-supervised
cardiac papers use. Images are already percentile-normalised to [0, 1]; no spacing is stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from ..errors import DataError
from .records import Record
from .validate import check_array_size, check_dtype, check_image, check_label, read_text, require_file

VOLUME_NAME = re.compile(r"^(patient\d{3})_frame(\d{2})\.h5$")
SPLITS = ("train", "val", "test")


def volume_dir(root: Path) -> Path:
    return root / "volumes" if (root / "volumes").is_dir() else root


def list_volumes(root: str | Path) -> list[tuple[str, int, Path]]:
    """``(patient, frame, path)`` for every volume file, sorted; refuses a folder with none.

    An ``.h5`` file whose name does not say its patient and frame is refused rather than skipped, so no
    volume goes missing from the data without a word.
    """
    root = Path(root)
    found = []
    for path in sorted(volume_dir(root).glob("*.h5")):
        if path.name.startswith("."):
            continue
        match = VOLUME_NAME.match(path.name)
        if not match:
            raise DataError(path, "h5 file is not named patientNNN_frameFF.h5, so its patient and frame are unknown")
        found.append((match.group(1), int(match.group(2)), path))
    if not found:
        raise DataError(root, "no SSL4MIS volumes (patientNNN_frameFF.h5) found")
    return found


def read_split(root: str | Path, split: str) -> list[str]:
    """Patient ids listed in ``root/{split}.txt`` (SSL4MIS's train/val/test split files).

    Every listed patient must have volumes: a split that names a patient the data lacks would train or
    score on fewer patients than it records.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root) / f"{split}.txt"
    text = read_text(path, f"split file for '{split}'")
    patients = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if not patients:
        raise DataError(path, "split file lists no patients")
    known = {patient for patient, _, _ in list_volumes(root)}
    if missing := [patient for patient in patients if patient not in known]:
        folder = volume_dir(Path(root))
        raise DataError(path, f"lists {len(missing)} patient(s) with no volume in {folder}: {missing[:5]}")
    return patients


def read_ssl4mis(root: str | Path, split: str | None = None) -> Iterator[Record]:
    """Yield labelled volumes; per patient the lower frame number is ED, the higher ES."""
    wanted = set(read_split(root, split)) if split else None
    frames: dict[str, list[tuple[int, Path]]] = {}
    for patient, frame, path in list_volumes(root):
        if wanted is None or patient in wanted:
            frames.setdefault(patient, []).append((frame, path))
    for patient, entries in frames.items():
        entries.sort()
        for rank, (frame, path) in enumerate(entries):
            phase = ("ED" if rank == 0 else "ES") if len(entries) == 2 else "other"
            yield read_volume(path, patient, frame, phase)


def read_volume(path: Path, patient: str, frame: int, phase: str) -> Record:
    image, label = _read_h5(path)
    return Record(
        image=check_image(image, path),
        label=check_label(label, image.shape, path),
        patient=patient,
        source=str(path),
        frame=frame,
        phase=phase,
    )


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    path = require_file(path, "h5 volume")
    try:
        with h5py.File(path, "r") as h5:
            image, label = _read_dataset(h5, "image", path), _read_dataset(h5, "label", path)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:  # h5py's for a damaged file
        raise DataError(path, f"not a readable h5 file ({exc})") from None
    if image.ndim != 3:
        raise DataError(path, f"expected image of shape (slices, H, W), got {image.shape}")
    return image, label


def _read_dataset(h5: h5py.File, key: str, path: Path) -> np.ndarray:
    """One dataset, checked from its declared kind, dtype and size before anything is allocated."""
    if key not in h5:
        raise DataError(path, f"h5 file has no dataset {key!r} (has {sorted(h5.keys())})")
    dataset = h5[key]
    if not isinstance(dataset, h5py.Dataset):
        raise DataError(path, f"h5 {key!r} is a {type(dataset).__name__}, not a dataset")
    if dataset.shape is None:
        raise DataError(path, f"h5 dataset {key!r} is empty (null dataspace)")
    check_dtype(dataset.dtype, path, key)
    check_array_size(dataset.shape, dataset.dtype, path)
    return dataset[()]
