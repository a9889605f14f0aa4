"""ONNX export at a dynamic batch for every encoder, TorchScript for ``monai.bundle ckpt_export``, and
``cardioseg export``: a bundle folder with what ships, built so that a failure changes nothing in the run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from bundle_helpers import shared_export
from torch import nn

from cardioseg.bundle import BUNDLE_NAME, check_large_files, package_run
from cardioseg.errors import CardiosegError, DataError
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


# --- cardioseg export: the bundle that ships ---------------------------------------------------------


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory, phantom_dir) -> Path:
    return shared_export(tmp_path_factory, phantom_dir)


@pytest.fixture
def run_copy(exported, tmp_path) -> Path:
    """A copy of the trained run (without its export) that a test may change."""
    return Path(shutil.copytree(exported.parent, tmp_path / "run", ignore=shutil.ignore_patterns(BUNDLE_NAME)))


def test_an_export_holds_what_ships(exported):
    files = {str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file()}
    assert files == {
        "LICENSE",
        "large_files.yml",
        "data.json",
        "configs/metadata.json",
        "configs/inference.json",
        "configs/evaluate.json",
        "configs/train.json",
        "configs/multi_gpu_train.json",
        "configs/logging.conf",
        "docs/README.md",
        "docs/data_license.txt",
        "schema/meta_schema_20240725.json",
        "models/model.pt",
        "models/model.ts",
        "models/model.onnx",
    }  # not last.pt, tensorboard/, metrics.jsonl, eval/ or a lock file
    assert json.loads((exported / "configs" / "inference.json").read_text())["image_size"] == 64
    metadata = json.loads((exported / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [64, 64]
    assert metadata["training"]["encoder"] == "resnet18" and "model_files" not in metadata
    assert sorted(check_large_files(exported)) == ["models/model.onnx", "models/model.pt", "models/model.ts"]

    import onnxruntime

    image = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(exported / "models" / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: image})
    scripted = torch.jit.load(str(exported / "models" / "model.ts"))
    state = torch.load(exported / "models" / "model.pt", map_location="cpu", weights_only=True)
    network = build_unet("resnet18")
    network.load_state_dict(state)  # a plain state dict, strict
    with torch.no_grad():
        ts_logits = scripted(torch.from_numpy(image)).numpy()
        pt_logits = network.eval()(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(onnx_logits, ts_logits, atol=1e-3)
    np.testing.assert_allclose(pt_logits, ts_logits, atol=1e-4)


def test_export_again_replaces_the_previous_export(run_copy, exported):
    previous = Path(shutil.copytree(exported, run_copy / BUNDLE_NAME))
    (previous / "stale.txt").write_text("left from an older export\n")
    again = package_run(run_copy)
    assert again["bundle_dir"] == previous and not (previous / "stale.txt").exists()
    assert {name: info["sha256"] for name, info in again["model_files"].items()} == check_large_files(previous)
    other = run_copy.parent / "elsewhere"
    other.mkdir()
    (other / "notes.txt").write_text("not an export\n")
    with pytest.raises(DataError, match="not empty"):
        package_run(run_copy, other)  # a folder that is not an earlier export is never replaced unasked


def _no_summary(run_dir: Path, monkeypatch) -> Path:
    path = run_dir / "eval" / "evaluation.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"volumes": []}))
    return path


def _other_depth(run_dir: Path, monkeypatch) -> Path:
    path = run_dir / "models" / "model.pt"
    torch.save(build_unet("resnet34").state_dict(), path)
    return path


def _onnx_fails(run_dir: Path, monkeypatch) -> Path:
    """A failure late in the export, after configs and model.pt were staged."""
    import cardioseg.export

    def fail(model, path, **kwargs):
        raise CardiosegError(f"{path}: ONNX Runtime differs from PyTorch by 1 (> 0.001); export not kept")

    monkeypatch.setattr(cardioseg.export, "export_onnx", fail)
    return Path("model.onnx")


def _no_record(run_dir: Path, monkeypatch) -> Path:
    path = run_dir / "data.json"
    path.unlink()
    return path


@pytest.mark.parametrize("problem", [_no_summary, _other_depth, _onnx_fails, _no_record])
def test_a_failed_export_changes_nothing_in_the_run(run_copy, monkeypatch, problem):
    named = problem(run_copy, monkeypatch)
    before = _tree(run_copy)
    with pytest.raises(CardiosegError) as info:
        package_run(run_copy)
    assert named.name in str(info.value) and len(str(info.value).splitlines()) == 1, info.value
    if isinstance(info.value, DataError) and named.is_absolute():
        assert info.value.path == named
    assert _tree(run_copy) == before  # no bundle, no temporary folder, nothing rewritten
