"""The segmentation network: MONAI's FlexibleUNet over the torchvision-layout ResNet encoder (``encoder.py``).

Input height and width must be multiples of ``SIZE_DIVISOR`` (32): other sizes fail in the decoder's
concatenation, except 32k-1, which silently comes out one pixel larger. Pad first (MONAI ``DivisiblePad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import FlexibleUNet

from ..errors import CardiosegError
from .encoder import BACKBONE_PREFIX, ENCODERS, SIZE_DIVISOR, build_encoder
from .weights import load_pretrained

__all__ = [  # inference and export import them here
    "DECODER_CHANNELS",
    "ENCODERS",
    "SIZE_DIVISOR",
    "build_encoder",
    "build_unet",
    "decoder_channels_of",
]

DECODER_CHANNELS = (256, 128, 64, 32, 16)  # FlexibleUNet's default, coarsest block first


def build_unet(
    encoder: str = "resnet50",
    in_channels: int = 1,
    out_channels: int = 4,
    pretrained: Any = None,
    decoder_channels: Sequence[int] | None = None,
    **unet_kwargs: Any,
) -> FlexibleUNet:
    """A 2D U-Net, logits ``(B, out_channels, H, W)``; usable as a bundle ``_target_``.

    ``pretrained`` is any source ``load_pretrained`` accepts (None: random): encoder weights, or a
    whole-U-Net pretraining checkpoint (encoder and decoder). ``decoder_channels`` (None:
    ``DECODER_CHANNELS``) are the output channels of the 5 decoder blocks, coarsest first; ``unet_kwargs``
    go to ``FlexibleUNet`` (``dropout``, ``upsample``, ...).
    """
    channels = DECODER_CHANNELS if decoder_channels is None else tuple(int(c) for c in decoder_channels)
    if len(channels) != len(DECODER_CHANNELS) or min(channels) < 1:
        raise CardiosegError(f"decoder_channels must be {len(DECODER_CHANNELS)} positive whole numbers, got {channels}")
    if encoder not in ENCODERS:
        raise CardiosegError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    # is_pad=False: MONAI's padding never rescues a size here (see the module docstring) and would put a
    # shape-dependent Python branch into every trace.
    unet_kwargs.setdefault("is_pad", False)
    backbone = BACKBONE_PREFIX + encoder
    net = FlexibleUNet(in_channels, out_channels, backbone=backbone, decoder_channels=channels, **unet_kwargs)
    load_pretrained(net, pretrained)
    return net


def decoder_channels_of(state: dict[str, torch.Tensor]) -> tuple[int, ...] | None:
    """The ``decoder_channels`` a U-Net state dict was built with (None: it holds no decoder), so a model
    is rebuilt as it was trained."""
    channels = {}
    for key, value in state.items():
        parts = key.split(".")  # decoder.blocks.<i>.convs.conv_1.conv.weight: the block's output conv
        if parts[:2] == ["decoder", "blocks"] and parts[3:] == ["convs", "conv_1", "conv", "weight"]:
            channels[int(parts[2])] = int(value.shape[0])
    return tuple(channels[i] for i in sorted(channels)) or None
