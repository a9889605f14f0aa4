"""Checks every reader applies, so bad data fails at the file that holds it, with a clear message.

The checks look at what a file declares (shape, dtype, voxel size) before its data is read where the
library allows it, so a corrupt header is refused before it allocates memory, and at the values after, so
NaN, complex or out-of-range data is refused before numpy warns about a lossy conversion.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from .labels import NUM_CLASSES

MAX_ARRAY_BYTES = 2 * 1024**3  # no cardiac volume comes near; a header claiming more is corrupt or a bomb
REAL_KINDS = "iuf"  # numpy dtype kinds of real numbers: signed, unsigned, floating point


@contextlib.contextmanager
def silenced(logger: logging.Logger) -> Iterator[None]:
    """Drop a library logger's records for the block: they repeat, as a second line, a problem the reader
    reports as its one error (or a repair it checks itself)."""
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path if it is a regular file; a missing file or a folder by that name is refused."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"is a folder, expected {what}")
    if not path.is_file():
        raise DataError(path, f"{what} is missing (not found)")
    return path


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of a small metadata file (Info.cfg, split lists), or a DataError saying why not."""
    path = require_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except OSError as exc:
        raise DataError(path, f"cannot read {what} ({exc.strerror or exc})") from None


def check_spacing(values: Iterable[float], path: str | Path, what: str) -> tuple[float, ...]:
    """``values`` (mm) as floats if every one is finite and positive: a zero or NaN voxel size makes
    every distance, volume and resampling step downstream wrong without failing."""
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise DataError(path, f"{what} {list(values)} mm: must be finite and greater than 0")
    return values


def check_array_size(shape: Sequence[int], dtype: np.dtype, path: str | Path) -> None:
    """Refuse a declared array larger than ``MAX_ARRAY_BYTES`` before it is read: a corrupt or malicious
    header (a few bytes claiming 30000^3 voxels) would otherwise end in a bare MemoryError, or swap."""
    n_bytes = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    if n_bytes > MAX_ARRAY_BYTES:
        raise DataError(
            path,
            f"header declares {tuple(int(n) for n in shape)} {np.dtype(dtype)} ({n_bytes / 1024**3:.3g} GiB), "
            f"over the {MAX_ARRAY_BYTES / 1024**3:g} GiB limit for one volume: the header is corrupt",
        )


def check_dtype(dtype: np.dtype, path: str | Path, what: str) -> None:
    """Refuse dtypes that are not real numbers (complex, bool, strings, objects, records): converting
    them to float would drop an imaginary part, or fail, with a numpy warning or a bare exception."""
    dtype = np.dtype(dtype)
    if dtype.kind not in REAL_KINDS:
        raise DataError(path, f"{what} has dtype {dtype.name}; expected real numbers (integers or floats)")


def check_image(image: np.ndarray, path: str | Path) -> np.ndarray:
    """Return ``image`` as float32, refusing non-real dtypes, empty arrays, values beyond float32 and
    NaN/inf."""
    image = np.asarray(image)
    check_dtype(image.dtype, path, "image")
    if image.size == 0:
        raise DataError(path, f"image is empty (shape {image.shape})")
    try:
        with np.errstate(over="raise"):
            image = image.astype(np.float32, copy=False)
    except FloatingPointError:
        raise DataError(path, "image has values beyond the float32 range") from None
    finite = np.isfinite(image)
    if not finite.all():
        raise DataError(path, f"image has {int((~finite).sum())} NaN or infinite values")
    return image


def check_label(label: np.ndarray, image_shape: tuple[int, ...], path: str | Path) -> np.ndarray:
    """Return ``label`` as uint8, refusing non-real dtypes, shape mismatches and any value other than the
    class numbers 0..3 (NaN, inf and fractions included)."""
    label = np.asarray(label)
    check_dtype(label.dtype, path, "label")
    if tuple(label.shape) != tuple(image_shape):
        raise DataError(path, f"label shape {tuple(label.shape)} differs from image shape {tuple(image_shape)}")
    if label.dtype.kind in "ui" and label.size and 0 <= label.min() and label.max() < NUM_CLASSES:
        return label.astype(np.uint8)  # min and max settle whole numbers, ten times faster than np.unique
    values = np.unique(label)
    bad = values[~np.isin(values, np.arange(NUM_CLASSES))]
    if bad.size:
        raise DataError(path, f"label values {bad.tolist()[:5]} outside 0..{NUM_CLASSES - 1} (ACDC convention)")
    return label.astype(np.uint8)
