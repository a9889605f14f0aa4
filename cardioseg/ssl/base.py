"""What every pretraining method is: networks, a loss over views, and the weights fine-tuning takes.

One method is one small class over this base, as solo-learn's ``methods/`` are; the heads, losses and
momentum updates come from lightly. A method's ``backbone`` is the U-Net's own ResNet encoder
(``cardioseg.nets.build_encoder``, one input channel), so what it learns loads into fine-tuning's U-Net
with no key surgery: ``transferred_state`` names tensors as the U-Net does (``encoder.*``, and
``decoder.*`` for whole-U-Net methods).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ..nets import LoadedWeights, build_encoder, load_encoder_weights


class PretrainMethod(nn.Module):
    """A pretraining method. Subclasses set the class attributes and implement the three methods.

    ``views``: how many random views of each image a step gets; ``scope``: what fine-tuning takes
    (``encoder``, or ``unet`` for encoder and decoder); ``branch``: which network that is (``online``, the
    one the optimiser trains, or ``target``, a momentum copy of it); ``needs_labels``: supervised.
    """

    name: ClassVar[str]
    views: ClassVar[int] = 2
    scope: ClassVar[str] = "encoder"
    branch: ClassVar[str] = "online"
    needs_labels: ClassVar[bool] = False

    def __init__(self, encoder: str):
        super().__init__()
        self.encoder_name = encoder

    @classmethod
    def check_image_size(cls, options: dict[str, Any], image_size: int) -> None:
        """Refuse (a SettingError) options that do not fit images of ``image_size`` pixels."""

    def training_loss(
        self, views: list[torch.Tensor], labels: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """The loss of one step; ``generator`` (CPU, seeded per batch) for any random draw of its own."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after each optimiser step (1-based ``step`` of ``total_steps``)."""

    def transferred_state(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint holds, under the U-Net's names."""
        raise NotImplementedError

    def load_init(self, source: Any) -> LoadedWeights | None:
        """Start from pretrained weights (any source ``cardioseg.nets`` loads); None keeps the random ones."""
        raise NotImplementedError


class EncoderMethod(PretrainMethod):
    """A method that trains the encoder alone, on its pooled features (all but masked image modelling)."""

    def __init__(self, encoder: str):
        super().__init__(encoder)
        self.backbone = build_encoder(encoder)

    @staticmethod
    def pooled(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Global average of the encoder's deepest (stride 32) features: ``(B, feature_dim)``."""
        return backbone(images)[-1].mean(dim=(2, 3))

    def transferred_encoder(self) -> nn.Module:
        """The encoder fine-tuning takes."""
        return self.backbone

    def transferred_state(self) -> dict[str, torch.Tensor]:
        return {f"encoder.{key}": value for key, value in self.transferred_encoder().state_dict().items()}

    def load_init(self, source: Any) -> LoadedWeights | None:
        return load_encoder_weights(self.backbone, source)


class MomentumMethod(EncoderMethod):
    """A method with a target network: a copy of the online backbone and projection head that follows
    them as an exponential moving average (lightly's ``update_momentum``), its momentum rising from
    ``momentum_start`` to ``momentum_end`` on a cosine over all steps (lightly's ``cosine_schedule``).
    The target backbone is what fine-tuning takes, as in the paper (and solo-learn, BYOL-ImageNet)."""

    branch = "target"

    def __init__(self, encoder: str, momentum_start: float, momentum_end: float):
        super().__init__(encoder)
        self.momentum_start, self.momentum_end = float(momentum_start), float(momentum_end)

    def make_target(self) -> None:
        """Copy the online backbone and ``projection_head`` (call once both exist) and freeze the copies."""
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)

    def momentum(self, step: int, total_steps: int) -> float:
        return cosine_schedule(step - 1, total_steps, self.momentum_start, self.momentum_end)

    def after_step(self, step: int, total_steps: int) -> None:
        m = self.momentum(step, total_steps)
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)

    def target_projection(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.projection_head_momentum(self.pooled(self.backbone_momentum, images)).detach()

    def transferred_encoder(self) -> nn.Module:
        return self.backbone_momentum

    def load_init(self, source: Any) -> LoadedWeights | None:
        loaded = super().load_init(source)
        self.backbone_momentum.load_state_dict(self.backbone.state_dict())  # the target starts where online does
        return loaded
