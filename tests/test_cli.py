"""The commands the README shows, end to end."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cardioseg.cli import main


def test_summary_json_of_real_acdc(acdc_ssl4mis, capsys):
    assert main(["data", "summary", str(acdc_ssl4mis), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "ssl4mis"
    assert (summary["patients"], summary["volumes"]) == (80, 160)
    assert summary["phases"] == {"ED": 80, "ES": 80}
    assert 0.9 < summary["label_fractions"]["background"] < 1.0


def test_summary_of_phantom_nifti_and_dicom_agree(phantom_dir, capsys):
    assert main(["--quiet", "data", "summary", str(phantom_dir), "--json"]) == 0
    nifti = json.loads(capsys.readouterr().out)
    assert main(["--quiet", "data", "summary", str(phantom_dir / "dicom"), "--json"]) == 0
    dicom = json.loads(capsys.readouterr().out)
    assert (nifti["format"], dicom["format"]) == ("acdc", "dicom")
    assert nifti["patients"] == dicom["patients"] == 3
    assert nifti["volumes"] == 6 and dicom["volumes"] == nifti["cine_frames"]
    assert nifti["spacing_mm"] == dicom["spacing_mm"]


def test_contact_sheet_png(phantom_dir, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    assert main(["data", "contact-sheet", str(phantom_dir), "--out", str(out), "--max", "4"]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400
        pixels = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(pixels) > 50  # an image with overlays, not a blank canvas
    assert not list(tmp_path.glob(".*tmp"))


def test_cache_command_carries_slices_and_split_for_training(phantom_dir, tmp_path, capsys):
    from cardioseg.data.cache import load_cache
    from cardioseg.training.data import prepare_finetune_data

    out = tmp_path / "phantom64.xz"
    assert main(["--quiet", "data", "cache", str(phantom_dir), "--out", str(out), "--size", "64"]) == 0
    assert "3 patients" in capsys.readouterr().out
    slices = load_cache(out)
    split = slices.meta["split"]
    assert set(split["train"]) | set(split["val"]) == set(slices.patients())
    assert not set(split["train"]) & set(split["val"])
    assert slices.images.shape[1:] == (64, 64)
    data = prepare_finetune_data(out, "cache")
    assert (data.split.train, data.split.val) == (tuple(split["train"]), tuple(split["val"]))
    assert len(data.train) + len(data.val) == len(slices)


def test_cache_command_rewrites_a_cache_uncompressed(phantom_dir, tmp_path, capsys):
    from cardioseg.data.cache import load_cache

    packed = tmp_path / "phantom64.xz"
    assert main(["--quiet", "data", "cache", str(phantom_dir), "--out", str(packed), "--size", "64"]) == 0
    plain = tmp_path / "phantom64.npz"
    assert main(["--quiet", "data", "cache", str(packed), "--out", str(plain), "--size", "64"]) == 2
    assert "--size" in capsys.readouterr().err and not plain.exists()
    assert main(["--quiet", "data", "cache", str(packed), "--out", str(plain), "--compression", "none"]) == 0
    before, after = load_cache(packed), load_cache(plain)
    np.testing.assert_array_equal(after.images, before.images)
    assert after.meta["split"] == before.meta["split"]
    assert plain.stat().st_size > packed.stat().st_size


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C: one line, with the way back for the commands that resume, and the shell's exit status."""
    import cardioseg.cli

    def interrupted(*args):
        raise KeyboardInterrupt

    for command, args, hint in (
        ("study", ["--config", "paper", "--out", "x"], True),
        ("phantom", ["--patients", "1", "--out", "x"], False),
    ):
        monkeypatch.setattr(cardioseg.cli, f"cmd_{command}", interrupted)
        assert main([command, *args]) == 130
        err = capsys.readouterr().err.strip()
        assert err.startswith("cardioseg: interrupted") and ("--resume true" in err) == hint and "\n" not in err


def test_a_terminated_study_is_one_line_and_exit_143(monkeypatch, capsys):
    """SIGTERM stops a study's pack with SystemExit(143) (tests/test_packing.py); the command says so."""
    import cardioseg.cli

    def terminated(*args):
        raise SystemExit(143)

    monkeypatch.setattr(cardioseg.cli, "cmd_study", terminated)
    assert main(["study", "--config", "paper", "--out", "x"]) == 143
    err = capsys.readouterr().err.strip()
    assert err == "cardioseg: terminated: --resume true continues from the last checkpoint"


def test_sigterm_ends_any_command_with_one_line_and_status_143(monkeypatch, capsys, tmp_path):
    """``kill`` or a scheduler's stop: the command's clean-up runs, one line says so, the status is 143."""
    import os
    import signal
    import time

    import cardioseg.cli as cli

    def killed(args, extra):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the signal's handler ends this at once

    monkeypatch.setattr(cli, "cmd_pretrain", killed)
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 143
    assert capsys.readouterr().err.strip() == "cardioseg: terminated: --resume true continues from the last checkpoint"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the default is back
