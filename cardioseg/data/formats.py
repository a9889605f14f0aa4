"""Recognise a data folder's layout and read it as Records, so commands take any supported PATH."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DataError
from .records import Record

FORMATS = ("acdc", "ssl4mis", "imagefolder", "dicom", "cache")


def detect_format(path: str | Path) -> str:
    """Name the layout of ``path``: raw ACDC, SSL4MIS h5, ImageFolder, a folder of DICOM files, or a slice
    cache file (``cardioseg data cache``'s output)."""
    from .cache import is_cache_file

    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    if not path.is_dir():
        if _sniff(path, is_cache_file):
            return "cache"
        raise DataError(path, "is a file; expected a data folder or a slice cache (from 'cardioseg data cache')")
    if not any(path.iterdir()):
        raise DataError(path, "folder is empty")
    if next(path.glob("**/patient[0-9][0-9][0-9]/Info.cfg"), None) or (path / "Info.cfg").exists():
        return "acdc"
    if next((path / "volumes").glob("*.h5"), None) or next(path.glob("patient*_frame*.h5"), None):
        return "ssl4mis"
    if _has_dicom(path):
        return "dicom"
    from .imagefolder import IMAGE_SUFFIXES, image_root

    base = image_root(path)
    if any(f.suffix.lower() in IMAGE_SUFFIXES for d in base.iterdir() if d.is_dir() for f in d.iterdir()):
        return "imagefolder"
    raise DataError(
        path,
        "unknown layout: expected raw ACDC (patientNNN/Info.cfg), SSL4MIS (volumes/*.h5), "
        "ImageFolder (class/image) or DICOM files",
    )


def _has_dicom(path: Path) -> bool:
    """A DICOM Part 10 file carries 'DICM' at byte 128, whatever its name."""
    return any(
        _sniff(file, _is_dicom)
        for file in path.rglob("*")
        if file.is_file() and file.suffix.lower() in ("", ".dcm", ".ima")
    )


def _is_dicom(file: Path) -> bool:
    with open(file, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _sniff(file: Path, test: Callable[[Path], bool]) -> bool:
    """``test(file)``, with a file that cannot be opened reported as such rather than as an OSError."""
    try:
        return test(file)
    except OSError as exc:
        raise DataError(file, f"cannot read ({exc.strerror or exc})") from None


def read_records(path: str | Path, fmt: str | None = None, **options) -> Iterator[Record]:
    """Records from any supported layout; ``options`` go to the format's reader (e.g. ``split``)."""
    fmt = fmt or detect_format(path)
    if fmt == "acdc":
        from .acdc import read_acdc

        return read_acdc(path)
    if fmt == "ssl4mis":
        from .ssl4mis import read_ssl4mis

        return read_ssl4mis(path, **options)
    if fmt == "imagefolder":
        from .imagefolder import read_imagefolder

        return read_imagefolder(path, **options)
    if fmt == "dicom":
        from .dicom_cine import cine_to_records, read_dicom_cine

        return (record for series in read_dicom_cine(path) for record in cine_to_records(series))
    if fmt == "cache":
        from .cache import cache_to_records

        return cache_to_records(path)
    raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
