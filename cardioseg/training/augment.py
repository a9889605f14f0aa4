"""Fine-tuning's augmentation: image and label warped alike, then the image's intensity jittered.

Built from the batched blocks in ``cardioseg.engine.augment`` (one ``grid_sample`` per batch on the
training device, parameters drawn on the CPU from a seeded generator), which pretraining's views use too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..engine.augment import adjust_intensity, affine_theta, flip_signs, uniform, warp
from ..settings import as_flag, is_none


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; ``p_*`` are per-sample probabilities."""

    max_rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.85, 1.2)
    p_flip: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.1
    contrast_range: tuple[float, float] = (0.8, 1.2)
    crop_size: int | None = None
    """Train on random ``crop_size`` x ``crop_size`` windows of each slice, at its resolution, rather than on
    the whole slice (None). The U-Net is convolutional and validation still sees whole slices; a window of
    half the side costs a quarter of a step's arithmetic, and ACDC's hearts lie within the central half of
    the slice (nnU-Net likewise trains on patches)."""


def finetune_augmentation(augment: Any, crop_size: Any) -> AugmentConfig | None:
    """The bundle's ``augment`` and ``crop_size`` settings (checked before) as the training loader's config."""
    if not as_flag(augment, "augment"):
        return None
    return AugmentConfig(crop_size=None if is_none(crop_size) else int(crop_size))


def random_affine_theta(
    n: int, config: AugmentConfig, generator: torch.Generator, window: tuple[float, float] = (1.0, 1.0)
) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: rotation, isotropic scale and flips about the centre, of
    the whole image, or with ``window`` (the output's share of the image's width and height) below 1 of a
    window placed at random inside it."""
    angle = uniform(n, -1.0, 1.0, generator) * math.radians(config.max_rotation_deg)
    # Sampling through 1/scale zooms the content by ``scale``.
    zoom = 1.0 / uniform(n, *config.scale_range, generator)
    flip_x, flip_y = flip_signs(n, config.p_flip, generator), flip_signs(n, config.p_flip, generator)
    if window == (1.0, 1.0):
        return affine_theta(angle, zoom, zoom, flip_x, flip_y)
    extent_x, extent_y = zoom * window[0], zoom * window[1]
    centre_x = uniform(n, -1.0, 1.0, generator) * (1.0 - extent_x).clamp_min(0.0)
    centre_y = uniform(n, -1.0, 1.0, generator) * (1.0 - extent_y).clamp_min(0.0)
    return affine_theta(angle, extent_x, extent_y, flip_x, flip_y, centre_x, centre_y)


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp images (bilinear) and labels (nearest) alike, into ``config.crop_size`` windows where set,
    then jitter intensity of the images only.

    ``images`` float ``(B, 1, H, W)`` in [0, 1]; ``labels`` float ``(B, 1, H, W)`` class indices.
    """
    n, (height, width) = images.shape[0], images.shape[2:]
    size = config.crop_size
    if size is not None and not 0 < size <= min(height, width):
        raise ValueError(f"crop_size {size} does not fit {height}x{width} slices")
    window = (1.0, 1.0) if size is None else (size / width, size / height)
    out = None if size is None else (size, size)
    theta = random_affine_theta(n, config, generator, window)
    gamma = uniform(n, *config.gamma_range, generator)
    shift = uniform(n, -config.brightness, config.brightness, generator)
    contrast = uniform(n, *config.contrast_range, generator)
    images, labels = warp(images, theta, "bilinear", out), warp(labels, theta, "nearest", out)
    return adjust_intensity(images, gamma, contrast, shift).clamp(0.0, 1.0), labels
