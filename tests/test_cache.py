"""The compact slice cache: round trip, quantisation error, metadata, and damaged files."""

from __future__ import annotations

import io
import lzma

import numpy as np
import pytest

from cardioseg.data.cache import load_cache, save_cache
from cardioseg.data.formats import detect_format
from cardioseg.data.records import Record
from cardioseg.data.slicing import SliceSet, to_slices
from cardioseg.errors import DataError


def prepared(labelled=True, percentiles=(0.0, 99.0)) -> SliceSet:
    rng = np.random.default_rng(0)
    records = [
        Record(
            image=rng.normal(3, 4, size=(4, 30, 20)).astype(np.float32),
            label=rng.integers(0, 4, size=(4, 30, 20)).astype(np.uint8) if labelled else None,
            patient=f"patient{i:03d}",
            source="test",
            frame=1 + 11 * (i % 2),
            phase="ED" if i % 2 == 0 else "ES",
        )
        for i in range(3)
    ]
    return to_slices(records, mode="ssl4mis", size=32, percentiles=percentiles)


def assert_same_index(a: SliceSet, b: SliceSet) -> None:
    for name in ("patient", "frame", "phase", "slice_index", "volume"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("percentiles", [(0.0, 99.0), None])
def test_uint8_round_trip(tmp_path, percentiles):
    slices = prepared(percentiles=percentiles)  # [0, 1] and, unnormalised, about [-15, 20]
    path = save_cache(slices, tmp_path / "c.xz")
    back = load_cache(path)
    value_range = float(slices.images.max() - slices.images.min())
    assert back.images.dtype == np.float32
    assert np.abs(back.images - slices.images).max() <= value_range / 510 * (1 + 1e-5)
    np.testing.assert_array_equal(back.labels, slices.labels)
    assert_same_index(back, slices)
    assert back.meta == slices.meta
    assert [p.name for p in tmp_path.iterdir()] == ["c.xz"]  # atomic write leaves no temp file


def test_uncompressed_cache_holds_the_same_slices(tmp_path):
    slices = prepared()
    packed = load_cache(save_cache(slices, tmp_path / "c.xz"))
    plain_path = save_cache(slices, tmp_path / "c.npz", compression="none")
    assert plain_path.read_bytes()[:4] == b"PK\x03\x04"  # an .npz archive, readable by numpy alone
    assert detect_format(plain_path) == "cache"
    back = load_cache(plain_path)
    np.testing.assert_array_equal(back.images, packed.images)
    np.testing.assert_array_equal(back.labels, packed.labels)
    assert_same_index(back, packed)
    assert back.meta == packed.meta
    with pytest.raises(ValueError, match="compression"):
        save_cache(slices, tmp_path / "d.npz", compression="gzip")


def test_float16_round_trip_and_unlabelled(tmp_path):
    slices = prepared(labelled=False)
    back = load_cache(save_cache(slices, tmp_path / "c.xz", image_dtype="float16"))
    assert back.labels is None
    assert np.abs(back.images - slices.images).max() <= 1e-3
    assert_same_index(back, slices)
    with pytest.raises(ValueError):
        save_cache(slices, tmp_path / "d.xz", image_dtype="int4")


def test_truncated_or_garbage_cache_is_a_data_error(tmp_path):
    path = save_cache(prepared(), tmp_path / "c.xz")
    data = path.read_bytes()
    plain = save_cache(prepared(), tmp_path / "c.npz", compression="none").read_bytes()
    cases = [
        ("truncated.xz", data[: len(data) // 2]),
        ("garbage.xz", b"not a cache at all"),
        ("truncated.npz", plain[: len(plain) // 2]),
    ]
    for name, damaged in cases:
        bad = tmp_path / name
        bad.write_bytes(damaged)
        with pytest.raises(DataError, match=name) as err:
            load_cache(bad)
        assert err.value.path == bad
    with pytest.raises(DataError, match="not found"):
        load_cache(tmp_path / "missing.xz")


def test_other_xz_archive_is_a_data_error(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((1, 2, 2), np.uint8))
    path = tmp_path / "other.xz"
    path.write_bytes(lzma.compress(buffer.getvalue()))
    with pytest.raises(DataError, match="lacks"):
        load_cache(path)
