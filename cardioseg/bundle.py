"""Where the MONAI bundle lives, and command-line overrides for it."""

from __future__ import annotations

import ast
from pathlib import Path

from .errors import CardiosegError

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "bundles" / "cardiac_sax_seg"
TRAIN_CONFIG = BUNDLE_DIR / "configs" / "train.json"


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
