"""The segmentation network: MONAI's FlexibleUNet over the torchvision-layout ResNet encoder (``encoder.py``).

Input height and width must be multiples of ``SIZE_DIVISOR`` (32): other sizes fail in the decoder's
concatenation, except 32k-1, which silently comes out one pixel larger. Pad first (MONAI ``DivisiblePad``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from monai.networks.nets import FlexibleUNet
from monai.networks.nets.basic_unet import UpCat

from ..errors import CardiosegError
from ..settings import is_none
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


class NearestUpsampleInInputDtype(torch.nn.Module):
    """MONAI's nearest ``nn.Upsample``, run in its input's precision also under CUDA autocast.

    CUDA autocast runs every upsampling in float32. For nearest neighbours, a copy, that changes no value and
    costs a cast before, four times the input's bytes in float32, and a float32 concatenation with the skip
    after: 3.8 ms of a 41.6 ms ResNet-50 training step on an H200 (the committed step profile). Gradients are
    equal too: both ways sum the same bfloat16 values and round once. MONAI's ``UpSample`` offers no dtype
    choice, hence this wrapper. TorchScript cannot enter autocast contexts: a scripted model upsamples as
    MONAI does.
    """

    def __init__(self, upsample: torch.nn.Upsample):
        super().__init__()
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.upsample(x)
        return self._outside_autocast(x)

    @torch.jit.unused
    def _outside_autocast(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            return self.upsample(x)
        with torch.autocast(x.device.type, enabled=False):
            return self.upsample(x)


class DecoderBlock(torch.nn.Module):
    """MONAI's ``UpCat`` (upsample, concatenate the encoder's skip, two convolutions), whose ``forward``
    torch.compile can trace: UpCat's asks ``torch.jit.isinstance``, which Dynamo will not trace, so each of
    the 5 decoder blocks broke the compiled network (11 graphs, none fused across a block). It holds
    UpCat's own ``upsample`` and ``convs``: the same weights, state-dict keys and arithmetic. UpCat's
    padding branch (``is_pad``) is not here: ``build_unet`` keeps MONAI's block when it is on.
    """

    def __init__(self, upcat: UpCat):
        super().__init__()
        self.upsample = upcat.upsample
        self.convs = upcat.convs

    # Optional, not "| None": TorchScript reads this annotation.
    def forward(self, x: torch.Tensor, x_e: Optional[torch.Tensor]) -> torch.Tensor:  # noqa: UP045
        x_0 = self.upsample(x)
        if x_e is None:
            return self.convs(x_0)
        return self.convs(torch.cat([x_e, x_0], dim=1))


def _traceable_decoder_blocks(net: FlexibleUNet) -> None:
    blocks = net.decoder.blocks
    for i, block in enumerate(blocks):
        if type(block) is UpCat and not block.is_pad:
            blocks[i] = DecoderBlock(block)


def _nearest_upsampling_in_input_dtype(net: torch.nn.Module) -> None:
    for block in list(net.modules()):
        up = getattr(block, "upsample_non_trainable", None)  # MONAI UpSample's child in "nontrainable" mode
        if type(up) is torch.nn.Upsample and up.mode == "nearest":
            block.upsample_non_trainable = NearestUpsampleInInputDtype(up)


def build_unet(
    encoder: str = "resnet50",
    in_channels: int = 1,
    out_channels: int = 4,
    pretrained: Any = None,
    decoder_channels: Sequence[int] | None = None,
    upsample_in_input_dtype: bool = True,
    **unet_kwargs: Any,
) -> FlexibleUNet:
    """A 2D U-Net, logits ``(B, out_channels, H, W)``; usable as a bundle ``_target_``.

    ``pretrained`` is any source ``load_pretrained`` accepts (None: random): encoder weights, or a
    whole-U-Net pretraining checkpoint (encoder and decoder). ``decoder_channels`` (None:
    ``DECODER_CHANNELS``) are the output channels of the 5 decoder blocks, coarsest first;
    ``upsample_in_input_dtype`` keeps the decoder's nearest upsampling in bfloat16 under autocast
    (``NearestUpsampleInInputDtype``; False: MONAI's, kept to measure against). ``unet_kwargs`` go to
    ``FlexibleUNet`` (``dropout``, ``upsample``, ...).
    """
    channels = DECODER_CHANNELS if is_none(decoder_channels) else tuple(int(c) for c in decoder_channels)
    if len(channels) != len(DECODER_CHANNELS) or min(channels) < 1:
        raise CardiosegError(f"decoder_channels must be {len(DECODER_CHANNELS)} positive whole numbers, got {channels}")
    if encoder not in ENCODERS:
        raise CardiosegError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    # is_pad=False: MONAI's padding never rescues a size here (see the module docstring) and would put a
    # shape-dependent Python branch into every trace.
    unet_kwargs.setdefault("is_pad", False)
    backbone = BACKBONE_PREFIX + encoder
    net = FlexibleUNet(in_channels, out_channels, backbone=backbone, decoder_channels=channels, **unet_kwargs)
    _traceable_decoder_blocks(net)
    if upsample_in_input_dtype:
        _nearest_upsampling_in_input_dtype(net)
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
