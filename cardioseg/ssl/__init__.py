"""Pretraining methods for the U-Net's encoder (or whole U-Net), one small module each, built on lightly.

``METHODS`` maps the names recipes use to the classes; ``build_method`` makes one with checked options.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..settings import SettingError, as_flag, real_number, whole_number
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


# The number options that are rates or ratios: (low, high, open_low, open_high). Every other one is a size
# (a whole number, at least 1): a head's width, a patch's side, a queue's length.
_OPTION_BOUNDS = {
    "temperature": (0.0, None, True, False),
    "momentum_start": (0.0, 1.0, False, False),
    "momentum_end": (0.0, 1.0, False, False),
    "mask_ratio": (0.0, 1.0, True, True),
    "label_smoothing": (0.0, 1.0, False, True),
}


def check_method_options(name: str, options: Any, image_size: int | None = None) -> dict[str, Any]:
    """A recipe's ``method_options`` for method ``name``: a dict of the options its class takes besides
    the encoder (and, supervised, the number of classes, which the data give), each checked by the kind of
    its default (a flag, a size, a rate in its bounds) and, with ``image_size``, against the image size."""
    if not isinstance(options, dict):
        raise SettingError("method_options", options, "expected a dict of option: value")
    parameters = inspect.signature(METHODS[name]).parameters
    allowed = [p for p in parameters if p not in ("encoder", "num_classes")]
    checked = {}
    for key, value in options.items():
        if key not in allowed:
            raise SettingError("method_options", key, f"method {name!r} takes {', '.join(allowed) or 'no options'}")
        setting, default = f"method_options#{key}", parameters[key].default
        if isinstance(default, bool):
            checked[key] = as_flag(value, setting)
        elif isinstance(default, int):
            checked[key] = whole_number(setting, value, minimum=1)
        else:
            checked[key] = real_number(setting, value, *_OPTION_BOUNDS.get(key, (None, None, False, False)))
    if image_size is not None:
        METHODS[name].check_image_size(checked, image_size)
    return checked


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
