"""Batched augmentation on the training device: the building blocks fine-tuning and pretraining both use.

MONAI's random transforms work one sample at a time on the CPU (or per sample on the GPU); on a GPU that
leaves the network waiting. Here one ``affine_grid``/``grid_sample`` call warps a whole batch (rotation,
scale, flips, crops), and intensity, blur and noise are tensor arithmetic over the batch. Random
parameters are drawn on the CPU from a seeded generator, so CPU and CUDA runs see the same augmentations
and a resumed run the same batches; only the noise field is drawn on the training device (from a seed
drawn on the CPU), as drawing it on the CPU would cost more than the step, so its pattern differs between
CPU and CUDA runs. All arithmetic is in floating point: no integer image type can overflow or wrap
(Kalapos & Gyires-Tóth's pipeline blanked about one image in ten through a uint16 brightness overflow).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .batches import to_device


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from U(low, high), on the CPU."""
    return low + (high - low) * torch.rand(n, generator=generator)


def chance(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` booleans, each True with probability ``p``."""
    return torch.rand(n, generator=generator) < p


def flip_signs(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """-1 (flip) with probability ``p``, else 1."""
    return torch.where(chance(n, p, generator), -1.0, 1.0)


def affine_theta(
    angle: torch.Tensor,
    extent_x: torch.Tensor,
    extent_y: torch.Tensor,
    flip_x: torch.Tensor,
    flip_y: torch.Tensor,
    centre_x: torch.Tensor | None = None,
    centre_y: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n, 2, 3)`` matrices for ``affine_grid``: output pixel -> input position.

    The output shows the input region of half-width ``extent_x`` and half-height ``extent_y`` (in
    ``grid_sample``'s [-1, 1] coordinates: 1 is the whole image, 0.5 a zoom by 2) around ``centre``
    (default the image centre), rotated by ``angle`` (radians) and flipped where ``flip_*`` is -1.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(len(angle), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * extent_x * flip_x, -sin * extent_y * flip_y
    theta[:, 1, 0], theta[:, 1, 1] = sin * extent_x * flip_x, cos * extent_y * flip_y
    if centre_x is not None:
        theta[:, 0, 2], theta[:, 1, 2] = centre_x, centre_y
    return theta


def warp(
    images: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear", size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resample a batch ``(B, C, H, W)`` through per-sample affine matrices into ``size`` (default
    ``(H, W)``) pixels; outside the image is 0."""
    theta = to_device(theta, images.device, images.dtype)
    grid = F.affine_grid(theta, [*images.shape[:2], *(size or images.shape[2:])], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """CPU draws ``(B,)`` as ``(B, 1, 1, 1)`` on ``like``'s device, to broadcast over images."""
    return to_device(values, like.device, like.dtype).view(-1, 1, 1, 1)


def adjust_intensity(
    images: torch.Tensor, gamma: torch.Tensor, contrast: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Gamma on [0, 1] intensities, then contrast about each image's mean and a brightness shift.

    The result is not clipped: callers that need [0, 1] clamp it, callers that feed a network need not
    (clipping is what can flatten a bright image into a constant one).
    """
    images = images.clamp(0.0, 1.0).pow(per_sample(gamma, images))
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * per_sample(contrast, images) + mean + per_sample(shift, images)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a standard deviation (pixels) per image; 0 leaves an image as it is.

    Hand-written: torchvision's ``gaussian_blur`` and MONAI's ``GaussianSmooth`` take one sigma per call,
    and a per-image loop would undo the batching. Here the batch rides the channel axis of one grouped
    convolution per direction, with reflected borders.
    """
    n, channels = images.shape[:2]
    radius = min(max(1, math.ceil(3.0 * float(sigma.max()))), min(images.shape[2:]) - 1)  # reflect needs < size
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    safe = sigma.clamp_min(1e-6).view(-1, 1)
    kernels = torch.exp(-0.5 * (offsets / safe) ** 2)
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    kernels = to_device(kernels, images.device, images.dtype)
    width, groups = 2 * radius + 1, n * channels
    flat = images.reshape(1, groups, *images.shape[2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernels.view(-1, 1, 1, width), groups=groups)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernels.view(-1, 1, width, 1), groups=groups)
    return flat.view_as(images)


def add_noise(images: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise of a standard deviation per image, drawn on the images' device from a CPU-drawn seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    device_generator = torch.Generator(images.device).manual_seed(seed)
    noise = torch.randn(images.shape, generator=device_generator, device=images.device, dtype=images.dtype)
    return images + noise * per_sample(std, images)
