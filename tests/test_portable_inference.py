"""The exported bundle's inference.json runs with MONAI alone and gives cardioseg's Segmenter's labels.

``configs/inference.json`` uses MONAI transforms (percentile scaling, the SSL4MIS resize as two
corner-aligned linear resizes, undone one axis at a time on one-hot labels, which is exactly scipy's
order-0 zoom), ``SliceInferer`` and ``models/model.ts``. Here it must give identical labels to
:class:`cardioseg.inference.Segmenter` (scipy ``zoom``, ``models/model.pt``) on every phantom frame; the
same comparison on the real ACDC validation patients is ``benchmarks/portable_agreement.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import frames, shared_export, shared_run

from cardioseg.checkpoint import save_torch_atomic
from cardioseg.inference import build_segmenter, read_input, volume_name
from cardioseg.nets import build_unet

pytestmark = [
    pytest.mark.filterwarnings("ignore:parsing config_file:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning"),
]

# Runs the bundle's inference the way MONAI's command line does, then fails if anything imported cardioseg.
RUN_WITHOUT_CARDIOSEG = """
import sys
from monai.bundle.scripts import run
run(config_file=sys.argv[1], bundle_root=sys.argv[2], dataset_dir=sys.argv[3], output_dir=sys.argv[4],
    logging_file=False)
imported = sorted(name for name in sys.modules if name.split(".")[0] == "cardioseg")
if imported:
    sys.exit(f"portable inference imported {imported}")
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, phantom_dir) -> Path:
    return shared_run(tmp_path_factory, phantom_dir)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, phantom_dir) -> Path:
    return shared_export(tmp_path_factory, phantom_dir)


def run_portable(bundle: Path, dataset_dir: Path, output_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-c", RUN_WITHOUT_CARDIOSEG,
        str(bundle / "configs" / "inference.json"), str(bundle), str(dataset_dir), str(output_dir),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env={**os.environ, "CI": "1"}, timeout=600)


def test_portable_inference_gives_the_segmenters_labels(exported, phantom_dir, tmp_path):
    """Every frame of every phantom patient, run from another working directory without cardioseg."""
    out = tmp_path / "seg"
    done = run_portable(exported, phantom_dir, out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    segmenter = build_segmenter(exported / "models" / "model.pt", device="cpu")
    raw = build_segmenter(exported / "models" / "model.pt", device="cpu", postprocess="none")
    inputs = sorted(p for patient in phantom_dir.glob("patient*") for p in frames(patient))
    assert len(inputs) == 6
    cleaned_up = 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{volume_name(p)}_seg.nii.gz" for p in inputs)
    labels_seen = set()
    for path in inputs:
        image = nib.load(path)
        seg = nib.load(out / f"{volume_name(path)}_seg.nii.gz")
        assert seg.get_data_dtype() == np.uint8 and seg.shape == image.shape
        np.testing.assert_allclose(seg.affine, image.affine, atol=1e-5)
        portable = np.asanyarray(seg.dataobj).transpose(2, 1, 0)  # NIfTI (col, row, slice) -> cardioseg
        reference = segmenter.segment(read_input(path)[0])
        np.testing.assert_array_equal(portable, reference, err_msg=path.name)  # identical, voxel for voxel
        labels_seen |= set(np.unique(reference).tolist())
        cleaned_up += int((raw.segment(read_input(path)[0]) != reference).sum())
    assert len(labels_seen) >= 3, labels_seen  # the comparison covers boundaries between structures
    assert cleaned_up > 0  # and the largest-component clean-up: the small model leaves specks


def test_a_bad_input_stops_inference_before_any_output(exported, phantom_dir, trained_run, tmp_path):
    patient = json_val_patient(trained_run)
    inputs = tmp_path / "in"
    inputs.mkdir()
    good = frames(phantom_dir / patient)[0]
    shutil.copy(good, inputs / "p_frame01.nii.gz")
    (inputs / "p_frame02.nii.gz").write_bytes(good.read_bytes()[:200])  # truncated, sorted after the good one
    out = tmp_path / "seg"
    done = run_portable(exported, inputs, out, cwd=tmp_path)
    assert done.returncode != 0
    assert str(inputs / "p_frame02.nii.gz") in done.stderr
    assert not out.exists() or not any(out.iterdir())  # not even the good frame's output


def test_a_missing_or_changed_model_file_is_an_error_naming_it(exported, phantom_dir, trained_run, tmp_path):
    patient_dir = phantom_dir / json_val_patient(trained_run)
    bundle = Path(shutil.copytree(exported, tmp_path / "bundle"))
    save_torch_atomic(build_unet("resnet34").state_dict(), bundle / "models" / "model.pt")
    done = run_portable(bundle, patient_dir, tmp_path / "seg", cwd=tmp_path)
    assert done.returncode != 0 and "hash check" in done.stderr and str(bundle / "models" / "model.pt") in done.stderr

    (bundle / "models" / "model.ts").unlink()
    done = run_portable(bundle, patient_dir, tmp_path / "seg", cwd=tmp_path)
    assert done.returncode != 0 and f"{bundle}/models/model.ts does not exist" in done.stderr
    assert not (tmp_path / "seg").exists()


def json_val_patient(run_dir: Path) -> str:
    import json

    return json.loads((run_dir / "data.json").read_text())["split"]["val"][0]


# --- MONAI Deploy ---------------------------------------------------------------------------------


def test_monai_deploy_operator_runs_the_bundle(exported, phantom_dir, trained_run):
    """MONAI Deploy App SDK's MonaiBundleInferenceOperator (the ``deploy`` extra) on the export, fed an
    ``Image`` as its DICOM series loader makes one (slices, rows, cols), from the bundle folder and from
    ``model.ts`` alone (the configs travel inside it): the Segmenter's labels."""
    operator = pytest.importorskip(
        "monai.deploy.operators.monai_bundle_inference_operator",
        reason="monai-deploy-app-sdk not installed (pip install '.[deploy]')",
    )
    from monai.deploy.core import AppContext, Application, Image, IOType

    class Received:
        def __init__(self, value):
            self.value = value

        def receive(self, name):
            return self.value

    class Emitted:
        def __init__(self):
            self.values = {}

        def get(self, name):
            raise RuntimeError("in-memory output")  # as the executor answers for a connected port

        def emit(self, value, name):
            self.values[name] = value

    segmenter = build_segmenter(exported / "models" / "model.pt", device="cpu")
    path = frames(phantom_dir / json_val_patient(trained_run))[0]
    volume, affine = read_input(path)
    reference = segmenter.segment(volume)
    for bundle_path in (exported, exported / "models" / "model.ts"):
        op = operator.MonaiBundleInferenceOperator(
            Application(),
            app_context=AppContext({}),
            bundle_path=bundle_path,
            input_mapping=[operator.IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[operator.IOMapping("pred", Image, IOType.IN_MEMORY)],
        )
        meta = {
            "row_pixel_spacing": 1.0,
            "col_pixel_spacing": 1.0,
            "depth_pixel_spacing": 1.0,
            "nifti_affine_transform": affine,
        }
        emitted = Emitted()
        op.compute(Received(Image(volume, metadata=meta)), emitted, None)
        labels = emitted.values["pred"].asnumpy()
        np.testing.assert_array_equal(labels, reference, err_msg=str(bundle_path))
