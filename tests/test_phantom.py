"""The phantom cohort: reproducible bytes, the ACDC layout, sane anatomy, and NIfTI I/O."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cardioseg.data import phantom
from cardioseg.data.nifti_io import load_nifti, save_nifti
from cardioseg.errors import CardiosegError, DataError

SMALL = {"image_size": 64, "n_frames": 4, "n_slices": 4, "progress": False}


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _patients(phantom_dir: Path) -> list[str]:
    return sorted(json.loads((phantom_dir / "ground_truth.json").read_text())["patients"])


def _truth(phantom_dir: Path) -> dict:
    return json.loads((phantom_dir / "ground_truth.json").read_text())["patients"]


def test_acdc_layout_and_info_cfg(phantom_dir):
    truth = _truth(phantom_dir)
    assert _patients(phantom_dir) == ["patient001", "patient002", "patient003"]
    for name, gt in truth.items():
        folder = phantom_dir / name
        es = gt["es_frame"]
        expected = {
            "Info.cfg",
            f"{name}_4d.nii.gz",
            f"{name}_frame01.nii.gz",
            f"{name}_frame01_gt.nii.gz",
            f"{name}_frame{es:02d}.nii.gz",
            f"{name}_frame{es:02d}_gt.nii.gz",
        }
        assert {p.name for p in folder.iterdir()} == expected
        lines = (folder / "Info.cfg").read_text().splitlines()
        assert lines == [
            "ED: 1",
            f"ES: {es}",
            f"Group: {gt['group']}",
            f"Height: {gt['height_cm']:.1f}",
            "NbFrame: 12",
            f"Weight: {gt['weight_kg']:.1f}",
        ]
        assert (phantom_dir / "dicom" / name).is_dir()
    assert {gt["group"] for gt in truth.values()} == {"NOR", "DCM", "HCM"}


def test_same_seed_same_bytes_and_no_progress_output(tmp_path, capsys):
    a = phantom.write_cohort(tmp_path / "a", 2, seed=5, **SMALL)
    b = phantom.write_cohort(tmp_path / "b", 2, seed=5, **SMALL)
    c = phantom.write_cohort(tmp_path / "c", 2, seed=6, **SMALL)
    assert capsys.readouterr().err == ""
    ha, hb, hc = _hashes(a), _hashes(b), _hashes(c)
    assert len(ha) == 2 * (6 + 4 * 4) + 1
    assert ha == hb
    assert len(hc) == len(ha)  # the ES frame (so two file names) may differ between seeds
    assert all(ha[k] != hc[k] for k in ha.keys() & hc.keys() if k.endswith((".nii.gz", ".dcm", ".json")))
    # gzip header: mtime 0 and no file name, so the bytes cannot depend on when or where it was written
    head = (a / "patient001" / "patient001_4d.nii.gz").read_bytes()[:10]
    assert head[3] == 0 and head[4:8] == b"\0\0\0\0"


def test_patient_depends_only_on_seed_and_index():
    first = phantom.make_patient(3, 2, image_size=64, n_frames=4, n_slices=4)
    again = phantom.make_patient(3, 2, image_size=64, n_frames=4, n_slices=4)
    assert np.array_equal(first.cine, again.cine)
    assert first.heart == again.heart


def test_refuses_existing_folder_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        phantom.write_cohort(out, 1, **SMALL)
    assert (out / "keep.txt").read_text() == "mine"

    calls = []

    def fail_second(folder, patient):
        calls.append(patient.name)
        if len(calls) == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(phantom, "write_dicom_patient", fail_second)
    with pytest.raises(RuntimeError):
        phantom.write_cohort(tmp_path / "new", 2, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]


def test_refuses_impossible_sizes(tmp_path):
    with pytest.raises(CardiosegError, match="n_slices >= 3"):
        phantom.write_cohort(tmp_path / "x", 1, n_slices=2, progress=False)
    assert not (tmp_path / "x").exists()


def test_contraction_curve_is_smooth_ed_to_es_and_back():
    scan = phantom.make_patient(0, 1, image_size=64, n_frames=12, n_slices=4).scan
    c = scan.contraction
    es = scan.es_frame - 1
    assert c[0] == 0 and c[es] == pytest.approx(1)
    assert np.all(np.diff(c[: es + 1]) > 0) and np.all(np.diff(c[es:]) < 0)
    assert c[-1] < 0.1  # close to ED again at the end of the cycle


def _wall_mm(label: np.ndarray, pixel_mm: float) -> float:
    """Mean wall thickness of one slice from areas: epicardial minus endocardial equivalent radius."""
    endo = (label == 3).sum() * pixel_mm**2
    epi = endo + (label == 2).sum() * pixel_mm**2
    return float(np.sqrt(epi / np.pi) - np.sqrt(endo / np.pi))


def test_anatomy_is_sane_and_matches_ground_truth(phantom_dir):
    for name, gt in _truth(phantom_dir).items():
        folder = phantom_dir / name
        es = gt["es_frame"]
        ed_label, _, spacing = load_nifti(folder / f"{name}_frame01_gt.nii.gz")
        es_label, _, _ = load_nifti(folder / f"{name}_frame{es:02d}_gt.nii.gz")
        assert ed_label.dtype == np.uint8 and set(np.unique(ed_label)) <= {0, 1, 2, 3}
        assert spacing == pytest.approx(tuple(gt["spacing_mm"]))
        assert 8 <= spacing[0] <= 10 and 1.3 <= spacing[1] <= 1.6 and spacing[1] == spacing[2]
        voxel_ml = float(np.prod(spacing)) / 1000
        for phase, label in (("ED", ed_label), ("ES", es_label)):
            for value, cls in ((1, "RV"), (2, "MYO"), (3, "LV")):
                assert (label == value).sum() * voxel_ml == pytest.approx(gt["volumes_ml"][phase][cls], abs=1e-2)
        lv_ed, lv_es = (ed_label == 3).sum(), (es_label == 3).sum()
        assert lv_ed > lv_es
        assert 1 - lv_es / lv_ed == pytest.approx(gt["ef"]["LV"], abs=1e-3)
        assert gt["ef"]["LV"] == pytest.approx(gt["target_ef"]["LV"], abs=0.02)
        assert 0.2 <= gt["ef"]["LV"] <= 0.8 and 0.15 <= gt["ef"]["RV"] <= 0.8
        n = ed_label.shape[0]
        for s in (n // 2 - 1, n // 2):
            for label in (ed_label, es_label):
                assert set(np.unique(label[s])) == {0, 1, 2, 3}, f"{name} slice {s}"
            assert 6 <= _wall_mm(ed_label[s], spacing[1]) <= 18
            assert _wall_mm(es_label[s], spacing[1]) > _wall_mm(ed_label[s], spacing[1])
        assert (ed_label[-1] == 3).sum() < (ed_label[n // 2] == 3).sum() / 4  # tapering to the apex
        assert (ed_label[-1] == 1).sum() == 0  # the RV stops short of the apex


def test_cine_frames_match_the_ed_es_files(phantom_dir):
    name = "patient002"
    es = _truth(phantom_dir)[name]["es_frame"]
    cine, affine4, spacing4 = load_nifti(phantom_dir / name / f"{name}_4d.nii.gz")
    assert cine.shape == (12, 8, 128, 128) and cine.dtype == np.int16
    for frame in (1, es):
        image, affine, spacing = load_nifti(phantom_dir / name / f"{name}_frame{frame:02d}.nii.gz")
        assert np.array_equal(image, cine[frame - 1])
        assert np.allclose(affine, affine4) and spacing == spacing4
    assert cine.min() >= 0 and cine.max() <= phantom.MAX_VALUE
    # blood is bright and myocardium dark at ED
    label, _, _ = load_nifti(phantom_dir / name / f"{name}_frame01_gt.nii.gz")
    assert cine[0][label == 3].mean() > 2 * cine[0][label == 2].mean()


def test_affine_is_oblique_and_right_handed(phantom_dir):
    _, affine, _ = load_nifti(phantom_dir / "patient001" / "patient001_frame01.nii.gz")
    axes = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    assert np.allclose(axes.T @ axes, np.eye(3), atol=1e-5)
    assert np.linalg.det(axes) > 0
    assert np.abs(axes).max() < 0.95  # no axis aligned with a scanner axis: a double-oblique short axis


@pytest.mark.parametrize(
    ("suffix", "dtype", "shape"),
    [
        (".nii.gz", np.uint8, (5, 16, 12)),
        (".nii.gz", np.int16, (3, 5, 16, 12)),
        (".nii", np.float32, (5, 16, 12)),
    ],
)
def test_nifti_round_trip(tmp_path, suffix, dtype, shape):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 4, shape).astype(dtype)
    affine = np.array([[0.0, -1.4, 0.0, 10.0], [1.5, 0.0, 0.0, -20.0], [0.0, 0.0, 9.0, 30.0], [0, 0, 0, 1]])
    path = save_nifti(tmp_path / f"x{suffix}", array, affine, frame_interval_ms=40.0)
    loaded, loaded_affine, spacing = load_nifti(path)
    assert loaded.dtype == dtype and loaded.shape == shape
    assert np.array_equal(loaded, array)
    assert np.allclose(loaded_affine, affine, atol=1e-5)
    assert spacing == (9.0, 1.4, 1.5)
    if suffix == ".nii.gz":
        assert gzip.decompress(path.read_bytes())[:4] == (348).to_bytes(4, "little")


def _bad_nifti(tmp_path: Path, kind: str) -> Path:
    good = save_nifti(tmp_path / "good.nii.gz", np.ones((4, 32, 32), np.int16), np.eye(4))
    raw = good.read_bytes()
    if kind == "truncated gzip":
        path = tmp_path / "t.nii.gz"
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "truncated nii":
        path = tmp_path / "t.nii"
        path.write_bytes(gzip.decompress(raw)[:600])
    elif kind == "corrupt gzip":
        path = tmp_path / "c.nii.gz"
        data = bytearray(raw)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "text":
        path = tmp_path / "notes.nii.gz"
        path.write_text("not an image")
    elif kind == "2d":
        path = tmp_path / "flat.nii.gz"
        import nibabel as nib

        nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), path)
    else:
        path = tmp_path / "missing.nii.gz"
    return path


@pytest.mark.parametrize("kind", ["truncated gzip", "truncated nii", "corrupt gzip", "text", "2d", "missing"])
def test_bad_nifti_raises_data_error_naming_the_file(tmp_path, kind):
    path = _bad_nifti(tmp_path, kind)
    with pytest.raises(DataError) as info:
        load_nifti(path)
    assert info.value.path == path
    assert str(path) in str(info.value)
