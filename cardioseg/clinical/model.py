"""An exported bundle's network behind one call: ``(N, 1, S, S)`` float32 slices in, ``(N, S, S)`` labels out.

What a deployed model must prove before it touches a study: every model file matches the sha256 in the
bundle's ``large_files.yml`` (a swapped or damaged file is refused), the ONNX graph takes one-channel
``S x S`` images and gives four-class logits of the same size, where ``S`` is the size the bundle was trained
at, and the bundle was trained with the slice protocol this package reproduces. The default backend is
ONNX Runtime, with its CUDA execution provider where installed (``onnxruntime-gpu``) and its CPU one
otherwise. ``backend="torch"`` runs the bundle's ``model.pt`` in PyTorch, on CUDA where present: the way to
use a GPU where ONNX Runtime has no GPU provider, and to measure GPU speed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import check_large_files
from ..errors import CardiosegError, DataError
from ..export import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger("cardioseg.clinical.model")

BACKENDS = ("onnx", "torch")
DEVICES = ("auto", "cpu", "cuda")
N_CLASSES = 4
ONNX_FILE, TORCH_FILE, METADATA_FILE = "models/model.onnx", "models/model.pt", "configs/metadata.json"


@dataclass(frozen=True)
class Preprocessing:
    """The bundle's slice protocol: per-volume percentile scaling, then each slice resized to ``size``."""

    image_size: int
    percentiles: tuple[float, float]
    image_order: int


@dataclass(frozen=True)
class BundleModel:
    """A checked model: ``predict_slices`` maps ``(N, 1, S, S)`` float32 to ``(N, S, S)`` uint8 labels."""

    bundle_dir: Path
    backend: str
    device: str
    model_file: Path
    sha256: str
    preprocessing: Preprocessing
    metadata: dict[str, Any]
    predict_slices: Callable[[np.ndarray], np.ndarray]

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance: which model, file and hash, on which backend and device."""
        return {
            "bundle_dir": str(self.bundle_dir),
            "name": self.metadata.get("name"),
            "version": self.metadata.get("version"),
            "encoder": self.metadata.get("training", {}).get("encoder"),
            "backend": self.backend,
            "device": self.device,
            "model_file": str(self.model_file.relative_to(self.bundle_dir)),
            "sha256": self.sha256,
            "image_size": self.preprocessing.image_size,
            "percentiles": list(self.preprocessing.percentiles),
            "image_order": self.preprocessing.image_order,
        }


def _read_metadata(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "not found: not an exported bundle (run 'cardioseg export RUN')") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable bundle metadata ({exc})") from None


def preprocessing_of(metadata: dict[str, Any], source: Path) -> Preprocessing:
    """The slice protocol recorded at export; a bundle trained another way is refused, not guessed."""
    training = metadata.get("training")
    preparation = training.get("preparation") if isinstance(training, dict) else None
    if not isinstance(preparation, dict):
        raise DataError(source, "records no training.preparation (export the run again with this cardioseg)")
    if preparation.get("mode") != "ssl4mis":
        raise DataError(
            source, f"the model was trained with slice mode {preparation.get('mode')!r}; the app supports 'ssl4mis'"
        )
    try:
        lower, upper = (float(p) for p in preparation["normalization"]["percentiles"])
        return Preprocessing(int(preparation["size"]), (lower, upper), int(preparation.get("image_order", 1)))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(source, f"training.preparation is incomplete ({type(exc).__name__}: {exc})") from None


def _check_onnx_signature(session: Any, size: int, path: Path) -> None:
    """One float input ``image`` of shape ``(batch, 1, size, size)``, one output ``(batch, 4, size, size)``."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise DataError(path, f"expected one input and one output, the model has {len(inputs)} and {len(outputs)}")
    found_in, found_out = inputs[0], outputs[0]
    if found_in.name != INPUT_NAME or found_in.type != "tensor(float)":
        raise DataError(path, f"input is {found_in.name!r} {found_in.type}, expected {INPUT_NAME!r} tensor(float)")
    if list(found_in.shape[1:]) != [1, size, size]:
        raise DataError(path, f"input shape {found_in.shape} does not take (batch, 1, {size}, {size}) slices")
    if found_out.name != OUTPUT_NAME or list(found_out.shape[1:]) != [N_CLASSES, size, size]:
        raise DataError(
            path, f"output {found_out.name!r} {found_out.shape} is not (batch, {N_CLASSES}, {size}, {size}) logits"
        )


def _onnx_predictor(path: Path, device: str, size: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise CardiosegError(
            "device cuda: this ONNX Runtime has no CUDA execution provider (install onnxruntime-gpu, "
            "or use --backend torch)"
        )
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device != "cpu" and has_cuda else []
    providers = providers or ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ONNX Runtime's warnings about unused initialisers are noise
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own exception types for a file it cannot load
        raise DataError(path, f"ONNX Runtime cannot load the model ({type(exc).__name__}: {exc})") from None
    _check_onnx_signature(session, size, path)
    used = "cuda" if session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def predict(batch: np.ndarray) -> np.ndarray:
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return logits.argmax(axis=1).astype(np.uint8)

    return predict, used


def _torch_predictor(path: Path, device: str, size: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    import torch

    from ..inference import build_segmenter

    if device == "cuda" and not torch.cuda.is_available():
        raise CardiosegError("device cuda: PyTorch sees no CUDA device here")
    used = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
    segmenter = build_segmenter(path, image_size=size, device=used)  # encoder read from the weights
    return (lambda batch: segmenter.predict_slices(batch).numpy()), used


def load_bundle_model(bundle_dir: str | Path, *, backend: str = "onnx", device: str = "auto") -> BundleModel:
    """Check an exported bundle (hashes, metadata, model signature) and return its model ready to run."""
    if backend not in BACKENDS:
        raise CardiosegError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device not in DEVICES:
        raise CardiosegError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.exists():
        raise DataError(bundle_dir, "bundle folder does not exist")
    if not bundle_dir.is_dir():
        in_bundle = (bundle_dir.parent / "large_files.yml").is_file()
        hint = bundle_dir.parent if in_bundle else "the one with large_files.yml"
        raise DataError(bundle_dir, f"is a file, not an exported bundle folder: pass the bundle folder ({hint})")
    hashes = check_large_files(bundle_dir)
    metadata = _read_metadata(bundle_dir)
    preprocessing = preprocessing_of(metadata, bundle_dir / METADATA_FILE)
    model_file = ONNX_FILE if backend == "onnx" else TORCH_FILE
    if model_file not in hashes:
        raise DataError(bundle_dir / "large_files.yml", f"does not list {model_file} with its sha256")
    path = bundle_dir / model_file
    if backend == "onnx":
        predict, used = _onnx_predictor(path, device, preprocessing.image_size)
    else:
        predict, used = _torch_predictor(path, device, preprocessing.image_size)
    logger.info("model %s (sha256 %s...) on %s, %s", path, hashes[model_file][:12], backend, used)
    return BundleModel(bundle_dir, backend, used, path, hashes[model_file], preprocessing, metadata, predict)
