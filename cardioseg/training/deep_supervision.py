"""Deep supervision: the loss also scores the decoder's coarser outputs, as nnU-Net trains its U-Nets.

``DeepSupervision(unet, levels)`` is the network the trainer steps. With ``levels`` > 0 it returns the
U-Net's logits and, finest first, the logits of a 1x1 convolution on each of the ``levels`` decoder
outputs before the last (1/2, 1/4, ... of the image size); MONAI's ``DeepSupervisionLoss`` scores each
against the labels resized to it and weights them 1, 1/2, 1/4, ... The extra heads only train: validation,
``models/model.pt``, evaluation and export use the U-Net alone, which keeps its keys; ``last.pt`` keeps the
heads under their own entry so a resume continues them.
"""

from __future__ import annotations

import torch
from monai.networks.nets import FlexibleUNet

from ..settings import SettingError

__all__ = ["DeepSupervision", "max_levels"]


def _last_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def max_levels(unet: FlexibleUNet) -> int:
    """How many decoder outputs lie before the last one."""
    return len(unet.decoder.blocks) - 1


class DeepSupervision(torch.nn.Module):
    """The U-Net, plus 1x1-convolution heads on ``levels`` coarser decoder outputs (none: the U-Net as is)."""

    def __init__(self, unet: FlexibleUNet, levels: int = 0):
        super().__init__()
        if not 0 <= int(levels) <= max_levels(unet):
            raise SettingError("deep_supervision", levels, f"must be between 0 and {max_levels(unet)}")
        self.unet = unet
        classes = _last_conv(unet.segmentation_head).out_channels
        coarser = list(unet.decoder.blocks)[-2::-1][: int(levels)]  # finest first
        self.aux_heads = torch.nn.ModuleList(torch.nn.Conv2d(_last_conv(b).out_channels, classes, 1) for b in coarser)
        self.aux_heads.to(next(unet.parameters()).device)

    @property
    def encoder(self) -> torch.nn.Module:
        """The U-Net's encoder (what ``freeze_encoder`` freezes)."""
        return self.unet.encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not self.aux_heads:
            return self.unet(images)
        # FlexibleUNet's decoder returns only its last output; this is its loop, keeping every output.
        features = self.unet.encoder(images)
        skips, x, outputs = features[:-1][::-1], features[-1], []
        for i, block in enumerate(self.unet.decoder.blocks):
            x = block(x, skips[i] if i < self.unet.skip_connect else None)
            outputs.append(x)
        coarser = outputs[-2::-1]
        return [self.unet.segmentation_head(x), *(head(y) for head, y in zip(self.aux_heads, coarser))]
