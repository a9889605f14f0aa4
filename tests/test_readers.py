"""Readers on real ACDC (SSL4MIS h5), natural images, and the phantom's raw ACDC layout."""

from __future__ import annotations

import numpy as np
import pytest

from cardioseg.data.acdc import read_acdc, read_acdc_cine
from cardioseg.data.formats import detect_format
from cardioseg.data.imagefolder import list_images, read_imagefolder
from cardioseg.data.ssl4mis import read_split, read_ssl4mis


@pytest.fixture(scope="module")
def real_volumes(acdc_ssl4mis):
    return list(read_ssl4mis(acdc_ssl4mis))


def test_real_acdc_has_80_patients_and_160_labelled_volumes(real_volumes):
    assert len(real_volumes) == 160
    assert len({r.patient for r in real_volumes}) == 80
    assert all(r.label is not None and r.label.shape == r.image.shape for r in real_volumes)


def test_real_acdc_labels_are_acdc_convention(real_volumes):
    for record in real_volumes:
        assert set(np.unique(record.label)) <= {0, 1, 2, 3}, record.source
        assert 0.0 <= record.image.min() and record.image.max() <= 1.0, record.source


def test_real_acdc_ed_has_larger_lv_cavity_in_every_patient(real_volumes):
    lv = {(r.patient, r.phase): int((r.label == 3).sum()) for r in real_volumes}
    patients = {r.patient for r in real_volumes}
    smaller = [p for p in patients if not lv[(p, "ED")] > lv[(p, "ES")]]
    assert not smaller, f"ES LV cavity not smaller than ED in {smaller}"


def test_real_acdc_split_files(acdc_ssl4mis):
    train, val = read_split(acdc_ssl4mis, "train"), read_split(acdc_ssl4mis, "val")
    assert (len(train), len(val)) == (70, 10) and not set(train) & set(val)
    assert {r.patient for r in read_ssl4mis(acdc_ssl4mis, split="val")} == set(val)


def test_imagefolder_reads_natural_images_rgb_and_gray(cifar10_subset):
    classes, items = list_images(cifar10_subset)
    assert len(classes) == 10 and len(items) == 20_000
    assert detect_format(cifar10_subset) == "imagefolder"
    rgb = next(read_imagefolder(cifar10_subset))
    gray = next(read_imagefolder(cifar10_subset, grayscale=True))
    assert rgb.image.shape == (3, 32, 32) and gray.image.shape == (1, 32, 32)
    assert rgb.category == 0 and rgb.patient == classes[0]
    # ITU-R 601 luma of the RGB image, up to JPEG-decoding and 8-bit rounding
    luma = np.tensordot([0.299, 0.587, 0.114], rgb.image, axes=1)
    assert np.abs(luma - gray.image[0]).max() < 2 / 255


def test_raw_acdc_layout_ed_es_and_cine(phantom_dir):
    assert detect_format(phantom_dir) == "acdc"
    records = list(read_acdc(phantom_dir))
    assert [r.phase for r in records[:2]] == ["ED", "ES"]
    assert len(records) == 6
    for record in records:
        assert record.spacing is not None and record.affine.shape == (4, 4)
        assert record.label.shape == record.image.shape
    cine = [r for r in read_acdc_cine(phantom_dir) if r.patient == records[0].patient]
    assert len(cine) == records[0].meta["NbFrame"]
    ed = next(r for r in cine if r.phase == "ED")
    np.testing.assert_allclose(ed.image, records[0].image, atol=1e-5)


def test_summary_reads_a_slice_cache(tmp_path):
    from cardioseg.data.cache import save_cache
    from cardioseg.data.records import Record
    from cardioseg.data.slicing import to_slices
    from cardioseg.data.summary import summarize

    rng = np.random.default_rng(0)
    records = [
        Record(
            image=rng.random((3, 16, 16), dtype=np.float32),
            label=rng.integers(0, 4, (3, 16, 16)).astype(np.uint8),
            patient=f"patient00{n}",
            source="test",
            frame=1,
            phase="ED",
        )
        for n in (1, 2)
    ]
    path = save_cache(to_slices(records, mode="native"), tmp_path / "slices.xz")
    assert detect_format(path) == "cache"
    summary = summarize(path, progress=False)
    assert summary["format"] == "cache" and summary["phases"] == {"ED": 2}
    assert (summary["patients"], summary["volumes"], summary["slices"], summary["labelled_volumes"]) == (2, 2, 6, 2)


def test_imagefolder_skips_hidden_entries(tmp_path):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / name / "0001.png")
    (tmp_path / "cats" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    classes, items = list_images(tmp_path)
    assert classes == ["cats", "dogs"] and [p.name for p, _ in items] == ["0001.png", "0001.png"]


def test_imagefolder_keeps_the_depth_of_16_bit_greyscale(tmp_path):
    """16-bit PNG exports scaled by their own range, not clipped at 8 bits (PIL's conversion would)."""
    from PIL import Image

    from cardioseg.data.imagefolder import load_image

    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    grey, rgb = load_image(tmp_path / "ramp.png", grayscale=True), load_image(tmp_path / "ramp.png")
    assert grey.shape == (1, 32, 32) and rgb.shape == (3, 32, 32)
    np.testing.assert_allclose(grey[0], ramp / 65535.0, atol=1e-6)
    assert (grey == 1.0).mean() < 0.01
