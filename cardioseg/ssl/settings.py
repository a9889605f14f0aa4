"""A pretraining recipe's settings, checked together before any data is read or any file written.

Each check names the setting, the value and what is allowed (``cardioseg.settings``), so ``cardioseg
pretrain`` prints one line and exits 2. ``check_pretrain_settings`` returns the settings as the run
records them: ``data`` always a list of paths, ``init`` "none" when there is none.
"""

from __future__ import annotations

from typing import Any

from ..nets import ENCODERS, SIZE_DIVISOR, is_weights_name
from ..settings import (
    SettingError,
    as_flag,
    choice,
    existing_path,
    is_none,
    multiple_of,
    output_folder,
    real_number,
    whole_number,
)
from . import METHODS, check_method_options
from .trainer import OPTIMIZERS
from .views import ViewConfig


def data_paths(value: Any) -> list[str]:
    """``data`` as a list of paths: one path, a list of them, or a command line's ``['a', 'b']``."""
    paths = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else None
    if not paths or any(is_none(p) for p in paths):
        raise SettingError("data", value, "give one or more data folders (or slice cache files)")
    checked = [existing_path("data", path) for path in paths]
    resolved = [path.resolve() for path in checked]
    for i, inner in enumerate(resolved):
        for j, outer in enumerate(resolved):
            if i != j and (outer in inner.parents or (inner == outer and i > j)):
                raise SettingError(
                    "data", value, f"{checked[i]} is {checked[j]} or lies inside it: its images would be read twice"
                )
    return [str(path) for path in checked]


def check_pretrain_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Every setting of a recipe's ``settings`` checked (cheap checks: nothing is read); returns them as
    the run records them: numbers as numbers, ``data`` a list of paths, ``init`` "none" when there is none."""
    s = dict(settings)
    choice("method", s["method"], METHODS)
    choice("encoder", s["encoder"], ENCODERS)
    s["data"] = data_paths(s["data"])
    s["init"] = "none" if is_none(s["init"]) else str(s["init"])
    if s["init"] != "none" and not is_weights_name(s["init"]):
        existing_path("init", s["init"], kind="file")
    s["image_size"] = multiple_of("image_size", s["image_size"], SIZE_DIVISOR)
    s["epochs"] = whole_number("epochs", s["epochs"], minimum=1)
    s["batch_size"] = whole_number("batch_size", s["batch_size"], minimum=2)  # batch norm in the heads needs 2
    s["epoch_length"] = whole_number("epoch_length", s["epoch_length"], minimum=s["batch_size"], optional=True)
    choice("optimizer", s["optimizer"], OPTIMIZERS)
    s["learning_rate"] = real_number("learning_rate", s["learning_rate"], 0.0, open_low=True)
    s["weight_decay"] = real_number("weight_decay", s["weight_decay"], 0.0)
    s["warmup_epochs"] = whole_number("warmup_epochs", s["warmup_epochs"], minimum=0)
    if s["warmup_epochs"] > s["epochs"]:
        raise SettingError("warmup_epochs", s["warmup_epochs"], f"must not exceed epochs ({s['epochs']})")
    s["seed"] = whole_number("seed", s["seed"], minimum=0)
    s["method_options"] = check_method_options(s["method"], s["method_options"] or {}, s["image_size"])
    ViewConfig.from_settings(s["augmentation"])
    return s


def check_run_options(output_dir: Any, options: dict[str, Any]) -> dict[str, bool]:
    """The flags that steer a run but are not part of its record (resume, overwrite), parsed."""
    output_folder("output_dir", output_dir)
    return {name: as_flag(value, name) for name, value in options.items()}
