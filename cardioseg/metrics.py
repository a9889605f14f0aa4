"""Segmentation metrics on 3D volumes (Dice, IoU, HD95 per class and mean) and the SSL4MIS protocol.

Dice, IoU and HD95 come from MONAI (``compute_dice``, ``compute_iou``, ``compute_hausdorff_distance``
with ``percentile=95``). HD95 is in mm when ``spacing`` (slice, row, col) is given, else in voxels.

Empty classes, per class and volume (P = prediction, G = ground truth):

- P and G both empty: Dice, IoU and HD95 are NaN (nothing to find, nothing found: no evidence either
  way) and are left out of every mean; the summary's ``n`` counts only defined values.
- exactly one empty: Dice 0, IoU 0, HD95 = the volume's diagonal (mm or voxels), the largest distance
  possible in the image, so a missed or hallucinated structure counts as the worst result rather than
  vanishing from the mean. (SSL4MIS's code returns HD95 0 for an empty prediction, which rewards misses.)

HD95 follows MONAI's definition: surface voxels by binary erosion, the 95th percentile of the distances
from P's surface to G's and from G's to P's, and the larger of the two. medpy's ``hd95`` (used by
SSL4MIS) pools both directions before the percentile; the two agree closely but not exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou
from monai.networks.utils import one_hot

from .data.labels import FOREGROUND, NUM_CLASSES
from .data.slicing import zoom_slice

METRICS = ("dice", "iou", "hd95")


def _one_hot(label: np.ndarray) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(label, dtype=np.int64))[None, None]
    return one_hot(tensor, num_classes=NUM_CLASSES)


def _diagonal(shape: Sequence[int], spacing: Sequence[float] | None) -> float:
    scale = np.ones(len(shape)) if spacing is None else np.asarray(spacing, dtype=float)
    return float(np.linalg.norm(np.asarray(shape) * scale))


def _hd95(pred: torch.Tensor, gt: torch.Tensor, spacing: Sequence[float] | None) -> float:
    """HD95 of one non-empty class pair (channel-first, batch of one)."""
    with warnings.catch_warnings():
        # MONAI 1.6 passes its own deprecated argument internally and warns about it on every call.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        hd = compute_hausdorff_distance(
            pred, gt, include_background=True, percentile=95, spacing=None if spacing is None else list(spacing)
        )
    return float(hd[0, 0])


def volume_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    classes: Mapping[int, str] = FOREGROUND,
) -> dict[str, Any]:
    """Dice, IoU and HD95 per class and their mean (NaN-excluding) for one label volume.

    ``pred`` and ``gt`` are integer label volumes of one shape (ACDC convention); ``spacing`` gives
    HD95 in mm. Returns ``{"dice": {"RV": .., "MYO": .., "LV": .., "mean": ..}, "iou": .., "hd95": ..,
    "hd95_unit": "mm"|"voxel"}``.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if spacing is not None and len(spacing) != gt.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {gt.ndim}D volume")
    p, g = _one_hot(pred), _one_hot(gt)
    dice = compute_dice(p, g, include_background=True, ignore_empty=False)[0]
    iou = compute_iou(p, g, include_background=True, ignore_empty=False)[0]
    diagonal = _diagonal(gt.shape, spacing)
    out: dict[str, Any] = {name: {} for name in METRICS}
    for index, name in classes.items():
        has_p, has_g = bool(p[0, index].any()), bool(g[0, index].any())
        if not (has_p or has_g):
            values = (math.nan, math.nan, math.nan)
        elif has_p != has_g:
            values = (0.0, 0.0, diagonal)
        else:
            hd = _hd95(p[:, index : index + 1], g[:, index : index + 1], spacing)
            values = (float(dice[index]), float(iou[index]), hd)
        for metric, value in zip(METRICS, values, strict=True):
            out[metric][name] = value
    for metric in METRICS:
        defined = [v for v in out[metric].values() if not math.isnan(v)]
        out[metric]["mean"] = float(np.mean(defined)) if defined else math.nan
    out["hd95_unit"] = "voxel" if spacing is None else "mm"
    return out


def _to_labels(output: Any, batch: np.ndarray) -> np.ndarray:
    """A model's output for ``batch`` (N, 1, H, W): (N, C, H, W) logits or (N, H, W) labels, as labels."""
    array = output.detach().cpu().numpy() if isinstance(output, torch.Tensor) else np.asarray(output)
    returned = array.shape
    if array.ndim == 4:
        array = array.argmax(axis=1)
    expected = (batch.shape[0], *batch.shape[2:])
    if array.shape != expected:
        raise ValueError(f"predict_slices returned shape {returned}, expected (N, C, H, W) or {expected}")
    return array.astype(np.uint8)


def predict_volume_ssl4mis(
    predict_slices: Callable[[np.ndarray], Any],
    image: np.ndarray,
    size: int = 256,
    image_order: int = 1,
    batch_size: int = 32,
) -> np.ndarray:
    """Segment a (slices, H, W) volume the SSL4MIS way: return a uint8 label volume of the same shape.

    Each slice is zoomed to ``size x size`` (``image_order`` 1; SSL4MIS's code uses 0, see
    :mod:`cardioseg.data.slicing`), ``predict_slices`` gets float32 batches (N, 1, size, size) and
    returns logits (N, C, size, size) or labels (N, size, size), numpy or torch; predictions are zoomed
    back with nearest neighbour (scipy ``zoom``, order 0), as SSL4MIS's ``test_single_volume`` does.
    """
    rows, cols = image.shape[1:]
    resized = np.stack([zoom_slice(s, (size, size), image_order) for s in image]).astype(np.float32)
    batches = [resized[i : i + batch_size, None] for i in range(0, len(resized), batch_size)]
    predicted = [_to_labels(predict_slices(batch), batch) for batch in batches]
    return np.stack([zoom_slice(s, (rows, cols), 0) for s in np.concatenate(predicted)]).astype(np.uint8)


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    defined = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if not defined.size:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(defined.mean()), "std": float(defined.std()), "n": int(defined.size)}


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-volume results of :func:`volume_metrics` as a JSON-able table.

    For each metric and class (and ``mean``, the per-volume mean over classes): mean and population
    std (ddof 0, as SSL4MIS-style tables report) over volumes where it is defined, and that count ``n``.
    Undefined statistics are ``None`` (JSON has no NaN).
    """
    if not results:
        raise ValueError("no per-volume results to summarise")
    units = {r["hd95_unit"] for r in results}
    if len(units) > 1:
        raise ValueError(f"HD95 in mixed units {sorted(units)}: give every volume a spacing or none")
    table: dict[str, Any] = {"n_volumes": len(results), "hd95_unit": units.pop()}
    for metric in METRICS:
        names = list(results[0][metric])
        table[metric] = {name: _stats([r[metric][name] for r in results]) for name in names}
    return table


def format_summary(table: Mapping[str, Any]) -> str:
    """The summary as a few aligned lines: ``mean ± std`` per class, for logs and reports."""

    def cell(stats: Mapping[str, Any]) -> str:
        return "n/a" if stats["mean"] is None else f"{stats['mean']:.4f} ± {stats['std']:.4f}"

    names = list(table["dice"])
    header = f"{'metric':<12}" + "".join(f"{name:>20}" for name in names)
    lines = [header]
    for metric in METRICS:
        label = f"hd95 ({table['hd95_unit']})" if metric == "hd95" else metric
        lines.append(f"{label:<12}" + "".join(f"{cell(table[metric][n]):>20}" for n in names))
    return "\n".join(lines)
