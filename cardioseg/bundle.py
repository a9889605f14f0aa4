"""The MONAI bundle: where it lives, command-line overrides for it, and packaging a trained run as one."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import CardiosegError

_NONE_WORDS = ("", "none", "null", "auto")

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundles" / "cardiac_sax_seg"
TRAIN_CONFIG = BUNDLE_DIR / "configs" / "train.json"
# What a trained run needs beside its models/ to be a bundle others can run and verify.
PACKAGED = ("configs/inference.json", "configs/evaluate.json", "configs/logging.conf", "schema", "docs", "LICENSE")


def is_none(value: Any) -> bool:
    """None, or a command line's spelling of it (``--encoder null`` arrives as the string "null")."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS)


def as_flag(value: Any) -> bool:
    """A boolean setting; also accepts the strings a command line passes ("true", "False", "0", ...)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off", "none", "null", ""):
            return False
        raise CardiosegError(f"expected true or false, got {value!r}")
    return bool(value)


def cardioseg_cause(exc: BaseException) -> CardiosegError | None:
    """The CardiosegError behind an exception, if any: MONAI's config parser re-raises errors from a
    config expression as ``RuntimeError("Failed to evaluate ...")``, hiding the message meant for the user."""
    while exc is not None:
        if isinstance(exc, CardiosegError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def parse_overrides(tokens: list[str]) -> dict[str, object]:
    """``["--epochs", "5", "--encoder", "resnet18"]`` to ``{"epochs": 5, "encoder": "resnet18"}``.

    Values are Python literals where they parse as one (numbers, None, True), else strings, as MONAI's
    fire-based ``python -m monai.bundle run`` reads them.
    """
    if len(tokens) % 2 or not all(t.startswith("--") for t in tokens[::2]):
        raise CardiosegError(f"bundle overrides must be '--key value' pairs, got: {' '.join(tokens)}")
    overrides = {}
    for key, value in zip(tokens[::2], tokens[1::2]):
        try:
            overrides[key[2:]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key[2:]] = value
    return overrides


def package_run(run_dir: str | Path) -> dict:
    """Turn a training run folder into a self-contained bundle.

    Exports ``models/model.onnx`` (checked against PyTorch in ONNX Runtime) and ``models/model.ts``
    (TorchScript, through MONAI's ``ckpt_export``), copies the inference/evaluation configs, and writes
    ``configs/metadata.json`` with the sha256 of every model file, the training settings and, when the run
    was evaluated, its metrics. Returns that metadata.
    """
    from monai.bundle import ckpt_export

    from .checkpoint import file_sha256
    from .export import export_onnx
    from .inference import build_segmenter

    run_dir = Path(run_dir)
    models = run_dir / "models"
    checkpoint = models / "model.pt"
    if not checkpoint.is_file():
        raise CardiosegError(f"{checkpoint}: no trained model here (run the bundle's training first)")
    for item in PACKAGED:
        source, target = BUNDLE_DIR / item, run_dir / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    segmenter = build_segmenter(checkpoint, device="cpu")
    size = segmenter.image_size
    onnx = export_onnx(segmenter.network, models / "model.onnx", spatial_size=(size, size))
    metadata = json.loads((BUNDLE_DIR / "configs" / "metadata.json").read_text())
    metadata["model_files"] = {
        "models/model.pt": {"sha256": file_sha256(checkpoint)},
        "models/model.onnx": {
            "sha256": onnx.sha256,
            "opset": onnx.opset,
            "input_size": [size, size],
            "max_abs_diff_vs_pytorch": onnx.max_abs_diff,
        },
    }
    metadata["training"] = _training_record(run_dir)
    evaluation = run_dir / "eval" / "evaluation.json"
    if evaluation.is_file():
        summary = json.loads(evaluation.read_text())["summary"]
        metadata["eval_metrics"] = {
            f"{metric}_{cls}": summary[metric][cls]["mean"]
            for metric in ("dice", "hd95")
            for cls in ("mean", "RV", "MYO", "LV")
        }
    meta_file = run_dir / "configs" / "metadata.json"
    write_text_atomic(meta_file, json.dumps(metadata, indent=2) + "\n")
    ckpt_export(
        net_id="network_def",
        filepath=str(models / "model.ts"),
        ckpt_file=str(checkpoint),
        meta_file=str(meta_file),
        config_file=str(run_dir / "configs" / "inference.json"),
        bundle_root=str(run_dir),
    )
    metadata["model_files"]["models/model.ts"] = {"sha256": file_sha256(models / "model.ts")}
    write_text_atomic(meta_file, json.dumps(metadata, indent=2) + "\n")
    return metadata


def _training_record(run_dir: Path) -> dict:
    data_json = run_dir / "data.json"
    if not data_json.is_file():
        return {}
    data = json.loads(data_json.read_text())
    return {k: data[k] for k in ("settings", "preparation", "budget", "train_slices", "labelled_slices") if k in data}
