"""The project's checkpoint file: a state dict with a small provenance header, written atomically.

Layout: ``{"cardioseg_checkpoint": 1, "meta": {...}, "state_dict": {name: tensor}}``. Everything in it
loads with ``torch.load(weights_only=True)``, so reading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path
from .errors import DataError

FORMAT_KEY = "cardioseg_checkpoint"
FORMAT_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes: names exactly which weights a run started from."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_torch_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU; every failure becomes a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "not found" if not path.exists() else "is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        detail = str(e)
        # weights_only refusals bury the useful line in a long explanation.
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n|$)", detail)
        if found:
            raise DataError(
                path,
                f"cannot be loaded safely (weights_only=True): {found.group(1).strip()} "
                "(corrupt, or holds Python objects besides tensors: re-save the state dict alone)",
            ) from e
        first_line = detail.strip().splitlines()[0] if detail.strip() else type(e).__name__
        raise DataError(path, f"not a readable PyTorch file ({first_line})") from e


def save_checkpoint(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    *,
    method: str,
    source: str,
    epoch: int,
    encoder: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically and return the sha256 of the written file.

    ``method`` is how the weights were made (``byol``, ``supervised``, ...), ``source`` what they started
    from (a path with its sha256, a torchvision name, ``random``), ``encoder`` the architecture name.
    ``extra`` must be JSON-like (it is stored as plain lists/dicts so that safe loading accepts it).
    """
    meta = {
        "method": method,
        "source": str(source),
        "epoch": int(epoch),
        "encoder": encoder,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "extra": extra or {},
    }
    meta = json.loads(json.dumps(meta))  # TypeError here, not an unloadable file later
    payload = {
        FORMAT_KEY: FORMAT_VERSION,
        "meta": meta,
        "state_dict": {name: t.detach().cpu() for name, t in state_dict.items()},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return file_sha256(path)


def is_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is in this project's checkpoint layout."""
    return isinstance(obj, dict) and FORMAT_KEY in obj


def unpack_checkpoint(path: str | Path, obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an already loaded checkpoint into (state_dict, meta), checking its layout."""
    if not is_checkpoint(obj):
        raise DataError(path, f"not a cardioseg checkpoint (no {FORMAT_KEY!r} key)")
    if obj[FORMAT_KEY] != FORMAT_VERSION:
        raise DataError(path, f"checkpoint format {obj[FORMAT_KEY]!r}; this cardioseg reads {FORMAT_VERSION}")
    if not isinstance(obj.get("state_dict"), dict) or not isinstance(obj.get("meta"), dict):
        raise DataError(path, "cardioseg checkpoint without a 'state_dict' and 'meta'")
    return obj["state_dict"], obj["meta"]


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; ``meta`` gains ``sha256``, the file's hash, for whoever records its use."""
    state_dict, meta = unpack_checkpoint(path, load_torch_file(path))
    return state_dict, {**meta, "sha256": file_sha256(path)}
