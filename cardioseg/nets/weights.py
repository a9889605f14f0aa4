"""Pretrained weights into the U-Net, from every source the study compares.

Sources: torchvision or timm ResNet state-dict files, torchvision weights by name, BYOL / solo-learn
self-supervised checkpoints, and this project's own checkpoints: encoder-only ones, and whole-U-Net ones
(masked image modelling pretrains the decoder too; their header says ``scope: unet``), which fill the
decoder as well. A file that does not fit exactly is refused with the offending keys listed: a typo in a
path must never train from random weights.
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
from ..settings import is_none
from .encoder import ResNetEncoder, encoder_of

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


SCOPES = ("encoder", "unet")  # what a cardioseg pretraining checkpoint holds: the encoder, or encoder + decoder


@dataclass(frozen=True)
class LoadedWeights:
    """What went into the network, for the run's metadata."""

    source: str  # the file, or the torchvision weights' name
    prefix: str  # where in the file the backbone was ("" for a bare state dict)
    sha256: str | None  # of the file (None for weights fetched by name)
    meta: dict[str, Any] = field(default_factory=dict)  # the header of a cardioseg checkpoint
    scope: str = "encoder"  # "unet": the decoder was loaded too

    def describe(self) -> dict[str, Any]:
        """For a run's ``data.json``: which file (sha256), where in it, what it filled, its header."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "prefix": self.prefix,
            "scope": self.scope,
            "header": self.meta,
        }


@dataclass(frozen=True)
class _Source:
    """A weight source read once: its tensors under flat dotted keys, and where they came from."""

    tensors: dict[str, torch.Tensor]
    origin: Path | str  # a Path for files (errors name them as DataError), else the weights' name
    sha256: str | None
    meta: dict[str, Any]

    @property
    def scope(self) -> str:
        """A cardioseg checkpoint's ``scope`` header; every other source holds an encoder."""
        return (self.meta.get("extra") or {}).get("scope", "encoder")


def is_weights_name(source: Any) -> bool:
    """Whether ``source`` names downloadable weights (``imagenet``, ``torchvision:ARCH[:TAG]``), not a file."""
    return isinstance(source, str) and (source == "imagenet" or source.startswith("torchvision:"))


def load_encoder_weights(model_or_encoder: nn.Module, source: Any) -> LoadedWeights | None:
    """Copy weights from ``source`` into the encoder (of a ``build_unet`` model, or the encoder itself).

    ``source``: None (keep the random initialisation), a file path, ``"imagenet"`` (torchvision's default
    ImageNet weights for the encoder's depth) or ``"torchvision:resnet50[:IMAGENET1K_V1]"``. Of a
    whole-U-Net checkpoint only the encoder is taken.
    """
    encoder = encoder_of(model_or_encoder)
    if is_none(source):
        return None
    found = _read(source, encoder.name)
    prefix, state = _backbone_of(found.tensors)
    encoder.load_state_dict(_fitting_encoder(encoder, state, found.origin, prefix), strict=True)
    logger.info("%s encoder weights from %s (prefix %r)", encoder.name, found.origin, prefix)
    return LoadedWeights(source=str(found.origin), prefix=prefix, sha256=found.sha256, meta=found.meta)


def load_pretrained(unet: nn.Module, source: Any) -> LoadedWeights | None:
    """Pretrained weights into a ``build_unet`` model: the encoder from any source ``load_encoder_weights``
    takes, and the decoder too where ``source`` is a whole-U-Net checkpoint (header ``scope: unet``). Both
    parts are checked before either is changed; the segmentation head always keeps its initialisation."""
    if is_none(source):
        return None
    encoder = encoder_of(unet)
    found = _read(source, encoder.name)
    if found.scope not in SCOPES:
        raise DataError(found.origin, f"checkpoint scope {found.scope!r}; expected one of {', '.join(SCOPES)}")
    prefix, state = _backbone_of(found.tensors)
    encoder_state = _fitting_encoder(encoder, state, found.origin, prefix)
    decoder_state = None
    if found.scope == "unet":
        decoder = getattr(unet, "decoder", None)
        if decoder is None:
            raise CardiosegError(
                f"{found.origin}: holds a whole U-Net; load it into a U-Net, not {type(unet).__name__}"
            )
        decoder_state = _fitting(decoder, _under(found.tensors, "decoder"), found.origin, "decoder", "the decoder")
    encoder.load_state_dict(encoder_state, strict=True)
    if decoder_state is not None:
        unet.decoder.load_state_dict(decoder_state, strict=True)
    logger.info("%s %s weights from %s (prefix %r)", encoder.name, found.scope, found.origin, prefix)
    return LoadedWeights(
        source=str(found.origin), prefix=prefix, sha256=found.sha256, meta=found.meta, scope=found.scope
    )


def _read(source: Any, encoder_name: str) -> _Source:
    """The tensors of a file or of torchvision weights named ``source``, for an encoder ``encoder_name``."""
    path = Path(source)
    if not path.exists() and is_weights_name(source):
        state, name = _torchvision_by_name(source, encoder_name)
        return _Source(tensors=_flat(state), origin=name, sha256=None, meta={})
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
        if meta.get("encoder") not in (None, encoder_name):
            raise DataError(path, f"holds {meta['encoder']} weights; the network's encoder is {encoder_name}")
    if not isinstance(obj, dict):
        raise DataError(path, f"holds a {type(obj).__name__}, not a state dict")
    if {"trainer", "optimizer"} <= set(obj):
        raise DataError(path, "is a run's resume state (last.pt): pass its models/final.pt or model.pt")
    tensors = _flat(obj)
    broken = next((key for key, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()), None)
    if broken is not None:
        raise DataError(path, f"holds NaN or infinite weights ({broken}): the run that wrote it diverged")
    return _Source(tensors=tensors, origin=path, sha256=file_sha256(path), meta=meta)


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


def _flat(obj: dict) -> dict[str, torch.Tensor]:
    """Every tensor under a dotted key, without DataParallel/DDP's ``module.`` and Lightning's
    ``state_dict.`` wrappers."""
    flat = {}
    for key, value in _flatten(obj).items():
        parts = [p for p in key.split(".") if p != "module"]
        if parts[0] == "state_dict":  # Lightning and solo-learn checkpoints
            parts = parts[1:]
        flat[".".join(parts)] = value
    return flat


def _under(flat: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in flat.items() if k.startswith(prefix + ".")}


def _backbone_of(flat: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """The backbone's tensors with encoder-relative keys, and the prefix they were found under."""
    for prefix in BACKBONE_PREFIXES:
        found = _under(flat, prefix)
        if found:
            return prefix, found
    return "", flat


def _fitting_encoder(
    encoder: ResNetEncoder, state: dict[str, torch.Tensor], origin: Path | str, prefix: str
) -> dict[str, torch.Tensor]:
    """An encoder's state from a file's backbone: the ImageNet classifier dropped, an RGB stem made grey."""
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    _grey_first_conv(state, encoder)
    return _fitting(encoder, state, origin, prefix, f"the {encoder.name} encoder")


def _fitting(
    module: nn.Module, state: dict[str, torch.Tensor], origin: Path | str, prefix: str, what: str
) -> dict[str, torch.Tensor]:
    """``module``'s full state dict from ``state`` if it fits exactly, else refuse, listing what does not fit."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        where = f" (keys under {prefix!r})" if prefix else ""
        problem = f"does not fit {what}{where}: " + "; ".join(
            _listing(kind, keys)
            for kind, keys in (
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
    return {**expected, **state}


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
