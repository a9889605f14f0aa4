"""The U-Net, its ResNet encoder, and pretrained-weight import."""

from .encoder import ENCODERS, SIZE_DIVISOR, ResNetEncoder, build_encoder, encoder_of
from .unet import DECODER_CHANNELS, build_unet, decoder_channels_of
from .weights import LoadedWeights, is_weights_name, load_encoder_weights, load_pretrained

__all__ = [
    "DECODER_CHANNELS",
    "ENCODERS",
    "SIZE_DIVISOR",
    "LoadedWeights",
    "ResNetEncoder",
    "build_encoder",
    "build_unet",
    "decoder_channels_of",
    "encoder_of",
    "is_weights_name",
    "load_encoder_weights",
    "load_pretrained",
]
