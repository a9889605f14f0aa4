"""MoCo v2 (Chen et al. 2020): a query from the online network matches its key from the momentum network
against a queue of earlier keys (lightly's NT-Xent loss with a memory bank; momentum 0.996 -> 1.0)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import MoCoProjectionHead

from .base import MomentumMethod


class MoCo(MomentumMethod):
    name = "moco"

    def __init__(
        self,
        encoder: str,
        projection_dim: int = 128,
        temperature: float = 0.2,
        queue_size: int = 4096,
        momentum_start: float = 0.996,
        momentum_end: float = 1.0,
    ):
        super().__init__(encoder, momentum_start, momentum_end)
        features = self.backbone.feature_dim
        self.projection_head = MoCoProjectionHead(features, features, projection_dim)
        self.make_target()
        self.criterion = NTXentLoss(temperature=temperature, memory_bank_size=(queue_size, projection_dim))

    def training_loss(self, views, labels, generator) -> torch.Tensor:
        query = self.projection_head(self.pooled(self.backbone, views[0]))
        return self.criterion(query, self.target_projection(views[1]))

    # lightly keeps the queue in non-persistent buffers; a resumed run needs it, so it rides in the state dict.
    def get_extra_state(self) -> dict[str, torch.Tensor]:
        bank = self.criterion.memory_bank
        return {"queue": bank.bank.clone(), "queue_pointer": bank.bank_ptr.clone()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        bank = self.criterion.memory_bank
        bank.bank.copy_(state["queue"])
        bank.bank_ptr.copy_(state["queue_pointer"])
