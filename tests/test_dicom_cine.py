"""The DICOM cine reader: every phase kept, geometry equal to the NIfTI, bad input named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_bad_input_data import edit_dicom

from cardioseg.data.dicom_cine import cine_to_records, read_dicom_cine, write_dicom_cine
from cardioseg.data.nifti_io import load_nifti
from cardioseg.errors import DataError


@pytest.fixture
def series_dir(phantom_dir, tmp_path) -> Path:
    """A private copy of patient001's DICOM series that a test may damage."""
    return Path(shutil.copytree(phantom_dir / "dicom" / "patient001", tmp_path / "patient001"))


@pytest.mark.parametrize("name", ["patient001", "patient002", "patient003"])
def test_dicom_matches_nifti(phantom_dir, name):
    (series,) = read_dicom_cine(phantom_dir / "dicom" / name)
    cine, affine, spacing = load_nifti(phantom_dir / name / f"{name}_4d.nii.gz")
    assert series.pixels.dtype == np.float32 and series.pixels.shape == cine.shape == (12, 8, 128, 128)
    # the phantom stores integer pixel values as they are (no rescale), so both formats hold the same numbers
    assert np.array_equal(series.pixels, cine)
    assert np.allclose(series.affine, affine, atol=1e-3)
    assert series.spacing == pytest.approx(spacing, abs=1e-5)
    assert series.patient_id == name
    assert np.all(np.diff(series.trigger_times, axis=0) > 0)
    ds = pydicom.dcmread(series.files[0][0])
    truth = json.loads((phantom_dir / "ground_truth.json").read_text())["patients"][name]
    assert ds.Modality == "MR" and ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert ds.CardiacNumberOfImages == 12 and ds.StudyInstanceUID == series.study_uid
    assert float(ds.SliceThickness) == truth["slice_thickness_mm"]
    assert float(ds.SpacingBetweenSlices) == pytest.approx(spacing[0])


def test_uids_are_unique_and_derived_from_the_seed(phantom_dir):
    uids = set()
    studies = set()
    for folder in sorted((phantom_dir / "dicom").iterdir()):
        for path in sorted(folder.iterdir()):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids.add(ds.SOPInstanceUID)
            studies.add(ds.StudyInstanceUID)
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(uids) == 3 * 12 * 8 and len(studies) == 3
    assert all(uid.startswith("2.25.") for uid in uids)


def test_cine_to_records(phantom_dir):
    (series,) = read_dicom_cine(phantom_dir / "dicom" / "patient001")
    records = cine_to_records(series)
    assert [r.frame for r in records] == list(range(1, 13))
    assert all(r.phase == "other" and r.patient == "patient001" for r in records)
    assert np.array_equal(records[4].image, series.pixels[4]) and records[4].image.shape == (8, 128, 128)
    assert records[0].spacing == series.spacing and np.allclose(records[0].affine, series.affine)
    assert records[0].meta["series_uid"] == series.series_uid


def test_order_comes_from_geometry_and_trigger_time_not_file_names(series_dir):
    (before,) = read_dicom_cine(series_dir)
    paths = sorted(series_dir.iterdir())
    n = len(paths)
    for i, path in enumerate(paths):
        edit_dicom(path, InstanceNumber=n - i)  # reversed numbering
        path.rename(series_dir / f"x{(i * 37) % n:03d}")  # names in a scrambled order
    (after,) = read_dicom_cine(series_dir)
    assert np.array_equal(after.pixels, before.pixels)
    assert np.allclose(after.affine, before.affine)


def test_rescale_slope_and_intercept_are_applied(series_dir):
    (before,) = read_dicom_cine(series_dir)
    edit_dicom(series_dir / "IM00001.dcm", RescaleSlope=2.5, RescaleIntercept=-7)  # slice 0, frame 1
    (after,) = read_dicom_cine(series_dir)
    assert np.allclose(after.pixels[0, 0], 2.5 * before.pixels[0, 0] - 7)
    assert np.array_equal(after.pixels[1:], before.pixels[1:])


def test_two_series_in_one_folder(phantom_dir, tmp_path):
    for name in ("patient001", "patient002"):
        shutil.copytree(phantom_dir / "dicom" / name, tmp_path / "study" / name)
    series = read_dicom_cine(tmp_path / "study")
    assert sorted(s.patient_id for s in series) == ["patient001", "patient002"]
    assert all(s.pixels.shape[:2] == (12, 8) for s in series)


def test_not_dicom(series_dir):
    bad = series_dir / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(DataError, match="not a DICOM file") as info:
        read_dicom_cine(series_dir)
    assert info.value.path == bad


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.03])
def test_truncated_file(series_dir, keep):
    bad = series_dir / "IM00005.dcm"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DataError, match="truncated") as info:
        read_dicom_cine(series_dir)
    assert info.value.path == bad


def test_wrong_modality(series_dir):
    bad = series_dir / "IM00007.dcm"
    edit_dicom(bad, Modality="CT")
    with pytest.raises(DataError, match="modality is 'CT'") as info:
        read_dicom_cine(series_dir)
    assert info.value.path == bad


@pytest.mark.parametrize("tag", ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "TriggerTime"])
def test_missing_required_tag(series_dir, tag):
    bad = series_dir / "IM00020.dcm"
    edit_dicom(bad, **{tag: None})
    with pytest.raises(DataError, match=f"missing required DICOM tag.*{tag}") as info:
        read_dicom_cine(series_dir)
    assert info.value.path == bad


def test_inconsistent_frames_per_slice(series_dir):
    (series_dir / "IM00015.dcm").unlink()  # slice 2 (instances 13..24) loses one phase
    with pytest.raises(DataError, match="has 11 frames, other slices of the series have 12") as info:
        read_dicom_cine(series_dir)
    assert info.value.path.parent == series_dir
    assert 13 <= pydicom.dcmread(info.value.path).InstanceNumber <= 24


def test_duplicate_trigger_time(series_dir):
    edit_dicom(series_dir / "IM00002.dcm", TriggerTime=0.0)
    with pytest.raises(DataError, match="same TriggerTime"):
        read_dicom_cine(series_dir)


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM files") as info:
        read_dicom_cine(tmp_path / "empty")
    assert info.value.path == tmp_path / "empty"
    with pytest.raises(DataError, match="does not exist"):
        read_dicom_cine(tmp_path / "nowhere")


def test_left_handed_non_square_geometry_round_trips(tmp_path):
    """Real NIfTIs may have a left-handed affine: the reader then stacks slices the other way round, but every
    voxel keeps its world position; a non-square image catches a row/column swap."""
    rng = np.random.default_rng(0)
    cine = rng.integers(0, 4000, (3, 4, 6, 5)).astype(np.uint16)
    affine = np.array([[0.0, -1.4, 0.0, 10.0], [1.5, 0.0, 0.0, -20.0], [0.0, 0.0, -9.0, 30.0], [0, 0, 0, 1]])
    write_dicom_cine(tmp_path, cine, affine, patient_id="p", frame_interval_ms=40.0, uid_key="test")
    (series,) = read_dicom_cine(tmp_path)
    assert np.array_equal(series.pixels, cine[:, ::-1])
    flipped = affine.copy()
    flipped[:3, 2] = -affine[:3, 2]
    flipped[:3, 3] = affine[:3, 3] + 3 * affine[:3, 2]
    assert np.allclose(series.affine, flipped, atol=1e-6)
    assert series.spacing == pytest.approx((9.0, 1.4, 1.5))
    assert series.trigger_times[:, 0].tolist() == [0.0, 40.0, 80.0]
