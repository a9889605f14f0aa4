"""Every kind of bad input to every data reader, through the ``cardioseg`` command as a user meets it.

Each case must end with exit code 2 and exactly one stderr line, ``cardioseg: error: FILE: PROBLEM``,
naming the offending file and the problem, with no traceback, no library warning or log line, the input
left byte for byte as it was and nothing new written beside it. Inputs are tiny (3x16x16 volumes, 8x8
DICOM images) and made in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import lzma
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_helpers import edit_dicom
from PIL import Image

from cardioseg.cli import main
from cardioseg.data.acdc import read_acdc_cine
from cardioseg.data.cache import save_cache
from cardioseg.data.dicom_cine import write_dicom_cine
from cardioseg.data.nifti_io import load_nifti, save_nifti
from cardioseg.data.records import Record
from cardioseg.data.slicing import to_slices
from cardioseg.errors import DataError

SHAPE = (3, 16, 16)
AFFINE = np.diag([1.5, 1.5, 10.0, 1.0])  # (col, row, slice) mm
INFO = "ED: 1\nES: 3\nGroup: NOR\nHeight: 170.0\nNbFrame: 4\nWeight: 70.0\n"


# --- running the command and checking what it left -------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` with its bytes and mtime: a failed command must change none."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.is_dir(), None if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns)
        for p in [root, *root.rglob("*")]
    }


def assert_refused(argv: list[str], bad: Path, phrase: str, capfd, caplog, watched: Path) -> None:
    before = snapshot(watched)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["--quiet", *argv])
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("cardioseg: error: "), err
    assert str(bad) in lines[0], f"{bad} not named in: {lines[0]}"
    assert phrase in lines[0], f"{phrase!r} not in: {lines[0]}"
    assert "Traceback" not in err
    assert not caught, [str(w.message) for w in caught]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert snapshot(watched) == before


# --- tiny inputs -----------------------------------------------------------------------------------------


def volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(seed).random(SHAPE, dtype=np.float32) * 100
    label = np.zeros(SHAPE, np.uint8)
    label[:, 4:12, 4:12] = 2
    label[:, 6:10, 6:10] = 3
    label[:, 2:4, 2:6] = 1
    return image, label


def nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    return save_nifti(path, array, affine)


def acdc(root: Path, patients: int = 2) -> Path:
    """Raw ACDC patients (ED frame 1, ES frame 3, a 4-frame cine); returns the first patient's folder."""
    for n in range(1, patients + 1):
        folder = root / f"patient{n:03d}"
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(INFO)
        image, label = volume(n)
        for frame in (1, 3):
            nifti(folder / f"{folder.name}_frame{frame:02d}.nii.gz", image)
            nifti(folder / f"{folder.name}_frame{frame:02d}_gt.nii.gz", label)
        nifti(folder / f"{folder.name}_4d.nii.gz", np.stack([image] * 4))
    return root / "patient001"


def es_image(patient: Path) -> Path:
    return patient / f"{patient.name}_frame03.nii.gz"


def es_label(patient: Path) -> Path:
    return patient / f"{patient.name}_frame03_gt.nii.gz"


def edit_info(patient: Path, text: str | bytes) -> Path:
    return write(patient / "Info.cfg", text)


