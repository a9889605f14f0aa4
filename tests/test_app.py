"""The MONAI Deploy app (``python app``): the same outputs as ``run_study``, and bad input refused with one
``cardioseg: error:`` line, exit code 2 and no output folder.

The app runs as a real process once (options) and in this process otherwise (``app.cli.main``, the function
``python app`` calls: its return value is the exit code), to keep the test time down. The model is the
small shared bundle of :mod:`bundle_helpers`; the study is a 4-slice x 4-phase phantom at the model's size.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bundle_helpers import IMAGE_SIZE, shared_export
from dicom_helpers import edit_dicom

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the app is a folder of the repository, not an installed package

from app.cli import main  # noqa: E402
from cardioseg.clinical.outputs import OUTPUT_FILES  # noqa: E402

OUTPUTS = set(OUTPUT_FILES.values())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, phantom_dir) -> Path:
    return shared_export(tmp_path_factory, phantom_dir)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from cardioseg.data.phantom import write_cohort

    out = tmp_path_factory.mktemp("app_study") / "cohort"
    write_cohort(out, 1, seed=3, image_size=IMAGE_SIZE, n_frames=4, n_slices=4, progress=False)
    return out / "dicom" / "patient001"


@pytest.fixture
def study_copy(study, tmp_path) -> Path:
    return Path(shutil.copytree(study, tmp_path / "study"))


@pytest.fixture(autouse=True)
def restore_logging():
    """``main`` configures logging as the SDK does (root handler, INFO); undo it for the next tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def indices_of(out: Path) -> dict:
    record = json.loads((out / "indices.json").read_text())
    record.pop("provenance")
    return record


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def labels_of(out: Path) -> np.ndarray:
    return np.asarray(nib.load(out / "labels_cine.nii.gz").dataobj)


def error_line(stderr: str) -> str:
    """The one ``cardioseg: error:`` line, last of stderr, and no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "cardioseg: error:" in line]
    assert len(errors) == 1, stderr
    assert stderr.strip().splitlines()[-1] == errors[0] and errors[0].startswith("cardioseg: error: "), stderr
    return errors[0]


def refused(capfd, argv: list[str], out: Path) -> str:
    """Run the app in this process on bad input: exit code 2, one error line, no output folder."""
    assert main(argv) == 2
    line = error_line(capfd.readouterr().err)
    assert not out.exists(), sorted(out.rglob("*"))
    assert not list(out.parent.glob(f".{out.name}.*")), "a staging folder was left beside the output"
    return line


# --- good input ------------------------------------------------------------------------------------------


def test_app_process_matches_run_study(bundle, study, tmp_path):
    """``python app -i -o -m`` writes every output, with the labels and indices of ``run_study``."""
    from cardioseg.clinical.pipeline import run_study

    out = tmp_path / "app_out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOLOSCAN_")}
    result = subprocess.run(
        [sys.executable, "app", "-i", str(study), "-o", str(out), "-m", str(bundle)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert {path.name for path in out.iterdir()} == OUTPUTS
    assert "chosen: short-axis cine stack, 4 slices x 4 phases" in result.stderr  # the selection is logged
    reference = run_study(study, bundle, tmp_path / "library_out")
    np.testing.assert_array_equal(labels_of(out), labels_of(tmp_path / "library_out"))
    assert same(indices_of(out), indices_of(tmp_path / "library_out"))
    timings = json.loads((out / "indices.json").read_text())["provenance"]["timings_s"]
    assert set(timings) == set(reference.timings) - {"write_outputs", "total"}
    assert pydicom.dcmread(out / "segmentation.dcm").Modality == "SEG"


def test_environment_variables_name_the_folders(bundle, study, tmp_path, monkeypatch, capfd):
    """HOLOSCAN_INPUT_PATH / HOLOSCAN_OUTPUT_PATH / HOLOSCAN_MODEL_PATH, as a MAP runs the app: there the
    model path is a folder holding the bundle as a subfolder (/opt/holoscan/models/cardiac_sax_seg)."""
    out = tmp_path / "out"
    models = tmp_path / "models"
    models.mkdir()
    (models / "cardiac_sax_seg").symlink_to(bundle, target_is_directory=True)
    monkeypatch.setenv("HOLOSCAN_INPUT_PATH", str(study))
    monkeypatch.setenv("HOLOSCAN_OUTPUT_PATH", str(out))
    monkeypatch.setenv("HOLOSCAN_MODEL_PATH", str(models))
    assert main([]) == 0
    assert f"wrote {out}" in capfd.readouterr().out
    assert {path.name for path in out.iterdir()} == OUTPUTS


# --- bad input: one line, exit code 2, nothing written ----------------------------------------------------


def test_not_a_cardiac_cine(bundle, tmp_path, capfd):
    """pydicom's MR test images: MR, but one image per position (no cine) and an axial stack."""
    folder = tmp_path / "mr"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("MR_small.dcm"), folder / "MR_small.dcm")
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(folder), "-o", str(out), "-m", str(bundle)], out)
    assert f"{folder}: no short-axis cine series in the study" in line and "not a cine" in line


