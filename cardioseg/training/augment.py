"""Batched augmentation on the training device.

MONAI's random transforms work one sample at a time on the CPU (or per sample on the GPU); on a GPU that
leaves the network waiting. Here one ``affine_grid``/``grid_sample`` call warps a whole batch. Random
parameters are drawn on the CPU from a seeded generator, so CPU and CUDA runs see the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; ``p_*`` are per-sample probabilities."""

    max_rotation_deg: float = 20.0
    scale_range: tuple[float, float] = (0.85, 1.2)
    p_flip: float = 0.5
    gamma_range: tuple[float, float] = (0.7, 1.5)
    brightness: float = 0.1
    contrast_range: tuple[float, float] = (0.8, 1.2)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_affine_theta(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: rotation, isotropic scale and flips, about the centre."""
    angle = _uniform(n, -1.0, 1.0, generator) * math.radians(config.max_rotation_deg)
    # Sampling through 1/scale zooms the content by ``scale``.
    inv_scale = 1.0 / _uniform(n, *config.scale_range, generator)
    flip_x = torch.where(torch.rand(n, generator=generator) < config.p_flip, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=generator) < config.p_flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) * inv_scale, torch.sin(angle) * inv_scale
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip_x, -sin * flip_y
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip_x, cos * flip_y
    return theta


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp images (bilinear) and labels (nearest) alike, then jitter intensity of the images only.

    ``images`` float ``(B, 1, H, W)`` in [0, 1]; ``labels`` float ``(B, 1, H, W)`` class indices.
    """
    n = images.shape[0]
    theta = random_affine_theta(n, config, generator).to(images.device, images.dtype)
    gamma = _uniform(n, *config.gamma_range, generator)
    shift = _uniform(n, -config.brightness, config.brightness, generator)
    contrast = _uniform(n, *config.contrast_range, generator)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(labels, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    per_sample = (n, 1, 1, 1)
    gamma, shift, contrast = (t.to(images.device, images.dtype).view(per_sample) for t in (gamma, shift, contrast))
    images = images.clamp(0.0, 1.0).pow(gamma)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = ((images - mean) * contrast + mean + shift).clamp(0.0, 1.0)
    return images, labels
