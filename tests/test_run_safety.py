"""A run folder belongs to one run: nothing lost, nothing half-written, every bad setting one line.

Each test here is a finding of a user test of 167 malformed inputs and interrupted runs (issue 6): training
over a finished run, two runs into one folder, a failed resume that rewrote the run's record, settings that
failed deep inside MONAI after a half-made run folder, torn logs and checkpoints, unstable hashes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import one_line_error

from cardioseg.atomic import atomic_directory, check_folder_target
from cardioseg.checkpoint import file_sha256, load_torch_file, save_checkpoint, save_torch_atomic
from cardioseg.cli import main
from cardioseg.errors import DataError
from cardioseg.run_folder import LOCK_NAME, RunFolder
from cardioseg.training.convergence import read_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset_format", "phantom", "--encoder", "resnet18", "--image_size", "64", "--epochs", "1"]
TINY += ["--batch_size", "4", "--epoch_length", "8", "--progress", "False"]


def finetune(dataset: Path, out: Path, *overrides: str) -> int:
    return main(["--quiet", "finetune", str(dataset), "--out", str(out), *TINY, *overrides])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the lock file aside) with the sha256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, phantom_dir) -> Path:
    out = tmp_path_factory.mktemp("safety") / "run"
    assert finetune(phantom_dir, out) == 0
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run that a test may damage."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns(LOCK_NAME))
    return copy


# --- settings: one line, exit 2, no folder ------------------------------------------------------

BAD_SETTINGS = [
    (["--epochs", "0"], "'epochs' is 0: must be at least 1"),
    (["--epochs", "-3"], "'epochs' is -3"),
    (["--epochs", "2.5"], "'epochs' is 2.5: expected a whole number"),
    (["--image_size", "0"], "'image_size' is 0"),
    (["--image_size", "7"], "'image_size' is 7: must be a positive multiple of 32"),
    (["--image_size", "48"], "'image_size' is 48: must be a positive multiple of 32 (e.g. 32 or 64)"),
    (["--image_size", "-64"], "'image_size' is -64"),
    (["--batch_size", "0"], "'batch_size' is 0: must be at least 1"),
    (["--epoch_length", "2"], "'epoch_length' is 2: must be at least 4"),
    (["--val_fraction", "1.0"], "'val_fraction' is 1.0: must be a finite number in (0, 1)"),
    (["--val_fraction", "0"], "'val_fraction' is 0"),
    (["--learning_rate", "0"], "'learning_rate' is 0"),
    (["--learning_rate", "nan"], "'learning_rate' is 'nan'"),
    (["--weight_decay", "-1"], "'weight_decay' is -1"),
    (["--warmup_epochs", "3"], "'warmup_epochs' is 3: must not exceed epochs (1)"),
    (["--seed", "-1"], "'seed' is -1"),
    (["--encoder", "resnet99"], "'encoder' is 'resnet99': choose one of resnet18, resnet34, resnet50"),
    (["--dataset_format", "nifti"], "'dataset_format' is 'nifti': choose one of"),
    (["--slice_mode", "cubic"], "'slice_mode' is 'cubic': choose one of"),
    (["--num_labelled_patients", "0"], "'num_labelled_patients' is 0: must be at least 1"),
    (["--num_labelled_patients", "99"], "'num_labelled_patients' is 99: must be between 1 and the 2 training"),
    (["--num_labelled_slices", "100000"], "'num_labelled_slices' is 100000: must be between 1 and the"),
    (["--num_labelled_patients", "1", "--num_labelled_slices", "3"], "not both"),
    (["--resume", "maybe"], "'resume' is 'maybe': expected true or false"),
    (["--overwrite", "perhaps"], "'overwrite' is 'perhaps': expected true or false"),
    (["--augment", "sometimes"], "'augment' is 'sometimes': expected true or false"),
    (["--crop_size", "48"], "'crop_size' is 48: must be a positive multiple of 32"),
    (["--crop_size", "128"], "'crop_size' is 128: must not exceed image_size (64)"),
    (["--crop_size", "32", "--augment", "False"], "'crop_size' is 32: random windows are part of augmentation"),
    (["--ema_decay", "1"], "'ema_decay' is 1: must be a finite number in (0, 1)"),
    (["--freeze_encoder", "half"], "'freeze_encoder' is 'half': expected true or false"),
    (["--deep_supervision", "5"], "'deep_supervision' is 5: must be between 0 and 4"),
    (["--checkpoint_seconds", "-1"], "'checkpoint_seconds' is -1"),
    (["--stop_at_dice", "1.5"], "'stop_at_dice' is 1.5: must be a finite number in (0, 1]"),
    (["--deterministic", "often"], "'deterministic' is 'often': expected true or false"),
    (["--cudnn_benchmark", "auto"], "'cudnn_benchmark' is 'auto': expected true or false"),
    (["--compile_mode", "fast"], "'compile_mode' is 'fast': choose one of default, reduce-overhead"),
    (["--cuda_graphs", "often"], "'cuda_graphs' is 'often': choose false, network or step"),
    (["--cuda_graphs", "step", "--compile", "True"], "not with compile (its reduce-overhead and cudagraphs modes"),
    (["--decoder_channels", "[64,32]"], "'decoder_channels' is [64, 32]: give 5 whole numbers, coarsest first"),
    (["--resume", "True", "--overwrite", "True"], "resume and overwrite exclude each other"),
    (["--pretrained", "no/such/weights.pt"], "'pretrained' is 'no/such/weights.pt': does not exist"),
    (["--epocs", "5"], "setting 'epocs' is 5: not a setting of train.json"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD_SETTINGS, ids=[" ".join(o) for o, _ in BAD_SETTINGS])
def test_bad_setting_is_one_line_and_writes_nothing(phantom_dir, tmp_path, capsys, overrides, expected):
    out = tmp_path / "run"
    assert finetune(phantom_dir, out, *overrides) == 2
    assert expected in one_line_error(capsys)
    assert not out.exists()


def test_a_window_larger_than_the_cached_slices_is_refused(phantom_dir, tmp_path, capsys):
    """A slice cache keeps its own size: ``image_size`` 64 passes the settings, 32 px slices do not."""
    cache = tmp_path / "small.npz"
    assert main(["--quiet", "data", "cache", str(phantom_dir), "--out", str(cache), "--size", "32"]) == 0
    out = tmp_path / "run"
    assert finetune(cache, out, "--dataset_format", "cache", "--crop_size", "64") == 2
    assert "'crop_size' is 64: must not exceed the data's 32x32 slices" in one_line_error(capsys)
    assert not out.exists()


def test_out_naming_a_file_is_refused(phantom_dir, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert finetune(phantom_dir, out) == 2
    assert "'output_dir'" in one_line_error(capsys) and out.read_text() == "mine"


def test_missing_dataset_is_refused(tmp_path, capsys):
    assert finetune(tmp_path / "nowhere", tmp_path / "run") == 2
    assert "'dataset_dir'" in one_line_error(capsys) and not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", ["not a checkpoint", "other depth", "unsafe pickle"])
def test_bad_pretrained_file_leaves_no_run_folder(phantom_dir, tmp_path, capsys, case):
    from cardioseg.nets import build_encoder

    weights = tmp_path / "weights.pt"
    if case == "not a checkpoint":
        weights.write_bytes(b"these are not weights")
        expected = "not a readable PyTorch file"
    elif case == "other depth":
        save_checkpoint(
            weights, build_encoder("resnet34").state_dict(), method="byol", source="random", epoch=1, encoder="resnet34"
        )
        expected = "holds resnet34 weights; the network's encoder is resnet18"
    else:
        weights.write_bytes(pickle.dumps({"x": os.system}))
        expected = "refused by torch.load(weights_only=True), which never runs code"
    out = tmp_path / "run"
    assert finetune(phantom_dir, out, "--pretrained", str(weights)) == 2
    line = one_line_error(capsys)
    assert str(weights) in line and expected in line
    assert not out.exists()


def test_bundle_command_line_ends_with_the_cause(phantom_dir, tmp_path):
    """``python -m monai.bundle run``: MONAI prints its traceback; the sentence is the last line."""
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(REPO / "bundles" / "cardiac_sax_seg" / "configs" / "train.json"),
        "--dataset_dir",
        str(phantom_dir),
        "--output_dir",
        str(out),
        "--batch_size",
        "0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "cardioseg: error: setting 'batch_size' is 0: must be at least 1"
    assert not out.exists()


# --- a finished run is never replaced or rewritten unasked ----------------------------------------


def test_training_into_a_finished_run_is_refused(phantom_dir, run_copy, capsys):
    before = snapshot(run_copy)
    assert finetune(phantom_dir, run_copy) == 2
    line = one_line_error(capsys)
    assert "holds a run already" in line and "overwrite" in line
    assert snapshot(run_copy) == before


def test_overwrite_replaces_the_run_and_keeps_other_files(phantom_dir, run_copy):
    (run_copy / "my_notes.txt").write_text("keep me")
    old_record = (run_copy / "data.json").read_text()
    assert finetune(phantom_dir, run_copy, "--overwrite", "True", "--seed", "3") == 0
    assert (run_copy / "my_notes.txt").read_text() == "keep me"
    assert (run_copy / "data.json").read_text() != old_record
    assert [m["epoch"] for m in read_metrics(run_copy / "metrics.jsonl")] == [1]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("other encoder", "cannot resume with other settings than the run's (encoder: 'resnet18' -> 'resnet34')"),
        ("other seed", "(seed: 0 -> 5)"),
        ("finished", "the run finished 1 of 1 epochs already"),
        ("truncated last.pt", "not a readable PyTorch file, truncated or corrupt"),
        ("no last.pt", "no checkpoint to resume from"),
        ("no data.json", "this folder holds no run to resume"),
        ("broken data.json", "unreadable run record"),
    ],
)
def test_failed_resume_changes_nothing(phantom_dir, run_copy, capsys, case, expected):
    overrides = ["--resume", "True", "--epochs", "2"]
    if case == "other encoder":
        overrides += ["--encoder", "resnet34"]
    elif case == "other seed":
        overrides += ["--seed", "5"]
    elif case == "finished":
        overrides = ["--resume", "True"]
    elif case == "truncated last.pt":
        last = run_copy / "models" / "last.pt"
        last.write_bytes(last.read_bytes()[:1000])
    elif case == "no last.pt":
        (run_copy / "models" / "last.pt").unlink()
    elif case == "no data.json":
        (run_copy / "data.json").unlink()
    elif case == "broken data.json":
        (run_copy / "data.json").write_text('{"settings": ')
    before = snapshot(run_copy)
    assert finetune(phantom_dir, run_copy, *overrides) == 2
    assert expected in one_line_error(capsys)
    assert snapshot(run_copy) == before


def test_resume_after_a_kill_mid_write(phantom_dir, run_copy):
    """A torn last metrics line and a temporary file from a killed checkpoint write: the resume cleans
    both up and continues."""
    (run_copy / "models" / ".last.pt.k3j2.tmp").write_bytes(b"\0" * 1000)
    with open(run_copy / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "step": 4, "images_se')
    assert finetune(phantom_dir, run_copy, "--resume", "True", "--epochs", "2") == 0
    assert [m["epoch"] for m in read_metrics(run_copy / "metrics.jsonl")] == [1, 2]
    assert not list(run_copy.rglob("*.tmp"))


def test_null_on_the_command_line_means_none_and_the_run_resumes_without_it(phantom_dir, tmp_path):
    """``--epoch_length null`` arrives as the string "null". Four optional settings once failed deep in the
    run with a traceback on it, and a resume that left them out was refused as changed settings."""
    out = tmp_path / "run"
    optional = ("epoch_length", "num_labelled_patients", "num_labelled_slices", "decoder_channels", "ema_decay")
    nulls = [arg for name in (*optional, "crop_size", "pretrained") for arg in (f"--{name}", "null")]
    assert finetune(phantom_dir, out, *nulls) == 0
    assert finetune(phantom_dir, out, "--resume", "True", "--epochs", "2", "--epoch_length", "None") == 0
    assert [m["epoch"] for m in read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_second_run_into_a_locked_folder_is_refused(phantom_dir, tmp_path, capsys):
    """Another process is writing the folder: refused at once, nothing written."""
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import filelock, time; lock = filelock.FileLock({str(out / LOCK_NAME)!r}); lock.acquire(); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert finetune(phantom_dir, out) == 2
        assert "another run is writing to this folder" in one_line_error(capsys)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_released_with_the_process(tmp_path):
    out = tmp_path / "run"
    code = f"from cardioseg.run_folder import RunFolder; RunFolder({str(out)!r}).claim(False, False, {{}})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    folder = RunFolder(out)
    folder.claim(False, False, {})
    folder.release()


def test_run_folder_checks_without_writing(tmp_path):
    folder = RunFolder(tmp_path / "new")
    folder.check(resume=False, overwrite=False, settings={})
    assert not (tmp_path / "new").exists()
    with pytest.raises(DataError, match="holds no run to resume"):
        folder.check(resume=True, overwrite=False, settings={})


# --- logs and checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "epochs", "error"),
    [
        ('{"epoch": 1}\n{"epoch": 2}\n', [1, 2], None),
        ('{"epoch": 1}\n{"epoch": 2, "st', [1], None),  # torn last line: skipped
        ('{"epoch": 1}\n\n{"epoch": 2}\n', [1, 2], None),
        ('{"epoch": 1}\n{"epo\n{"epoch": 3}\n', None, "line 2 is not an epoch record"),
        ('{"epoch": 1}\n[1, 2]\n', None, "line 2 is not an epoch record"),
        ('{"step": 1}\n', None, "line 1 is not an epoch record"),
        (b"\xff\xfe{", None, "cannot read the metrics log"),
    ],
)
def test_metrics_log_is_read_tolerantly(tmp_path, content, epochs, error):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if error:
        with pytest.raises(DataError, match=error):
            read_metrics(path)
    else:
        assert [m["epoch"] for m in read_metrics(path)] == epochs


def test_curves_of_a_run_with_a_torn_log(run_copy, tmp_path, capsys):
    with open(run_copy / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "st')
    out = tmp_path / "curves.png"
    assert main(["--quiet", "curves", str(run_copy), "--out", str(out)]) == 0 and out.is_file()
    capsys.readouterr()  # the warning about the torn line
    assert main(["--quiet", "curves", str(run_copy), "--out", str(out)]) == 2
    assert "exists already" in one_line_error(capsys)


def test_identical_tensors_give_identical_files(tmp_path):
    """The temporary file's name used to be baked into the zip, so the recorded sha256 changed per save."""
    state = {"w": torch.arange(12.0).reshape(3, 4)}
    save_torch_atomic(state, tmp_path / "a.pt")
    time.sleep(0.01)
    save_torch_atomic({"w": state["w"].clone()}, tmp_path / "b.pt")
    assert file_sha256(tmp_path / "a.pt") == file_sha256(tmp_path / "b.pt")
    first = save_checkpoint(tmp_path / "c.pt", state, method="byol", source="random", epoch=1, encoder="resnet18")
    second = save_checkpoint(tmp_path / "d.pt", state, method="byol", source="random", epoch=1, encoder="resnet18")
    assert first == second


