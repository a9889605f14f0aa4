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
from .validate import check_image, check_label

VOLUME_NAME = re.compile(r"^(patient\d{3})_frame(\d{2})\.h5$")
SPLITS = ("train", "val", "test")


def volume_dir(root: Path) -> Path:
    return root / "volumes" if (root / "volumes").is_dir() else root


def list_volumes(root: str | Path) -> list[tuple[str, int, Path]]:
    """``(patient, frame, path)`` for every volume file, sorted; refuses a folder with none."""
    root = Path(root)
    found = []
    for path in sorted(volume_dir(root).glob("*.h5")):
        match = VOLUME_NAME.match(path.name)
        if match:
            found.append((match.group(1), int(match.group(2)), path))
    if not found:
        raise DataError(root, "no SSL4MIS volumes (patientNNN_frameFF.h5) found")
    return found


def read_split(root: str | Path, split: str) -> list[str]:
    """Patient ids listed in ``root/{split}.txt`` (SSL4MIS's train/val/test split files)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(root) / f"{split}.txt"
    if not path.exists():
        raise DataError(path, f"split file for '{split}' is missing")
    patients = list(dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip()))
    if not patients:
        raise DataError(path, "split file lists no patients")
    return patients


def read_ssl4mis(root: str | Path, split: str | None = None) -> Iterator[Record]:
    """Yield labelled volumes; per patient the lower frame number is ED, the higher ES."""
    volumes = list_volumes(root)
    wanted = set(read_split(root, split)) if split else None
    frames: dict[str, list[tuple[int, Path]]] = {}
    for patient, frame, path in volumes:
        if wanted is None or patient in wanted:
            frames.setdefault(patient, []).append((frame, path))
    if wanted is not None and (missing := sorted(wanted - frames.keys())):
        raise DataError(Path(root) / f"{split}.txt", f"lists patients with no volume: {missing[:5]}")
    for patient, entries in frames.items():
        entries.sort()
        for rank, (frame, path) in enumerate(entries):
            phase = ("ED" if rank == 0 else "ES") if len(entries) == 2 else "other"
            yield read_volume(path, patient, frame, phase)


def read_volume(path: Path, patient: str, frame: int, phase: str) -> Record:
    image, label = _read_h5(path)
    return Record(
        image=check_image(image, str(path)),
        label=check_label(label, image.shape, str(path)),
        patient=patient,
        source=str(path),
        frame=frame,
        phase=phase,
    )


def _read_h5(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with h5py.File(path, "r") as h5:
            missing = [key for key in ("image", "label") if key not in h5]
            if missing:
                raise DataError(path, f"h5 file has no dataset {missing[0]!r} (has {sorted(h5.keys())})")
            image, label = h5["image"][()], h5["label"][()]
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(path, f"not a readable h5 file ({exc})") from None
    if image.ndim != 3:
        raise DataError(path, f"expected image of shape (slices, H, W), got {image.shape}")
    return image, label
