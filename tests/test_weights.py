"""Pretrained weights into the encoder from every supported format, and the project's checkpoint file."""

from __future__ import annotations

import pathlib
import urllib.error

import pytest
import torch
import torchvision

from cardioseg.checkpoint import file_sha256, load_checkpoint, save_checkpoint
from cardioseg.errors import CardiosegError, DataError
from cardioseg.nets import build_encoder, build_unet, load_encoder_weights


@pytest.fixture(scope="module")
def tv18():
    """A torchvision ResNet-18 state dict (random, as no weights can be downloaded here)."""
    torch.manual_seed(1)
    return torchvision.models.resnet18(weights=None).state_dict()


def assert_loaded(encoder, expected: dict):
    """Every encoder tensor equals the file's; the RGB stem arrives summed over colour."""
    got = encoder.state_dict()
    for key, value in expected.items():
        if key in ("fc.weight", "fc.bias"):
            continue
        if key == "conv1.weight":
            value = value.sum(dim=1, keepdim=True)
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6, msg=key)


def save(tmp_path, obj, name="weights.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_torchvision_file_into_unet(tmp_path, tv18):
    net = build_unet("resnet18")
    loaded = load_encoder_weights(net, save(tmp_path, tv18))
    assert_loaded(net.encoder, tv18)
    assert loaded.prefix == "" and loaded.sha256 == file_sha256(tmp_path / "weights.pth")


def test_timm_file_without_batch_counters(tmp_path, tv18):
    timm_style = {k: v for k, v in tv18.items() if not k.endswith("num_batches_tracked")}
    encoder = build_encoder("resnet18")
    load_encoder_weights(encoder, save(tmp_path, timm_style))
    assert_loaded(encoder, timm_style)


def perturbed(state: dict, by: float) -> dict:
    return {k: v + by if v.is_floating_point() else v for k, v in state.items()}


@pytest.mark.parametrize(
    "layout, prefix",
    [
        ("flat_module", "target_backbone"),  # {"state_dict": {"module.target_backbone.conv1.weight": ...}}
        ("nested", "target_backbone"),  # the paper's BYOL-ImageNet file: {"target_backbone": {"module.*"}}
        ("solo_learn", "momentum_backbone"),  # Lightning: "backbone." online, "momentum_backbone." target
        ("lightly", "backbone_momentum"),  # lightly's examples: "backbone" and "backbone_momentum"
    ],
)
def test_byol_checkpoints_give_the_target_backbone(tmp_path, tv18, layout, prefix):
    target, online = tv18, perturbed(tv18, 1.0)
    head = {"projector.0.weight": torch.ones(4, 512)}
    if layout == "flat_module":
        state = {f"module.target_backbone.{k}": v for k, v in target.items()}
        state |= {f"module.online_backbone.{k}": v for k, v in online.items()} | head
        obj = {"state_dict": state, "epoch": 3}
    elif layout == "nested":
        obj = {
            "target_backbone": {f"module.{k}": v for k, v in target.items()},
            "online_backbone": {f"module.{k}": v for k, v in online.items()},
        }
    else:
        state = {f"{prefix}.{k}": v for k, v in target.items()}
        state |= {f"backbone.{k}": v for k, v in online.items()} | head
        obj = {"state_dict": state} if layout == "solo_learn" else state
    encoder = build_encoder("resnet18")
    assert load_encoder_weights(encoder, save(tmp_path, obj)).prefix == prefix
    assert_loaded(encoder, target)


def test_own_checkpoint_round_trip_and_into_encoder(tmp_path):
    made = build_encoder("resnet18")
    path = tmp_path / "pretrained.pt"
    sha = save_checkpoint(
        path,
        made.state_dict(),
        method="byol",
        source="random",
        epoch=7,
        encoder="resnet18",
        extra={"lr": 0.1},
    )
    state, meta = load_checkpoint(path)
    assert sha == meta["sha256"] == file_sha256(path)
    assert meta["method"] == "byol" and meta["epoch"] == 7 and meta["encoder"] == "resnet18"
    assert meta["extra"] == {"lr": 0.1} and meta["torch"] == torch.__version__
    assert state.keys() == made.state_dict().keys()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it

    net = build_unet("resnet18")
    loaded = load_encoder_weights(net, path)
    assert loaded.meta["method"] == "byol" and loaded.sha256 == sha
    for key, value in made.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[key], value), key


