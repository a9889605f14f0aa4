"""BYOL (Grill et al. 2020) as Kalapos & Gyires-Tóth pretrain with it: projector 4096 -> 256, predictor
with a 4096 hidden layer, target momentum 0.99 -> 1.0 on a cosine, symmetric negative-cosine loss."""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead

from .base import MomentumMethod


class BYOL(MomentumMethod):
    name = "byol"

    def __init__(
        self,
        encoder: str,
        projection_hidden: int = 4096,
        projection_dim: int = 256,
        prediction_hidden: int = 4096,
        momentum_start: float = 0.99,
        momentum_end: float = 1.0,
    ):
        super().__init__(encoder, momentum_start, momentum_end)
        features = self.backbone.feature_dim
        self.projection_head = BYOLProjectionHead(features, projection_hidden, projection_dim)
        self.prediction_head = BYOLPredictionHead(projection_dim, prediction_hidden, projection_dim)
        self.make_target()
        self.criterion = NegativeCosineSimilarity()

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        p0, p1 = (self.prediction_head(self.projection_head(self.pooled(self.backbone, x))) for x in views)
        z0, z1 = (self.target_projection(x) for x in views)
        return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
