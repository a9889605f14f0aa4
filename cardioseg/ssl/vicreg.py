"""VICReg (Bardes et al. 2022), the non-contrastive method here: the two views' embeddings agree
(invariance) while each embedding dimension keeps its variance and the dimensions stay decorrelated
(lightly's VICReg loss and projection head, sized as lightly's example)."""

from __future__ import annotations

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from .base import EncoderMethod


class VICReg(EncoderMethod):
    name = "vicreg"

    def __init__(self, encoder: str, projection_hidden: int = 2048, projection_dim: int = 2048):
        super().__init__(encoder)
        features = self.backbone.feature_dim
        self.projection_head = VICRegProjectionHead(features, projection_hidden, projection_dim, num_layers=2)
        self.criterion = VICRegLoss()

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        z0, z1 = (self.projection_head(self.pooled(self.backbone, x)) for x in views)
        return self.criterion(z0, z1)
