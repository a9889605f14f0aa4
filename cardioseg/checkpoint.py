"""The project's checkpoint file: a state dict with a small provenance header, written atomically.

Layout: ``{"cardioseg_checkpoint": 1, "meta": {...}, "state_dict": {name: tensor}}``. Everything in it
loads with ``torch.load(weights_only=True)``, so reading a checkpoint never runs code from the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import torch

from .atomic import write_bytes_atomic
from .errors import DataError

FORMAT_KEY = "cardioseg_checkpoint"
FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"


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
    with open(path, "rb") as handle:
        start = handle.read(4)
    # torch.save writes a zip archive (legacy files: a pickle, protocol 2+ starts with 0x80). Anything else
    # would reach the weights-only unpickler, whose complaint about a text file's first byte
    # ("Unsupported operand 118") reads as if the file tried to run code.
    if not start.startswith((ZIP_MAGIC, b"\x80")):
        raise DataError(path, "not a readable PyTorch file (neither the zip archive torch.save writes nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        if "Weights only load failed" in str(e):
            raise DataError(
                path,
                f"refused by torch.load(weights_only=True), which never runs code from a file "
                f"({_refusal_reason(str(e))}); "
                "a checkpoint must hold tensors and plain containers only: re-save the state dict alone",
            ) from None
        first = str(e).strip().split(". ")[0].strip().rstrip(".") or type(e).__name__
        raise DataError(path, f"not a readable PyTorch file, truncated or corrupt ({first})") from None


def _refusal_reason(message: str) -> str:
    """What torch's weights-only refusal says was refused (``Unsupported global: GLOBAL posix.system``),
    without its advice to switch the safety off, the one thing a user must not do with such a file."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\. |\n|$)", message)
    if found is None:
        found = re.search(r"^\s*(Trying to load .+?|.*[Uu]nsupported .+?)(?:\. |\n|$)", message, re.MULTILINE)
    return found.group(1).strip().rstrip(".") if found else "it holds Python objects besides tensors"


def save_torch_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` through memory, then an atomic write: the zip archive inside a ``.pt`` file is named
    after the file it is first written to, so saving straight to a temporary file put that random name into
    the bytes, and two saves of the same tensors got different sha256 values."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


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
        "torch": torch.__version__,
        "extra": extra or {},
    }
    meta = json.loads(json.dumps(meta))  # TypeError here, not an unloadable file later
    payload = {
        FORMAT_KEY: FORMAT_VERSION,
        "meta": meta,
        "state_dict": {name: t.detach().cpu() for name, t in state_dict.items()},
    }
    save_torch_atomic(payload, path)
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