def test_study_without_a_short_axis_cine(bundle, study, tmp_path, capfd):
    """A one-slice cine (as a long-axis cine is) beside a non-cine MR series: neither is a short-axis stack."""
    folder = tmp_path / "study"
    folder.mkdir()
    files = sorted(study.iterdir())
    position = pydicom.dcmread(files[0]).ImagePositionPatient
    first_slice = [p for p in files if pydicom.dcmread(p).ImagePositionPatient == position]
    assert len(first_slice) == 4
    for path in first_slice:
        shutil.copy(path, folder / path.name)
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    other = Path(shutil.copy(pydicom.data.get_testdata_file("MR_small.dcm"), folder / "MR_small.dcm"))
    edit_dicom(other, PatientID=header.PatientID, StudyInstanceUID=header.StudyInstanceUID)  # the same study
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(folder), "-o", str(out), "-m", str(bundle)], out)
    assert "no short-axis cine series" in line and "1 slice position(s)" in line and "not a cine" in line


def test_missing_geometry_tag(bundle, study_copy, tmp_path, capfd):
    edit_dicom(study_copy / "IM00003.dcm", ImagePositionPatient=None)
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(study_copy), "-o", str(out), "-m", str(bundle)], out)
    assert f"{study_copy}: no short-axis cine series" in line and "ImagePositionPatient missing" in line


@pytest.mark.parametrize("keep", [0.03, 0.99], ids=["header", "pixel_data"])
def test_corrupt_file(bundle, study_copy, tmp_path, capfd, keep):
    """A damaged header is found while the study is scanned; damaged pixels when the cine is read."""
    bad = study_copy / "IM00005.dcm"
    raw = bad.read_bytes()
    bad.write_bytes(raw[: max(int(len(raw) * keep), 140)])
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(study_copy), "-o", str(out), "-m", str(bundle)], out)
    assert line.startswith(f"cardioseg: error: {bad}: ")


def test_empty_or_missing_input_folder(bundle, tmp_path, capfd):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(empty), "-o", str(out), "-m", str(bundle)], out)
    assert line == f"cardioseg: error: {empty}: input folder is empty: no files to read"
    line = refused(capfd, ["-i", str(tmp_path / "nowhere"), "-o", str(out), "-m", str(bundle)], out)
    assert f"{tmp_path / 'nowhere'}: input folder does not exist (from --input)" in line


def test_model_hash_mismatch(bundle, study, tmp_path, capfd):
    changed = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    onnx = changed / "models" / "model.onnx"
    raw = bytearray(onnx.read_bytes())
    raw[-1] ^= 0xFF
    onnx.write_bytes(bytes(raw))
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(study), "-o", str(out), "-m", str(changed)], out)
    assert line.startswith(f"cardioseg: error: {onnx}: sha256 ") and "large_files.yml" in line


def test_missing_model_names_the_setting(study, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HOLOSCAN_MODEL_PATH", raising=False)
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(study), "-o", str(out)], out)
    assert "model bundle folder does not exist" in line and "HOLOSCAN_MODEL_PATH" in line


def test_non_empty_output_folder_is_left_alone(bundle, study, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("a result someone has")
    assert main(["-i", str(study), "-o", str(out), "-m", str(bundle)]) == 2
    assert "output folder exists and is not empty (use --overwrite" in error_line(capfd.readouterr().err)
    assert [p.name for p in out.iterdir()] == ["earlier.txt"]


def test_overwrite_replaces_the_results_in_the_same_folder(bundle, study, tmp_path):
    """The folder itself stays (a container's output volume is a mount point: it cannot be replaced)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("an earlier result")
    inode = out.stat().st_ino
    assert main(["-i", str(study), "-o", str(out), "-m", str(bundle), "--overwrite", "-l", "warning"]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS and out.stat().st_ino == inode


def test_a_models_folder_with_two_bundles_is_refused(bundle, study, tmp_path, capfd):
    models = tmp_path / "models"
    for name in ("first", "second"):
        shutil.copytree(bundle, models / name)
    out = tmp_path / "out"
    line = refused(capfd, ["-i", str(study), "-o", str(out), "-m", str(models)], out)
    assert f"{models}: holds 2 exported bundles (first, second): pass the one to use with -m" in line


def test_bad_input_in_a_real_process(bundle, study_copy, tmp_path):
    """The exit code and stderr of ``python app`` itself, for an error found inside the graph."""
    bad = study_copy / "IM00002.dcm"
    bad.write_bytes(bad.read_bytes()[:-64])
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "app", "-i", str(study_copy), "-o", str(out), "-m", str(bundle)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert error_line(result.stderr).startswith(f"cardioseg: error: {bad}: pixel data is unreadable or truncated")
    assert not out.exists()
