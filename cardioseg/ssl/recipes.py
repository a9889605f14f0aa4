"""The pretraining recipes (``pretraining/configs/*.json``), by name: beside the package in a source
checkout, or inside it where a wheel installs them (``cardioseg.shipped``)."""

from __future__ import annotations

from pathlib import Path

from ..shipped import named_config, shipped_dir

RECIPES = ("generalist", "specialist", "hierarchical")


def recipes_dir() -> Path:
    return shipped_dir("pretraining/configs", f"{RECIPES[0]}.json")


def recipe_path(name: str) -> Path:
    """A recipe by name, or a path to a recipe file."""
    return named_config("recipe", name, "pretraining/configs", RECIPES)
