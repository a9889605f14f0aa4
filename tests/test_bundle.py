"""The rest of the MONAI bundle: metadata and network checks, evaluate.json and inference.json.

One tiny training run (ResNet-18, 64x64, one short epoch on the 3-patient phantom) is shared by the
module; its model is untrained, so these tests check plumbing and formats, not segmentation quality.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import run, verify_metadata, verify_net_in_out

from cardioseg.bundle import cardioseg_cause, package_run
from cardioseg.checkpoint import file_sha256
from cardioseg.data.nifti_io import load_nifti, save_nifti
from cardioseg.errors import DataError
from cardioseg.evaluation import RunInfo, choose_patients, evaluate, read_volumes
from cardioseg.inference import (
    build_segmenter,
    encoder_of_state_dict,
    find_inputs,
    load_network,
    read_input,
    read_state_dict,
    volume_name,
)

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cardiac_sax_seg"
CONFIGS = BUNDLE / "configs"
META = CONFIGS / "metadata.json"
SCHEMA = BUNDLE / "schema" / "metadata_schema.json"
CLASSES = ("RV", "MYO", "LV")

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),  # MONAI's note on trusted configs
    pytest.mark.filterwarnings("ignore:No hash value provided:UserWarning"),  # the schema is a local file
    pytest.mark.filterwarnings("ignore:Detected deprecated name 'optional_packages_version':UserWarning"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, phantom_dir) -> Path:
    """The training bundle, as a user runs it, at the smallest size that exercises everything."""
    out = tmp_path_factory.mktemp("bundle") / "run"
    run(
        "training",
        config_file=str(CONFIGS / "train.json"),
        logging_file=False,
        dataset_dir=str(phantom_dir),
        dataset_format="phantom",
        encoder="resnet18",
        image_size=64,
        epochs=1,
        batch_size=8,
        epoch_length=16,
        progress=False,
        output_dir=str(out),
    )
    assert (out / "models" / "model.pt").is_file()
    return out


@pytest.fixture(scope="module")
def val_patient(trained_run) -> str:
    return json.loads((trained_run / "data.json").read_text())["split"]["val"][0]


def test_metadata_verifies_against_the_schema(tmp_path):
    meta = json.loads(META.read_text())
    assert (BUNDLE / meta["schema"]).resolve() == SCHEMA.resolve()
    verify_metadata(meta_file=str(META), filepath=str(SCHEMA))  # no download: the schema file exists

    # The schema encodes the specification's required keys: dropping one must fail.
    del meta["network_data_format"]["inputs"]["image"]["channel_def"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=str(broken), filepath=str(SCHEMA))


def test_network_matches_the_metadata(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no models/model.pt here: the config's default encoder is built
    verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "inference.json"))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(META),
        config_file=str(CONFIGS / "evaluate.json"),
        device="cpu",
        n=3,
        encoder="resnet18",
    )


def test_checkpoint_encoder_is_recognised(trained_run):
    from cardioseg.nets import build_unet

    ckpt = trained_run / "models" / "model.pt"
    assert encoder_of_state_dict(read_state_dict(ckpt)) == "resnet18"
    with pytest.raises(DataError, match="resnet18"):
        load_network(build_unet("resnet34"), ckpt)


def test_evaluate_writes_metrics_for_the_validation_patients(trained_run, phantom_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    run(
        config_file=str(CONFIGS / "evaluate.json"),
        logging_file=False,
        run_dir=str(trained_run),
        dataset_dir=str(phantom_dir),
        output_dir=str(out),
        progress=False,
    )
    result = json.loads((out / "evaluation.json").read_text())
    split = json.loads((trained_run / "data.json").read_text())["split"]
    assert result["patients"] == sorted(split["val"])
    assert result["image_size"] == 64 and result["dataset_format"] == "phantom"  # as the run recorded
    assert len(result["volumes"]) == 2 * len(split["val"])  # ED and ES
    assert {v["phase"] for v in result["volumes"]} == {"ED", "ES"}
    assert result["summary"]["hd95_unit"] == "mm"  # the phantom's NIfTI carries spacing
    for volume in result["volumes"]:
        for name in CLASSES:
            dice = volume["dice"][name]
            assert dice is None or 0.0 <= dice <= 1.0
    for name in (*CLASSES, "mean"):
        stats = result["summary"]["dice"][name]
        assert stats["mean"] is None or 0.0 <= stats["mean"] <= 1.0
    printed = capsys.readouterr().out
    assert "dice" in printed and "hd95 (mm)" in printed and str(out / "evaluation.json") in printed

    # Without the run's data.json, the seeded split gives the same patients training used.
    assert choose_patients(phantom_dir, "phantom", "val", RunInfo(), seed=0, val_fraction=0.2) == split["val"]


def test_inference_writes_uint8_labels_on_the_input_grid(trained_run, phantom_dir, val_patient, tmp_path):
    patient_dir = phantom_dir / val_patient  # raw ACDC layout: frames, *_gt labels and the 4D cine
    out = tmp_path / "seg"
    run(
        config_file=str(CONFIGS / "inference.json"),
        logging_file=False,
        ckpt_path=str(trained_run / "models" / "model.pt"),
        dataset_dir=str(patient_dir),
        output_dir=str(out),
        progress=False,
    )
    frames = sorted(p for p in patient_dir.glob("*_frame[0-9][0-9].nii.gz"))
    assert len(frames) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{volume_name(p)}_seg.nii.gz" for p in frames)
    for frame in frames:
        image = nib.load(frame)
        seg = nib.load(out / f"{volume_name(frame)}_seg.nii.gz")
        labels = np.asanyarray(seg.dataobj)
        assert seg.get_data_dtype() == np.uint8 and labels.dtype == np.uint8
        assert seg.shape == image.shape
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-5)
        assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3}

    # The Python API (the README's example) gives the bundle's result.
    segmenter = build_segmenter(trained_run / "models" / "model.pt", device="cpu")
    assert segmenter.image_size == 64  # from the run's data.json
    volume, _ = read_input(frames[0])
    expected = load_nifti(out / f"{volume_name(frames[0])}_seg.nii.gz")[0]
    np.testing.assert_array_equal(segmenter.segment(volume), expected)


class _GroundTruthSegmenter:
    """Stands in for a model: returns each volume's own labels, in the order evaluation reads them."""

    image_size, image_order = 64, 1

    def __init__(self, labels):
        self.labels = list(labels)

    def segment(self, image, normalize=True):
        label = self.labels.pop(0)
        assert label.shape == image.shape
        return label


