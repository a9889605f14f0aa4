"""The MONAI bundle: where it lives (source checkout or installed wheel), command-line overrides for it, and
exporting a trained run as a bundle that ships.

An export is a folder of its own (``RUN/cardiac_sax_seg`` by default) holding what a site needs and nothing
else: ``models/model.pt`` (a plain state dict), ``models/model.ts`` (TorchScript, the network the portable
``configs/inference.json`` runs with MONAI alone), ``models/model.onnx`` (checked in ONNX Runtime),
``large_files.yml`` (each model file's sha256, as the MONAI model zoo lists large files), all configs with
the run's image size written in, ``configs/metadata.json`` (official MONAI schema), docs, schema, LICENSE and
the run's ``data.json`` (split and preparation, which ``evaluate.json`` reads). The training-only files
(``models/last.pt``, ``tensorboard/``, ``metrics.jsonl``, ``eval/``) stay in the run. The export is built in
a temporary folder and moved into place only when every step has succeeded: a failure changes nothing.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from .atomic import atomic_directory, write_text_atomic
from .errors import CardiosegError, DataError, cardioseg_cause
from .settings import as_flag, is_none
from .shipped import shipped_dir

__all__ = [
    "BUNDLE_DIR",
    "BUNDLE_NAME",
    "TRAIN_CONFIG",
    "as_flag",
    "cardioseg_cause",
    "check_large_files",
    "is_none",
    "package_run",
    "parse_overrides",
]

BUNDLE_NAME = "cardiac_sax_seg"


BUNDLE_DIR = shipped_dir(f"bundles/{BUNDLE_NAME}", "configs/train.json")
TRAIN_CONFIG = BUNDLE_DIR / "configs" / "train.json"
LARGE_FILES = "large_files.yml"
MODEL_FILES = ("models/model.pt", "models/model.ts", "models/model.onnx")
# Copied from the bundle into every export (configs are rewritten where the run decides a value).
SHIPPED = (
    "configs/train.json",
    "configs/multi_gpu_train.json",
    "configs/evaluate.json",
    "configs/logging.conf",
    "docs",
    "schema",
    "LICENSE",
)
# Packages whose installed versions an export records in metadata.json's required_packages_version.
REQUIRED_PACKAGES = ("cardioseg", "nibabel", "pytorch-ignite", "pyyaml", "tensorboard", "fire", "jsonschema")
TORCHSCRIPT_ATOL = 1e-4


def merged_config(files: list[str | Path]) -> dict[str, Any]:
    """Config files merged as MONAI merges several ``--config_file``s (later ones replace top-level keys),
    each checked to be a JSON object first: MONAI would end a bad one in a traceback."""
    merged: dict[str, Any] = {}
    for file in files:
        try:
            config = json.loads(Path(file).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(file, f"not a readable JSON config ({exc})") from None
        if not isinstance(config, dict):
            raise DataError(file, "a config is a JSON object of settings")
        merged |= config
    return merged


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


# --- large_files.yml -----------------------------------------------------------------------------


def large_files_yaml(hashes: dict[str, str]) -> str:
    """``large_files.yml`` as the model zoo writes it: path, url, sha256 per model file. ``url`` is empty: an
    export is not hosted anywhere; fill it in when publishing. MONAI's ``download_large_files`` checks the
    sha256 of every file that exists and downloads only missing ones."""
    lines = [
        "# sha256 of each model file; check them with",
        "#   python -m monai.bundle download_large_files --bundle_path <this folder>",
        "# (url is empty: fill it in where the files are published)",
        "large_files:",
    ]
    for path, sha256 in hashes.items():
        lines += [f'  - path: "{path}"', '    url: ""', f'    hash_val: "{sha256}"', '    hash_type: "sha256"']
    return "\n".join(lines) + "\n"


def check_large_files(bundle_dir: str | Path) -> dict[str, str]:
    """Check every file ``large_files.yml`` lists against its sha256 (what the deploy app does before it
    loads a model); returns ``{path: sha256}``. A missing, unlisted or changed file is a DataError naming it."""
    import yaml

    from .checkpoint import file_sha256

    bundle_dir = Path(bundle_dir)
    listing = bundle_dir / LARGE_FILES
    try:
        entries = yaml.safe_load(listing.read_text(encoding="utf-8"))["large_files"]
        expected = {str(e["path"]): str(e.get("hash_val") or "") for e in entries}
        types = {str(e["path"]): str(e.get("hash_type") or "sha256").lower() for e in entries}
    except FileNotFoundError:
        raise DataError(listing, "not found: not an exported bundle (run 'cardioseg export RUN')") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DataError(listing, f"not a large_files list ({type(exc).__name__}: {exc})") from None
    for path, sha256 in expected.items():
        target = bundle_dir / path
        if types[path] != "sha256" or len(sha256) != 64:
            raise DataError(listing, f"{path} has no sha256 (hash_type {types[path]!r}, hash_val {sha256!r})")
        if not target.is_file():
            raise DataError(target, f"listed in {listing} but missing")
        found = file_sha256(target)
        if found != sha256:
            raise DataError(target, f"sha256 {found[:16]}... differs from {sha256[:16]}... in {listing}")
    return expected


# --- export --------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, f"not found ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"unreadable {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DataError(path, f"not a {what}: expected a JSON object")
    return data


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON (4-space indent, as the model zoo formats its configs), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=4, ensure_ascii=False) + "\n")


def _run_record(run_dir: Path) -> tuple[dict, int, str]:
    """The run's ``data.json``, its image size and its recorded encoder; any gap is a DataError naming it."""
    path = run_dir / "data.json"
    record = _read_json(path, "the training run's record")
    try:
        size = int(record["preparation"]["size"])
        encoder = str(record["settings"]["encoder"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            path, f"no preparation.size or settings.encoder recorded ({type(exc).__name__}: {exc})"
        ) from None
    mode = record["preparation"].get("mode")
    if mode not in (None, "ssl4mis"):
        raise DataError(
            path, f"the run prepared slices in mode {mode!r}; the bundle's inference follows the SSL4MIS resize"
        )
    return record, size, encoder


def _eval_metrics(run_dir: Path) -> dict[str, float] | None:
    """``eval_metrics`` for metadata.json from the run's ``eval/evaluation.json`` (None when not evaluated)."""
    path = run_dir / "eval" / "evaluation.json"
    if not path.exists():
        return None
    result = _read_json(path, "evaluation result")
    try:
        summary = result["summary"]
        return {
            f"{metric}_{cls}": summary[metric][cls]["mean"]
            for metric in ("dice", "hd95")
            for cls in ("mean", "RV", "MYO", "LV")
        }
    except (KeyError, TypeError) as exc:
        raise DataError(path, f"no evaluation summary ({type(exc).__name__}: {exc}); re-run evaluate.json") from None


def _versions() -> dict[str, Any]:
    import monai
    import numpy
    import torch

    required = {}
    for name in REQUIRED_PACKAGES:
        try:
            required[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return {
        "monai_version": monai.__version__.split("+")[0],
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": required,
    }


def _export_metadata(template: dict, record: dict, size: int, encoder: str, onnx: Any, metrics: dict | None) -> dict:
    meta = dict(template)
    meta.update(_versions())
    fmt = json.loads(json.dumps(meta["network_data_format"]))
    for tensor in (*fmt["inputs"].values(), *fmt["outputs"].values()):
        tensor["spatial_shape"] = [size, size]  # what the preprocessing feeds this trained network
    meta["network_data_format"] = fmt
    meta["training"] = {
        "encoder": encoder,
        "image_size": size,
        **{k: record[k] for k in ("settings", "pretrained", "preparation", "budget", "train_slices") if k in record},
    }
    meta["onnx"] = {
        "opset": onnx.opset,
        "input_name": "image",
        "dynamic_batch": True,
        "max_abs_diff_vs_pytorch": {str(k): v for k, v in onnx.max_abs_diff.items()},
    }
    if metrics is not None:
        meta["eval_metrics"] = metrics
    return meta


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Hold a logger to warnings and errors (ckpt_export logs every argument it was given)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _check_torchscript(path: Path, network, size: int) -> float:
    import torch

    scripted = torch.jit.load(str(path), map_location="cpu").eval()
    images = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((scripted(images) - network(images)).abs().max())
    if not diff <= TORCHSCRIPT_ATOL:
        raise CardiosegError(f"{path}: TorchScript differs from PyTorch by {diff:.3g} (> {TORCHSCRIPT_ATOL:g})")
    return diff


def package_run(run_dir: str | Path, out: str | Path | None = None, overwrite: bool = False) -> dict:
    """Export a training run as a bundle in ``out`` (default ``RUN/cardiac_sax_seg``); see the module docstring.

    The run's ``models/model.pt`` must be a U-Net of the encoder its ``data.json`` records (a checkpoint of
    another depth is a DataError naming it, never a different network). An existing export at the default
    place is replaced; another non-empty ``out`` only with ``overwrite``. Returns ``{"bundle_dir",
    "metadata", "model_files"}``; ``model_files`` maps each model file (relative to the bundle) to its
    sha256 (and, for ONNX, the export check).
    """
    from monai.bundle import ckpt_export

    from .checkpoint import file_sha256, save_torch_atomic
    from .export import export_onnx
    from .inference import encoder_of_state_dict, read_state_dict
    from .nets import build_unet, decoder_channels_of

    run_dir = Path(run_dir)
    checkpoint = run_dir / "models" / "model.pt"
    if not checkpoint.is_file():
        raise DataError(checkpoint, "no trained model here (run the bundle's training first)")
    target = run_dir / BUNDLE_NAME if out is None else Path(out)
    if target.resolve() == run_dir.resolve():
        raise CardiosegError(f"{target}: export into a folder of its own, not into the run folder")
    previous_export = (target / LARGE_FILES).is_file() and (target / "configs" / "metadata.json").is_file()
    replace = overwrite or (out is None and previous_export)
    if not (BUNDLE_DIR / "configs" / "inference.json").is_file():
        raise DataError(BUNDLE_DIR, "bundle files not found (a broken installation of cardioseg)")

    record, size, recorded = _run_record(run_dir)
    metrics = _eval_metrics(run_dir)
    state = read_state_dict(checkpoint)
    found = encoder_of_state_dict(state, checkpoint)
    if found != recorded:
        raise DataError(checkpoint, f"holds {found} weights but {run_dir / 'data.json'} records encoder {recorded}")
    architecture = {"encoder": found, "out_channels": 4, "decoder_channels": decoder_channels_of(state)}
    network = build_unet(**architecture)
    network.load_state_dict(state, strict=True)
    network.eval()
    template = _read_json(BUNDLE_DIR / "configs" / "metadata.json", "bundle metadata")
    inference = _read_json(BUNDLE_DIR / "configs" / "inference.json", "bundle inference config")
    inference["image_size"] = size

    with atomic_directory(target, overwrite=replace) as stage:
        for item in SHIPPED:
            source, dest = BUNDLE_DIR / item, stage / item
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest)
            else:
                shutil.copy2(source, dest)
        write_json(stage / "configs" / "inference.json", inference)
        shutil.copy2(run_dir / "data.json", stage / "data.json")
        models = stage / "models"
        save_torch_atomic(
            {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}, models / "model.pt"
        )
        onnx = export_onnx(network, models / "model.onnx", spatial_size=(size, size))
        metadata = _export_metadata(template, record, size, found, onnx, metrics)
        write_json(stage / "configs" / "metadata.json", metadata)
        with warnings.catch_warnings(), _quiet("monai.bundle.scripts"):
            warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
            ckpt_export(
                net_id="network_def",
                filepath=str(models / "model.ts"),
                ckpt_file=str(models / "model.pt"),
                meta_file=str(stage / "configs" / "metadata.json"),
                config_file=str(stage / "configs" / "inference.json"),
                bundle_root=str(stage),
                network_def={"_target_": "cardioseg.nets.build_unet", **architecture},
            )
        _check_torchscript(models / "model.ts", network, size)
        hashes = {name: file_sha256(stage / name) for name in MODEL_FILES}
        write_text_atomic(stage / LARGE_FILES, large_files_yaml(hashes))
        check_large_files(stage)

    model_files: dict[str, dict] = {name: {"sha256": sha} for name, sha in hashes.items()}
    model_files["models/model.onnx"].update(
        opset=onnx.opset, input_size=[size, size], max_abs_diff_vs_pytorch=onnx.max_abs_diff
    )
    return {"bundle_dir": target, "metadata": metadata, "model_files": model_files}
