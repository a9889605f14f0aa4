"""Supervised classification on a labelled ImageFolder (class folders as labels): the stand-in for
ImageNet-supervised encoder weights where those cannot be downloaded. One view per image; the linear
classifier is left behind, the encoder is what fine-tuning takes."""

from __future__ import annotations

import torch
from torch import nn

from .base import EncoderMethod


class Supervised(EncoderMethod):
    name = "supervised"
    views = 1
    needs_labels = True

    def __init__(self, encoder: str, num_classes: int, label_smoothing: float = 0.0):
        super().__init__(encoder)
        self.classifier = nn.Linear(self.backbone.feature_dim, num_classes)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        return self.criterion(self.classifier(self.pooled(self.backbone, views[0])), labels)
