"""NIfTI in and out as cardioseg arrays, so no caller deals with nibabel's (col, row, slice) axis order.

cardioseg arrays are ``(slices, rows, cols)`` (3D) or ``(frames, slices, rows, cols)`` (4D cine); NIfTI
stores ``(i, j, k[, t]) = (col, row, slice[, frame])``, so the affine is the NIfTI affine unchanged.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..atomic import write_bytes_atomic
from ..errors import DataError

_READ_ERRORS = (OSError, ValueError, zlib.error, ImageFileError, HeaderDataError)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size ``(slice, row, col)`` in mm: the lengths of the affine's (slice, row, col) columns.

    Rounded to 1e-6 mm because NIfTI stores the affine as float32 (1.4 comes back as 1.39999998).
    """
    col, row, slc = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return round(float(slc), 6), round(float(row), 6), round(float(col), 6)


def load_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a 3D or 4D NIfTI fully (so a truncated file fails here, not later in a data loader).

    Returns ``(array, affine, spacing)``: the array in cardioseg order and its stored dtype (float if the
    header has a scale factor), the 4x4 affine, and ``(slice, row, col)`` spacing in mm.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "NIfTI file does not exist")
    try:
        img = nib.load(path, mmap=False)
        data = np.asanyarray(img.dataobj)
    except EOFError as exc:
        raise DataError(path, f"NIfTI file is truncated ({exc})") from exc
    except _READ_ERRORS as exc:
        raise DataError(path, f"unreadable or corrupt NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(path, f"is a {type(img).__name__}, not a NIfTI image")
    if data.ndim not in (3, 4):
        raise DataError(path, f"NIfTI has {data.ndim} dimensions {data.shape}; expected 3D or 4D (cine)")
    array = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    affine = np.asarray(img.affine, dtype=np.float64)
    return array, affine, spacing_from_affine(affine)


def save_nifti(
    path: str | Path, array: np.ndarray, affine: np.ndarray, *, frame_interval_ms: float | None = None
) -> Path:
    """Write a cardioseg array as NIfTI (gzip if the name ends in .gz), atomically and byte-reproducibly.

    The dtype is kept (uint8 labels stay uint8). ``frame_interval_ms`` fills the time step of a 4D cine.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (3, 4):
        raise ValueError(f"expected a 3D or 4D array, got shape {array.shape}")
    img = nib.Nifti1Image(array.transpose(tuple(reversed(range(array.ndim)))), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "msec")
    if array.ndim == 4:
        zooms = img.header.get_zooms()[:3]
        img.header.set_zooms((*zooms, float(frame_interval_ms or 1.0)))
    data = img.to_bytes()
    if path.name.endswith(".gz"):
        # nibabel's gzip writer stamps the current time in the header; mtime=0 makes equal arrays equal bytes
        data = gzip.compress(data, compresslevel=1, mtime=0)
    write_bytes_atomic(path, data)
    return path
