"""Where a folder of configs that lives beside the package is: inside it in a wheel, beside it in a checkout.

The bundle (``bundles/cardiac_sax_seg``), the pretraining recipes (``pretraining/configs``) and the study
configs (``experiments/configs``) live outside the ``cardioseg`` package, where MONAI users and the docs
expect them; ``setup.py`` copies each into the package when it builds a wheel. The copy inside the package
is looked for first, then the source checkout's original (editable installs, running from the repository).
"""

from __future__ import annotations

from pathlib import Path

from .settings import SettingError

PACKAGE = Path(__file__).resolve().parent


def shipped_dir(relative: str, marker: str) -> Path:
    """``relative`` (a path such as ``pretraining/configs``) inside the package or beside it: the first that
    holds ``marker``, else the checkout's path, which the error that follows names."""
    for candidate in (PACKAGE / relative, PACKAGE.parent / relative):
        if (candidate / marker).is_file():
            return candidate
    return PACKAGE.parent / relative


def named_config(setting: str, name: str, folder: str, names: tuple[str, ...]) -> Path:
    """A config of ``folder`` by name (one of ``names``, each a ``NAME.json`` there), or a path to a .json of
    the user's; anything else is an error naming ``setting``."""
    if name in names:
        return shipped_dir(folder, f"{names[0]}.json") / f"{name}.json"
    path = Path(name)
    if path.suffix == ".json" and path.is_file():
        return path
    if path.suffix == ".json":
        raise SettingError(setting, name, "no such file")
    raise SettingError(setting, name, f"choose one of {', '.join(names)}, or give a {setting} .json file")
