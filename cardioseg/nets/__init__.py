"""The U-Net, its ResNet encoder, and pretrained-weight import."""

from .encoder import ENCODERS, SIZE_DIVISOR, ResNetEncoder, build_encoder, encoder_of
from .unet import build_unet
from .weights import LoadedWeights, is_weights_name, load_encoder_weights, load_pretrained

__all__ = [
    "ENCODERS",
    "SIZE_DIVISOR",
    "LoadedWeights",
    "ResNetEncoder",
    "build_encoder",
    "build_unet",
    "encoder_of",
    "is_weights_name",
    "load_encoder_weights",
    "load_pretrained",
]
