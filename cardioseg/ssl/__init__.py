"""Pretraining methods for the U-Net's encoder (or whole U-Net), one small module each, built on lightly.

``METHODS`` maps the names recipes use to the classes; ``build_method`` makes one with checked options.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..settings import SettingError
from .base import EncoderMethod, MomentumMethod, PretrainMethod
from .byol import BYOL
from .mim import MaskedImageModelling
from .moco import MoCo
from .simclr import SimCLR
from .supervised import Supervised
from .vicreg import VICReg

METHODS: dict[str, type[PretrainMethod]] = {
    cls.name: cls for cls in (BYOL, SimCLR, MoCo, VICReg, MaskedImageModelling, Supervised)
}

__all__ = ["METHODS", "EncoderMethod", "MomentumMethod", "PretrainMethod", "build_method", "check_method_options"]


def check_method_options(name: str, options: Any) -> dict[str, Any]:
    """A recipe's ``method_options`` for method ``name``: a dict of the options its class takes besides
    the encoder (and, supervised, the number of classes, which the data give)."""
    if not isinstance(options, dict):
        raise SettingError("method_options", options, "expected a dict of option: value")
    allowed = [p for p in inspect.signature(METHODS[name]).parameters if p not in ("encoder", "num_classes")]
    for key in options:
        if key not in allowed:
            raise SettingError("method_options", key, f"method {name!r} takes {', '.join(allowed) or 'no options'}")
    return options


def build_method(
    name: str, encoder: str, options: dict[str, Any] | None = None, num_classes: int | None = None
) -> PretrainMethod:
    """The method ``name`` on a fresh ``encoder``; an option it does not take is a SettingError."""
    options = dict(check_method_options(name, options or {}))
    if METHODS[name].needs_labels:
        options["num_classes"] = num_classes
    try:
        return METHODS[name](encoder, **options)
    except (TypeError, ValueError) as exc:
        raise SettingError("method_options", options, str(exc)) from None
