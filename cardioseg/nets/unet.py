"""The segmentation network: MONAI's FlexibleUNet over the torchvision-layout ResNet encoder (``encoder.py``).

Input height and width must be multiples of ``SIZE_DIVISOR`` (32): other sizes fail in the decoder's
concatenation, except 32k-1, which silently comes out one pixel larger. Pad first (MONAI ``DivisiblePad``).
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import FlexibleUNet

from ..errors import CardiosegError
from .encoder import BACKBONE_PREFIX, ENCODERS, SIZE_DIVISOR, build_encoder
from .weights import load_pretrained

__all__ = ["ENCODERS", "SIZE_DIVISOR", "build_encoder", "build_unet"]  # inference and export import them here


def build_unet(
    encoder: str = "resnet50",
    in_channels: int = 1,
    out_channels: int = 4,
    pretrained: Any = None,
    **unet_kwargs: Any,
) -> FlexibleUNet:
    """A 2D U-Net, logits ``(B, out_channels, H, W)``; usable as a bundle ``_target_``.

    ``pretrained`` is any source ``load_pretrained`` accepts (None: random): encoder weights, or a
    whole-U-Net pretraining checkpoint (encoder and decoder). ``unet_kwargs`` go to ``FlexibleUNet``
    (``decoder_channels``, ``dropout``, ``upsample``, ...).
    """
    if encoder not in ENCODERS:
        raise CardiosegError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    # is_pad=False: MONAI's padding never rescues a size here (see the module docstring) and would put a
    # shape-dependent Python branch into every trace.
    unet_kwargs.setdefault("is_pad", False)
    net = FlexibleUNet(in_channels, out_channels, backbone=BACKBONE_PREFIX + encoder, **unet_kwargs)
    load_pretrained(net, pretrained)
    return net