def edit_header(path: Path, edit: Callable[[nib.Nifti1Header], None]) -> Path:
    """Change a stored .nii.gz header in place, bypassing nibabel's own checks and repairs."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
    edit(header)
    raw[: header.sizeof_hdr] = header.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def set_pixdim(index: int, value: float) -> Callable[[nib.Nifti1Header], None]:
    def edit(header: nib.Nifti1Header) -> None:
        header["pixdim"][index] = value

    return edit


def zero_sform_column(header: nib.Nifti1Header) -> None:
    affine = AFFINE.copy()
    affine[:3, 1] = 0
    header.set_sform(affine, code=1)


def bomb(header: nib.Nifti1Header) -> None:
    header.set_data_shape((30000, 30000, 30000))


def more_slices_than_stored(header: nib.Nifti1Header) -> None:
    header.set_data_shape((16, 16, 30))


def h5(path: Path, **datasets) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            if isinstance(value, Callable):
                value(f, key)
            else:
                f[key] = value
    return path


def ssl4mis(root: Path, patients: int = 3) -> Path:
    """SSL4MIS volumes (frames 1 and 2) with train.txt/val.txt; returns patient001's first volume."""
    for n in range(1, patients + 1):
        for frame in (1, 2):
            image, label = volume(n)
            h5(root / "volumes" / f"patient{n:03d}_frame{frame:02d}.h5", image=image / 100, label=label)
    names = [f"patient{n:03d}" for n in range(1, patients + 1)]
    (root / "train.txt").write_text("\n".join(names[:-1]) + "\n")
    (root / "val.txt").write_text(names[-1] + "\n")
    return root / "volumes" / "patient001_frame01.h5"


def ssl4mis_volume(root: Path, **datasets) -> Path:
    """One SSL4MIS volume whose datasets are replaced by ``datasets`` (missing ones taken from a good one)."""
    image, label = volume()
    content = {"image": image / 100, "label": label, **datasets}
    return h5(root / "volumes" / "patient001_frame01.h5", **{k: v for k, v in content.items() if v is not None})


