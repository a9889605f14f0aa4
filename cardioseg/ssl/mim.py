"""Masked image modelling of the whole U-Net (encoder and decoder), simplified from SparK/MAE for CNNs.

Beyond the paper, which pretrains the encoder only: random square patches of each image are blanked (set
to 0) and the U-Net, with a one-channel output head, reconstructs the image; the loss is the mean squared
error on the masked patches only, against targets normalised per patch (MAE's ``norm_pix_loss``). SparK
encodes only the visible pixels with sparse convolutions; this dense version keeps the U-Net unchanged
(what fine-tuning loads is then exactly what was trained) at the cost of showing the encoder zeros where
SparK shows it nothing. Mooij et al. (arXiv 2409.18100) found masked image modelling the one SSL method
that helped cine-MRI segmentation with 10 labelled subjects. Checkpoints hold encoder and decoder
(``scope: unet``); the reconstruction head is not transferred. lightly's ``patchify`` cuts the patches;
its token masks are drawn on the device's generator, so the mask here is drawn from the batch's CPU one.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from lightly.models.utils import patchify

from ..engine.batches import to_device
from ..nets import LoadedWeights, build_unet, load_pretrained
from ..settings import SettingError
from .base import PretrainMethod


class MaskedImageModelling(PretrainMethod):
    name = "mim"
    views = 1
    scope = "unet"

    def __init__(self, encoder: str, patch_size: int = 16, mask_ratio: float = 0.6, normalize_target: bool = True):
        super().__init__(encoder)
        self.unet = build_unet(encoder, in_channels=1, out_channels=1)
        self.patch_size = int(patch_size)
        self.mask_ratio = float(mask_ratio)
        self.normalize_target = bool(normalize_target)

    @classmethod
    def check_image_size(cls, options: dict[str, Any], image_size: int) -> None:
        patch = options.get("patch_size", inspect.signature(cls).parameters["patch_size"].default)
        if image_size % patch:
            raise SettingError("method_options#patch_size", patch, f"must divide image_size ({image_size})")

    def patch_mask(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(B, patches)`` booleans, True where masked: ``mask_ratio`` of each image's patches."""
        batch, _, height, width = images.shape
        patches = (height // self.patch_size) * (width // self.patch_size)
        masked = max(1, round(self.mask_ratio * patches))
        ranks = torch.rand(batch, patches, generator=generator).argsort(dim=1).argsort(dim=1)
        return to_device(ranks < masked, images.device)

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        images = views[0]
        batch, _, height, width = images.shape
        mask = self.patch_mask(images, generator)
        rows, columns = height // self.patch_size, width // self.patch_size
        pixel_mask = mask.view(batch, 1, rows, columns)
        pixel_mask = pixel_mask.repeat_interleave(self.patch_size, 2).repeat_interleave(self.patch_size, 3)
        reconstruction = self.unet(images.masked_fill(pixel_mask, 0.0))
        target = patchify(images, self.patch_size)
        if self.normalize_target:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        error = (patchify(reconstruction, self.patch_size) - target).pow(2).mean(dim=-1)
        return (error * mask).sum() / mask.sum()

    def transferred_state(self) -> dict[str, torch.Tensor]:
        return {key: value for key, value in self.unet.state_dict().items() if key.startswith(("encoder.", "decoder."))}

    def load_init(self, source: Any) -> LoadedWeights | None:
        return load_pretrained(self.unet, source)
