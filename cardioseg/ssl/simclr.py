"""SimCLR (Chen et al. 2020): two views of an image attract, every other image in the batch repels
(lightly's NT-Xent loss over a two-layer projection head, as lightly's example sets it up)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead

from .base import EncoderMethod


class SimCLR(EncoderMethod):
    name = "simclr"

    def __init__(self, encoder: str, projection_dim: int = 128, temperature: float = 0.5):
        super().__init__(encoder)
        features = self.backbone.feature_dim
        self.projection_head = SimCLRProjectionHead(features, features, projection_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        z0, z1 = (self.projection_head(self.pooled(self.backbone, x)) for x in views)
        return self.criterion(z0, z1)
