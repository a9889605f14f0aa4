"""Which weights fine-tuning trains: all of them, or the decoder and head over a frozen encoder.

A frozen encoder is the frozen-encoder probe of pretrained features (how good are they without being
changed?) and a guard against overfitting a pretrained encoder to very few labels. Only the encoder's
weights are frozen: its batch-norm statistics still follow the training data, as the rest of the network's
do, so a random encoder, the probe's baseline, is normalised as fairly as a pretrained one. The saved
model keeps every key, so evaluation, export and inference read it as any other.
"""

from __future__ import annotations

import torch

from ..settings import as_flag

__all__ = ["trainable_parameters"]


def trainable_parameters(network: torch.nn.Module, freeze_encoder: bool | str = False) -> list[torch.nn.Parameter]:
    """The parameters for the optimizer; with ``freeze_encoder`` the encoder's stop requiring gradients
    (so no gradient is computed for them at all, and backward stops at the skip connections)."""
    if as_flag(freeze_encoder, "freeze_encoder"):
        network.encoder.requires_grad_(False)
    return [p for p in network.parameters() if p.requires_grad]
