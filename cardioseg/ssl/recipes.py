"""Where the pretraining recipes (``pretraining/configs/*.json``) are: beside the package in a source
checkout, or inside it where a wheel installs them (``cardioseg/pretraining/configs``)."""

from __future__ import annotations

from pathlib import Path

from ..settings import SettingError

RECIPES = ("generalist", "specialist", "hierarchical")


def recipes_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "pretraining" / "configs", package.parent / "pretraining" / "configs"):
        if (candidate / "specialist.json").is_file():
            return candidate
    return package.parent / "pretraining" / "configs"  # named in the error that follows


def recipe_path(name: str) -> Path:
    """A recipe by name, or a path to a recipe file."""
    if name in RECIPES:
        return recipes_dir() / f"{name}.json"
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    raise SettingError("recipe", name, f"choose one of {', '.join(RECIPES)}, or give a recipe .json file")
