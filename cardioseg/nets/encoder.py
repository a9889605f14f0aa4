"""The U-Net's encoder: a torchvision-layout ResNet that returns five feature maps.

MONAI's own ResNet-18/34 encoders use the parameter-free "A" shortcut (strided pooling, then zero channels
concatenated, on ``.data``): torchvision/timm ImageNet weights do not fit it, and tracing bakes the
shortcut of the example input into the graph as a constant (wrong outputs, batch size fixed). This encoder
uses the "B" shortcut (1x1 conv + batch norm, no bias) at every depth, which is torchvision's layout key for
key, so ImageNet, BYOL and our own weights load without renaming and export has no shape-dependent code.

Its own module, below both ``unet`` (which builds the U-Net around it) and ``weights`` (which loads into it),
so neither imports the other's internals in a cycle; it is also the backbone of every pretraining method.
"""

from __future__ import annotations

from monai.networks.blocks import BaseEncoder
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from monai.networks.nets.resnet import ResNet, ResNetFeatures, get_inplanes

from ..errors import CardiosegError

SIZE_DIVISOR = 32

# name: (block, blocks per stage, channels of the five feature maps, full resolution first)
_ARCHS = {
    "resnet18": ("basic", [2, 2, 2, 2], (64, 64, 128, 256, 512)),
    "resnet34": ("basic", [3, 4, 6, 3], (64, 64, 128, 256, 512)),
    "resnet50": ("bottleneck", [3, 4, 6, 3], (64, 256, 512, 1024, 2048)),
}
ENCODERS = tuple(_ARCHS)
BACKBONE_PREFIX = "cardioseg-"  # our names in MONAI's FlexibleUNet registry, beside its own "resnet18" ...


class ResNetEncoder(ResNet, BaseEncoder):
    """A ResNet without pooling/classifier that returns five feature maps (strides 2, 4, 8, 16, 32).

    State-dict keys are torchvision's (``conv1.weight``, ``layer1.0.conv1.weight``, ...) minus ``fc.*``.
    """

    def __init__(
        self,
        model_name: str = "resnet50",
        spatial_dims: int = 2,
        in_channels: int = 1,
        pretrained: bool = False,
    ) -> None:
        if model_name not in _ARCHS:
            raise CardiosegError(f"unknown encoder {model_name!r}; choose one of {', '.join(ENCODERS)}")
        if pretrained:
            # FlexibleUNet's encoder interface passes this flag; weights come from load_encoder_weights.
            raise CardiosegError("pass a weight source to build_unet(pretrained=...) instead of pretrained=True")
        block, layers, channels = _ARCHS[model_name]
        super().__init__(
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        self.name = model_name
        self.out_channels = channels
        self.feature_dim = channels[-1]

    # The same five-feature forward as MONAI's own FlexibleUNet ResNet encoder.
    forward = ResNetFeatures.forward

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return [BACKBONE_PREFIX + name for name in _ARCHS]

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [{"model_name": name, "spatial_dims": 2, "in_channels": 1, "pretrained": False} for name in _ARCHS]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        return [arch[2] for arch in _ARCHS.values()]

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [5] * len(_ARCHS)


FLEXUNET_BACKBONE.register_class(ResNetEncoder)


def build_encoder(name: str = "resnet50", in_channels: int = 1) -> ResNetEncoder:
    """The U-Net's encoder on its own (``.feature_dim`` channels at stride 32), e.g. as an SSL backbone."""
    return ResNetEncoder(name, spatial_dims=2, in_channels=in_channels)


def encoder_of(model) -> ResNetEncoder:
    """The ResNet encoder of a U-Net built here, or the encoder itself."""
    found = getattr(model, "encoder", model)
    if not isinstance(found, ResNetEncoder):
        raise CardiosegError(f"{type(model).__name__} has no cardioseg ResNet encoder (build it with build_unet)")
    return found
