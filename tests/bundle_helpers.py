"""One small trained run and its export, shared by the bundle test modules (made once per pytest session).

Training and exporting cost about a minute each on a 2-core CPU, so ``test_bundle``, ``test_zoo``,
``test_portable_inference`` and ``test_export`` share one run: ResNet-18 at 64x64 on the 3-patient phantom,
trained just long enough (3 short epochs) that its predictions have structure (validation Dice about 0.3),
which the agreement tests need. Tests must not change these folders: copy them first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "cardiac_sax_seg"
CONFIGS = BUNDLE / "configs"
TRAIN_CONFIG = CONFIGS / "train.json"
IMAGE_SIZE = 64

TRAIN_OVERRIDES = {
    "dataset_format": "phantom",
    "encoder": "resnet18",
    "image_size": IMAGE_SIZE,
    "epochs": 3,
    "batch_size": 8,
    "epoch_length": 48,
    "learning_rate": 0.003,
    "progress": False,
}


def shared_run(tmp_path_factory, phantom_dir: Path) -> Path:
    """The trained run folder (``models/model.pt``, ``models/last.pt``, ``data.json`` ...)."""
    from monai.bundle import run

    out = tmp_path_factory.getbasetemp() / "shared_bundle_run"
    if not (out / "models" / "model.pt").is_file():
        if out.exists():
            shutil.rmtree(out)  # a run that a failed test session left half done
        run(
            "training",
            config_file=str(CONFIGS / "train.json"),
            logging_file=False,
            dataset_dir=str(phantom_dir),
            output_dir=str(out),
            **TRAIN_OVERRIDES,
        )
    return out


def shared_export(tmp_path_factory, phantom_dir: Path) -> Path:
    """``cardioseg export`` of :func:`shared_run`: the bundle folder ``RUN/cardiac_sax_seg``."""
    from cardioseg.bundle import BUNDLE_NAME, package_run

    run_dir = shared_run(tmp_path_factory, phantom_dir)
    bundle = run_dir / BUNDLE_NAME
    if not (bundle / "large_files.yml").is_file():
        package_run(run_dir)
    return bundle


def val_patients(run_dir: Path) -> list[str]:
    return json.loads((run_dir / "data.json").read_text())["split"]["val"]


def frames(patient_dir: Path) -> list[Path]:
    """A raw ACDC patient folder's labelled frames (not the 4D cine, not the ``_gt`` labels)."""
    return sorted(patient_dir.glob("*_frame[0-9][0-9].nii.gz"))


TINY = {"encoder": "resnet18", "image_size": 64, "batch_size": 4, "epoch_length": 16, "progress": False}


def bundle_workflow(**overrides) -> ConfigWorkflow:
    """``train.json`` at a tiny size with ``overrides``, initialised (nothing run yet)."""
    workflow = ConfigWorkflow(
        config_file=str(TRAIN_CONFIG),
        logging_file=False,
        run_id="training",
        workflow_type=None,
        **{**TINY, **overrides},
    )
    workflow.initialize()
    return workflow
