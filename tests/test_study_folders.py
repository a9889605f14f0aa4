"""Study folders as exporters and anonymisers leave them: what is read, what the SEG writer mends, and what
is refused with which words. Headers and pixels only: no model runs here."""

from __future__ import annotations

import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_helpers import edit_dicom, phantom_study
from pydicom.uid import generate_uid

from cardioseg.clinical.dicom_seg import write_dicom_seg
from cardioseg.clinical.pipeline import read_short_axis_cine
from cardioseg.clinical.selection import select_short_axis_cine
from cardioseg.data.dicom_cine import dicom_layout
from cardioseg.data.dicom_study import scan_study
from cardioseg.errors import DataError


@pytest.fixture(scope="module")
def study(tmp_path_factory, phantom_dir) -> Path:
    """The short-axis cine (``sax/``), a localizer, a four-chamber cine and a README."""
    return phantom_study(phantom_dir, "patient002", tmp_path_factory.mktemp("study") / "study")


@pytest.fixture
def study_copy(study, tmp_path) -> Path:
    return Path(shutil.copytree(study, tmp_path / "study"))


def sax_files(study: Path) -> list[Path]:
    return sorted((study / "sax").iterdir())


def read_chosen(folder: Path):
    scan = scan_study(folder)
    choice = select_short_axis_cine(scan)
    return choice, read_short_axis_cine(scan, choice)


def test_bare_data_sets_without_the_part10_header_are_read(study, study_copy):
    """Older exporters write the data set alone: no 128-byte preamble, no ``DICM``, no file meta."""
    for path in sax_files(study_copy):
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert dicom_layout(sax_files(study_copy)[0]) == "bare"
    choice, series = read_chosen(study_copy)
    assert choice.series.description == "SA cine phantom"
    assert np.array_equal(series.pixels, read_chosen(study)[1].pixels)


def test_linked_folders_are_searched_and_a_link_loop_ends(study, tmp_path):
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "sax").symlink_to(study / "sax", target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    choice, _ = read_chosen(folder)
    assert (choice.series.n_positions, choice.series.n_phases) == (8, 12)


def test_two_studies_in_one_folder_are_refused(phantom_dir, tmp_path):
    folder = tmp_path / "two"
    for patient in ("patient001", "patient002"):
        phantom_study(phantom_dir, patient, folder / patient, survey=False)
    with pytest.raises(DataError, match=r"holds 2 studies \(patient patient001, .*patient patient002, .*one study"):
        scan_study(folder)


def test_an_original_series_wins_over_a_derived_copy(study_copy):
    derived, uid = study_copy / "derived", generate_uid()
    shutil.copytree(study_copy / "sax", derived)
    for path in derived.iterdir():  # a later series number, which would otherwise win
        edit_dicom(
            path,
            SeriesInstanceUID=uid,
            SeriesNumber=99,
            ImageType=["DERIVED", "SECONDARY"],
            SOPInstanceUID=generate_uid(),
        )
    choice = select_short_axis_cine(scan_study(study_copy))
    assert choice.series.uid != uid
    assert "but it is DERIVED and the chosen one ORIGINAL" in choice.reasons[uid]


def test_a_stack_stored_as_one_series_per_slice_is_named_in_the_error(study_copy):
    by_position = defaultdict(list)
    for path in sax_files(study_copy):
        by_position[tuple(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient)].append(path)
    for number, paths in enumerate(by_position.values(), start=100):
        uid = generate_uid()
        for path in paths:
            edit_dicom(path, SeriesInstanceUID=uid, SeriesNumber=number)
    with pytest.raises(DataError, match="8 parallel cine series hold one slice each: .* one series per slice"):
        select_short_axis_cine(scan_study(study_copy))


def test_orientations_rounded_differently_within_a_series_are_one_orientation(study_copy):
    for path in sax_files(study_copy)[::2]:  # as some exporters write every other file
        orientation = pydicom.dcmread(path, stop_before_pixels=True).ImageOrientationPatient
        edit_dicom(path, ImageOrientationPatient=[round(float(v), 3) for v in orientation])
    choice, series = read_chosen(study_copy)
    assert series.pixels.shape[:2] == (12, 8)


def _seg_of(study: Path, tmp_path: Path) -> tuple[pydicom.Dataset, float]:
    """The SEG written on the study's short-axis cine (some voxels labelled), and the stack's slice step."""
    _, series = read_chosen(study)
    labels = (series.pixels > np.percentile(series.pixels, 90)).astype(np.uint8)
    path = write_dicom_seg(series, labels, tmp_path / "seg.dcm", algorithm_name="a", algorithm_version="1")
    return pydicom.dcmread(path), series.spacing[0]


def test_an_anonymised_stack_without_slice_thickness_gets_its_slice_step_in_the_seg(study_copy, tmp_path):
    for path in sax_files(study_copy):
        edit_dicom(path, SliceThickness=None)
    seg, step = _seg_of(study_copy, tmp_path)
    assert float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness) == pytest.approx(step)
    assert "SliceThickness" not in pydicom.dcmread(sax_files(study_copy)[0])  # the source files are never changed


def test_a_misspelt_character_set_is_read_and_the_seg_is_utf8(study_copy, tmp_path):
    with warnings.catch_warnings():  # pydicom warns as it writes the misspelt term: the test's own doing
        warnings.simplefilter("ignore")
        for path in sax_files(study_copy):
            edit_dicom(path, SpecificCharacterSet="ISO IR 100", PatientName="Müller^Jörg")
    seg, _ = _seg_of(study_copy, tmp_path)
    assert seg.SpecificCharacterSet == "ISO_IR 192" and seg.PatientName == "Müller^Jörg"