def test_evaluation_scores_a_perfect_segmentation_as_perfect(phantom_dir, tmp_path):
    patients = ["patient001"]
    truth = [record.label for record in read_volumes(phantom_dir, "phantom", patients)]
    result = evaluate(_GroundTruthSegmenter(truth), phantom_dir, patients, tmp_path, dataset_format="phantom")
    for name in (*CLASSES, "mean"):
        assert result["summary"]["dice"][name]["mean"] == pytest.approx(1.0)
        assert result["summary"]["hd95"][name]["mean"] == pytest.approx(0.0)
    assert json.loads((tmp_path / "evaluation.json").read_text())["summary"] == result["summary"]


def _corrupt_input_dir(phantom_dir: Path, val_patient: str, folder: Path) -> Path:
    folder.mkdir()
    good = phantom_dir / val_patient / f"{val_patient}_frame01.nii.gz"
    shutil.copy(good, folder / "good.nii.gz")
    (folder / "bad.nii.gz").write_bytes(good.read_bytes()[:200])  # truncated
    return folder


def test_corrupt_input_stops_inference_before_any_output(trained_run, phantom_dir, val_patient, tmp_path):
    inputs = _corrupt_input_dir(phantom_dir, val_patient, tmp_path / "in")
    out = tmp_path / "seg"
    with pytest.raises(Exception) as info:
        run(
            config_file=str(CONFIGS / "inference.json"),
            logging_file=False,
            ckpt_path=str(trained_run / "models" / "model.pt"),
            dataset_dir=str(inputs),
            output_dir=str(out),
            progress=False,
        )
    error = cardioseg_cause(info.value)
    assert error is not None, f"expected a DataError, got {info.value!r}"
    assert error.path.name == "bad.nii.gz" and "bad.nii.gz" in str(error)
    assert not out.exists() or not any(out.iterdir())  # not even good.nii.gz's output


def test_corrupt_input_on_the_command_line(trained_run, phantom_dir, val_patient, tmp_path):
    """As a user runs it: non-zero exit, the DataError naming the file, nothing written."""
    inputs = _corrupt_input_dir(phantom_dir, val_patient, tmp_path / "in")
    out = tmp_path / "seg"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "inference.json"),
        "--ckpt_path", str(trained_run / "models" / "model.pt"),
        "--dataset_dir", str(inputs),
        "--output_dir", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "CI": "1"}, timeout=300
    )
    assert done.returncode != 0
    assert f"DataError: {inputs / 'bad.nii.gz'}" in done.stderr
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("problem", ["4d", "nan", "not_nifti"])
def test_bad_volumes_are_refused_by_name(tmp_path, problem):
    path = tmp_path / f"{problem}.nii.gz"
    if problem == "4d":
        save_nifti(path, np.zeros((2, 3, 8, 8), dtype=np.float32), np.eye(4))
    elif problem == "nan":
        volume = np.ones((3, 8, 8), dtype=np.float32)
        volume[1, 2, 2] = np.nan
        save_nifti(path, volume, np.eye(4))
    else:
        path.write_text("not an image\n")
    assert find_inputs(tmp_path) == [path]
    with pytest.raises(DataError) as info:
        read_input(path)
    assert info.value.path == path


def test_inputs_skip_labels_and_read_datalists(tmp_path):
    for name in ("a.nii.gz", "b.nii", "a_gt.nii.gz", "a_seg.nii.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in find_inputs(tmp_path)] == ["a.nii.gz", "b.nii"]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"testing": [{"image": "b.nii"}, "a.nii.gz"]}))
    assert find_inputs(dataset_dir=None, datalist=str(datalist)) == [tmp_path / "b.nii", tmp_path / "a.nii.gz"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no NIfTI"):
        find_inputs(tmp_path / "empty")


def test_export_makes_the_run_a_verified_bundle(trained_run, tmp_path):
    """ONNX and TorchScript beside model.pt, their sha256 in metadata that still passes the schema."""
    import onnxruntime
    import torch

    run_dir = tmp_path / "packaged"
    shutil.copytree(trained_run, run_dir)
    metadata = package_run(run_dir)
    for name in ("models/model.pt", "models/model.onnx", "models/model.ts"):
        assert metadata["model_files"][name]["sha256"] == file_sha256(run_dir / name)
    written = json.loads((run_dir / "configs" / "metadata.json").read_text())
    assert written["model_files"] == json.loads(json.dumps(metadata["model_files"]))
    assert written["training"]["settings"]["encoder"] == "resnet18"
    verify_metadata(meta_file=str(run_dir / "configs" / "metadata.json"), filepath=str(run_dir / written["schema"]))

    image = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(run_dir / "models" / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {session.get_inputs()[0].name: image})
    scripted = torch.jit.load(str(run_dir / "models" / "model.ts"))
    with torch.no_grad():
        ts_logits = scripted(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(onnx_logits, ts_logits, atol=1e-3)
