"""The clinical output writers: DICOM SEG, indices JSON, text report and picture, on a small phantom study."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from cardioseg.clinical.dicom_seg import write_dicom_seg
from cardioseg.clinical.indices import cardiac_indices
from cardioseg.clinical.picture import mid_ventricular_slice, write_picture
from cardioseg.clinical.report import DISCLAIMER, METHOD, indices_record, write_indices_json, write_report
from cardioseg.data.dicom_cine import read_dicom_cine
from cardioseg.data.phantom import make_patient, write_cohort
from cardioseg.errors import CardiosegError
from cardioseg.visualize import LABEL_COLOURS

SIZE, FRAMES, SLICES = 64, 6, 5
SHA = "0123456789abcdef" * 4
EXPECTED_CODES = {1: "53085002", 2: "49848007", 3: "87878005"}  # SNOMED CT: RV, LV myocardium, LV


@dataclasses.dataclass
class Study:
    series: object
    labels: np.ndarray
    sop_uids: list[list[str]]
    folder: Path


@pytest.fixture(scope="session")
def study(tmp_path_factory) -> Study:
    """One phantom patient as DICOM, with labels for every frame: the ED truth until halfway to ES-peak
    contraction, the ES truth after (the phantom draws labels at ED and ES only)."""
    out = tmp_path_factory.mktemp("clinical") / "cohort"
    write_cohort(out, 1, image_size=SIZE, n_frames=FRAMES, n_slices=SLICES, progress=False)
    (series,) = read_dicom_cine(out / "dicom" / "patient001")
    patient = make_patient(0, 1, image_size=SIZE, n_frames=FRAMES, n_slices=SLICES)
    ed, es = patient.labels[1], patient.labels[patient.scan.es_frame]
    labels = np.stack([ed if c < 0.5 else es for c in patient.scan.contraction]).astype(np.uint8)
    sop_uids = [[pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in frame] for frame in series.files]
    return Study(series, labels, sop_uids, out)


@pytest.fixture(scope="session")
def seg_path(study, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    write_dicom_seg(
        study.series, study.labels, path, algorithm_name="cardioseg-test", algorithm_version="1.2.3", model_sha256=SHA
    )
    return path


def _read_back(seg: hd.seg.Segmentation, study: Study, frame: int) -> np.ndarray:
    """The label map of one cine frame as stored in the SEG, found through the source instance references."""
    return seg.get_pixels_by_source_instance(
        source_sop_instance_uids=study.sop_uids[frame], segment_numbers=[1, 2, 3], combine_segments=True
    )


def test_seg_reads_back_with_codes_references_and_masks(study, seg_path):
    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY" and seg.Modality == "SEG"
    assert seg.get_segment_numbers() == [1, 2, 3]
    for number, code in EXPECTED_CODES.items():
        desc = seg.get_segment_description(number)
        assert desc.segmented_property_type.value == code and desc.segmented_property_type.scheme_designator == "SCT"
        assert desc.segmented_property_category.value == "91723000"  # Anatomical Structure (CID 7150)
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("cardioseg-test", "1.2.3")
        assert SHA in algorithm.AlgorithmParameters
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced == {uid for frame in study.sop_uids for uid in frame}
    assert seg.StudyInstanceUID == study.series.study_uid and seg.PatientID == "patient001"
    assert seg.SeriesDescription == "cardioseg segmentation" and seg.Manufacturer == "cardioseg"
    es = int(np.argmin((study.labels == 3).sum(axis=(1, 2, 3))))
    for frame in (0, es, FRAMES - 1):  # ED, ES and a frame between: every phase is stored, not only the first
        assert np.array_equal(_read_back(seg, study, frame), study.labels[frame])
    assert not np.array_equal(study.labels[0], study.labels[es])  # so the comparison can tell phases apart


def test_seg_keeps_an_empty_structure_as_one_empty_frame(study, tmp_path):
    labels = np.where(study.labels == 1, 0, study.labels).astype(np.uint8)  # no RV anywhere
    path = write_dicom_seg(study.series, labels, tmp_path / "seg.dcm", algorithm_name="a", algorithm_version="1")
    seg = hd.seg.segread(path)
    assert seg.get_segment_numbers() == [1, 2, 3]
    rv_frames = [
        item
        for item in seg.PerFrameFunctionalGroupsSequence
        if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1
    ]
    assert len(rv_frames) == 1
    assert np.array_equal(_read_back(seg, study, 0), labels[0])
    _assert_dciodvfy_clean(path)


def _dciodvfy(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: the DICOM conformance check cannot run")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).splitlines()


def _assert_dciodvfy_clean(path: Path) -> None:
    lines = _dciodvfy(path)
    assert "Segmentation" in lines  # dciodvfy recognised the IOD it checked against
    errors = [line for line in lines if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def test_seg_passes_dciodvfy(seg_path):
    _assert_dciodvfy_clean(seg_path)


def test_dciodvfy_finds_errors_in_a_broken_seg(seg_path, tmp_path):
    """The conformance check above can fail: a SEG without its segment descriptions is reported."""
    ds = pydicom.dcmread(seg_path)
    del ds.SegmentSequence
    ds.save_as(tmp_path / "broken.dcm")
    assert any(line.startswith("Error") for line in _dciodvfy(tmp_path / "broken.dcm"))


def test_seg_refuses_labels_of_another_shape(study, tmp_path):
    with pytest.raises(CardiosegError, match="shape"):
        write_dicom_seg(
            study.series, study.labels[:, :-1], tmp_path / "x.dcm", algorithm_name="a", algorithm_version="1"
        )
    assert not (tmp_path / "x.dcm").exists()


@pytest.fixture(scope="session")
def indices(study):
    return cardiac_indices(study.labels, study.series.spacing)


def test_json_round_trip_equals_indices(study, indices, tmp_path):
    provenance = {"model": "unet.onnx", "model_sha256": SHA, "cardioseg_version": "0.1.0"}
    record = indices_record(indices, study.series, provenance=provenance)
    path = write_indices_json(record, tmp_path / "indices.json")

    def no_nan(name):
        raise AssertionError(f"JSON holds {name}")

    loaded = json.loads(path.read_text(), parse_constant=no_nan)
    for key in ("lvedv_ml", "lvesv_ml", "lvef_percent", "rvedv_ml", "rvesv_ml", "rvef_percent", "lv_mass_g"):
        assert loaded[key] == pytest.approx(getattr(indices, key), rel=1e-12)
    assert loaded["lv_volume_curve_ml"] == pytest.approx(list(indices.lv_volume_curve_ml))
    assert loaded["ed"]["phase_index"] == indices.ed_phase and loaded["ed"]["frame_number"] == indices.ed_phase + 1
    assert loaded["es"]["phase_index"] == indices.es_phase and loaded["es"]["frame_number"] == indices.es_phase + 1
    assert loaded["es"]["trigger_time_ms"] == pytest.approx(
        float(np.median(study.series.trigger_times[indices.es_phase]))
    )
    assert loaded["patient_id"] == "patient001" and loaded["series_instance_uid"] == study.series.series_uid
    assert loaded["spacing_mm"] == pytest.approx(dict(zip(("slice", "row", "column"), study.series.spacing)))
    assert loaded["provenance"] == provenance


def test_nan_ejection_fraction_is_null_in_json_and_na_in_report(study, indices, tmp_path):
    no_rv = dataclasses.replace(indices, rvedv_ml=0.0, rvesv_ml=0.0, rvef_percent=float("nan"))
    record = indices_record(no_rv, study.series, provenance={})
    assert record["rvef_percent"] is None
    loaded = json.loads(write_indices_json(record, tmp_path / "i.json").read_text())
    assert loaded["rvef_percent"] is None and loaded["lvef_percent"] == pytest.approx(indices.lvef_percent)
    text = write_report(record, tmp_path / "r.txt").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("RV ejection fraction")]
    assert line.split()[-2:] == ["n/a", "%"]
    assert "nan" not in text.lower()


def test_report_holds_the_numbers_method_and_disclaimer(study, indices, tmp_path):
    record = indices_record(indices, study.series, provenance={"model": {"sha256": SHA}})
    text = write_report(record, tmp_path / "report.txt").read_text()
    assert f"model.sha256  {SHA}" in text
    for value in (indices.lvedv_ml, indices.lvesv_ml, indices.lvef_percent, indices.rvedv_ml, indices.lv_mass_g):
        assert f"{value:.1f}" in text
    assert f"frame {indices.es_phase + 1} of {FRAMES}" in text
    assert METHOD in text and DISCLAIMER in text and SHA in text
    assert all(math.isfinite(v) for v in indices.lv_volume_curve_ml)


def test_picture_is_a_png_with_coloured_contours(study, indices, tmp_path):
    path = write_picture(study.series, study.labels, indices, tmp_path / "overview.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    assert 600 <= width <= 2000 and 300 <= height <= 1200
    for value in (1, 2, 3):  # each structure's outline colour is drawn
        colour = np.array([int(LABEL_COLOURS[value][i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - colour).sum(axis=1) < 30).sum() > 20, f"no contour of label {value}"


def test_mid_ventricular_slice():
    labels = np.zeros((2, 10, 4, 4), np.uint8)
    assert mid_ventricular_slice(labels, 0) == 5  # no LV: the middle slice
    labels[0, 2:7, 1, 1] = 3
    assert mid_ventricular_slice(labels, 0) == 4
    labels[0, 4, 1, 1] = 0  # the middle slice itself lacks LV: the nearest slice that has it
    assert mid_ventricular_slice(labels, 0) in (3, 5)
    assert mid_ventricular_slice(labels, 1) == 5  # LV at another phase only: not the ED phase asked for


def test_volumes_are_indexed_by_body_surface_area_and_output_by_heart_rate(study, indices, tmp_path):
    """Mosteller's BSA from PatientSize (m) and PatientWeight (kg), cardiac output from HeartRate."""
    header = study.series.reference
    bsa = math.sqrt(float(header.PatientSize) * 100 * float(header.PatientWeight) / 3600)
    record = indices_record(indices, study.series, provenance={})
    assert record["body"]["bsa_m2"] == pytest.approx(bsa, abs=1e-4) and record["body"]["notes"] == []
    assert record["lvsv_ml"] == pytest.approx(indices.lvedv_ml - indices.lvesv_ml)
    assert record["lvedvi_ml_per_m2"] == pytest.approx(indices.lvedv_ml / bsa, rel=1e-4)
    assert record["lv_mass_index_g_per_m2"] == pytest.approx(indices.lv_mass_g / bsa, rel=1e-4)
    output = record["lvsv_ml"] * float(header.HeartRate) / 1000
    assert record["lv_cardiac_output_l_per_min"] == pytest.approx(output)
    text = write_report(record, tmp_path / "report.txt").read_text()
    assert f"{indices.lvedv_ml / bsa:.1f}" in text and f"Indexed by: BSA {bsa:.2f} m2 (Mosteller" in text


def test_without_height_nothing_is_indexed_and_the_report_says_why(study, indices, tmp_path):
    header = copy.deepcopy(study.series.reference)
    header.PatientSize = 180  # centimetres where DICOM says metres: a common export error
    del header.HeartRate
    del header.NominalInterval
    record = indices_record(indices, dataclasses.replace(study.series, reference=header), provenance={})
    assert record["lvedvi_ml_per_m2"] is None and record["lv_cardiac_output_l_per_min"] is None
    assert record["lv_mass_g"] == pytest.approx(indices.lv_mass_g)
    text = write_report(record, tmp_path / "report.txt").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("LV EDV index")]
    assert line.split()[-2:] == ["n/a", "ml/m2"]
    assert "PatientSize 180 is not a plausible value in m (0.4-2.6): left out" in text
    assert "Not indexed: " in text and "no HeartRate in the headers; no NominalInterval in the headers" in text
