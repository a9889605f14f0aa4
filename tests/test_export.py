"""ONNX export at a dynamic batch for every encoder, and TorchScript for ``monai.bundle ckpt_export``."""

from __future__ import annotations

import shutil

import onnx
import pytest
import torch
from torch import nn

from cardioseg.errors import CardiosegError
from cardioseg.export import INPUT_NAME, export_onnx
from cardioseg.nets import build_unet

SIZE = (64, 64)


def with_random_bn_statistics(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random batch-norm statistics and affines: at initialisation they are 0/1 and the logits are ~0.05,
    small enough to hide a wrong graph (MONAI's traced ResNet-18 shortcut differed by only 5e-5 there)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
    return net.eval()


@pytest.fixture(scope="module")
def resnet18_export(tmp_path_factory):
    net = with_random_bn_statistics(build_unet("resnet18")).train()
    result = export_onnx(net, tmp_path_factory.mktemp("onnx") / "unet.onnx", spatial_size=SIZE)
    assert net.training  # export works on an eval-mode copy
    return net.eval(), result


def check_export(net, result):
    assert set(result.max_abs_diff) == {1, 3}
    assert max(result.max_abs_diff.values()) < 1e-3, result.max_abs_diff
    with torch.no_grad():
        logits = net(torch.randn(3, 1, *SIZE))
    assert logits.shape == (3, 4, *SIZE)
    scale = logits.abs().max().item()
    assert scale > 0.1  # the tolerance above is small against the logits compared
    graph = onnx.load(result.path).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert graph.input[0].name == INPUT_NAME and batch_dim.dim_param and not batch_dim.dim_value
    print(f"{result.path.name}: max abs diff {result.max_abs_diff}, logit scale {scale:.2f}")


def test_resnet18_export_matches_pytorch_at_batch_1_and_3(resnet18_export):
    check_export(*resnet18_export)


@pytest.mark.parametrize("encoder", ["resnet34", "resnet50"])
def test_deeper_encoders_export_matches_pytorch(tmp_path, encoder):
    net = with_random_bn_statistics(build_unet(encoder))
    check_export(net, export_onnx(net, tmp_path / f"{encoder}.onnx", spatial_size=SIZE))


def test_an_export_that_does_not_reproduce_pytorch_is_not_kept(tmp_path, monkeypatch, resnet18_export):
    _, good = resnet18_export

    class OtherNetworksGraph:
        def save(self, path, external_data):
            shutil.copyfile(good.path, path)

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: OtherNetworksGraph())
    other = with_random_bn_statistics(build_unet("resnet18"), seed=1)
    with pytest.raises(CardiosegError, match="differs from PyTorch"):
        export_onnx(other, tmp_path / "unet.onnx", spatial_size=SIZE, check_batches=(1,))
    assert list(tmp_path.iterdir()) == []


def test_sizes_not_multiple_of_32_are_refused(tmp_path):
    with pytest.raises(CardiosegError, match="multiples of 32"):
        export_onnx(build_unet("resnet18"), tmp_path / "unet.onnx", spatial_size=(64, 80))


def test_torchscript_script_round_trip(tmp_path):
    """``monai.bundle ckpt_export`` scripts the network by default (``torch.jit.script``)."""
    net = with_random_bn_statistics(build_unet("resnet18"))
    torch.jit.script(net).save(tmp_path / "model.ts")
    loaded = torch.jit.load(tmp_path / "model.ts")
    images = torch.randn(3, 1, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), net(images))
