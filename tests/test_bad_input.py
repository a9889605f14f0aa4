"""Each kind of bad input gets one clear message naming the file and the problem, and exit code 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cardioseg.cli import main


def run_summary(path: Path, capsys) -> tuple[int, str]:
    code = main(["--quiet", "data", "summary", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


def write_h5(path: Path, image=None, label=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        if image is not None:
            h5["image"] = image
        if label is not None:
            h5["label"] = label
    return path


def good_volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    label = np.zeros((3, 16, 16), np.uint8)
    label[:, 4:8, 4:8] = 3
    return image, label


def ssl4mis_case(tmp_path: Path, case: str) -> Path:
    image, label = good_volume()
    volume = tmp_path / "volumes" / "patient001_frame01.h5"
    if case == "truncated":
        write_h5(volume, image, label)
        volume.write_bytes(volume.read_bytes()[:300])
    elif case == "no label dataset":
        write_h5(volume, image=image)
    elif case == "label value 7":
        label[0, 0, 0] = 7
        write_h5(volume, image, label)
    elif case == "shape mismatch":
        write_h5(volume, image, label[:, :8])
    elif case == "NaN":
        image[1, 2, 3] = np.nan
        write_h5(volume, image, label)
    return volume


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated", "not a readable h5 file"),
        ("no label dataset", "no dataset 'label'"),
        ("label value 7", "label values [7] outside 0..3"),
        ("shape mismatch", "differs from image shape"),
        ("NaN", "NaN"),
    ],
)
def test_bad_ssl4mis_volume(tmp_path, capsys, case, expected):
    volume = ssl4mis_case(tmp_path, case)
    code, err = run_summary(tmp_path, capsys)
    assert code == 2
    assert str(volume) in err and expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_empty_folder(tmp_path, capsys):
    code, err = run_summary(tmp_path, capsys)
    assert code == 2 and "folder is empty" in err and str(tmp_path) in err


def test_missing_path(tmp_path, capsys):
    code, err = run_summary(tmp_path / "nowhere", capsys)
    assert code == 2 and "does not exist" in err


def test_unknown_layout(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    code, err = run_summary(tmp_path, capsys)
    assert code == 2 and "unknown layout" in err


def test_corrupt_natural_image(tmp_path, capsys):
    (tmp_path / "cats").mkdir()
    bad = tmp_path / "cats" / "0001.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    code, err = run_summary(tmp_path, capsys)
    assert code == 2 and str(bad) in err and "not a readable image" in err


def copy_patient(phantom_dir: Path, tmp_path: Path) -> Path:
    patient = sorted(p for p in phantom_dir.iterdir() if p.name.startswith("patient"))[0]
    target = tmp_path / "acdc" / patient.name
    shutil.copytree(patient, target)
    return target


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("Info.cfg without ES", "missing 'ES:' line"),
        ("Info.cfg malformed line", "is not 'Key: value'"),
        ("Info.cfg ED not a number", "is not a number"),
        ("missing ES frame", "named in Info.cfg is missing"),
        ("truncated NIfTI", ".nii.gz"),
        ("label shape differs", "differs from image shape"),
    ],
)
def test_bad_raw_acdc(phantom_dir, tmp_path, capsys, case, expected):
    import nibabel as nib

    patient = copy_patient(phantom_dir, tmp_path)
    info = patient / "Info.cfg"
    lines = info.read_text().splitlines()
    es = next(int(line.split(":")[1]) for line in lines if line.startswith("ES"))
    es_image = patient / f"{patient.name}_frame{es:02d}.nii.gz"
    es_label = patient / f"{patient.name}_frame{es:02d}_gt.nii.gz"
    if case == "Info.cfg without ES":
        info.write_text("\n".join(line for line in lines if not line.startswith("ES")))
    elif case == "Info.cfg malformed line":
        info.write_text("\n".join([*lines, "this line has no colon"]))
    elif case == "Info.cfg ED not a number":
        info.write_text("\n".join("ED: first" if line.startswith("ED") else line for line in lines))
    elif case == "missing ES frame":
        es_image.unlink()
    elif case == "truncated NIfTI":
        es_image.write_bytes(es_image.read_bytes()[:200])
    elif case == "label shape differs":
        label = nib.load(es_label)
        nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj)[:-2], label.affine), es_label)
    code, err = run_summary(tmp_path / "acdc", capsys)
    assert code == 2 and expected in err and patient.name in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_phantom_refuses_non_empty_out_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["--quiet", "phantom", "--patients", "1", "--out", str(out), "--size", "64", "--frames", "4"])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_console_script_exit_code_and_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cardioseg", "data", "summary", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("cardioseg: error:") and "Traceback" not in result.stderr
