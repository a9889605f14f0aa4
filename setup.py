"""Build step that pyproject.toml cannot express: ship the configs that live beside the package inside it.

The MONAI bundle (``bundles/cardiac_sax_seg``), the pretraining recipes (``pretraining/configs``) and the
study configs (``experiments/configs``) live outside the ``cardioseg`` package, where MONAI users and the
docs expect them, so package data cannot name them. A wheel gets copies at the same paths inside
``cardioseg/``, which the package looks for first (``cardioseg.shipped``); editable installs and the source
checkout read the originals. Everything else is configured in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# source folder -> where it goes inside the installed package
DATA_TREES = {
    ROOT / "bundles" / "cardiac_sax_seg": Path("cardioseg") / "bundles" / "cardiac_sax_seg",
    ROOT / "pretraining" / "configs": Path("cardioseg") / "pretraining" / "configs",
    ROOT / "experiments" / "configs": Path("cardioseg") / "experiments" / "configs",
}
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "models", "runs", "eval")


class BuildWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the originals in place
        for source, dest in DATA_TREES.items():
            if not source.is_dir():
                continue
            target = Path(self.build_lib) / dest
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, ignore=SKIP)


setup(cmdclass={"build_py": BuildWithConfigs})