def png(path: Path, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def imagefolder(root: Path) -> Path:
    png(root / "dogs" / "0001.png")
    return png(root / "cats" / "0001.png")


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header (with a valid CRC) claims ``width x height`` pixels."""
    data = bytearray(png(path, (1, 1)).read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    path.write_bytes(bytes(data))
    return path


def dicom(root: Path, shape: tuple[int, ...] = (2, 3, 8, 8), key: str = "series") -> list[Path]:
    """One cine series of 2 frames x 3 slices; files are ordered slice-major (IM00001 = slice 0, frame 1)."""
    cine = np.random.default_rng(0).integers(0, 1000, shape).astype(np.uint16)
    return write_dicom_cine(
        root, cine, np.diag([-1.5, -1.5, 10.0, 1.0]), patient_id="p1", frame_interval_ms=40.0, uid_key=key
    )


def raw_dicom_value(path: Path, tag: str, placeholder: str, stored: bytes) -> Path:
    """Store ``stored`` (same length as ``placeholder``) as the tag's value, bytes that pydicom would not
    write itself (``nan``, ``abcd``)."""
    edit_dicom(path, **{tag: placeholder})
    raw = path.read_bytes()
    assert raw.count(placeholder.encode()) == 1 and len(stored) == len(placeholder)
    path.write_bytes(raw.replace(placeholder.encode(), stored))
    return path


def cache_arrays(root: Path) -> dict[str, np.ndarray]:
    """The arrays of a valid slice cache of one tiny labelled volume."""
    image, label = volume()
    record = Record(image=image, label=label, patient="patient001", source="test", frame=1, phase="ED")
    path = save_cache(to_slices([record], mode="native"), root / "scratch.xz")
    with np.load(io.BytesIO(lzma.decompress(path.read_bytes()))) as archive:
        arrays = {name: archive[name] for name in archive.files}
    path.unlink()
    return arrays


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 16, 16), np.uint8))
    return buffer.getvalue()


def cache(root: Path, edit: Callable[[dict[str, np.ndarray]], None] | None = None, compressed: bool = True) -> Path:
    """A slice cache with ``edit`` applied to its arrays, xz-compressed or as a plain .npz archive."""
    arrays = cache_arrays(root)
    if edit:
        edit(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    if compressed:
        return write(root / "slices.xz", lzma.compress(buffer.getvalue()))
    return write(root / "slices.npz", buffer.getvalue())


def cache_meta(**changes) -> Callable[[dict[str, np.ndarray]], None]:
    def edit(arrays: dict[str, np.ndarray]) -> None:
        meta = {**json.loads(arrays["meta"].tobytes()), **changes}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    return edit


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def truncate(path: Path, keep: float) -> Path:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    return path


def folder_named(path: Path) -> Path:
    path.unlink()
    path.mkdir()
    return path


def set_array(arrays: dict[str, np.ndarray], name: str, value: np.ndarray) -> None:
    arrays[name] = value


# --- the cases: (build(root) -> (path given to the command, offending path), phrase) ------------------------


def acdc_case(make: Callable[[Path], Path]) -> Callable[[Path], tuple[Path, Path]]:
    def build(root: Path) -> tuple[Path, Path]:
        return root, make(acdc(root))

    return build


def label_with(value, dtype) -> Callable[[Path], Path]:
    def make(patient: Path) -> Path:
        label = volume()[1].astype(dtype)
        label[0, 0, 0] = value
        return nifti(es_label(patient), label)

    return make


def image_with(value, dtype=np.float32) -> Callable[[Path], Path]:
    def make(patient: Path) -> Path:
        image = volume()[0].astype(dtype)
        image[1, 2, 3] = value
        return nifti(es_image(patient), image)

    return make


ACDC_CASES = [
    pytest.param(lambda p: edit_info(p, INFO.replace("ES: 3\n", "")), "missing 'ES:' line", id="info-no-ES"),
    pytest.param(lambda p: edit_info(p, ""), "missing 'ED:' line", id="info-empty-file"),
    pytest.param(lambda p: edit_info(p, INFO + "no colon here\n"), "is not 'Key: value'", id="info-malformed-line"),
    pytest.param(lambda p: edit_info(p, INFO.replace("ED: 1", "ED: first")), "is not a number", id="info-ED-word"),
    pytest.param(lambda p: edit_info(p, INFO.replace("ED: 1", "ED: nan")), "is not a finite number", id="info-ED-nan"),
    pytest.param(lambda p: edit_info(p, INFO.replace("ED: 1", "ED: inf")), "is not a finite number", id="info-ED-inf"),
    pytest.param(
        lambda p: edit_info(p, INFO.replace("Height: 170.0", "Height: nan")),
        "is not a finite number",
        id="info-height-nan",
    ),
    pytest.param(
        lambda p: edit_info(p, INFO.replace("ED: 1", "ED: 1.5")), "is not a whole number", id="info-ED-fraction"
    ),
    pytest.param(lambda p: edit_info(p, INFO.replace("ED: 1", "ED: 0")), "1-based frame numbers", id="info-ED-zero"),
    pytest.param(
        lambda p: edit_info(p, INFO.replace("ED: 1", "ED: 3")), "name the same frame 3", id="info-ED-equals-ES"
    ),
    pytest.param(
        lambda p: edit_info(p, INFO.replace("ES: 3", "ES: 9")), "beyond NbFrame=4", id="info-ES-beyond-NbFrame"
    ),
    pytest.param(lambda p: edit_info(p, INFO + "ED: 2\n"), "repeats the key 'ED'", id="info-ED-twice"),
    pytest.param(lambda p: edit_info(p, INFO.encode() + b"Group: \xe9\xff\n"), "not UTF-8 text", id="info-not-utf8"),
    pytest.param(lambda p: folder_named(p / "Info.cfg"), "is a folder, expected Info.cfg", id="info-is-a-folder"),
    pytest.param(lambda p: es_image(p).unlink() or es_image(p), "named in Info.cfg is missing", id="frame-missing"),
    pytest.param(lambda p: es_label(p).unlink() or es_label(p), "is missing", id="label-missing"),
    pytest.param(lambda p: folder_named(es_image(p)), "is a folder, expected", id="frame-is-a-folder"),
    pytest.param(lambda p: truncate(es_image(p), 0), "Empty file", id="frame-zero-bytes"),
    pytest.param(lambda p: truncate(es_image(p), 0.5), "truncated", id="frame-truncated-gzip"),
    pytest.param(lambda p: write(es_image(p), "not an image"), "corrupt", id="frame-text"),
    pytest.param(lambda p: nifti(es_image(p), np.zeros((2, *SHAPE), np.float32)), "expected 3D", id="frame-4d"),
    pytest.param(
        lambda p: nib.save(nib.Nifti1Image(np.zeros((16, 16), np.float32), AFFINE), es_image(p)) or es_image(p),
        "expected 3D",
        id="frame-2d",
    ),
    pytest.param(lambda p: nifti(es_label(p), volume()[1][:2]), "differs from image shape", id="label-shape"),
    pytest.param(label_with(7, np.uint8), "label values [7] outside 0..3", id="label-7"),
    pytest.param(label_with(-1, np.int16), "label values [-1] outside 0..3", id="label-negative"),
    pytest.param(label_with(1.5, np.float32), "label values [1.5] outside 0..3", id="label-fraction"),
    pytest.param(label_with(np.nan, np.float32), "label values [nan] outside 0..3", id="label-nan"),
    pytest.param(image_with(np.nan), "NaN or infinite", id="image-nan"),
    pytest.param(image_with(np.inf), "NaN or infinite", id="image-inf"),
    pytest.param(image_with(1j, np.complex64), "complex64", id="image-complex"),
    pytest.param(lambda p: edit_header(es_image(p), set_pixdim(1, 0.0)), "pixdim", id="pixdim-zero"),
    pytest.param(lambda p: edit_header(es_image(p), set_pixdim(2, np.nan)), "pixdim", id="pixdim-nan"),
    pytest.param(lambda p: edit_header(es_image(p), set_pixdim(3, -10.0)), "pixdim", id="pixdim-negative"),
    pytest.param(
        lambda p: edit_header(es_image(p), zero_sform_column), "voxel size from the affine", id="affine-zero-column"
    ),
    pytest.param(lambda p: edit_header(es_image(p), bomb), "GiB limit", id="header-30000-cubed"),
    pytest.param(lambda p: edit_header(es_image(p), more_slices_than_stored), "truncated", id="header-more-than-data"),
]


@pytest.mark.parametrize(("make", "phrase"), ACDC_CASES)
def test_bad_raw_acdc(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "acdc"
    bad = make(acdc(root))
    assert_refused(["data", "summary", str(root)], bad, phrase, capfd, caplog, tmp_path)


def test_patient_folder_without_info_cfg_is_not_dropped(tmp_path, capfd, caplog):
    root = tmp_path / "acdc"
    acdc(root, patients=3)
    (root / "patient002" / "Info.cfg").unlink()
    assert_refused(["data", "summary", str(root)], root / "patient002", "no Info.cfg", capfd, caplog, tmp_path)


SSL4MIS_CASES = [
    pytest.param(lambda r: truncate(ssl4mis_volume(r), 0.3), "not a readable h5 file", id="truncated"),
    pytest.param(lambda r: truncate(ssl4mis_volume(r), 0), "not a readable h5 file", id="zero-bytes"),
    pytest.param(lambda r: folder_named(ssl4mis_volume(r)), "is a folder, expected", id="folder-named-like-a-volume"),
    pytest.param(lambda r: ssl4mis_volume(r, image=None), "no dataset 'image'", id="no-image"),
    pytest.param(lambda r: ssl4mis_volume(r, label=None), "no dataset 'label'", id="no-label"),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=lambda f, k: f.create_group(k)), "is a Group", id="image-is-a-group"
    ),
    pytest.param(lambda r: ssl4mis_volume(r, image=np.full(SHAPE, b"abc")), "dtype bytes", id="image-bytes"),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=lambda f, k: f.create_dataset(k, data=["a", "b"], dtype=h5py.string_dtype())),
        "dtype object",
        id="image-strings",
    ),
    pytest.param(lambda r: ssl4mis_volume(r, image=volume()[0] * (1 + 1j)), "dtype complex", id="image-complex"),
    pytest.param(lambda r: ssl4mis_volume(r, image=h5py.Empty("f4")), "null dataspace", id="image-null"),
    pytest.param(lambda r: ssl4mis_volume(r, image=np.zeros((16, 16), np.float32)), "(slices, H, W)", id="image-2d"),
    pytest.param(lambda r: ssl4mis_volume(r, image=np.zeros((1, *SHAPE), np.float32)), "(slices, H, W)", id="image-4d"),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=np.zeros((0, 16, 16), np.float32), label=np.zeros((0, 16, 16), np.uint8)),
        "image is empty",
        id="image-empty",
    ),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=np.full(SHAPE, np.nan, np.float32)), "NaN or infinite", id="image-nan"
    ),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=np.full(SHAPE, -np.inf, np.float32)), "NaN or infinite", id="image-inf"
    ),
    pytest.param(
        lambda r: ssl4mis_volume(r, image=np.full(SHAPE, 1e300)), "beyond the float32 range", id="image-1e300"
    ),
    pytest.param(
        lambda r: ssl4mis_volume(
            r, image=lambda f, k: f.create_dataset(k, shape=(30000,) * 3, dtype="f4", chunks=(1, 16, 16))
        ),
        "GiB limit",
        id="image-30000-cubed",
    ),
    pytest.param(lambda r: ssl4mis_volume(r, label=np.full(SHAPE, 7, np.uint8)), "label values [7]", id="label-7"),
    pytest.param(lambda r: ssl4mis_volume(r, label=np.full(SHAPE, 2.5)), "label values [2.5]", id="label-fraction"),
    pytest.param(lambda r: ssl4mis_volume(r, label=np.ones(SHAPE, bool)), "label has dtype bool", id="label-bool"),
    pytest.param(lambda r: ssl4mis_volume(r, label=np.ones(SHAPE, np.complex64)), "complex64", id="label-complex"),
    pytest.param(
        lambda r: ssl4mis_volume(r, label=np.zeros((3, 16, 8), np.uint8)), "differs from image shape", id="label-shape"
    ),
    pytest.param(
        lambda r: (
            ssl4mis_volume(r).rename(r / "volumes" / "patient001_frame1.h5") or r / "volumes" / "patient001_frame1.h5"
        ),
        "not named patientNNN_frameFF.h5",
        id="volume-misnamed",
    ),
]


@pytest.mark.parametrize(("make", "phrase"), SSL4MIS_CASES)
def test_bad_ssl4mis_volume(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "ssl4mis"
    ssl4mis(root)
    bad = make(root)
    assert_refused(["data", "summary", str(root)], bad, phrase, capfd, caplog, tmp_path)


SPLIT_CASES = [
    pytest.param(lambda r: write(r / "train.txt", "patient001\npatient009\n"), "no volume", id="train-unknown-patient"),
    pytest.param(
        lambda r: write(r / "val.txt", "patient003\npatient042\n"), "['patient042']", id="val-unknown-patient"
    ),
    pytest.param(lambda r: write(r / "train.txt", b"patient001\n\xff\xfe\n"), "not UTF-8 text", id="train-not-utf8"),
    pytest.param(lambda r: write(r / "train.txt", "\n \n"), "lists no patients", id="train-empty"),
    pytest.param(lambda r: (r / "val.txt").unlink() or r / "val.txt", "is missing", id="val-missing"),
    pytest.param(
        lambda r: write(r / "val.txt", "patient002\n"), "in both train.txt and val.txt", id="train-val-overlap"
    ),
    pytest.param(lambda r: folder_named(r / "train.txt"), "is a folder", id="train-is-a-folder"),
]


@pytest.mark.parametrize(("make", "phrase"), SPLIT_CASES)
def test_bad_ssl4mis_split(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "ssl4mis"
    ssl4mis(root)
    bad = make(root)
    argv = ["data", "cache", str(root), "--out", str(tmp_path / "slices.xz"), "--mode", "native"]
    assert_refused(argv, bad, phrase, capfd, caplog, tmp_path)


IMAGEFOLDER_CASES = [
    pytest.param(
        lambda r: write(r / "cats" / "0002.jpg", b"\xff\xd8 not a jpeg"), "not a readable image", id="corrupt-jpeg"
    ),
    pytest.param(
        lambda r: truncate(png(r / "cats" / "0002.png", (64, 64)), 0), "not a readable image", id="zero-bytes"
    ),
    pytest.param(
        lambda r: truncate(png(r / "cats" / "0002.png", (64, 64)), 0.6), "not a readable image", id="truncated"
    ),
    pytest.param(lambda r: (r / "birds").mkdir() or r / "birds", "class folder holds no images", id="empty-class"),
    pytest.param(lambda r: write(r / "cats" / "notes.txt", "hi"), "not an image file", id="text-file-in-class"),
    pytest.param(
        lambda r: (r / "cats" / "0002.jpg").mkdir() or r / "cats" / "0002.jpg", "is a folder", id="folder-named-jpg"
    ),
    pytest.param(lambda r: png_claiming(r / "cats" / "0002.png", 20000, 20000), "decompression bomb", id="bomb-header"),
]


@pytest.mark.parametrize(("make", "phrase"), IMAGEFOLDER_CASES)
def test_bad_imagefolder(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "natural"
    imagefolder(root)
    bad = make(root)
    assert_refused(["data", "summary", str(root)], bad, phrase, capfd, caplog, tmp_path)


def other_size_instance(files: list[Path]) -> Path:
    """The last instance replaced by the same instance of a series with 8x10 images."""
    other = dicom(files[0].parents[2] / "other", shape=(2, 3, 8, 10))  # outside the data folder
    files[-1].write_bytes(other[-1].read_bytes())
    return files[-1]


def uneven_last_slice(files: list[Path]) -> Path:
    for path in files[-2:]:  # both frames of the last slice, moved 5 mm further along the normal
        x, y, z = (float(v) for v in pydicom.dcmread(path).ImagePositionPatient)
        edit_dicom(path, ImagePositionPatient=[x, y, z + 5])
    return files[0].parent


DICOM_CASES = [
    pytest.param(lambda f: edit_dicom(f[2], Modality="CT"), "modality is 'CT'", id="modality-CT"),
    *[
        pytest.param(
            lambda f, tag=tag: edit_dicom(f[3], **{tag: None}), f"missing required DICOM tag(s) {tag}", id=f"no-{tag}"
        )
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "TriggerTime")
    ],
    pytest.param(lambda f: edit_dicom(f[1], SeriesInstanceUID=None), "SeriesInstanceUID", id="no-SeriesInstanceUID"),
    pytest.param(lambda f: edit_dicom(f[1], PixelData=None), "has no pixel data", id="no-pixel-data"),
    pytest.param(lambda f: edit_dicom(f[4], PixelSpacing=[0, 0]), "PixelSpacing [0.0, 0.0] mm", id="PixelSpacing-zero"),
    pytest.param(
        lambda f: edit_dicom(f[4], PixelSpacing=[-1.5, 1.5]), "PixelSpacing [-1.5, 1.5] mm", id="PixelSpacing-negative"
    ),
    pytest.param(
        lambda f: raw_dicom_value(f[4], "PixelSpacing", "7.77\\7.77", b"nan \\7.77"),
        "PixelSpacing",
        id="PixelSpacing-nan",
    ),
    pytest.param(
        lambda f: raw_dicom_value(f[4], "PixelSpacing", "7.77\\7.77", b"abcd\\7.77"),
        "malformed",
        id="PixelSpacing-text",
    ),
    pytest.param(lambda f: edit_dicom(f[0], SliceThickness=0), "SliceThickness [0.0] mm", id="SliceThickness-zero"),
    pytest.param(
        lambda f: edit_dicom(f[0], SpacingBetweenSlices=0),
        "SpacingBetweenSlices [0.0] mm",
        id="SpacingBetweenSlices-zero",
    ),
    pytest.param(
        lambda f: raw_dicom_value(f[5], "RescaleSlope", "1.2345", b"nan   "), "RescaleSlope", id="rescale-nan"
    ),
    pytest.param(lambda f: edit_dicom(f[5], RescaleSlope="1e38"), "beyond the float32 range", id="rescale-overflow"),
    pytest.param(lambda f: edit_dicom(f[5], RescaleSlope=0), "RescaleSlope is 0", id="rescale-zero"),
    pytest.param(
        lambda f: raw_dicom_value(f[5], "InstanceNumber", "4321", b"x321"), "InstanceNumber", id="InstanceNumber-text"
    ),
    pytest.param(
        lambda f: edit_dicom(f[2], ImageOrientationPatient=[2, 0, 0, 0, 1, 0]),
        "orthogonal unit vectors",
        id="orientation-scaled",
    ),
    pytest.param(lambda f: edit_dicom(f[2], Rows=6), "pixel data is unreadable", id="pixel-data-longer-than-Rows"),
    pytest.param(lambda f: edit_dicom(f[2], Rows=10), "pixel data is unreadable", id="pixel-data-shorter-than-Rows"),
    pytest.param(lambda f: truncate(f[3], 0.5), "DICOM", id="truncated-half"),
    pytest.param(lambda f: truncate(f[3], 0.03), "not a DICOM file", id="truncated-to-preamble"),
    pytest.param(lambda f: truncate(f[3], 0), "not a DICOM file", id="zero-bytes"),
    pytest.param(
        lambda f: write(f[3], b"\0" * 128 + b"DICM" + bytes(range(256))),
        "unreadable or truncated DICOM file",
        id="corrupt-after-DICM",
    ),
    pytest.param(lambda f: write(f[0].parent / "notes.txt", "hi"), "not a DICOM file", id="text-file-in-folder"),
    pytest.param(other_size_instance, "image size (8, 10) differs from (8, 8)", id="rows-columns-differ"),
    pytest.param(uneven_last_slice, "not evenly spaced", id="uneven-slices"),
    pytest.param(lambda f: edit_dicom(f[1], TriggerTime=0.0).parent, "same TriggerTime", id="duplicate-trigger-time"),
]


@pytest.mark.parametrize(("make", "phrase"), DICOM_CASES)
def test_bad_dicom_cine(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "dicom"
    files = dicom(root / "p1")
    bad = make(files)
    assert_refused(["data", "summary", str(root)], bad, phrase, capfd, caplog, tmp_path)


CACHE_CASES = [
    pytest.param(lambda r: truncate(cache(r), 0.5), "corrupt or truncated slice cache", id="truncated-xz"),
    pytest.param(
        lambda r: write(r / "slices.xz", lzma.compress(b"not an archive")),
        "does not hold an .npz archive",
        id="xz-of-text",
    ),
    pytest.param(lambda r: write(r / "slices.xz", lzma.compress(npy_bytes())), "does not hold an .npz", id="xz-of-npy"),
    pytest.param(lambda r: cache(r, lambda a: a.pop("volume")), "lacks ['volume']", id="no-volume-index"),
    pytest.param(
        lambda r: cache(r, lambda a: set_array(a, "meta", np.frombuffer(b"{oops", np.uint8))),
        "metadata unreadable",
        id="meta-not-json",
    ),
    pytest.param(lambda r: cache(r, cache_meta(format="something-else")), "not a version-1", id="meta-wrong-format"),
    pytest.param(lambda r: cache(r, cache_meta(quantisation=[1, 2])), "inconsistent", id="meta-bad-quantisation"),
    pytest.param(lambda r: cache(r, lambda a: a["labels"].__setitem__((0, 0, 0), 9)), "label values [9]", id="label-9"),
    pytest.param(
        lambda r: cache(r, lambda a: set_array(a, "labels", a["labels"][:, :8])),
        "differs from image shape",
        id="label-shape",
    ),
    pytest.param(
        lambda r: cache(r, lambda a: set_array(a, "frame", a["frame"][:1])), "frame has 1 entries", id="index-length"
    ),
    pytest.param(
        lambda r: cache(
            r,
            lambda a: (
                set_array(a, "images", np.full(a["images"].shape, np.inf, np.float16)),
                cache_meta(quantisation={"dtype": "float16"})(a),
            ),
        ),
        "NaN or infinite",
        id="float16-inf",
    ),
    pytest.param(lambda r: write(r / "slices.xz", b""), "is a file; expected", id="zero-bytes"),
    pytest.param(
        lambda r: truncate(cache(r, compressed=False), 0.5), "corrupt or truncated slice cache", id="truncated-npz"
    ),
    pytest.param(
        lambda r: cache(r, lambda a: a["labels"].__setitem__((0, 0, 0), 9), compressed=False),
        "label values [9]",
        id="npz-label-9",
    ),
]


@pytest.mark.parametrize(("make", "phrase"), CACHE_CASES)
def test_bad_slice_cache(tmp_path, capfd, caplog, make, phrase):
    root = tmp_path / "caches"
    root.mkdir()
    bad = make(root)
    assert_refused(["data", "summary", str(bad)], bad, phrase, capfd, caplog, tmp_path)


def make_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


FORMAT_CASES = [
    pytest.param(lambda r: make_dir(r / "empty"), "folder is empty", id="empty-folder"),
    pytest.param(lambda r: r / "nowhere", "does not exist", id="missing"),
    pytest.param(lambda r: write(make_dir(r / "x") / "notes.txt", "hi").parent, "unknown layout", id="unknown-layout"),
    pytest.param(lambda r: write(make_dir(r / "x") / ".DS_Store", "").parent, "unknown layout", id="only-hidden"),
    pytest.param(lambda r: write(r / "notes.txt", "hi"), "is a file; expected", id="text-file"),
    pytest.param(lambda r: nifti(r / "frame.nii.gz", volume()[0]), "is a file; expected", id="nifti-file"),
]


@pytest.mark.parametrize(("make", "phrase"), FORMAT_CASES)
def test_unusable_path(tmp_path, capfd, caplog, make, phrase):
    bad = make(tmp_path)
    assert_refused(["data", "summary", str(bad)], bad, phrase, capfd, caplog, tmp_path)


# --- readers the command does not reach yet: the same promise through the Python API ---------------------


def nii_header_edit(path: Path, edit: Callable[[nib.Nifti1Header], None]) -> Path:
    raw = bytearray(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw)), check=False)
    edit(header)
    raw[: header.sizeof_hdr] = header.binaryblock
    path.write_bytes(bytes(raw))
    return path


def cine_patient(root: Path) -> Path:
    return root / "patient001" / "patient001_4d.nii.gz"


CINE_CASES = [
    pytest.param(lambda p: p.unlink() or p, "4D cine file is missing", id="missing"),
    pytest.param(lambda p: nifti(p, volume()[0]), "expected 4D", id="3d"),
    pytest.param(lambda p: nifti(p, np.stack([volume()[0]] * 3)), "NbFrame: 4", id="frames-differ-from-NbFrame"),
    pytest.param(lambda p: nifti(p, np.full((4, *SHAPE), np.nan, np.float32)), "NaN or infinite", id="nan"),
    pytest.param(lambda p: edit_header(p, set_pixdim(1, 0.0)), "pixdim", id="pixdim-zero"),
]


@pytest.mark.parametrize(("make", "phrase"), CINE_CASES)
def test_bad_acdc_cine(tmp_path, make, phrase):
    root = tmp_path / "acdc"
    acdc(root)
    bad = make(cine_patient(root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as info:
            list(read_acdc_cine(root))
    assert info.value.path == bad and phrase in info.value.problem


NIFTI_CASES = [
    pytest.param(lambda p: nii_header_edit(p, bomb), "GiB limit", id="nii-30000-cubed"),
    pytest.param(
        lambda p: nii_header_edit(p, more_slices_than_stored), "its header needs", id="nii-shorter-than-header"
    ),
    pytest.param(lambda p: truncate(p, 0.7), "its header needs", id="nii-truncated"),
    pytest.param(lambda p: truncate(p, 0.1), "NIfTI", id="nii-header-cut"),
]


@pytest.mark.parametrize(("make", "phrase"), NIFTI_CASES)
def test_bad_uncompressed_nifti(tmp_path, make, phrase):
    bad = make(nifti(tmp_path / "frame.nii", volume()[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError) as info:
            load_nifti(bad)
    assert info.value.path == bad and phrase in info.value.problem and "\n" not in str(info.value)
