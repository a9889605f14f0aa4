"""NIfTI in and out as cardioseg arrays, so no caller deals with nibabel's (col, row, slice) axis order.

cardioseg arrays are ``(slices, rows, cols)`` (3D) or ``(frames, slices, rows, cols)`` (4D cine); NIfTI
stores ``(i, j, k[, t]) = (col, row, slice[, frame])``, so the affine is the NIfTI affine unchanged.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import imageglobals
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError

from ..atomic import write_bytes_atomic
from ..errors import DataError
from .validate import check_array_size, check_spacing, require_file, silenced

_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError)
_COMPRESSED = tuple(ext for ext in ImageOpener.compress_ext_map if ext)  # .gz, .bz2, ... as nibabel opens them


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size ``(slice, row, col)`` in mm: the lengths of the affine's (slice, row, col) columns.

    Rounded to 1e-6 mm because NIfTI stores the affine as float32 (1.4 comes back as 1.39999998).
    """
    col, row, slc = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return round(float(slc), 6), round(float(row), 6), round(float(col), 6)


def load_nifti(path: str | Path, ndim: int | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a 3D or 4D NIfTI fully (so a truncated file fails here, not later in a data loader).

    ``ndim`` (3 or 4) narrows what is accepted. The header is checked before any data is read: its
    dimensions, its size against :data:`~cardioseg.data.validate.MAX_ARRAY_BYTES` and the file length, and
    its voxel size. Returns ``(array, affine, spacing)``: the array in cardioseg order and its stored dtype
    (float if the header has a scale factor), the 4x4 affine, and ``(slice, row, col)`` spacing in mm.
    """
    path = require_file(path, "NIfTI file")
    img = _open(path)
    header = _stored_header(path, img)
    shape = header.get_data_shape()
    allowed = (ndim,) if ndim else (3, 4)
    if len(shape) not in allowed:
        expected = f"{ndim}D" if ndim else "3D or 4D (cine)"
        raise DataError(path, f"NIfTI has {len(shape)} dimensions {shape}; expected {expected}")
    check_array_size(shape, header.get_data_dtype(), path)
    _check_length(path, header)
    check_spacing(header.get_zooms()[:3], path, "NIfTI pixdim (voxel size)")
    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise DataError(path, f"NIfTI image data is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    array = np.ascontiguousarray(data.transpose(tuple(reversed(range(data.ndim)))))
    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = check_spacing(spacing_from_affine(affine), path, "NIfTI voxel size from the affine")
    return array, affine, spacing


def _open(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    """The image with its data left on disk (nibabel reads only the header here).

    nibabel logs each header repair it makes on load ("pixdim[1,2,3] should be non-zero; setting 0 dims
    to 1") through its own stderr handler, a second line; :func:`load_nifti` checks the stored header
    instead, and problems nibabel cannot repair still raise.
    """
    try:
        with silenced(imageglobals.logger):
            img = nib.load(path, mmap=False)
    except EOFError as exc:
        raise DataError(path, f"NIfTI file is truncated ({exc})") from None
    except _READ_ERRORS as exc:
        raise DataError(path, f"unreadable or corrupt NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise DataError(path, f"is a {type(img).__name__}, not a NIfTI image")
    return img


def _stored_header(path: Path, img: nib.Nifti1Image | nib.Nifti2Image) -> nib.Nifti1Header:
    """The header as stored, without the repairs nibabel makes on load."""
    try:
        with ImageOpener(path) as fileobj:
            return type(img.header).from_fileobj(fileobj, check=False)
    except _READ_ERRORS as exc:
        raise DataError(path, f"unreadable NIfTI header ({type(exc).__name__}: {exc})") from None


def _check_length(path: Path, header: nib.Nifti1Header) -> None:
    """An uncompressed file must hold the bytes its header promises (compressed ones are checked as they
    are read: their length is only known after decompressing)."""
    if path.name.endswith(_COMPRESSED):
        return
    needed = int(header.get_data_offset()) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    if size < needed:
        raise DataError(path, f"NIfTI file is truncated: its header needs {needed} bytes, the file has {size}")


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
