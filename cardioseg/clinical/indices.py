"""Clinical indices of a segmented cine study: ventricular volumes, ejection fractions, myocardial mass.

Computed as cardiac MRI reports do (SCMR post-processing recommendations): by summation of discs, that is
voxel counts times the voxel volume from the real spacing, on the short-axis stack; end-diastole (ED) is the
phase of the largest LV cavity volume and end-systole (ES) of the smallest, and the RV is read at the same
two phases. Myocardial mass is the ED myocardial volume times 1.05 g/ml. No library computes these from a
label map, so they are written here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..data.labels import FOREGROUND
from ..data.phantom import MYOCARDIUM_G_PER_ML
from ..errors import CardiosegError

_CLASS = {name: value for value, name in FOREGROUND.items()}


@dataclass(frozen=True)
class CardiacIndices:
    """Volumes in ml (stroke volume: EDV - ESV), ejection fractions in %, mass in g; ``ed_phase``/``es_phase``
    index the phases."""

    ed_phase: int
    es_phase: int
    lvedv_ml: float
    lvesv_ml: float
    lvef_percent: float
    rvedv_ml: float
    rvesv_ml: float
    rvef_percent: float
    lvsv_ml: float
    rvsv_ml: float
    lv_mass_g: float
    lv_volume_curve_ml: tuple[float, ...]
    rv_volume_curve_ml: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def structure_volumes_ml(labels: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, np.ndarray]:
    """Volume (ml) of RV, MYO and LV per phase of ``labels`` ``(phases, slices, rows, cols)``;
    ``spacing_mm`` is (slice spacing, row spacing, column spacing)."""
    labels = np.asarray(labels)
    if labels.ndim != 4:
        raise CardiosegError(f"expected (phases, slices, rows, cols) labels, got shape {labels.shape}")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise CardiosegError(f"voxel spacing must be three finite positive values in mm, got {spacing_mm}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {name: (labels == value).sum(axis=(1, 2, 3)) * voxel_ml for name, value in _CLASS.items()}


def ejection_fraction(edv: float, esv: float) -> float:
    """(EDV - ESV) / EDV in %; NaN where the ventricle was not found at ED."""
    return float("nan") if edv <= 0 else 100.0 * (edv - esv) / edv


def cardiac_indices(labels: np.ndarray, spacing_mm: Sequence[float]) -> CardiacIndices:
    """ED/ES from the LV volume curve, then the standard indices at those phases."""
    volumes = structure_volumes_ml(labels, spacing_mm)
    lv = volumes["LV"]
    if lv.max() <= 0:
        raise CardiosegError("no LV cavity was segmented in any phase: no indices can be computed")
    ed, es = int(np.argmax(lv)), int(np.argmin(lv))
    rv = volumes["RV"]
    return CardiacIndices(
        ed_phase=ed,
        es_phase=es,
        lvedv_ml=float(lv[ed]),
        lvesv_ml=float(lv[es]),
        lvef_percent=ejection_fraction(float(lv[ed]), float(lv[es])),
        rvedv_ml=float(rv[ed]),
        rvesv_ml=float(rv[es]),
        rvef_percent=ejection_fraction(float(rv[ed]), float(rv[es])),
        lvsv_ml=float(lv[ed] - lv[es]),
        rvsv_ml=float(rv[ed] - rv[es]),
        lv_mass_g=float(volumes["MYO"][ed] * MYOCARDIUM_G_PER_ML),
        lv_volume_curve_ml=tuple(float(v) for v in lv),
        rv_volume_curve_ml=tuple(float(v) for v in rv),
    )
