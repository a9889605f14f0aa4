"""Random views of single-channel images for self-supervised pretraining, a whole batch at a time.

lightly's view transforms (``BYOLTransform``, ``SimCLRTransform``, ...) are torchvision pipelines run per
image in DataLoader workers, made for RGB photographs: colour jitter and grey-scale conversion mean nothing
on MRI and the CPU workers leave a GPU waiting. Here a view is the engine's batched augmentation on the
training device (``cardioseg.engine.augment``): random resized crop, flips and rotation in one
``grid_sample``, then brightness, contrast, gamma, Gaussian blur and Gaussian noise, in floating point and
never clipped, so no view comes out constant unless its crop was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from ..engine.augment import (
    add_noise,
    adjust_intensity,
    affine_theta,
    chance,
    flip_signs,
    gaussian_blur,
    uniform,
    warp,
)
from ..settings import SettingError

BLUR_REFERENCE_SIZE = 224


@dataclass(frozen=True)
class ViewConfig:
    """Ranges of the random transforms; ``p_*`` are per-view probabilities.

    ``crop_scale`` is the cropped fraction of the image's area and ``crop_ratio`` its aspect ratio, as in
    torchvision's RandomResizedCrop; ``blur_sigma`` is in pixels of a ``BLUR_REFERENCE_SIZE`` (224) pixel
    view, BYOL's setting, and scales with the view's width, so a blur takes the same share of detail from a
    64-pixel view as from a 224-pixel one (unscaled, 2 pixels wipe out a 32-pixel image); ``noise_std`` is
    in units of the [0, 1] intensity range.
    """

    crop_scale: tuple[float, float] = (0.25, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    max_rotation_deg: float = 15.0
    p_flip: float = 0.5
    p_intensity: float = 0.8
    brightness: float = 0.2
    contrast_range: tuple[float, float] = (0.6, 1.4)
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    p_noise: float = 0.5
    noise_std: tuple[float, float] = (0.0, 0.05)

    @classmethod
    def from_settings(cls, options: dict | None) -> ViewConfig:
        """From a recipe's ``augmentation`` dict (lists for ranges); an unknown name is a SettingError."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SettingError("augmentation", unknown[0], f"unknown; choose from {', '.join(sorted(known))}")
        try:
            config = cls(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in options.items()})
            config.check()
        except (TypeError, ValueError) as exc:
            raise SettingError("augmentation", options, str(exc)) from None
        return config

    def check(self) -> None:
        """Ranges ordered and non-negative, crops inside the image, probabilities in [0, 1]."""
        for name in ("crop_scale", "crop_ratio", "contrast_range", "gamma_range", "blur_sigma", "noise_std"):
            low, high = (float(v) for v in getattr(self, name))
            if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
                raise ValueError(f"{name} must be a range [low, high] with 0 <= low <= high")
        if not (0 < self.crop_scale[0] and self.crop_scale[1] <= 1 and self.crop_ratio[0] > 0):
            raise ValueError("crop_scale must lie in (0, 1] and crop_ratio be positive")
        for name in ("p_flip", "p_intensity", "p_blur", "p_noise"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]")


def crop_extents(n: int, config: ViewConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-width and half-height (``grid_sample`` units, 1 = whole image) of random resized crops."""
    area = uniform(n, *config.crop_scale, generator)
    log_ratio = uniform(n, math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1]), generator)
    ratio = torch.exp(log_ratio)
    return torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)


def make_view(images: torch.Tensor, config: ViewConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image of a batch ``(B, 1, H, W)`` in [0, 1], same shape, float."""
    n = images.shape[0]
    extent_x, extent_y = crop_extents(n, config, generator)
    centre_x = uniform(n, -1.0, 1.0, generator) * (1.0 - extent_x)  # the crop lies inside the image
    centre_y = uniform(n, -1.0, 1.0, generator) * (1.0 - extent_y)
    angle = uniform(n, -1.0, 1.0, generator) * math.radians(config.max_rotation_deg)
    flip_x, flip_y = flip_signs(n, config.p_flip, generator), flip_signs(n, config.p_flip, generator)
    theta = affine_theta(angle, extent_x, extent_y, flip_x, flip_y, centre_x, centre_y)

    jitter = chance(n, config.p_intensity, generator)
    gamma = torch.where(jitter, uniform(n, *config.gamma_range, generator), 1.0)
    contrast = torch.where(jitter, uniform(n, *config.contrast_range, generator), 1.0)
    shift = torch.where(jitter, uniform(n, -config.brightness, config.brightness, generator), 0.0)
    sigma = torch.where(chance(n, config.p_blur, generator), uniform(n, *config.blur_sigma, generator), 0.0)
    sigma = sigma * (images.shape[-1] / BLUR_REFERENCE_SIZE)
    noise = torch.where(chance(n, config.p_noise, generator), uniform(n, *config.noise_std, generator), 0.0)

    views = adjust_intensity(warp(images.float(), theta), gamma, contrast, shift)
    if bool(sigma.any()):
        views = gaussian_blur(views, sigma)
    if bool(noise.any()):
        views = add_noise(views, noise, generator)
    return views
