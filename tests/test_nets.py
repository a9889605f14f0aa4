"""The U-Net and its encoder: shapes, the encoder as a backbone, and use from a bundle config."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from cardioseg.errors import CardiosegError
from cardioseg.nets import ENCODERS, ResNetEncoder, build_encoder, build_unet


@pytest.mark.parametrize("encoder", ENCODERS)
def test_unet_gives_four_class_logits_at_input_size(encoder):
    net = build_unet(encoder).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 64, 96)).shape == (2, 4, 64, 96)


def test_encoder_is_the_unets_and_reports_its_feature_dim():
    encoder = build_encoder("resnet18", in_channels=1)
    assert type(encoder) is type(build_unet("resnet18").encoder) is ResNetEncoder
    features = encoder(torch.randn(2, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [
        (64, 32, 32),
        (64, 16, 16),
        (128, 8, 8),
        (256, 4, 4),
        (encoder.feature_dim, 2, 2),
    ]
    assert build_encoder("resnet50").feature_dim == 2048


def test_encoder_has_torchvision_layout_without_classifier():
    """MONAI's own resnet18 has parameter-free 'A' shortcuts; ours has torchvision's 1x1-conv ones."""
    import torchvision

    keys = set(build_encoder("resnet18").state_dict())
    assert keys == set(torchvision.models.resnet18(weights=None).state_dict()) - {"fc.weight", "fc.bias"}


def test_sizes_that_are_not_multiples_of_32_fail_loudly():
    net = build_unet("resnet18").eval()
    with torch.no_grad(), pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        net(torch.randn(1, 1, 80, 80))


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(CardiosegError, match="resnet18, resnet34, resnet50"):
        build_unet("resnet101")


def test_bundle_config_can_build_it():
    parser = ConfigParser(
        {"network_def": {"_target_": "cardioseg.nets.build_unet", "encoder": "resnet18", "pretrained": None}}
    )
    net = parser.get_parsed_content("network_def")
    assert isinstance(net.encoder, ResNetEncoder) and net.encoder.name == "resnet18"


def test_decoder_upsamples_in_the_autocast_dtype_with_unchanged_values(monkeypatch):
    """CUDA autocast would run the decoder's nearest upsampling in float32; ours turns autocast off around
    it (the CPU's autocast keeps bfloat16 anyway, so the test watches autocast's state at the call)."""
    torch.manual_seed(0)
    net = build_unet("resnet18").eval()
    torch.manual_seed(0)
    monais = build_unet("resnet18", upsample_in_input_dtype=False).eval()
    states = []
    interpolate = torch.nn.functional.interpolate

    def watched(x, *args, **kwargs):
        states.append((torch.is_autocast_enabled("cpu"), x.dtype))
        return interpolate(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "interpolate", watched)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(x)
        assert states == [(False, torch.bfloat16)] * 5
        states.clear()
        monais(x)
        assert states == [(True, torch.bfloat16)] * 5
    with torch.no_grad():
        assert torch.equal(net(x), monais(x))


def test_decoder_blocks_compile_as_one_graph_with_monais_weights_and_outputs():
    """MONAI's UpCat asks torch.jit.isinstance, which torch.compile will not trace: each decoder block broke
    the compiled graph. Ours traces whole, loads a plain MONAI FlexibleUNet's weights key for key, gives its
    outputs, and scripts."""
    from monai.networks.nets import FlexibleUNet

    net = build_unet("resnet18").eval()
    monais = FlexibleUNet(1, 4, backbone="cardioseg-resnet18", is_pad=False).eval()
    monais.load_state_dict(net.state_dict())  # strict: the same keys
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), monais(x))
        assert torch.equal(torch.jit.script(net)(x), net(x))
    explained = torch._dynamo.explain(net)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    assert torch._dynamo.explain(monais)(x).graph_break_count > 0  # what the block avoids
