"""``pip install .`` (what a Dockerfile does) gives working ``cardioseg finetune`` and ``cardioseg export``,
and the pretraining recipes and study configs those name.

The wheel is built from a copy of the source (no build folders in the checkout), installed with
``--target`` into a temporary folder, and run with ``python -S`` so that only that folder and the
virtual environment's site-packages (for the dependencies, not its editable cardioseg) are importable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "cardioseg",
    "bundles",
    "pretraining",
    "experiments",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in SOURCE:
        item = REPO / name
        if not item.exists():
            continue
        if item.is_dir():
            shutil.copytree(item, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "runs"))
        else:
            shutil.copy2(item, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(work / "dist")],
                   check=True, timeout=300)  # fmt: skip
    (wheel,) = (work / "dist").glob("cardioseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"cardioseg", wheel.name.split("-")[0] + "-0.1.0.dist-info"}
    assert "cardioseg/bundles/cardiac_sax_seg/configs/train.json" in names
    assert "cardioseg/pretraining/configs/specialist.json" in names
    assert "cardioseg/experiments/configs/paper.json" in names
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, timeout=300)  # fmt: skip
    return target


WHERE = """
import cardioseg, cardioseg.bundle
print(cardioseg.__file__, cardioseg.bundle.TRAIN_CONFIG)
from cardioseg.ssl.recipes import recipes_dir
from cardioseg.study.plan import study_config
print(recipes_dir(), study_config("paper"))
"""


def run_installed(target: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        "CI": "1",
    }
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_installed_wheel_finetunes_and_exports(installed, phantom_dir, tmp_path):
    where = run_installed(installed, ["-c", WHERE], cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    for found in where.stdout.split():  # the package, the bundle, the recipes, the study: not the checkout
        assert Path(found).is_relative_to(installed) and Path(found).exists(), found

    cli = str(installed / "bin" / "cardioseg")
    out = tmp_path / "run"
    done = run_installed(
        installed,
        [cli, "finetune", str(phantom_dir), "--out", str(out), "--dataset_format", "phantom",
         "--encoder", "resnet18", "--image_size", "64", "--epochs", "1", "--batch_size", "8", "--epoch_length", "8"],
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "models" / "model.pt").is_file()

    done = run_installed(installed, [cli, "export", str(out)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "cardiac_sax_seg" / "configs" / "inference.json").is_file()
    assert (out / "cardiac_sax_seg" / "models" / "model.ts").is_file()
