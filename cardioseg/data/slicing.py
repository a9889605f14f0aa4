"""Volumes to 2D slices: per-volume intensity normalisation and three ways to put slices on one grid.

Training code samples 2D slices, so every reader's volume :class:`Record` becomes rows of a
:class:`SliceSet` that remembers where each slice came from (patient, frame, phase, slice, volume):
splits and label budgets work at patient level and evaluation goes back to whole volumes.

Modes:

- ``native``: slices as stored (all volumes must then share one in-plane size).
- ``ssl4mis``: each slice resized to ``size x size`` with scipy's ``zoom``, as SSL4MIS does, so numbers
  compare with published ACDC tables. Labels always use nearest neighbour (order 0). SSL4MIS's own code
  also zooms the *image* with order 0; cardioseg defaults to bilinear (``image_order=1``), which keeps
  thin structures smoother; pass ``image_order=0`` to reproduce SSL4MIS exactly.
- ``spacing``: resample in-plane to ``target_spacing`` mm (MONAI ``Spacing``), then centre crop/pad
  to ``size x size`` (MONAI ``ResizeWithPadOrCrop``), so one pixel means the same anatomy everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import ResizeWithPadOrCrop, ScaleIntensityRange, Spacing
from scipy.ndimage import zoom
from tqdm import tqdm

from ..errors import DataError
from .records import Record

Mode = Literal["native", "ssl4mis", "spacing"]
MODES: tuple[str, ...] = ("native", "ssl4mis", "spacing")
DEFAULT_PERCENTILES = (0.0, 99.0)
SliceKey = tuple[str, int, int]


def normalize_intensity(image: np.ndarray, lower: float = 0.0, upper: float = 99.0) -> np.ndarray:
    """Clip a volume at its ``lower``/``upper`` percentiles and scale that range to [0, 1].

    The SSL4MIS ACDC convention is ``(0, 99)``: one bright artefact cannot squash the heart's contrast.
    A volume whose two percentiles coincide (e.g. constant) has no usable range and maps to zeros.
    """
    # Percentiles computed once here rather than in ScaleIntensityRangePercentiles, so the degenerate
    # range is caught before MONAI divides by zero (it warns and returns unscaled values).
    lo, hi = np.percentile(image, [lower, upper])
    if hi <= lo:
        return np.zeros(image.shape, dtype=np.float32)
    scaled = ScaleIntensityRange(a_min=float(lo), a_max=float(hi), b_min=0.0, b_max=1.0, clip=True)(image)
    return np.asarray(scaled, dtype=np.float32)


def zoom_slice(slice_2d: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resize one 2D slice to ``shape`` exactly as SSL4MIS does (scipy ``zoom``, corner-aligned grid).

    Hand-written rather than MONAI ``Resize``: MONAI samples on torch's pixel-centre grid, so its
    nearest-neighbour picks differ from scipy's and the SSL4MIS protocol would not be reproduced.
    One deliberate difference: ``mode="nearest"``. With scipy's default ``"constant"``, rounding puts
    the last sample a hair outside the input for some sizes (256 -> 216 among them) and that whole
    row becomes 0, so SSL4MIS's predictions lose their last row; clamping to the edge avoids it.
    """
    factors = (shape[0] / slice_2d.shape[0], shape[1] / slice_2d.shape[1])
    out = zoom(slice_2d, factors, order=order, mode="nearest")
    if out.shape != tuple(shape):  # zoom rounds the output size; guard against a one-pixel surprise
        raise ValueError(f"zoom gave {out.shape}, expected {tuple(shape)}")
    return out


def _resize_volume_ssl4mis(
    image: np.ndarray, label: np.ndarray | None, size: int, image_order: int
) -> tuple[np.ndarray, np.ndarray | None]:
    shape = (size, size)
    images = np.stack([zoom_slice(s, shape, image_order) for s in image]).astype(np.float32)
    labels = None if label is None else np.stack([zoom_slice(s, shape, 0) for s in label]).astype(np.uint8)
    return images, labels


def _resample_volume_spacing(
    record: Record, image: np.ndarray, size: int, target_spacing: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Slices ride MONAI's channel axis, so one ``Spacing`` call resamples the whole volume in-plane."""
    if record.spacing is None:
        raise DataError(record.source, f"patient {record.patient}: no voxel spacing, which mode 'spacing' needs")
    row, col = float(record.spacing[1]), float(record.spacing[2])
    affine = torch.diag(torch.tensor([row, col, 1.0, 1.0], dtype=torch.float64))
    crop = ResizeWithPadOrCrop((size, size))

    def resample(array: np.ndarray, mode: str) -> np.ndarray:
        tensor = MetaTensor(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), affine=affine)
        out = crop(Spacing(pixdim=(target_spacing, target_spacing), mode=mode)(tensor))
        return np.asarray(out.detach().cpu().numpy())

    images = resample(image, "bilinear").astype(np.float32)
    labels = None if record.label is None else np.rint(resample(record.label, "nearest")).astype(np.uint8)
    return images, labels


