"""Segment short-axis NIfTI volumes slice by slice with a trained U-Net (the SSL4MIS protocol).

Each 3D volume ``(slices, rows, cols)`` is percentile-normalised as training normalises raw data
(:func:`cardioseg.data.slicing.normalize_intensity`, 0th/99th percentile), every slice is resized to
``image_size`` squared, segmented, and the labels are resized back with nearest neighbour
(:func:`cardioseg.metrics.predict_volume_ssl4mis`), then each class keeps its largest 3D connected
component (``Segmenter``'s ``postprocess``). Outputs are uint8 ACDC labels (0 BG, 1 RV, 2 MYO, 3 LV) with
the input's affine, written atomically as ``OUT/<name>_seg.nii.gz``.

Used by the bundle's ``configs/evaluate.json`` and usable on its own. The bundle's ``configs/inference.json``
does the same with MONAI alone (for sites without this package) and is tested to give identical labels::

    segmenter = build_segmenter("runs/train/models/model.pt")        # encoder read from the weights
    labels = segmenter.segment(volume)                                 # (S, H, W) float -> uint8
    segment_files(segmenter, find_inputs("nifti_dir"), "out")          # files in, files out

Checkpoints load with ``torch.load(..., weights_only=True)``: a plain state dict (``models/model.pt``),
a resume checkpoint (``models/last.pt``, its ``model`` entry) or a dict with a ``state_dict`` entry. The
network is built for the encoder the weights hold; a missing checkpoint is an error, never a default network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import is_checkpoint, load_torch_file, unpack_checkpoint
from .data.nifti_io import load_nifti, save_nifti
from .data.slicing import normalize_intensity
from .data.validate import check_image
from .errors import CardiosegError, DataError
from .metrics import predict_volume_ssl4mis
from .nets.unet import ENCODERS, SIZE_DIVISOR, build_encoder, decoder_channels_of
from .postprocess import check_postprocessing, postprocess_labels
from .settings import as_flag, is_none

logger = logging.getLogger("cardioseg.inference")

DEFAULT_IMAGE_SIZE = 256  # the SSL4MIS protocol's slice size
DEFAULT_PERCENTILES = (0.0, 99.0)
NIFTI_SUFFIXES = (".nii.gz", ".nii")
OUTPUT_SUFFIX = "_seg.nii.gz"
LABEL_SUFFIXES = ("_gt", "_seg")  # ACDC ground truth and our own outputs are never inputs
IN_PLANE_FLIPS = ((), (-1,), (-2,), (-2, -1))  # flip test-time augmentation: each mirror of a slice


# --- checkpoints ---------------------------------------------------------------------------------


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The network weights (and any metadata header) inside any checkpoint layout cardioseg writes."""
    meta: dict[str, Any] = {}
    if is_checkpoint(obj):
        obj, meta = unpack_checkpoint(path, obj)  # a state dict behind a metadata header
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # models/last.pt: network, optimiser, scheduler, ...
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(path, "checkpoint holds no network state dict")
    state = {}
    for key, value in obj.items():
        for prefix in ("_orig_mod.", "module."):  # torch.compile / DataParallel wrappers
            key = key.removeprefix(prefix)
        state[key] = value
    return state, meta


