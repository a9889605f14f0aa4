"""One PNG a reader checks at a glance: the ED and ES mid-ventricular slices with the contours found.

Why: the indices are only as good as the contours, and a picture shows a failed segmentation faster than
any number. Drawn with matplotlib's object API on the Agg canvas (no screen, no pyplot global state).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..data.dicom_cine import CineSeries
from ..data.labels import FOREGROUND
from ..errors import CardiosegError
from ..visualize import LABEL_COLOURS
from .indices import CardiacIndices

LV_CAVITY = 3


def mid_ventricular_slice(labels: np.ndarray, ed_phase: int) -> int:
    """The slice with LV cavity at ED nearest the middle of those slices; the middle slice if there are none."""
    with_lv = np.flatnonzero((labels[ed_phase] == LV_CAVITY).any(axis=(1, 2)))
    if with_lv.size == 0:
        return labels.shape[1] // 2
    middle = (with_lv[0] + with_lv[-1]) / 2
    return int(with_lv[np.argmin(np.abs(with_lv - middle))])


def _grey_limits(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, [1, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _volume(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f} ml"


def _percent(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}%"


def write_picture(series: CineSeries, labels: np.ndarray, indices: CardiacIndices, path: str | Path) -> Path:
    """Write a PNG of the ED and ES mid-ventricular slice side by side, RV/MYO/LV outlined in colour."""
    labels = np.asarray(labels)
    if labels.shape != series.pixels.shape:
        raise CardiosegError(f"labels have shape {labels.shape}, the series {series.pixels.shape}")
    z = mid_ventricular_slice(labels, indices.ed_phase)
    _, row_mm, col_mm = series.spacing
    n_slices = labels.shape[1]
    panels = (
        ("ED", indices.ed_phase, indices.lvedv_ml, indices.rvedv_ml),
        ("ES", indices.es_phase, indices.lvesv_ml, indices.rvesv_ml),
    )
    fig = Figure(figsize=(10, 5.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (name, phase, lv_ml, rv_ml) in zip(axes, panels):
        image = series.pixels[phase, z]
        low, high = _grey_limits(image)
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest", aspect=row_mm / col_mm)
        for value in FOREGROUND:
            mask = labels[phase, z] == value
            if mask.any():
                ax.contour(mask.astype(np.uint8), levels=[0.5], colors=[LABEL_COLOURS[value]], linewidths=1.5)
        ax.set_title(
            f"{name}: frame {phase + 1} of {series.n_frames}, slice {z + 1} of {n_slices}\n"
            f"LV {_volume(lv_ml)}, RV {_volume(rv_ml)}",
            fontsize=11,
        )
        ax.set_axis_off()
    handles = [Line2D([], [], color=LABEL_COLOURS[k], linewidth=2, label=name) for k, name in FOREGROUND.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=11)
    ef, rvef = (_percent(indices.lvef_percent), _percent(indices.rvef_percent))
    fig.suptitle(f"{series.patient_id}: mid-ventricular short axis, LVEF {ef}, RVEF {rvef}", fontsize=13)
    path = Path(path)
    fig.savefig(path, format="png")
    return path