@dataclass(frozen=True)
class SliceSet:
    """2D slices on one grid plus, per slice, where it came from.

    ``images`` (N, H, W) float32; ``labels`` (N, H, W) uint8 or None when unlabelled. Per slice:
    ``patient`` (str), ``frame`` (1-based cine frame, -1 if unknown), ``phase`` ("ED"/"ES"/"other"),
    ``slice_index`` (position in its volume) and ``volume`` (the volume's position in the prepared
    order, unchanged by :meth:`subset`). ``meta`` says how the slices were made (mode, size, ...).
    """

    images: np.ndarray
    labels: np.ndarray | None
    patient: np.ndarray
    frame: np.ndarray
    phase: np.ndarray
    slice_index: np.ndarray
    volume: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3:
            raise ValueError(f"images must be (N, H, W), got shape {self.images.shape}")
        if self.labels is not None and self.labels.shape != self.images.shape:
            raise ValueError(f"labels shape {self.labels.shape} differs from images {self.images.shape}")
        for name in ("patient", "frame", "phase", "slice_index", "volume"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} slices")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | Sequence[int]) -> SliceSet:
        """The slices picked by a boolean mask or integer indices, in that order."""
        index = np.asarray(index)
        return SliceSet(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            patient=self.patient[index],
            frame=self.frame[index],
            phase=self.phase[index],
            slice_index=self.slice_index[index],
            volume=self.volume[index],
            meta=dict(self.meta),
        )

    def patients(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.patient.tolist())))

    def select_patients(self, patients: Iterable[str]) -> SliceSet:
        """All slices of the given patients: the way splits and patient budgets pick data."""
        return self.subset(np.isin(self.patient, list(patients)))

    def keys(self) -> list[SliceKey]:
        """``(patient, frame, slice_index)`` per slice: names a slice the same way in every mode."""
        return list(zip(self.patient.tolist(), self.frame.tolist(), self.slice_index.tolist(), strict=True))


def _prepare_volume(
    record: Record,
    mode: str,
    size: int,
    target_spacing: float,
    image_order: int,
    percentiles: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    image = record.image if percentiles is None else normalize_intensity(record.image, *percentiles)
    if mode == "native":
        return np.asarray(image, dtype=np.float32), record.label
    if mode == "ssl4mis":
        return _resize_volume_ssl4mis(image, record.label, size, image_order)
    return _resample_volume_spacing(record, image, size, target_spacing)


def _check_same_grid(records_out: list[tuple[Record, np.ndarray]]) -> None:
    shapes = {out.shape[1:] for _, out in records_out}
    if len(shapes) > 1:
        first = records_out[0][0]
        raise DataError(
            first.source,
            f"mode 'native' needs one in-plane size, found {sorted(shapes)}: use mode 'ssl4mis' or 'spacing'",
        )


def to_slices(
    records: Iterable[Record],
    mode: Mode = "ssl4mis",
    size: int = 256,
    target_spacing: float = 1.25,
    image_order: int = 1,
    percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES,
    *,
    progress: bool = False,
) -> SliceSet:
    """Normalise each volume (unless ``percentiles`` is None) and cut it into 2D slices on one grid.

    ``size`` applies to ``ssl4mis`` and ``spacing``; ``target_spacing`` (mm) to ``spacing``. Either all
    records are labelled or none is, so a SliceSet's labels are all-or-nothing.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    done: list[tuple[Record, np.ndarray]] = []
    labels: list[np.ndarray | None] = []
    for record in tqdm(records, desc=f"slicing ({mode})", unit="volume", disable=not progress):
        image, label = _prepare_volume(record, mode, size, target_spacing, image_order, percentiles)
        done.append((record, image))
        labels.append(label)
    if not done:
        raise ValueError("no records to slice")
    _check_same_grid(done)
    labelled = {label is not None for label in labels}
    if len(labelled) > 1:
        raise ValueError("some records have labels and some do not: slice them into separate SliceSets")
    counts = [image.shape[0] for _, image in done]
    return SliceSet(
        images=np.concatenate([image for _, image in done]).astype(np.float32, copy=False),
        labels=np.concatenate(labels).astype(np.uint8) if labelled == {True} else None,
        patient=np.repeat([r.patient for r, _ in done], counts),
        frame=np.repeat([-1 if r.frame is None else r.frame for r, _ in done], counts).astype(np.int32),
        phase=np.repeat([r.phase for r, _ in done], counts),
        slice_index=np.concatenate([np.arange(c, dtype=np.int32) for c in counts]),
        volume=np.repeat(np.arange(len(done), dtype=np.int32), counts),
        meta={
            "mode": mode,
            "size": None if mode == "native" else size,
            "target_spacing_mm": target_spacing if mode == "spacing" else None,
            "image_order": image_order if mode == "ssl4mis" else None,
            "normalization": None if percentiles is None else {"percentiles": list(percentiles)},
            "sources": sorted({r.source for r, _ in done}),
        },
    )
