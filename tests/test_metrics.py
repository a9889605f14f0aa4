"""Dice, IoU and HD95: hand-computed cases, MONAI and an independent scipy computation, empty classes,
the SSL4MIS prediction protocol, the summary table, and one real ACDC volume."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion, gaussian_filter
from scipy.spatial import cKDTree

from cardioseg.metrics import predict_volume_ssl4mis, summarize, volume_metrics

LV = 3


def test_two_cubes_exact_dice_and_iou():
    gt, pred = np.zeros((20, 20, 20), np.uint8), np.zeros((20, 20, 20), np.uint8)
    gt[2:12, 2:12, 2:12] = LV
    pred[7:17, 2:12, 2:12] = LV  # half of each cube overlaps: 500 of 1000 voxels
    m = volume_metrics(pred, gt)
    assert m["dice"]["LV"] == pytest.approx(2 * 500 / 2000)
    assert m["iou"]["LV"] == pytest.approx(500 / 1500)
    assert math.isnan(m["dice"]["RV"]) and math.isnan(m["hd95"]["MYO"])  # absent in both
    assert m["dice"]["mean"] == pytest.approx(0.5)  # NaN classes left out of the mean


@pytest.mark.parametrize(("axis", "offset", "mm_per_voxel"), [(0, 2, 10.0), (1, 4, 1.5), (2, 4, 0.7)])
def test_parallel_plates_exact_hd95(axis, offset, mm_per_voxel):
    """One-voxel-thick plates: every surface voxel is ``offset`` voxels from the other plate."""
    gt, pred = np.zeros((6, 16, 16), np.uint8), np.zeros((6, 16, 16), np.uint8)
    np.moveaxis(gt, axis, 0)[1] = LV
    np.moveaxis(pred, axis, 0)[1 + offset] = LV
    assert volume_metrics(pred, gt)["hd95"]["LV"] == pytest.approx(offset)
    in_mm = volume_metrics(pred, gt, spacing=(10.0, 1.5, 0.7))
    assert in_mm["hd95"]["LV"] == pytest.approx(offset * mm_per_voxel)
    assert in_mm["hd95_unit"] == "mm" and in_mm["dice"]["LV"] == 0.0


def blobs(seed: int, shape=(8, 40, 36)) -> np.ndarray:
    """Random smooth label volume with all three classes."""
    noise = gaussian_filter(np.random.default_rng(seed).normal(size=(3, *shape)), sigma=(0, 1, 3, 3))
    label = (noise.argmax(0) + 1).astype(np.uint8)
    label[noise.max(0) < 0.05] = 0
    return label


def reference_hd95(pred: np.ndarray, gt: np.ndarray, spacing) -> float:
    """Independent HD95: erosion surfaces, KD-tree distances in mm, max of both directed 95th percentiles."""

    def surface(mask):
        return np.argwhere(mask & ~binary_erosion(mask)) * np.asarray(spacing)

    sp, sg = surface(pred), surface(gt)
    return max(np.percentile(cKDTree(sg).query(sp)[0], 95), np.percentile(cKDTree(sp).query(sg)[0], 95))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_masks_agree_with_scipy_reference(seed):
    gt, pred = blobs(seed), blobs(seed + 100)
    spacing = (7.5, 1.3, 0.9)
    m = volume_metrics(pred, gt, spacing=spacing)
    for c, name in ((1, "RV"), (2, "MYO"), (3, "LV")):
        p, g = pred == c, gt == c
        inter = np.logical_and(p, g).sum()
        assert m["dice"][name] == pytest.approx(2 * inter / (p.sum() + g.sum()), rel=1e-5)
        assert m["iou"][name] == pytest.approx(inter / np.logical_or(p, g).sum(), rel=1e-5)
        assert m["hd95"][name] == pytest.approx(reference_hd95(p, g, spacing), rel=1e-4)


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_random_masks_agree_with_monai():
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou
    from monai.networks.utils import one_hot

    gt, pred = blobs(5), blobs(6)
    p, g = (one_hot(torch.as_tensor(x, dtype=torch.int64)[None, None], num_classes=4) for x in (pred, gt))
    m = volume_metrics(pred, gt, spacing=(5.0, 1.0, 1.0))
    dice, iou = compute_dice(p, g, include_background=False)[0], compute_iou(p, g, include_background=False)[0]
    hd = compute_hausdorff_distance(p, g, percentile=95, spacing=[5.0, 1.0, 1.0])[0]
    for i, name in enumerate(("RV", "MYO", "LV")):
        assert m["dice"][name] == pytest.approx(float(dice[i]))
        assert m["iou"][name] == pytest.approx(float(iou[i]))
        assert m["hd95"][name] == pytest.approx(float(hd[i]))


def test_empty_classes():
    gt, pred = np.zeros((4, 10, 12), np.uint8), np.zeros((4, 10, 12), np.uint8)
    gt[1:3, 2:5, 2:5] = 1  # RV missed by the prediction
    pred[1:3, 6:8, 6:8] = 2  # MYO hallucinated; LV absent from both
    spacing = (10.0, 2.0, 1.0)
    m = volume_metrics(pred, gt, spacing=spacing)
    diagonal = math.sqrt(40**2 + 20**2 + 12**2)
    for name in ("RV", "MYO"):
        assert m["dice"][name] == 0.0 and m["iou"][name] == 0.0
        assert m["hd95"][name] == pytest.approx(diagonal)
    assert all(math.isnan(m[k]["LV"]) for k in ("dice", "iou", "hd95"))
    assert m["dice"]["mean"] == 0.0 and m["hd95"]["mean"] == pytest.approx(diagonal)
    assert volume_metrics(pred, gt)["hd95"]["RV"] == pytest.approx(math.sqrt(4**2 + 10**2 + 12**2))
    nothing = volume_metrics(np.zeros_like(gt), np.zeros_like(gt))
    assert math.isnan(nothing["dice"]["mean"])


@pytest.mark.parametrize("as_logits", [False, True])
def test_predict_volume_ssl4mis_oracle_round_trip(as_logits):
    """An oracle that reads the label off the image gets it back exactly through zoom and zoom-back."""
    label = blobs(3, shape=(5, 216, 180))
    seen = []

    def predict(batch):
        seen.append(batch.shape)
        labels = np.rint(batch[:, 0] * 3).astype(np.int64)
        if not as_logits:
            return labels
        return torch.nn.functional.one_hot(torch.as_tensor(labels), 4).permute(0, 3, 1, 2).float()

    pred = predict_volume_ssl4mis(predict, label.astype(np.float32) / 3, size=256, image_order=0, batch_size=2)
    assert seen == [(2, 1, 256, 256), (2, 1, 256, 256), (1, 1, 256, 256)]
    assert pred.shape == label.shape and pred.dtype == np.uint8
    np.testing.assert_array_equal(pred, label)
    with pytest.raises(ValueError, match="shape"):
        predict_volume_ssl4mis(lambda b: b[:, 0, :3], label.astype(np.float32) / 3)


def test_summary_table_is_json_and_excludes_nan():
    results = [
        {
            "dice": {"RV": 0.8, "LV": 0.9, "mean": 0.85},
            "iou": {"RV": 0.6, "LV": 0.8, "mean": 0.7},
            "hd95": {"RV": 2.0, "LV": 1.0, "mean": 1.5},
            "hd95_unit": "mm",
        },
        {
            "dice": {"RV": 0.6, "LV": math.nan, "mean": 0.6},
            "iou": {"RV": 0.4, "LV": math.nan, "mean": 0.4},
            "hd95": {"RV": 4.0, "LV": math.nan, "mean": 4.0},
            "hd95_unit": "mm",
        },
    ]
    table = summarize(results)
    json.dumps(table, allow_nan=False)
    assert table["n_volumes"] == 2 and table["hd95_unit"] == "mm"
    assert table["dice"]["RV"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 2})
    assert table["dice"]["LV"] == {"mean": 0.9, "std": 0.0, "n": 1}
    assert table["hd95"]["mean"]["mean"] == pytest.approx(2.75)
    with pytest.raises(ValueError, match="units"):
        summarize([results[0], {**results[1], "hd95_unit": "voxel"}])


def test_real_volume_against_itself_and_shifted(acdc_ssl4mis):
    path = sorted((acdc_ssl4mis / "volumes").glob("*.h5"))[0]
    with h5py.File(path) as f:
        gt = f["label"][:]
    perfect = volume_metrics(gt, gt)
    for name in ("RV", "MYO", "LV"):
        assert perfect["dice"][name] == 1.0 and perfect["iou"][name] == 1.0 and perfect["hd95"][name] == 0.0
    shifted = volume_metrics(np.roll(gt, 1, axis=1), gt)
    for name in ("RV", "MYO", "LV"):
        assert 0.5 < shifted["dice"][name] < 1.0
        assert 0.0 < shifted["hd95"][name] <= 1.5


def test_monai_zoo_labels_map_to_acdc_and_back():
    from cardioseg.data.labels import ACDC_TO_MONAI_ZOO, MONAI_ZOO_TO_ACDC, remap

    zoo = np.array([[0, 1], [2, 3]], dtype=np.uint8)  # zoo: 1 LV pool, 2 MYO, 3 RV pool
    acdc = remap(zoo, MONAI_ZOO_TO_ACDC)
    assert acdc.tolist() == [[0, 3], [2, 1]]  # ACDC: 1 RV, 2 MYO, 3 LV
    assert remap(acdc, ACDC_TO_MONAI_ZOO).tolist() == zoo.tolist()