def test_own_checkpoint_for_another_encoder_is_refused(tmp_path):
    path = tmp_path / "r50.pt"
    save_checkpoint(path, {}, method="byol", source="random", epoch=0, encoder="resnet50")
    with pytest.raises(DataError, match="holds resnet50 weights; the network's encoder is resnet18"):
        load_encoder_weights(build_encoder("resnet18"), path)


def test_encoder_from_a_whole_unet_state_dict(tmp_path):
    trained = build_unet("resnet18")
    encoder = build_encoder("resnet18")
    load_encoder_weights(encoder, save(tmp_path, trained.state_dict(), "model.pt"))
    for key, value in trained.encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value), key


def test_weights_that_do_not_fit_are_refused_with_the_keys(tmp_path):
    r50 = torchvision.models.resnet50(weights=None).state_dict()
    encoder = build_encoder("resnet18")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(DataError) as caught:
        load_encoder_weights(encoder, save(tmp_path, r50, "resnet50.pth"))
    message = str(caught.value)
    assert "resnet50.pth" in message and "does not fit the resnet18 encoder" in message
    assert "missing" not in message  # every resnet18 name exists in resnet50
    assert "unexpected: layer1.0.conv3.weight" in message and "more)" in message
    assert "shape mismatches: layer1.0.conv1.weight (64, 64, 1, 1) vs (64, 64, 3, 3)" in message
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())  # untouched

    missing = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if "layer4" not in k}
    with pytest.raises(DataError, match=r"\d+ missing: layer4\.0\.conv1\.weight"):
        load_encoder_weights(encoder, save(tmp_path, missing, "partial.pth"))


def test_torchvision_by_name_without_network_says_to_pass_a_file(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached copy
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    for name in ("imagenet", "torchvision:resnet18"):
        with pytest.raises(CardiosegError, match="ResNet18_Weights.IMAGENET1K_V1 .*pass its path"):
            load_encoder_weights(build_encoder("resnet18"), name)
    with pytest.raises(CardiosegError, match="unknown torchvision weights"):
        load_encoder_weights(build_encoder("resnet18"), "torchvision:resnet18:NOPE")


def test_bad_files_are_data_errors_naming_the_file(tmp_path):
    encoder = build_encoder("resnet18")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    unsafe = save(tmp_path, {"conv1.weight": torch.zeros(1), "where": pathlib.PurePosixPath("/x")}, "unsafe.pth")
    for path, problem in [
        (corrupt, "corrupt.pth: "),
        (tmp_path / "absent.pth", "absent.pth: not found"),
        (unsafe, r"unsafe.pth: refused by torch.load\(weights_only=True\).*PurePosixPath"),
        (save(tmp_path, [torch.zeros(1)], "list.pth"), "list.pth: holds a list"),
    ]:
        with pytest.raises(DataError, match=problem):
            load_encoder_weights(encoder, path)


def test_none_keeps_random_weights():
    encoder = build_encoder("resnet18")
    before = encoder.conv1.weight.clone()
    assert load_encoder_weights(encoder, None) is None
    assert torch.equal(encoder.conv1.weight, before)


def test_build_unet_loads_pretrained(tmp_path, tv18):
    net = build_unet("resnet18", pretrained=str(save(tmp_path, tv18)))
    assert_loaded(net.encoder, tv18)


def test_weights_of_a_diverged_run_are_refused(tmp_path):
    state = build_encoder("resnet18").state_dict()
    state["layer2.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    save_checkpoint(path, state, method="byol", source="random", epoch=1, encoder="resnet18")
    with pytest.raises(DataError, match=r"holds NaN or infinite weights \(layer2.0.conv1.weight\): .* diverged"):
        load_encoder_weights(build_encoder("resnet18"), path)


def test_a_resume_state_is_named_as_one(tmp_path):
    path = save(tmp_path, {"method": build_encoder("resnet18").state_dict(), "optimizer": {}, "trainer": {}}, "last.pt")
    with pytest.raises(DataError, match=r"is a run's resume state \(last.pt\): pass its models/final.pt or model.pt"):
        load_encoder_weights(build_encoder("resnet18"), path)
