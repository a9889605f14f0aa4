"""Clinical indices and label clean-up, against the phantom's known anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from cardioseg.clinical.indices import cardiac_indices
from cardioseg.data.phantom import ground_truth, make_patient
from cardioseg.errors import CardiosegError
from cardioseg.postprocess import LV, MYO, RV, clean_labels, postprocess_labels


@pytest.fixture(scope="module")
def patient():
    return make_patient(0, 2, image_size=64, n_frames=6, n_slices=6)


def phases(patient) -> np.ndarray:
    """ES first, then ED: the indices must find ED as the largest LV, wherever it is."""
    return np.stack([patient.labels[patient.scan.es_frame], patient.labels[1]])


def test_indices_match_the_phantom_truth(patient):
    truth = ground_truth(patient)
    got = cardiac_indices(phases(patient), patient.scan.spacing)
    assert (got.ed_phase, got.es_phase) == (1, 0)
    assert got.lvedv_ml == pytest.approx(truth["volumes_ml"]["ED"]["LV"], abs=1e-2)
    assert got.lvesv_ml == pytest.approx(truth["volumes_ml"]["ES"]["LV"], abs=1e-2)
    assert got.rvedv_ml == pytest.approx(truth["volumes_ml"]["ED"]["RV"], abs=1e-2)
    assert got.lvef_percent == pytest.approx(100 * truth["ef"]["LV"], abs=0.05)
    assert got.rvef_percent == pytest.approx(100 * truth["ef"]["RV"], abs=0.05)
    assert got.lv_mass_g == pytest.approx(truth["myo_mass_g"]["ED"], abs=0.05)
    assert len(got.lv_volume_curve_ml) == 2


@pytest.mark.parametrize(
    ("labels", "spacing", "problem"),
    [
        (np.zeros((2, 3, 8, 8), np.uint8), (10, 1, 1), "no LV cavity"),
        (np.zeros((3, 8, 8), np.uint8), (10, 1, 1), "expected \\(phases, slices, rows, cols\\)"),
        (np.full((2, 3, 8, 8), 3, np.uint8), (10, 0, 1), "finite positive"),
        (np.full((2, 3, 8, 8), 3, np.uint8), (10, float("nan"), 1), "finite positive"),
    ],
)
def test_indices_refuse_what_they_cannot_measure(labels, spacing, problem):
    with pytest.raises(CardiosegError, match=problem):
        cardiac_indices(labels, spacing)


def test_clean_labels_keeps_clean_anatomy(patient):
    """The phantom's masks are one structure each, up to a partial-volume pixel at a thin RV tip."""
    for labels in patient.labels.values():
        changed = (clean_labels(labels) != labels).sum()
        assert changed <= 0.005 * (labels > 0).sum()


def test_clean_labels_removes_specks_and_fills_holes(patient):
    truth = clean_labels(patient.labels[1])
    noisy = truth.copy()
    noisy[0, 0:2, 0:2] = LV  # a speck far from the heart
    noisy[-1, -2:, -2:] = RV
    mid = truth.shape[0] // 2
    rows, cols = np.nonzero(truth[mid] == LV)
    centre = rows[len(rows) // 2], cols[len(cols) // 2]
    noisy[mid, centre[0], centre[1]] = 0  # a pinhole in the LV cavity
    rows, cols = np.nonzero(truth[mid] == MYO)
    noisy[mid, rows[0], cols[0]] = 0  # and one in the myocardium, next to the cavity
    largest = postprocess_labels(noisy, "largest")  # specks go, holes stay
    assert (largest == RV).sum() == (truth == RV).sum() and largest[mid, centre[0], centre[1]] == 0
    assert (postprocess_labels(noisy, "none") == noisy).all()
    cleaned = postprocess_labels(noisy, "clean")
    assert (cleaned == clean_labels(noisy)).all()
    assert (cleaned == LV).sum() == (truth == LV).sum()
    assert (cleaned == RV).sum() == (truth == RV).sum()
    assert cleaned[mid, centre[0], centre[1]] == LV
    assert (cleaned[mid] == MYO).sum() >= (truth[mid] == MYO).sum() - 1
    assert noisy[0, 0, 0] == LV  # the input is left as it was


def test_unknown_postprocessing_is_refused_by_name(patient):
    with pytest.raises(CardiosegError, match="'postprocess' is 'biggest': choose one of none, largest, clean"):
        postprocess_labels(patient.labels[1], "biggest")
