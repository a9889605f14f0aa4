"""The U-Net, its ResNet encoder, and pretrained-weight import."""

from .unet import ENCODERS, SIZE_DIVISOR, ResNetEncoder, build_encoder, build_unet, encoder_of
from .weights import LoadedWeights, load_encoder_weights

__all__ = [
    "ENCODERS",
    "SIZE_DIVISOR",
    "LoadedWeights",
    "ResNetEncoder",
    "build_encoder",
    "build_unet",
    "encoder_of",
    "load_encoder_weights",
]
