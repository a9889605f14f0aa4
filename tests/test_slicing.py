"""Intensity normalisation and the three slicing modes."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from cardioseg.data.records import Record
from cardioseg.data.slicing import SliceSet, normalize_intensity, to_slices
from cardioseg.errors import DataError


def make_record(patient="p1", shape=(3, 40, 30), frame=1, phase="ED", spacing=None, labelled=True, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, size=shape).astype(np.float32)
    label = rng.integers(0, 4, size=shape).astype(np.uint8) if labelled else None
    return Record(
        image=image, label=label, patient=patient, source=f"test:{patient}", frame=frame, phase=phase, spacing=spacing
    )


def test_normalize_clips_at_upper_percentile_and_spans_unit_range():
    image = np.random.default_rng(0).normal(0, 1, size=(4, 50, 50)).astype(np.float32)
    image[0, 0, :5] = 1e6  # a bright artefact must not squash the contrast
    out = normalize_intensity(image)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.isclose((out == 1.0).mean(), 0.01, atol=0.002)  # the top 1% is clipped
    assert out[1].std() > 0.1


def test_normalize_percentiles_are_parameters():
    image = np.random.default_rng(1).uniform(0, 10, size=(2, 30, 30)).astype(np.float32)
    plain = normalize_intensity(image, lower=0, upper=100)
    np.testing.assert_allclose(plain, (image - image.min()) / (image.max() - image.min()), atol=1e-6)
    lower5 = normalize_intensity(image, lower=5, upper=100)
    assert np.isclose((lower5 == 0).mean(), 0.05, atol=0.002)


def test_normalize_constant_volume_gives_zeros_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize_intensity(np.full((2, 8, 8), 7.0, dtype=np.float32))
    assert out.dtype == np.float32 and not out.any()


def test_ssl4mis_mode_resizes_and_keeps_label_values_and_index():
    records = [make_record("p1", (3, 40, 30), 1, "ED"), make_record("p2", (2, 25, 50), 12, "ES", seed=1)]
    slices = to_slices(records, mode="ssl4mis", size=64)
    assert slices.images.shape == (5, 64, 64) and slices.images.dtype == np.float32
    assert slices.labels.dtype == np.uint8
    assert 0.0 <= slices.images.min() and slices.images.max() <= 1.0
    assert set(np.unique(slices.labels)) == {0, 1, 2, 3}  # nearest neighbour invents no values
    assert slices.patient.tolist() == ["p1"] * 3 + ["p2"] * 2
    assert slices.frame.tolist() == [1, 1, 1, 12, 12]
    assert slices.phase.tolist() == ["ED"] * 3 + ["ES"] * 2
    assert slices.slice_index.tolist() == [0, 1, 2, 0, 1]
    assert slices.volume.tolist() == [0, 0, 0, 1, 1]
    assert slices.meta["mode"] == "ssl4mis" and slices.meta["size"] == 64
    assert slices.meta["sources"] == ["test:p1", "test:p2"]


def test_ssl4mis_nearest_label_keeps_blocks():
    """A label that is piecewise constant on blocks survives an integer upscale exactly."""
    label = np.kron(np.array([[0, 1], [2, 3]], dtype=np.uint8), np.ones((8, 8), dtype=np.uint8))[None]
    record = Record(image=label.astype(np.float32), label=label, patient="p", source="t")
    slices = to_slices([record], mode="ssl4mis", size=32, image_order=0, percentiles=None)
    expected = np.kron(np.array([[0, 1], [2, 3]], dtype=np.uint8), np.ones((16, 16), dtype=np.uint8))
    np.testing.assert_array_equal(slices.labels[0], expected)
    np.testing.assert_array_equal(slices.images[0], expected)  # order 0 image, as SSL4MIS's code


def disc_record(radius_mm: float, spacing_rc: tuple[float, float], shape=(2, 120, 90)) -> Record:
    rows, cols = np.mgrid[: shape[1], : shape[2]]
    centre = (shape[1] / 2, shape[2] / 2)
    r = np.hypot((rows - centre[0]) * spacing_rc[0], (cols - centre[1]) * spacing_rc[1])
    label = np.broadcast_to(r < radius_mm, shape).astype(np.uint8) * 3
    return Record(image=label.astype(np.float32), label=label, patient="disc", source="t", spacing=(8.0, *spacing_rc))


def test_spacing_mode_keeps_disc_radius_in_mm():
    radius, target = 30.0, 1.25
    slices = to_slices([disc_record(radius, (0.7, 1.6))], mode="spacing", size=96, target_spacing=target)
    assert slices.images.shape == (2, 96, 96)
    for mask in (slices.labels[0] == 3, slices.images[0] > 0.5):
        assert abs(np.sqrt(mask.sum() / np.pi) * target - radius) < target
        rows, cols = np.nonzero(mask)  # round, not an ellipse: row and column spacings not swapped
        assert abs((np.ptp(rows) + 1) * target - 2 * radius) <= 2 * target
        assert abs((np.ptp(cols) + 1) * target - 2 * radius) <= 2 * target
    assert set(np.unique(slices.labels)) == {0, 3}
    assert slices.meta["target_spacing_mm"] == target


def test_spacing_mode_without_spacing_is_a_data_error():
    with pytest.raises(DataError, match="spacing"):
        to_slices([make_record()], mode="spacing")


def test_native_mode_keeps_slices_and_refuses_mixed_sizes():
    record = make_record(shape=(3, 20, 24))
    slices = to_slices([record], mode="native", percentiles=None)
    np.testing.assert_array_equal(slices.images, record.image)
    np.testing.assert_array_equal(slices.labels, record.label)
    with pytest.raises(DataError, match="native"):
        to_slices([record, make_record("p2", shape=(3, 20, 25))], mode="native")


def test_unlabelled_and_mixed_records():
    slices = to_slices([make_record(labelled=False, frame=None)], size=16)
    assert slices.labels is None and slices.frame.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="labels"):
        to_slices([make_record(), make_record("p2", labelled=False)], size=16)
    with pytest.raises(ValueError, match="mode"):
        to_slices([make_record()], mode="bogus")


def test_subset_and_patient_selection():
    slices = to_slices([make_record("a"), make_record("b"), make_record("c")], size=16)
    picked = slices.select_patients(["c", "a"])
    assert isinstance(picked, SliceSet) and picked.patients() == ("a", "c") and len(picked) == 6
    assert picked.volume.tolist() == [0, 0, 0, 2, 2, 2]  # volume ids keep pointing at the prepared order
    assert picked.keys()[0] == ("a", 1, 0)
    assert len(slices.subset([4, 1])) == 2


def test_real_acdc_volumes_ssl4mis_mode(acdc_ssl4mis):
    records = []
    for path in sorted((acdc_ssl4mis / "volumes").glob("patient0*.h5"))[:2]:
        with h5py.File(path) as f:
            records.append(Record(image=f["image"][:], label=f["label"][:], patient=path.stem[:10], source=str(path)))
    slices = to_slices(records, mode="ssl4mis")
    assert slices.images.shape[1:] == (256, 256)
    assert len(slices) == sum(r.num_slices for r in records)
    assert set(np.unique(slices.labels)) == {0, 1, 2, 3}
    assert slices.images.min() == 0.0 and slices.images.max() == 1.0