def read_checkpoint(ckpt_path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` from a checkpoint file, loaded with ``weights_only=True`` onto the CPU;
    ``meta`` is the metadata header where the file has one, else empty."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(path, "checkpoint not found (train the bundle first, or pass --ckpt_path)")
    return _unwrap(load_torch_file(path), path)


def read_state_dict(ckpt_path: str | Path) -> dict[str, torch.Tensor]:
    """Network weights from a checkpoint file (see :func:`read_checkpoint`)."""
    return read_checkpoint(ckpt_path)[0]


def encoder_of_state_dict(state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> str:
    """The encoder name (resnet18/34/50) whose parameter names and shapes match ``encoder.*`` of ``state``."""
    shapes = {k.removeprefix("encoder."): tuple(v.shape) for k, v in state.items() if k.startswith("encoder.")}
    if not shapes:
        raise DataError(source, "checkpoint has no 'encoder.*' weights: not a cardioseg U-Net")
    for name in ENCODERS:
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            reference = build_encoder(name, in_channels=shapes.get("conv1.weight", (0, 1))[1])
        if {k: tuple(v.shape) for k, v in reference.state_dict().items()} == shapes:
            return name
    raise DataError(source, f"encoder weights match none of {', '.join(ENCODERS)}")


def resolve_encoder(encoder: str | None, ckpt_path: str | Path | None, recorded: str | None = None) -> str:
    """The encoder to build: ``encoder`` if given, else the one whose weights ``ckpt_path`` holds.

    Without ``encoder``, the checkpoint must exist: a missing one is a DataError naming it, never a default
    network (which would then load only some of the weights). ``recorded`` is the encoder the run recorded
    (``data.json``); a checkpoint of another depth is a DataError naming it.
    """
    if not is_none(encoder):
        if encoder not in ENCODERS:
            raise CardiosegError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
        return str(encoder)
    if is_none(ckpt_path):
        raise CardiosegError("no checkpoint to read the encoder from: pass --ckpt_path FILE or --encoder NAME")
    state, meta = read_checkpoint(ckpt_path)  # DataError naming the file when it is missing or unreadable
    name = meta.get("encoder")
    if name not in ENCODERS:
        name = encoder_of_state_dict(state, ckpt_path)
    if not is_none(recorded) and recorded != name:
        raise DataError(ckpt_path, f"holds {name} weights but the run recorded encoder {recorded}")
    logger.info("encoder %s (read from %s)", name, ckpt_path)
    return name


def run_data_json(ckpt_path: str | Path) -> Path:
    """Where a training run keeps ``data.json`` for its ``models/model.pt``."""
    return Path(ckpt_path).resolve().parent.parent / "data.json"


def resolve_image_size(image_size: int | str | None, ckpt_path: str | Path | None = None) -> int:
    """``image_size`` if given; else the size the run trained at (its ``data.json``); else 256."""
    if is_none(image_size):
        recorded = None
        data_json = None if ckpt_path is None else run_data_json(ckpt_path)
        if data_json is not None and data_json.is_file():
            try:
                recorded = json.loads(data_json.read_text())["preparation"]["size"]
            except (json.JSONDecodeError, KeyError, TypeError):
                logger.warning("%s: no preparation.size recorded; using %d", data_json, DEFAULT_IMAGE_SIZE)
        image_size = DEFAULT_IMAGE_SIZE if recorded is None else recorded
        logger.info("image size %s (%s)", image_size, "from " + str(data_json) if recorded else "default")
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        raise CardiosegError(f"image_size must be a whole number, got {image_size!r}") from None
    if size <= 0 or size % SIZE_DIVISOR:
        raise CardiosegError(f"image_size must be a positive multiple of {SIZE_DIVISOR}, got {size}")
    return size


def resolve_decoder_channels(ckpt_path: str | Path | None) -> tuple[int, ...] | None:
    """The decoder channels the checkpoint's U-Net was trained with (the bundle's ``decoder_channels``);
    None (the default decoder) without a checkpoint file, whose absence loading then reports."""
    if is_none(ckpt_path) or not Path(ckpt_path).is_file():
        return None
    return decoder_channels_of(read_state_dict(ckpt_path))


def load_network(network: torch.nn.Module, ckpt_path: str | Path, device: torch.device | str = "cpu"):
    """Load a checkpoint's weights into ``network`` (strictly) and return it on ``device`` in eval mode."""
    state = read_state_dict(ckpt_path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        try:
            found = f" (the checkpoint's encoder is {encoder_of_state_dict(state, ckpt_path)})"
        except DataError:
            found = ""
        first = str(exc).strip().splitlines()[0]
        raise DataError(ckpt_path, f"weights do not fit the network{found}: {first}") from None
    return network.to(device).eval()


# --- prediction ----------------------------------------------------------------------------------


class Segmenter:
    """A trained U-Net plus the SSL4MIS slice protocol: a ``(S, H, W)`` volume in, uint8 labels out.

    ``flip_tta`` averages each slice's prediction with its mirrors' (4x the inference); ``postprocess``
    cleans the labelled volume (:data:`cardioseg.postprocess.POSTPROCESSING`: none, largest, clean). The
    defaults (off, ``largest``) are what ``benchmarks/eval_options.py`` measured best on real ACDC; the
    portable ``inference.json`` keeps the largest components too.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        image_size: int = DEFAULT_IMAGE_SIZE,
        device: torch.device | str | None = None,
        batch_size: int = 32,
        amp: bool | str = False,
        percentiles: Sequence[float] | None = DEFAULT_PERCENTILES,
        image_order: int = 1,
        flip_tta: bool | str = False,
        postprocess: str = "largest",
    ):
        self.image_size = resolve_image_size(image_size)
        self.device = torch.device(device) if device is not None else next(network.parameters()).device
        self.network = network.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.amp = as_flag(amp) and self.device.type == "cuda"
        self.percentiles = None if is_none(percentiles) else tuple(float(p) for p in percentiles)
        if self.percentiles is not None and len(self.percentiles) != 2:
            raise CardiosegError(f"percentiles must be [lower, upper], got {list(self.percentiles)}")
        self.image_order = int(image_order)
        self.flip_tta = as_flag(flip_tta, "flip_tta")
        self.postprocess = check_postprocessing(postprocess)

    @torch.inference_mode()
    def predict_slices(self, batch: np.ndarray) -> torch.Tensor:
        """``(N, 1, size, size)`` float32 slices to ``(N, size, size)`` uint8 labels (on the CPU).

        With ``flip_tta`` the class probabilities of the slice and its three in-plane mirrors are averaged,
        as nnU-Net's mirroring does (hand-written: MONAI's ``TestTimeAugmentation`` draws random transforms
        and votes on labels, where four fixed flips averaged as probabilities are what is wanted here).
        """
        images = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if not self.flip_tta:
                return self.network(images).argmax(dim=1).to(torch.uint8).cpu()
            probabilities = sum(
                self.network(images.flip(dims)).float().softmax(dim=1).flip(dims) for dims in IN_PLANE_FLIPS
            )
        return probabilities.argmax(dim=1).to(torch.uint8).cpu()

    def segment(self, image: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Labels of one ``(slices, rows, cols)`` volume; ``normalize`` applies the percentile scaling
        (turn it off for data normalised already, such as SSL4MIS h5 volumes)."""
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3:
            raise ValueError(f"expected a (slices, rows, cols) volume, got shape {image.shape}")
        if normalize and self.percentiles is not None:
            image = normalize_intensity(image, *self.percentiles)
        labels = predict_volume_ssl4mis(
            self.predict_slices,
            image,
            size=self.image_size,
            image_order=self.image_order,
            batch_size=self.batch_size,
        )
        return postprocess_labels(labels, self.postprocess)


def build_segmenter(
    ckpt_path: str | Path,
    encoder: str | None = None,
    image_size: int | None = None,
    device: torch.device | str | None = None,
    **options: Any,
) -> Segmenter:
    """A :class:`Segmenter` from a checkpoint; encoder and image size default to what the run used."""
    from .nets.unet import build_unet

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = resolve_encoder(encoder, ckpt_path)
    network = build_unet(encoder, out_channels=4, decoder_channels=resolve_decoder_channels(ckpt_path))
    network = load_network(network, ckpt_path, device)
    return Segmenter(network, resolve_image_size(image_size, ckpt_path), device=device, **options)


# --- files ---------------------------------------------------------------------------------------


def volume_name(path: str | Path) -> str:
    """A NIfTI file's name without ``.nii.gz`` / ``.nii``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES)


def _wanted(path: Path) -> bool:
    """Images only: no label files; in a raw ACDC patient folder only its frames (not the 4D cine)."""
    name = volume_name(path)
    if name.lower().endswith(LABEL_SUFFIXES):
        return False
    if (path.parent / "Info.cfg").is_file():
        return "_frame" in name and not name.endswith("_4d")
    return True


def _read_datalist(datalist: str | Path | Iterable[Any]) -> list[Path]:
    """Paths from a list, a ``.txt`` (one per line) or a JSON list / MONAI datalist (``{"testing": [...]}``,
    entries a path or ``{"image": path}``); relative paths are relative to the datalist file."""
    if isinstance(datalist, str | Path):
        source = Path(datalist)
        if not source.is_file():
            raise DataError(source, "datalist file not found")
        base = source.parent
        if source.suffix.lower() == ".json":
            try:
                entries = json.loads(source.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(source, f"datalist is not valid JSON ({exc})") from None
            if isinstance(entries, dict):
                key = next((k for k in ("testing", "test", "inference", "validation") if k in entries), None)
                if key is None:
                    raise DataError(source, f"datalist has no 'testing' list (keys: {sorted(entries)})")
                entries = entries[key]
        else:
            entries = [line.strip() for line in source.read_text().splitlines() if line.strip()]
    else:
        source, base, entries = Path("datalist"), Path("."), list(datalist)
    paths = []
    for entry in entries:
        item = entry.get("image") if isinstance(entry, dict) else entry
        if not isinstance(item, str | Path):
            raise DataError(source, f"datalist entry {entry!r} names no image path")
        paths.append(base / item)
    if not paths:
        raise DataError(source, "datalist lists no images")
    return paths


def find_inputs(dataset_dir: str | Path | None = None, datalist: Any = None) -> list[Path]:
    """The NIfTI volumes to segment: a datalist when given, else every image ``*.nii[.gz]`` under
    ``dataset_dir`` (a folder, searched recursively, or one file). Label files (``*_gt``, ``*_seg``) are
    skipped, and in raw ACDC patient folders (``Info.cfg``) the 4D cine is too: its frames are used."""
    if not is_none(datalist):
        paths = _read_datalist(datalist)
        for path in paths:
            if not path.is_file():
                raise DataError(path, "input listed in the datalist does not exist")
        return paths
    if is_none(dataset_dir):
        raise CardiosegError("nothing to segment: pass --dataset_dir DIR (NIfTI files) or --datalist FILE")
    root = Path(dataset_dir)
    if not root.exists():
        raise DataError(root, "does not exist")
    if root.is_file():
        return [root]
    paths = sorted(p for p in root.rglob("*") if _is_nifti(p) and _wanted(p))
    if not paths:
        raise DataError(root, "no NIfTI images (*.nii.gz, *.nii; label files *_gt/*_seg excluded) found")
    return paths


def read_input(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A 3D volume ``(slices, rows, cols)`` float32 and its affine; anything else is a DataError."""
    image, affine, _ = load_nifti(path)
    if image.ndim != 3:
        raise DataError(
            path, f"expected a 3D volume, got a 4D array of shape {image.shape} (segment one frame at a time)"
        )
    return check_image(image, str(path)), affine


def output_paths(inputs: Sequence[str | Path], output_dir: str | Path) -> list[Path]:
    """``OUT/<name>_seg.nii.gz`` per input; two inputs with one name are refused, not overwritten."""
    seen: dict[str, Path] = {}
    outputs = []
    for path in map(Path, inputs):
        name = volume_name(path)
        if name in seen:
            raise DataError(path, f"has the same name as {seen[name]}: both would write {name}{OUTPUT_SUFFIX}")
        seen[name] = path
        outputs.append(Path(output_dir) / f"{name}{OUTPUT_SUFFIX}")
    return outputs


def segment_files(
    segmenter: Segmenter,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    progress: bool | str = False,
) -> list[Path]:
    """Segment every input into ``output_dir``; returns the written paths.

    Every input is read and checked first, so one bad file stops the run before anything is written.
    Each output is written atomically (a temporary file renamed into place).
    """
    from tqdm import tqdm

    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise DataError(output_dir, "output_dir exists and is not a folder")
    outputs = output_paths(inputs, output_dir)
    show = as_flag(progress)
    for path in tqdm(inputs, desc="checking inputs", unit="volume", disable=not show, leave=False):
        read_input(path)
    for path, out in tqdm(list(zip(inputs, outputs, strict=True)), desc="segmenting", unit="volume", disable=not show):
        image, affine = read_input(path)
        labels = segmenter.segment(image)
        save_nifti(out, labels.astype(np.uint8), affine)
        logger.info("%s -> %s", path, out)
    logger.info("wrote %d segmentations to %s", len(outputs), output_dir)
    return outputs
