"""Pretrained weights into the U-Net's encoder, from every source the study compares.

Sources: torchvision or timm ResNet state-dict files, torchvision weights by name, BYOL / solo-learn
self-supervised checkpoints, and this project's own checkpoints. A file that does not fit the encoder
exactly is refused with the offending keys listed: a typo in a path must never train from random weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import file_sha256, is_checkpoint, load_torch_file, unpack_checkpoint
from ..errors import CardiosegError, DataError
from .unet import ResNetEncoder, encoder_of

logger = logging.getLogger(__name__)

# Where a self-supervised checkpoint keeps the backbone, most preferred first. BYOL keeps an online
# network and a momentum (EMA) copy, the target; like the paper's code (SSL-MedSeg
# models/pretrained_models.py: "target_backbone" in BYOL-ImageNet, "momentum_backbone." in solo-learn), we
# take the target ("backbone_momentum" is lightly's name for it). "encoder" finds the encoder inside a
# whole U-Net state dict.
BACKBONE_PREFIXES = (
    "target_backbone",
    "momentum_backbone",
    "backbone_momentum",
    "backbone",
    "online_backbone",
    "encoder",
)
IGNORED_KEYS = frozenset({"fc.weight", "fc.bias"})  # the ImageNet classifier of torchvision/timm ResNets
_SHOWN_KEYS = 10


@dataclass(frozen=True)
class LoadedWeights:
    """What went into the encoder, for the run's metadata."""

    source: str  # the file, or the torchvision weights' name
    prefix: str  # where in the file the backbone was ("" for a bare state dict)
    sha256: str | None  # of the file (None for weights fetched by name)
    meta: dict[str, Any] = field(default_factory=dict)  # the header of a cardioseg checkpoint


def load_encoder_weights(model_or_encoder: nn.Module, source: Any) -> LoadedWeights | None:
    """Copy weights from ``source`` into the encoder (of a ``build_unet`` model, or the encoder itself).

    ``source``: None (keep the random initialisation), a file path, ``"imagenet"`` (torchvision's default
    ImageNet weights for the encoder's depth) or ``"torchvision:resnet50[:IMAGENET1K_V1]"``.
    """
    encoder = encoder_of(model_or_encoder)
    if source is None:
        return None
    path = Path(source)
    if not path.exists() and isinstance(source, str) and (source == "imagenet" or source.startswith("torchvision:")):
        state, name = _torchvision_by_name(source, encoder.name)
        prefix, state = _backbone_of(state)
        _copy_into(encoder, state, origin=name, prefix=prefix)
        loaded = LoadedWeights(source=name, prefix=prefix, sha256=None)
    else:
        loaded = _load_file(encoder, path)
    logger.info("%s encoder weights from %s (prefix %r)", encoder.name, loaded.source, loaded.prefix)
    return loaded


def _load_file(encoder: ResNetEncoder, path: Path) -> LoadedWeights:
    if path.suffix == ".safetensors":
        raise DataError(
            path,
            "safetensors files are not read here: convert it with "
            "torch.save(safetensors.torch.load_file(IN), OUT) and pass the .pt file",
        )
    obj = load_torch_file(path)
    meta: dict[str, Any] = {}
    if is_checkpoint(obj):
        obj, meta = unpack_checkpoint(path, obj)
        if meta.get("encoder") not in (None, encoder.name):
            raise DataError(path, f"holds {meta['encoder']} weights; the network's encoder is {encoder.name}")
    if not isinstance(obj, dict):
        raise DataError(path, f"holds a {type(obj).__name__}, not a state dict")
    prefix, state = _backbone_of(obj)
    _copy_into(encoder, state, origin=path, prefix=prefix)
    return LoadedWeights(source=str(path), prefix=prefix, sha256=file_sha256(path), meta=meta)


def _torchvision_by_name(source: str, encoder_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's weights through its weights enums (downloaded once into TORCH_HOME, hash-checked)."""
    import torchvision

    parts = source.split(":")
    arch = encoder_name if source == "imagenet" else parts[1]
    tag = parts[2] if len(parts) > 2 else "DEFAULT"
    try:
        weights = torchvision.models.get_model_weights(arch)[tag]
    except (ValueError, KeyError) as e:
        raise CardiosegError(
            f"unknown torchvision weights {source!r}: expected 'torchvision:resnet50' or "
            f"'torchvision:resnet50:IMAGENET1K_V1' ({e})"
        ) from e
    try:
        state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as e:  # no network is a URLError (an OSError); a bad hash a RuntimeError
        raise CardiosegError(
            f"could not fetch {weights} from {weights.url} ({e}). Without network access, download that "
            "file on another machine and pass its path instead of the name"
        ) from e
    return state, str(weights)


def _flatten(obj: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors as dotted keys (BYOL-ImageNet nests: {"target_backbone": {...}})."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            flat[f"{prefix}{key}"] = value
        elif isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _backbone_of(obj: dict) -> tuple[str, dict[str, torch.Tensor]]:
    """The backbone's tensors with encoder-relative keys, and the prefix they were found under."""
    flat = {}
    for key, value in _flatten(obj).items():
        parts = [p for p in key.split(".") if p != "module"]  # DataParallel/DDP wrappers
        if parts[0] == "state_dict":  # Lightning and solo-learn checkpoints
            parts = parts[1:]
        flat[".".join(parts)] = value
    for prefix in BACKBONE_PREFIXES:
        found = {k[len(prefix) + 1 :]: v for k, v in flat.items() if k.startswith(prefix + ".")}
        if found:
            return prefix, found
    return "", flat


def _copy_into(encoder: ResNetEncoder, state: dict[str, torch.Tensor], origin: Any, prefix: str) -> None:
    """Load ``state`` into ``encoder`` if it fits exactly, else refuse, listing what does not fit."""
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    _grey_first_conv(state, encoder)
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        where = f" (keys under {prefix!r})" if prefix else ""
        problem = f"does not fit the {encoder.name} encoder{where}: " + "; ".join(
            _listing(what, keys)
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatches", mismatched),
            )
            if keys
        )
        if isinstance(origin, Path):
            raise DataError(origin, problem)
        raise CardiosegError(f"{origin}: {problem}")
    # num_batches_tracked only counts training steps; files from timm often leave it out.
    encoder.load_state_dict({**expected, **state}, strict=True)


def _grey_first_conv(state: dict[str, torch.Tensor], encoder: ResNetEncoder) -> None:
    """An RGB stem summed over colour: on a grey image (R = G = B) it gives the RGB network's response.

    Hand-written (timm's adapt_input_conv does the same) because timm is not a dependency.
    """
    weight = state.get("conv1.weight")
    if weight is not None and weight.ndim == 4 and weight.shape[1] == 3 and encoder.conv1.in_channels == 1:
        state["conv1.weight"] = weight.float().sum(dim=1, keepdim=True).to(weight.dtype)


def _listing(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} {what}: {shown}{more}"
