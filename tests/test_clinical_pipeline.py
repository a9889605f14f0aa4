"""`cardioseg infer`: a DICOM study in, SEG, label maps, indices, report and picture out; bad input refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import yaml
from bundle_helpers import shared_export
from cli_helpers import one_line_error
from dicom_helpers import edit_dicom, phantom_study

from cardioseg.cli import main
from cardioseg.clinical.indices import cardiac_indices
from cardioseg.clinical.model import load_bundle_model
from cardioseg.clinical.outputs import OUTPUT_FILES
from cardioseg.clinical.pipeline import run_study
from cardioseg.clinical.selection import select_short_axis_cine
from cardioseg.data.dicom_study import scan_study
from cardioseg.data.nifti_io import load_nifti

PATIENT = "patient002"  # the shared run's validation patient
OUTPUTS = set(OUTPUT_FILES.values())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, phantom_dir) -> Path:
    return shared_export(tmp_path_factory, phantom_dir)


@pytest.fixture(scope="module")
def study(tmp_path_factory, phantom_dir) -> Path:
    """A scanner-like study: the short-axis cine, a localizer, a four-chamber cine and a README."""
    return phantom_study(phantom_dir, PATIENT, tmp_path_factory.mktemp("study") / "study")


@pytest.fixture(scope="module")
def inferred(tmp_path_factory, study, bundle) -> Path:
    out = tmp_path_factory.mktemp("infer") / "out"
    assert main(["--quiet", "infer", str(study), "--bundle", str(bundle), "--out", str(out)]) == 0
    return out


def test_selection_takes_the_short_axis_stack_and_says_why_it_left_the_others(study):
    scan = scan_study(study)
    choice = select_short_axis_cine(scan)
    by_description = {s.description: choice.reasons[s.uid] for s in scan.series}
    assert choice.series.description == "SA cine phantom"
    assert (choice.series.n_positions, choice.series.n_phases) == (8, 12)
    assert by_description["SA cine phantom"].startswith("chosen")
    assert "localizer" in by_description["localizer"]
    assert "1 slice position" in by_description["cine 4ch"]
    assert [path.name for path, _ in scan.skipped] == ["README.txt"]


def test_infer_writes_every_output_from_the_chosen_series(inferred, study):
    assert {p.name for p in inferred.iterdir()} == OUTPUTS
    record = json.loads((inferred / "indices.json").read_text())
    chosen = [s for s in record["provenance"]["series_selection"] if s["chosen"]]
    sax = pydicom.dcmread(next((study / "sax").iterdir()), stop_before_pixels=True)
    assert [s["series_uid"] for s in chosen] == [sax.SeriesInstanceUID]
    labels, _, _ = load_nifti(inferred / "labels_cine.nii.gz")
    assert labels.shape == (12, 8, 128, 128) and labels.dtype == np.uint8
    expected = cardiac_indices(labels, _spacing(record))
    assert record["lvedv_ml"] == pytest.approx(expected.lvedv_ml)
    assert record["ed"]["phase_index"] == expected.ed_phase
    seg = pydicom.dcmread(inferred / "segmentation.dcm")
    referenced = {
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    assert len(referenced) == 96 and seg.Modality == "SEG"


def _spacing(record: dict) -> tuple[float, float, float]:
    spacing = record["spacing_mm"]
    return spacing["slice"], spacing["row"], spacing["column"]


def test_the_seg_of_a_whole_study_passes_dciodvfy(inferred):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; `make test` installs it")
    result = subprocess.run(["dciodvfy", str(inferred / "segmentation.dcm")], capture_output=True, text=True)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_onnx_runtime_and_pytorch_give_the_same_labels(study, bundle, tmp_path, inferred):
    torch_run = run_study(study, bundle, tmp_path / "torch", backend="torch", device="cpu")
    onnx_labels, _, _ = load_nifti(inferred / "labels_cine.nii.gz")
    assert np.mean(torch_run.labels == onnx_labels) > 0.9999


def test_the_output_folder_is_never_overwritten_without_the_flag(study, bundle, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("a result of mine")
    args = ["infer", str(study), "--bundle", str(bundle), "--out", str(out)]
    assert main(args) == 2
    assert "not empty" in one_line_error(capsys)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert main(["--quiet", *args, "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS


def _tamper_model(bundle: Path, tmp_path: Path) -> Path:
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    onnx = copy / "models" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF
    onnx.write_bytes(bytes(data))
    return copy


def _other_size_model(bundle: Path, tmp_path: Path) -> Path:
    """A bundle whose ONNX model, with a matching hash, takes 32x32 slices where the metadata says 64."""
    from cardioseg.checkpoint import file_sha256
    from cardioseg.export import export_onnx
    from cardioseg.nets import build_unet

    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    onnx = copy / "models" / "model.onnx"
    onnx.unlink()
    export_onnx(build_unet("resnet18").eval(), onnx, spatial_size=(32, 32))
    listing = copy / "large_files.yml"
    entries = yaml.safe_load(listing.read_text())
    for entry in entries["large_files"]:
        if entry["path"] == "models/model.onnx":
            entry["hash_val"] = file_sha256(onnx)
    listing.write_text(yaml.safe_dump(entries))
    return copy


def _bad_study(kind: str, study: Path, tmp_path: Path) -> tuple[Path, str]:
    """A study folder with one kind of bad input, and what the error must say."""
    from pydicom.data import get_testdata_file

    bad = tmp_path / "bad"
    bad.mkdir()
    if kind == "empty folder":
        return bad, "holds no DICOM files"
    if kind == "missing folder":
        return tmp_path / "nowhere", "does not exist"
    if kind == "only non-DICOM files":
        (bad / "notes.txt").write_text("no images here")
        return bad, "holds no DICOM files (1 other file(s) skipped)"
    if kind in ("non-cine MR", "CT"):
        shutil.copy(get_testdata_file("MR_small.dcm" if kind == "non-cine MR" else "CT_small.dcm"), bad)
        return bad, "no short-axis cine series" if kind == "non-cine MR" else "modality is CT"
    if kind == "no short-axis cine":
        shutil.copytree(study, bad, dirs_exist_ok=True, ignore=shutil.ignore_patterns("sax"))
        return bad, "no short-axis cine series"
    shutil.copytree(study, bad, dirs_exist_ok=True)
    victim = sorted((bad / "sax").iterdir())[5]
    if kind == "truncated file":
        victim.write_bytes(victim.read_bytes()[:400])
        return bad, f"{victim}: has no SeriesInstanceUID: a truncated or damaged DICOM file"
    if kind == "missing geometry":
        edit_dicom(victim, ImageOrientationPatient=None)
        return bad, f"geometry tag(s) ImageOrientationPatient missing (e.g. in {victim.name})"
    raise AssertionError(kind)


BAD_STUDIES = (
    "empty folder",
    "missing folder",
    "only non-DICOM files",
    "non-cine MR",
    "CT",
    "no short-axis cine",
    "truncated file",
    "missing geometry",
)


@pytest.mark.parametrize("kind", BAD_STUDIES)
def test_bad_study_one_line_and_nothing_written(kind, study, bundle, tmp_path, capsys):
    folder, phrase = _bad_study(kind, study, tmp_path)
    out = tmp_path / "out"
    assert main(["--quiet", "infer", str(folder), "--bundle", str(bundle), "--out", str(out)]) == 2
    line = one_line_error(capsys)
    assert phrase in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    ("make", "phrase"),
    [(_tamper_model, "sha256"), (_other_size_model, "does not take (batch, 1, 64, 64) slices")],
    ids=["changed model file", "model of another input size"],
)
def test_bad_model_one_line_and_nothing_written(make, phrase, study, bundle, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--quiet", "infer", str(study), "--bundle", str(make(bundle, tmp_path)), "--out", str(out)]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert phrase in line and "model.onnx" in line, line
    assert not out.exists()


def _resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def test_twenty_studies_in_one_process_without_memory_growth(bundle, tmp_path):
    from cardioseg.data.phantom import write_cohort

    cohort = write_cohort(tmp_path / "small", 1, image_size=64, n_frames=4, n_slices=4, progress=False)
    model = load_bundle_model(bundle)
    resident = []
    for n in range(20):
        run_study(cohort / "dicom" / "patient001", None, tmp_path / f"out{n}", model=model)
        resident.append(_resident_mib())
    assert resident[-1] - resident[4] < 25, resident


def test_phantom_studies_hold_the_cine_beside_a_localizer_and_a_long_axis_cine(tmp_path):
    from cardioseg.data.phantom import write_cohort
    from cardioseg.data.summary import summarize

    cohort = write_cohort(tmp_path / "c", 1, image_size=32, n_frames=3, n_slices=3, studies=True, progress=False)
    scan = scan_study(cohort / "studies" / "patient001")
    assert sorted(s.description for s in scan.series) == ["SA cine phantom", "cine 4ch", "localizer"]
    assert select_short_axis_cine(scan).series.description == "SA cine phantom"
    assert summarize(cohort)["patients"] == 1  # the studies do not count as patients of the cohort
