"""Fine-tuning's augmentation: image and label warped alike, then the image's intensity jittered.

Built from the batched blocks in ``cardioseg.engine.augment`` (one ``grid_sample`` per batch on the
training device, parameters drawn on the CPU from a seeded generator), which pretraining's views use too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..engine.augment import adjust_intensity, affine_theta, flip_signs, uniform, warp


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; ``p_*`` are per-sample probabilities."""

    max_rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.85, 1.2)
    p_flip: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.1
    contrast_range: tuple[float, float] = (0.8, 1.2)


def random_affine_theta(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: rotation, isotropic scale and flips, about the centre."""
    angle = uniform(n, -1.0, 1.0, generator) * math.radians(config.max_rotation_deg)
    # Sampling through 1/scale zooms the content by ``scale``.
    extent = 1.0 / uniform(n, *config.scale_range, generator)
    flip_x, flip_y = flip_signs(n, config.p_flip, generator), flip_signs(n, config.p_flip, generator)
    return affine_theta(angle, extent, extent, flip_x, flip_y)


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp images (bilinear) and labels (nearest) alike, then jitter intensity of the images only.

    ``images`` float ``(B, 1, H, W)`` in [0, 1]; ``labels`` float ``(B, 1, H, W)`` class indices.
    """
    n = images.shape[0]
    theta = random_affine_theta(n, config, generator)
    gamma = uniform(n, *config.gamma_range, generator)
    shift = uniform(n, -config.brightness, config.brightness, generator)
    contrast = uniform(n, *config.contrast_range, generator)
    images, labels = warp(images, theta, "bilinear"), warp(labels, theta, "nearest")
    return adjust_intensity(images, gamma, contrast, shift).clamp(0.0, 1.0), labels
