"""A synthetic short-axis cine MRI cohort with known anatomy, volumes and ejection fractions.

Why: tests, CI and the demo need labelled cine data that a network has to actually learn (shapes that move,
textured surroundings, bias field, noise, partial volume), with ground truth volumes and EF to check the
clinical indices against, without shipping patient data. The cohort is written twice, in the raw ACDC
layout (NIfTI + Info.cfg) and as DICOM, so the same studies exercise both the training readers and the
deployment app; on request also as whole studies, the cine beside a localizer and a long-axis cine, as a
scanner exports them. Same seed, same bytes.

Anatomy (all in mm; no library offers a cardiac cine phantom, so it is written here): the LV is a truncated
half-ellipsoid (endocardium inside epicardium, base plane at slice 0, apex near the last slice); the RV is a
crescent on the epicardium on the patient's right-anterior side, shorter than the LV; contraction shrinks
the cavity radially, shortens the long axis towards a fixed apex and keeps myocardial volume constant, so
the wall thickens in systole.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from ..atomic import atomic_directory
from ..errors import CardiosegError
from .dicom_cine import derived_uid, write_dicom_cine
from .nifti_io import save_nifti

GENERATOR_VERSION = 1

# Per group, ranges (low, high) drawn uniformly: ACDC's groups, told apart by size, wall and function.
GROUP_FIELDS = ("endo_radius", "wall", "lvef", "rv_width", "rvef")
GROUPS: dict[str, tuple[tuple[float, float], ...]] = {
    # group  endo radius mm  wall mm    LV EF          RV width mm  RV EF
    "NOR": ((25, 29), (8, 10), (0.55, 0.70), (18, 24), (0.45, 0.60)),
    "DCM": ((32, 37), (6.5, 8), (0.25, 0.40), (18, 24), (0.35, 0.50)),
    "HCM": ((20, 24), (13, 17), (0.60, 0.75), (15, 20), (0.50, 0.65)),
    "MINF": ((28, 32), (7, 9), (0.30, 0.45), (18, 24), (0.40, 0.55)),
    "RV": ((23, 27), (8, 10), (0.50, 0.65), (28, 36), (0.20, 0.35)),
}
GROUP_ORDER = ("NOR", "DCM", "HCM", "MINF", "RV")

INTENSITY_SCALE = 1000.0  # stored value of unit signal; images are integers 0..4095 (12-bit), like scanners
MAX_VALUE = 4095
MYOCARDIUM_G_PER_ML = 1.05  # the density used for LV mass in cardiac MRI
_SUBSLICES = (-1 / 3, 0.0, 1 / 3)  # through-plane samples (fractions of slice thickness) for partial volume


@dataclass(frozen=True)
class Heart:
    """Anatomy and motion of one phantom heart (mm, radians); ``*_es`` are end-systolic scale factors."""

    group: str
    endo_radius: float
    wall: float
    apex_wall: float
    length: float  # epicardial long semi-axis: epicardial apex to the end-diastolic base plane
    long_es: float  # long-axis length at ES / at ED (apex fixed, base descends)
    endo_es: float  # endocardial radius at ES / at ED (calibrated to hit lvef_target on the masks)
    rv_width: float
    rv_es: float  # RV crescent width at ES / at ED (calibrated to hit rvef_target on the masks)
    rv_start: float  # RV extends from this fraction of the length (from the apex) to the base
    rv_angle: float  # in-image direction of the RV from the LV centre
    rv_half_angle: float  # half the angle the crescent covers
    ellipticity: float
    ellipse_angle: float
    thinning: float  # fraction of wall lost in an infarcted segment (MINF)
    thin_angle: float
    lvef_target: float
    rvef_target: float


@dataclass(frozen=True)
class Scan:
    """Acquisition geometry and timing: where the slices cut the heart and when the frames are."""

    size: int
    pixel_mm: float
    slice_mm: float  # spacing between slice centres
    thickness_mm: float
    heights: np.ndarray  # (slices,) height of each slice centre above the epicardial apex, slice 0 = base
    centres: np.ndarray  # (slices, 2) LV centre in the image, mm from the image centre (x=col, y=row)
    n_frames: int
    es_frame: int  # 1-based
    rr_ms: float
    affine: np.ndarray  # 4x4, (col, row, slice, 1) -> RAS mm

    @property
    def contraction(self) -> np.ndarray:
        """Per frame, 0 at ED (frame 1) rising smoothly to 1 at ES and falling back over diastole."""
        f = np.arange(1, self.n_frames + 1, dtype=np.float64)
        systole = (1 - np.cos(np.pi * (f - 1) / (self.es_frame - 1))) / 2
        diastole = (1 + np.cos(np.pi * (f - self.es_frame) / (self.n_frames + 1 - self.es_frame))) / 2
        return np.where(f <= self.es_frame, systole, diastole)

    @property
    def axis_mm(self) -> np.ndarray:
        """Pixel-centre coordinates along a row or column, mm from the image centre."""
        return (np.arange(self.size) - (self.size - 1) / 2) * self.pixel_mm

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.slice_mm, self.pixel_mm, self.pixel_mm

    @property
    def voxel_ml(self) -> float:
        return self.slice_mm * self.pixel_mm**2 / 1000.0


@dataclass(frozen=True)
class Grid:
    """Pixel centres of every slice in polar coordinates about the LV centre, and the angular shape terms."""

    dx: np.ndarray  # (slices, 1, cols) mm from the LV centre, broadcasts against dy
    dy: np.ndarray  # (slices, rows, 1)
    rho: np.ndarray  # (slices, rows, cols)
    shape_mod: np.ndarray  # ellipticity: radius factor by angle
    wall_mod: np.ndarray  # wall-thickness factor by angle (infarct thinning)
    rv_mod: np.ndarray  # RV crescent width factor by angle, 0 outside the crescent


# --- drawing one patient ------------------------------------------------------------------------------


def _draw_heart(rng: np.random.Generator, group: str, rv_angle: float, base_slice_height: float) -> Heart:
    """Draw a heart of ``group`` whose long axis spans the slice stack: even at ES its base plane lies just
    above slice 0."""
    r = {k: float(rng.uniform(*v)) for k, v in zip(GROUP_FIELDS, GROUPS[group], strict=True)}
    wall = r["wall"]
    long_es = float(rng.uniform(0.88, 0.95))
    base_margin = float(rng.uniform(1.0, 3.0))
    return Heart(
        group=group,
        endo_radius=r["endo_radius"],
        wall=wall,
        apex_wall=0.8 * wall,
        length=(base_slice_height + base_margin) / long_es,
        long_es=long_es,
        endo_es=1.0,
        rv_width=r["rv_width"],
        rv_es=1.0,
        rv_start=float(rng.uniform(0.15, 0.25)),
        rv_angle=rv_angle + float(rng.uniform(-0.35, 0.35)),
        rv_half_angle=float(rng.uniform(np.radians(70), np.radians(90))),
        ellipticity=float(rng.uniform(0.0, 0.06)),
        ellipse_angle=float(rng.uniform(0, np.pi)),
        thinning=float(rng.uniform(0.35, 0.5)) if group == "MINF" else 0.0,
        thin_angle=rv_angle + np.pi + float(rng.uniform(-1.0, 1.0)),
        lvef_target=r["lvef"],
        rvef_target=r["rvef"],
    )


def _orientation(rng: np.random.Generator) -> np.ndarray:
    """An oblique short-axis frame in RAS: columns are the image's col, row and slice (base->apex) axes.

    The slice normal follows the LV long axis (towards the patient's left, anterior and inferior), the rows
    run roughly towards the patient's back; (col, row, slice) is right-handed, so slice order along the
    normal is index order.
    """
    normal = np.array([-0.55, 0.45, -0.70]) + rng.normal(0, 0.08, 3)
    normal /= np.linalg.norm(normal)
    back = np.array([0.0, -1.0, 0.0]) + rng.normal(0, 0.1, 3)
    row = back - (back @ normal) * normal
    row /= np.linalg.norm(row)
    col = np.cross(row, normal)
    return np.stack([col, row, normal], axis=1)


def _draw_scan(rng: np.random.Generator, size: int, n_slices: int, n_frames: int) -> tuple[Scan, np.ndarray]:
    """Draw geometry and timing; also return the world direction axes (RAS, unit columns)."""
    pixel_mm = round(float(rng.uniform(1.3, 1.6)) * 128 / size, 4)  # keeps the field of view near 190 mm
    slice_mm = float(rng.choice([8.0, 8.5, 9.0, 9.5, 10.0]))
    thickness_mm = slice_mm - float(rng.choice([0.0, 1.0, 2.0]))
    last_height = float(rng.uniform(2.0, 6.0))
    heights = last_height + slice_mm * np.arange(n_slices - 1, -1, -1, dtype=np.float64)
    fov = size * pixel_mm
    centre = rng.uniform(-0.07, 0.07, 2) * fov
    drift = rng.uniform(-1.5, 1.5, 2)  # the long axis is not quite the slice normal
    centres = centre + drift * (np.arange(n_slices)[:, None] - (n_slices - 1) / 2)
    es_frame = int(np.clip(round(n_frames * rng.uniform(0.3, 0.4)) + 1, 2, n_frames))
    axes = _orientation(rng)
    affine = np.eye(4)
    affine[:3, :3] = axes * np.array([pixel_mm, pixel_mm, slice_mm])
    image_centre = np.array([5.0, 15.0, 10.0]) + rng.normal(0, 10, 3)
    affine[:3, 3] = image_centre - affine[:3, :2] @ np.full(2, (size - 1) / 2)
    scan = Scan(
        size=size,
        pixel_mm=pixel_mm,
        slice_mm=slice_mm,
        thickness_mm=thickness_mm,
        heights=heights,
        centres=centres,
        n_frames=n_frames,
        es_frame=es_frame,
        rr_ms=round(60000.0 / float(rng.uniform(55, 85)), 1),
        affine=affine,
    )
    return scan, axes


def _rv_image_angle(axes: np.ndarray) -> float:
    """In-image angle of the patient's right-anterior direction, where the RV lies relative to the LV."""
    right_anterior = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    return float(np.arctan2(right_anterior @ axes[:, 1], right_anterior @ axes[:, 0]))


def _grid(heart: Heart, scan: Scan) -> Grid:
    """Precompute polar pixel coordinates about each slice's LV centre and the angular shape factors."""
    axis = scan.axis_mm
    dx = axis[None, None, :] - scan.centres[:, 0, None, None]
    dy = axis[None, :, None] - scan.centres[:, 1, None, None]
    theta = np.arctan2(dy, dx)

    def off(angle: float) -> np.ndarray:
        return np.angle(np.exp(1j * (theta - angle)))  # wrapped to (-pi, pi]

    rv_off = off(heart.rv_angle)
    rv_mod = np.cos(np.clip(rv_off / heart.rv_half_angle, -1, 1) * np.pi / 2) ** 0.7
    return Grid(
        dx=dx,
        dy=dy,
        rho=np.hypot(dx, dy),
        shape_mod=1 + heart.ellipticity * np.cos(2 * off(heart.ellipse_angle)),
        wall_mod=1 - heart.thinning * np.exp(-0.5 * (off(heart.thin_angle) / 0.5) ** 2),
        rv_mod=np.where(np.abs(rv_off) < heart.rv_half_angle, rv_mod, 0.0),
    )


# --- shape over time ----------------------------------------------------------------------------------


def _profile(heart: Heart, heights: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Endocardial and epicardial radius and RV width (mm) at slice heights, at contraction ``c`` (0..1)."""
    stretch = 1 - (1 - heart.long_es) * c
    h = heights / stretch  # where this tissue sat at ED: the apex is fixed, the base descends
    inside = (h >= 0) & (h <= heart.length)
    endo_length = heart.length - heart.apex_wall
    z = heart.length - h
    endo_ed = heart.endo_radius * np.sqrt(np.clip(1 - (z / endo_length) ** 2, 0, None))
    epi_ed = (heart.endo_radius + heart.wall) * np.sqrt(np.clip(1 - (z / heart.length) ** 2, 0, None))
    endo = (1 - (1 - heart.endo_es) * c) * endo_ed
    # incompressible myocardium: the slab's wall area grows as the long axis shortens
    epi = np.sqrt(endo**2 + (epi_ed**2 - endo_ed**2) / stretch)
    rv_fraction = np.sqrt(np.clip((h / heart.length - heart.rv_start) / (1 - heart.rv_start), 0, 1))
    rv = heart.rv_width * (1 - (1 - heart.rv_es) * c) * rv_fraction
    return endo * inside, epi * inside, rv * inside


def _boundaries(heart: Heart, grid: Grid, heights: np.ndarray, c: float) -> tuple[np.ndarray, ...]:
    """Per-pixel endocardial, epicardial and outer-RV-cavity radii (mm) along each pixel's direction."""
    endo, epi, rv = (v[:, None, None] for v in _profile(heart, heights, c))
    endo_r = endo * grid.shape_mod
    epi_r = (endo + (epi - endo) * grid.wall_mod) * grid.shape_mod
    return endo_r, epi_r, epi_r + rv * grid.rv_mod


def _labels(heart: Heart, grid: Grid, scan: Scan, c: float) -> np.ndarray:
    """Hard ACDC labels (0 BG, 1 RV, 2 MYO, 3 LV) at the slice centres."""
    endo, epi, rv = _boundaries(heart, grid, scan.heights, c)
    rho = grid.rho
    return np.select([rho < endo, rho < epi, rho < rv], [3, 2, 1], 0).astype(np.uint8)


def _calibrate(volume_ratio: Callable[[float], float], target: float) -> float:
    """Bisect the ES scale factor in (0.05, 1) so that V_ES / V_ED of the masks hits ``target``."""
    lo, hi = 0.05, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if volume_ratio(mid) < target else (lo, mid)
    return (lo + hi) / 2


def _calibrated(heart: Heart, grid: Grid, scan: Scan) -> Heart:
    """Set the ES endocardial and RV scales so the mask-measured EFs match the drawn targets."""
    ed = _labels(heart, grid, scan, 0.0)
    lv_ed, rv_ed = int((ed == 3).sum()), int((ed == 1).sum())

    def lv_ratio(s: float) -> float:
        return int((_labels(dataclasses.replace(heart, endo_es=s), grid, scan, 1.0) == 3).sum()) / lv_ed

    heart = dataclasses.replace(heart, endo_es=_calibrate(lv_ratio, 1 - heart.lvef_target))

    def rv_ratio(s: float) -> float:
        return int((_labels(dataclasses.replace(heart, rv_es=s), grid, scan, 1.0) == 1).sum()) / rv_ed

    return dataclasses.replace(heart, rv_es=_calibrate(rv_ratio, 1 - heart.rvef_target))


# --- image formation ----------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field smooth in-plane over ``sigma_px`` pixels, one per slice."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=(0, sigma_px, sigma_px), mode="wrap")
    return (field - field.mean()) / field.std()


def _background(rng: np.random.Generator, heart: Heart, grid: Grid, scan: Scan, blood: float) -> np.ndarray:
    """Static surroundings: textured tissue in an elliptical body, dark lung, a bright descending aorta."""
    shape = grid.rho.shape
    px = 10.0 / scan.pixel_mm  # ~10 mm texture
    tissue = 0.4 + 0.12 * _smooth_noise(rng, shape, px) + 0.04 * _smooth_noise(rng, shape, px / 8)
    heart_reach = heart.endo_radius + heart.wall + heart.rv_width
    lung = 1 / (1 + np.exp(-3 * (_smooth_noise(rng, shape, 2 * px) - 0.6)))
    lung *= np.clip((grid.rho - heart_reach - 8) / 10, 0, 1)
    tissue = np.clip(tissue * (1 - 0.85 * lung), 0.02, None)
    fov = scan.size * scan.pixel_mm
    axis = scan.axis_mm
    ex, ey = fov * rng.uniform(0.5, 0.6), fov * rng.uniform(0.45, 0.52)
    outside = np.hypot(axis[None, :] / ex, axis[:, None] / ey) - 1
    body = np.clip(0.5 - outside * min(ex, ey) / scan.pixel_mm, 0, 1)
    aorta_dir = heart.rv_angle + np.pi + rng.uniform(0.4, 0.8)
    aorta_at = (heart_reach + 14) * np.array([np.cos(aorta_dir), np.sin(aorta_dir)])
    aorta_d = np.hypot(grid.dx - aorta_at[0], grid.dy - aorta_at[1])
    aorta = np.clip(0.5 - (aorta_d - rng.uniform(9, 12)) / scan.pixel_mm, 0, 1)
    return (tissue * (1 - aorta) + blood * aorta) * body + 0.01 * (1 - body)


def _bias(rng: np.random.Generator, scan: Scan) -> np.ndarray:
    """Smooth multiplicative coil field over the image: a gradient plus a broad bump near one coil."""
    u = scan.axis_mm / scan.axis_mm[-1]  # -1..1 across the field of view
    x, y = u[None, :], u[:, None]
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    cx, cy = rng.uniform(-1, 1, 2)
    bump = rng.uniform(0.1, 0.35) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.8)
    return np.exp(gx * x + gy * y + bump)


def _soft_inside(rho: np.ndarray, radius: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Area fraction of each pixel inside a boundary (exact for a straight edge): in-plane partial volume."""
    return np.clip((radius - rho) / pixel_mm + 0.5, 0, 1)


def _papillary(heart: Heart, grid: Grid, endo: np.ndarray) -> np.ndarray:
    """Two dark papillary muscles inside the LV cavity (labelled LV, as ACDC does), shrinking to the apex."""
    endo_mean = endo.mean(axis=(1, 2), keepdims=True)
    sigma = np.maximum(0.14 * endo_mean, 1.0)
    dark = np.zeros_like(grid.rho)
    for offset in (-0.8, 0.8):
        angle = heart.rv_angle + np.pi + offset
        px, py = 0.6 * endo_mean * np.cos(angle), 0.6 * endo_mean * np.sin(angle)
        # separable Gaussian: two thin factors instead of one full-size exponential
        dark += np.exp(-0.5 * ((grid.dx - px) / sigma) ** 2) * np.exp(-0.5 * ((grid.dy - py) / sigma) ** 2)
    return 0.7 * np.clip(dark, 0, 1) * np.clip((endo_mean - 8) / 8, 0, 1)


@dataclass(frozen=True)
class Tissue:
    """Signal (unit: bright blood near 1) of blood, myocardium and the static surroundings."""

    blood: float
    myo: float
    background: np.ndarray  # (slices, rows, cols)


def _signal(heart: Heart, grid: Grid, scan: Scan, c: float, tissue: Tissue) -> np.ndarray:
    """Noise-free signal of every slice at contraction ``c``, averaged over the slice thickness."""
    total = np.zeros_like(grid.rho)
    for frac in _SUBSLICES:
        heights = scan.heights + frac * scan.thickness_mm
        endo, epi, rv = _boundaries(heart, grid, heights, c)
        rv_outer = rv + 3.0 * np.clip((rv - epi) / 3.0, 0, 1)  # ~3 mm free wall, tapering at the insertions
        inside = [_soft_inside(grid.rho, r, scan.pixel_mm) for r in (endo, epi, rv, rv_outer)]
        f_lv, f_epi, f_rv, f_heart = inside
        total += (
            f_lv * tissue.blood * (1 - _papillary(heart, grid, endo))
            + (f_rv - f_epi) * tissue.blood
            + ((f_epi - f_lv) + (f_heart - f_rv)) * tissue.myo
            + (1 - f_heart) * tissue.background
        )
    return total / len(_SUBSLICES)


def _render(rng: np.random.Generator, heart: Heart, grid: Grid, scan: Scan) -> np.ndarray:
    """The cine as stored integers ``(frames, slices, rows, cols)``, with bias field and Rician noise."""
    blood = float(rng.uniform(0.8, 1.0))
    myo = float(rng.uniform(0.18, 0.32))
    tissue = Tissue(blood=blood, myo=myo, background=_background(rng, heart, grid, scan, blood))
    bias = _bias(rng, scan)
    sigma = float(rng.uniform(0.02, 0.05))
    gain = INTENSITY_SCALE * float(rng.uniform(0.6, 1.4))
    frames = []
    for c in scan.contraction:
        signal = bias * _signal(heart, grid, scan, float(c), tissue)
        noisy = np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape))
        frames.append(np.clip(np.rint(noisy * gain), 0, MAX_VALUE).astype(np.int16))
    return np.stack(frames)


@dataclass(frozen=True)
class Patient:
    """Everything written for one phantom patient."""

    name: str
    heart: Heart
    scan: Scan
    cine: np.ndarray  # int16 (frames, slices, rows, cols)
    labels: dict[int, np.ndarray]  # 1-based frame -> uint8 (slices, rows, cols), for ED and ES
    height_cm: float
    weight_kg: float
    seed: tuple[int, int]


def make_patient(seed: int, index: int, *, image_size: int = 128, n_frames: int = 12, n_slices: int = 8) -> Patient:
    """Draw and render patient ``index`` (1-based); it depends only on ``(seed, index)`` and the sizes."""
    rng = np.random.default_rng([seed, index])
    group = GROUP_ORDER[(index - 1) % len(GROUP_ORDER)]
    scan, axes = _draw_scan(rng, image_size, n_slices, n_frames)
    heart = _draw_heart(rng, group, _rv_image_angle(axes), float(scan.heights[0]))
    grid = _grid(heart, scan)
    heart = _calibrated(heart, grid, scan)
    cine = _render(rng, heart, grid, scan)
    labels = {1: _labels(heart, grid, scan, 0.0), scan.es_frame: _labels(heart, grid, scan, 1.0)}
    return Patient(
        name=f"patient{index:03d}",
        heart=heart,
        scan=scan,
        cine=cine,
        labels=labels,
        height_cm=round(float(rng.uniform(150, 195)), 1),
        weight_kg=round(float(rng.uniform(50, 110)), 1),
        seed=(seed, index),
    )


# --- writing ------------------------------------------------------------------------------------------


def _volumes_ml(label: np.ndarray, voxel_ml: float) -> dict[str, float]:
    return {
        name: round(int((label == value).sum()) * voxel_ml, 3) for value, name in ((1, "RV"), (2, "MYO"), (3, "LV"))
    }


def ground_truth(patient: Patient) -> dict:
    """Volumes and EFs measured on the label masks (what a perfect segmentation would give)."""
    scan, heart = patient.scan, patient.heart
    ed = _volumes_ml(patient.labels[1], scan.voxel_ml)
    es = _volumes_ml(patient.labels[scan.es_frame], scan.voxel_ml)
    return {
        "group": heart.group,
        "ed_frame": 1,
        "es_frame": scan.es_frame,
        "n_frames": scan.n_frames,
        "height_cm": patient.height_cm,
        "weight_kg": patient.weight_kg,
        "seed": list(patient.seed),
        "volumes_ml": {"ED": ed, "ES": es},
        "ef": {k: round(1 - es[k] / ed[k], 4) for k in ("LV", "RV")},
        "myo_mass_g": {
            "ED": round(ed["MYO"] * MYOCARDIUM_G_PER_ML, 2),
            "ES": round(es["MYO"] * MYOCARDIUM_G_PER_ML, 2),
        },
        "target_ef": {"LV": round(heart.lvef_target, 4), "RV": round(heart.rvef_target, 4)},
        "spacing_mm": list(scan.spacing),
        "slice_thickness_mm": scan.thickness_mm,
        "rr_interval_ms": scan.rr_ms,
        "parameters": {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(heart).items()},
    }


def _info_cfg(patient: Patient) -> str:
    """ACDC's Info.cfg, line for line."""
    return (
        f"ED: 1\nES: {patient.scan.es_frame}\nGroup: {patient.heart.group}\nHeight: {patient.height_cm:.1f}\n"
        f"NbFrame: {patient.scan.n_frames}\nWeight: {patient.weight_kg:.1f}\n"
    )


def write_acdc_patient(folder: Path, patient: Patient) -> None:
    """One patient in the raw ACDC layout: Info.cfg, the 4D cine, and ED/ES frames with labels."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Info.cfg").write_text(_info_cfg(patient))
    affine, name = patient.scan.affine, patient.name
    frame_ms = patient.scan.rr_ms / patient.scan.n_frames
    save_nifti(folder / f"{name}_4d.nii.gz", patient.cine, affine, frame_interval_ms=frame_ms)
    for frame, label in patient.labels.items():
        save_nifti(folder / f"{name}_frame{frame:02d}.nii.gz", patient.cine[frame - 1], affine)
        save_nifti(folder / f"{name}_frame{frame:02d}_gt.nii.gz", label, affine)


def _uid_key(patient: Patient) -> str:
    """What the patient's DICOM UIDs derive from: the same seed and patient give the same UIDs."""
    return f"cardioseg-phantom-v{GENERATOR_VERSION}/{patient.seed[0]}/{patient.name}"


def write_dicom_patient(folder: Path, patient: Patient) -> None:
    """The same study as one DICOM MR cine series, with UIDs derived from the seed and patient."""
    scan = patient.scan
    write_dicom_cine(
        folder,
        patient.cine,
        scan.affine,
        patient_id=patient.name,
        frame_interval_ms=scan.rr_ms / scan.n_frames,
        uid_key=_uid_key(patient),
        slice_thickness_mm=scan.thickness_mm,
        tags={
            "PatientSize": round(patient.height_cm / 100, 3),
            "PatientWeight": patient.weight_kg,
            "HeartRate": round(60000 / scan.rr_ms),
            "SeriesDescription": "SA cine phantom",
        },
    )


def write_survey_series(folder: Path, patient: Patient) -> None:
    """The other series of a real study, in the patient's study: an axial localizer (three single-phase
    planes, series 90, ``ImageType`` LOCALIZER) and a four-chamber cine (one slice position, every phase,
    series 91). Their images are the phantom's own frames in other planes: only their headers matter, to
    series selection."""
    scan, cine = patient.scan, patient.cine.astype(np.int64).clip(0, None)
    key = _uid_key(patient)
    study = {
        "StudyInstanceUID": derived_uid(key, "study"),
        "FrameOfReferenceUID": derived_uid(key, "frame-of-reference"),
    }
    axial = np.diag([scan.pixel_mm, scan.pixel_mm, 20.0, 1.0])
    axial[:3, 3] = scan.affine[:3, 3]
    localizer = {
        "SeriesNumber": 90,
        "SeriesDescription": "localizer",
        "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
    }
    write_dicom_cine(
        folder / "localizer",
        cine[:1, :3],
        axial,
        patient_id=patient.name,
        frame_interval_ms=scan.rr_ms,
        uid_key=f"{key}/localizer",
        tags={**study, **localizer},
    )
    col, row, normal = (scan.affine[:3, i] / np.linalg.norm(scan.affine[:3, i]) for i in range(3))
    long_axis = np.eye(4)
    long_axis[:3, 0], long_axis[:3, 1], long_axis[:3, 2] = col * scan.pixel_mm, normal * scan.pixel_mm, row * 8.0
    long_axis[:3, 3] = scan.affine[:3, 3]
    mid = cine.shape[1] // 2
    write_dicom_cine(
        folder / "cine_4ch",
        cine[:, mid : mid + 1],
        long_axis,
        patient_id=patient.name,
        frame_interval_ms=scan.rr_ms / scan.n_frames,
        uid_key=f"{key}/4ch",
        tags={**study, "SeriesNumber": 91, "SeriesDescription": "cine 4ch"},
    )


def write_cohort(
    out_dir: str | Path,
    n_patients: int,
    seed: int = 0,
    *,
    image_size: int = 128,
    n_frames: int = 12,
    n_slices: int = 8,
    studies: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``n_patients`` phantom patients as raw ACDC (``patientNNN/``), DICOM (``dicom/patientNNN/``)
    and ``ground_truth.json``, all or nothing: a failure leaves ``out_dir`` as it was. Same seed, same bytes.
    With ``studies``, also ``studies/patientNNN/`` as a scanner exports a study: the short-axis cine
    (``sax/``) beside a localizer and a four-chamber cine (:func:`write_survey_series`).
    """
    if n_patients < 1 or n_frames < 2 or n_slices < 3 or image_size < 32:
        raise CardiosegError(
            f"phantom needs n_patients >= 1, n_frames >= 2, n_slices >= 3 and image_size >= 32; got "
            f"{n_patients}, {n_frames}, {n_slices} and {image_size}"
        )
    out_dir = Path(out_dir)
    truth = {
        "generator": {
            "name": "cardioseg.data.phantom",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "n_patients": n_patients,
            "image_size": image_size,
            "n_frames": n_frames,
            "n_slices": n_slices,
        },
        "patients": {},
    }
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        for index in tqdm(range(1, n_patients + 1), desc="phantom patients", unit="patient", disable=not progress):
            patient = make_patient(seed, index, image_size=image_size, n_frames=n_frames, n_slices=n_slices)
            write_acdc_patient(tmp / patient.name, patient)
            write_dicom_patient(tmp / "dicom" / patient.name, patient)
            if studies:
                write_dicom_patient(tmp / "studies" / patient.name / "sax", patient)
                write_survey_series(tmp / "studies" / patient.name, patient)
            truth["patients"][patient.name] = ground_truth(patient)
        (tmp / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return out_dir