def test_trained_model_files_are_reproducible_bytes(finished_run, tmp_path):
    weights = load_torch_file(finished_run / "models" / "model.pt")
    save_torch_atomic(weights, tmp_path / "model.pt")
    assert file_sha256(tmp_path / "model.pt") == file_sha256(finished_run / "models" / "model.pt")


def test_unsafe_pickle_names_the_reason_not_the_workaround(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": os.system}, path)
    with pytest.raises(DataError) as caught:
        load_torch_file(path)
    message = str(caught.value)
    assert str(path) in message and "posix.system" in message and "never runs code" in message
    assert "weights_only` set to `False`" not in message and "\n" not in message


# --- other commands that write -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["data", "cache", "{data}", "--out", "{folder}"], "is a folder; name a file to write"),
        (["data", "cache", "{data}", "--out", "{file}"], "exists already (pass --overwrite to replace it)"),
        (["data", "cache", "{data}", "--out", "{new}", "--size", "48"], "'--size' is 48"),
        (["data", "cache", "{data}", "--out", "{new}", "--val-fraction", "1"], "'--val-fraction' is 1.0"),
        (["data", "contact-sheet", "{data}", "--out", "{file}"], "exists already"),
        (["data", "contact-sheet", "{data}", "--out", "{folder}"], "is a folder"),
        (["data", "contact-sheet", "{data}", "--out", "{new}", "--max", "0"], "'--max' is 0"),
        (["data", "contact-sheet", "{data}", "--out", "{new}", "--columns", "0"], "'--columns' is 0"),
        (["curves", "{data}", "--out", "{new}"], "metrics.jsonl: not found"),
        (["curves", "{data}", "--out", "{below_file}"], "is a file, not a folder"),
    ],
)
def test_commands_refuse_to_overwrite(phantom_dir, tmp_path, capsys, command, expected):
    folder, file = tmp_path / "existing", tmp_path / "existing.bin"
    folder.mkdir()
    file.write_bytes(b"mine")
    names = {
        "data": phantom_dir,
        "folder": folder,
        "file": file,
        "new": tmp_path / "new.bin",
        "below_file": file / "out.png",
    }
    args = [part.format(**names) for part in command]
    assert main(["--quiet", *args]) == 2
    assert expected in one_line_error(capsys)
    assert file.read_bytes() == b"mine" and not any(folder.iterdir()) and not (tmp_path / "new.bin").exists()


def test_an_existing_folder_is_filled_in_place_all_or_nothing(tmp_path):
    """A container's output volume is a mount point: it is filled, never removed or renamed."""
    out = tmp_path / "mounted"
    out.mkdir()
    inode = out.stat().st_ino

    def names() -> list[str]:
        return sorted(p.name for p in out.iterdir())

    with atomic_directory(out) as stage:
        (stage / "first.txt").write_text("1")
    assert names() == ["first.txt"] and out.stat().st_ino == inode
    with pytest.raises(DataError, match="not empty"), atomic_directory(out):
        pass
    with pytest.raises(RuntimeError), atomic_directory(out, overwrite=True) as stage:
        (stage / "second.txt").write_text("2")
        raise RuntimeError("a failure while writing")
    assert names() == ["first.txt"]  # untouched, and no staging folder left inside
    with atomic_directory(out, overwrite=True) as stage:
        (stage / "second.txt").write_text("2")
    assert names() == ["second.txt"] and out.stat().st_ino == inode


def test_an_unwritable_place_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    target = tmp_path / "new" / "out"
    with pytest.raises(DataError, match=re.escape(f"{tmp_path}: is not writable by this user, so {target} cannot")):
        check_folder_target(target, overwrite=False)
