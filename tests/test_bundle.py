"""cardioseg's side of the bundle: evaluate.json, the Segmenter and its Python API, input checks.

The MONAI model zoo checks are in ``test_zoo.py``, the portable (MONAI-only) inference.json in
``test_portable_inference.py``. One small training run is shared with them (``bundle_helpers``); its model
is barely trained, so these tests check plumbing and formats, not segmentation quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import CONFIGS, IMAGE_SIZE, frames, shared_run
from monai.bundle import run, verify_net_in_out

from cardioseg.checkpoint import save_torch_atomic
from cardioseg.data.nifti_io import load_nifti, save_nifti
from cardioseg.errors import DataError, cardioseg_cause
from cardioseg.evaluation import RunInfo, choose_patients, evaluate, read_volumes
from cardioseg.inference import (
    Segmenter,
    build_segmenter,
    encoder_of_state_dict,
    find_inputs,
    load_network,
    read_input,
    read_state_dict,
    resolve_encoder,
    segment_files,
    volume_name,
)
from cardioseg.nets import build_unet

META = CONFIGS / "metadata.json"
CLASSES = ("RV", "MYO", "LV")

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),  # MONAI's note on trusted configs
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, phantom_dir) -> Path:
    return shared_run(tmp_path_factory, phantom_dir)


@pytest.fixture(scope="module")
def val_patient(trained_run) -> str:
    return json.loads((trained_run / "data.json").read_text())["split"]["val"][0]


def test_evaluate_network_matches_the_metadata():
    """evaluate.json's network (cardioseg's U-Net, the encoder named) against metadata.json's I/O."""
    verify_net_in_out(
        net_id="network_def", meta_file=str(META), config_file=str(CONFIGS / "evaluate.json"), n=3, encoder="resnet18"
    )


def test_checkpoint_encoder_is_recognised(trained_run, tmp_path):
    ckpt = trained_run / "models" / "model.pt"
    assert encoder_of_state_dict(read_state_dict(ckpt)) == "resnet18"
    assert resolve_encoder(None, ckpt, recorded="resnet18") == "resnet18"
    with pytest.raises(DataError, match="resnet18"):
        load_network(build_unet("resnet34"), ckpt)
    # no checkpoint: an error naming it, never a default network
    with pytest.raises(DataError) as info:
        resolve_encoder(None, tmp_path / "models" / "model.pt")
    assert info.value.path == tmp_path / "models" / "model.pt"
    # weights of another depth than the run recorded
    with pytest.raises(DataError, match="resnet18 weights but the run recorded encoder resnet50"):
        resolve_encoder(None, ckpt, recorded="resnet50")


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


def test_evaluate_applies_and_records_flip_tta_and_postprocessing(trained_run, phantom_dir, tmp_path, capsys):
    settings = {
        "config_file": str(CONFIGS / "evaluate.json"),
        "logging_file": False,
        "run_dir": str(trained_run),
        "dataset_dir": str(phantom_dir),
        "progress": False,
    }
    out = tmp_path / "eval"
    run(output_dir=str(out), flip_tta=True, postprocess="clean", **settings)
    result = json.loads((out / "evaluation.json").read_text())
    assert result["flip_tta"] is True and result["postprocess"] == "clean"
    assert "flip TTA on, post-processing clean" in capsys.readouterr().out
    bad = [({"postprocess": "biggest"}, "'postprocess' is 'biggest': choose one of none, largest, clean")]
    bad.append(({"flip_tta": "maybe"}, "'flip_tta' is 'maybe': expected true or false"))
    for override, expected in bad:  # a bad setting: named, nothing written
        with pytest.raises(Exception) as info:
            run(output_dir=str(tmp_path / "bad"), **override, **settings)
        assert expected in str(cardioseg_cause(info.value))
        assert not (tmp_path / "bad").exists()


def test_flip_tta_averages_the_probabilities_of_the_four_mirrors():
    torch.manual_seed(0)
    network = torch.nn.Conv2d(1, 4, 5, padding=2)  # no symmetry: each mirror predicts differently
    slices = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    plain = Segmenter(network, image_size=32, device="cpu").predict_slices(slices)
    averaged = Segmenter(network, image_size=32, device="cpu", flip_tta=True).predict_slices(slices)
    images = torch.from_numpy(slices)
    with torch.no_grad():
        mirrors = [network(images.flip(dims)).softmax(dim=1).flip(dims) for dims in ((), (3,), (2,), (2, 3))]
    assert torch.equal(averaged, sum(mirrors).argmax(dim=1).to(torch.uint8))
    assert (averaged != plain).any()


def test_evaluate_refuses_weights_of_another_depth(trained_run, phantom_dir, tmp_path):
    """A checkpoint of another encoder than the run recorded: one DataError naming it, no evaluation."""
    run_dir = Path(shutil.copytree(trained_run, tmp_path / "run", ignore=shutil.ignore_patterns("cardiac_sax_seg")))
    save_torch_atomic(build_unet("resnet34").state_dict(), run_dir / "models" / "model.pt")
    with pytest.raises(Exception) as info:
        run(
            config_file=str(CONFIGS / "evaluate.json"),
            logging_file=False,
            run_dir=str(run_dir),
            dataset_dir=str(phantom_dir),
            progress=False,
        )
    error = cardioseg_cause(info.value)
    assert isinstance(error, DataError) and error.path == run_dir / "models" / "model.pt", info.value
    assert "resnet34 weights but the run recorded encoder resnet18" in str(error)
    assert not (run_dir / "eval").exists()


def test_segmenter_python_api_writes_uint8_labels_on_the_input_grid(trained_run, phantom_dir, val_patient, tmp_path):
    """The README's Python example: build_segmenter, segment, segment_files."""
    patient_dir = phantom_dir / val_patient  # raw ACDC layout: frames, *_gt labels and the 4D cine
    inputs = find_inputs(patient_dir)
    assert inputs == frames(patient_dir)
    segmenter = build_segmenter(trained_run / "models" / "model.pt", device="cpu")
    assert segmenter.image_size == IMAGE_SIZE  # from the run's data.json
    written = segment_files(segmenter, inputs, tmp_path / "seg")
    assert [p.name for p in written] == [f"{volume_name(p)}_seg.nii.gz" for p in inputs]
    for frame, out in zip(inputs, written, strict=True):
        image, seg = nib.load(frame), nib.load(out)
        assert seg.get_data_dtype() == np.uint8 and seg.shape == image.shape
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-5)
        np.testing.assert_array_equal(segmenter.segment(read_input(frame)[0]), load_nifti(out)[0])


class _GroundTruthSegmenter:
    """Stands in for a model: returns each volume's own labels, in the order evaluation reads them."""

    image_size, image_order, flip_tta, postprocess = 64, 1, False, "none"

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


def test_corrupt_input_stops_segment_files_before_any_output(trained_run, phantom_dir, val_patient, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = phantom_dir / val_patient / f"{val_patient}_frame01.nii.gz"
    shutil.copy(good, folder / "good.nii.gz")
    (folder / "bad.nii.gz").write_bytes(good.read_bytes()[:200])  # truncated
    segmenter = build_segmenter(trained_run / "models" / "model.pt", device="cpu")
    out = tmp_path / "seg"
    with pytest.raises(DataError) as info:
        segment_files(segmenter, find_inputs(folder), out)
    assert info.value.path == folder / "bad.nii.gz"
    assert not out.exists() or not any(out.iterdir())  # not even good.nii.gz's output


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
