"""Runs packed on one machine: each a real ``python -m monai.bundle run training`` process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from bundle_helpers import TRAIN_OVERRIDES

from cardioseg.engine.epoch_log import read_metrics
from cardioseg.errors import CardiosegError
from cardioseg.settings import SettingError
from cardioseg.study.packing import BundleRun, run_packed


def test_packed_runs_match_each_other_and_a_failure_is_reported_with_its_log(tmp_path, phantom_dir):
    """Two runs of the same settings, packed beside a run with a bad setting: the good ones finish with the
    same numbers (packing lets nothing leak between runs); the bad one is named with its log's reason."""
    settings = TRAIN_OVERRIDES | {"dataset_dir": str(phantom_dir), "epochs": 1, "epoch_length": 16}
    runs = [
        BundleRun(tmp_path / "a", settings),
        BundleRun(tmp_path / "b", settings),
        BundleRun(tmp_path / "bad", settings | {"epochs": 0}),
    ]
    with pytest.raises(CardiosegError) as caught:
        run_packed(runs, slots=3, progress=False)
    message = str(caught.value)
    assert message.startswith("1 of 3 runs failed")
    assert f"{tmp_path / 'bad'} (exit 1, log {tmp_path / 'bad.log'}): cardioseg: error:" in message
    assert "epochs" in message.splitlines()[1]
    a, b = read_metrics(tmp_path / "a" / "metrics.jsonl"), read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert len(a) == 1 and a[0]["val_dice_mean"] is not None
    assert [(m["train_loss"], m["val_dice"]) for m in a] == [(m["train_loss"], m["val_dice"]) for m in b]
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_a_pack_is_checked_before_anything_starts(tmp_path):
    with pytest.raises(SettingError, match="'slots'"):
        run_packed([BundleRun(tmp_path / "a")], slots=0)
    with pytest.raises(CardiosegError, match="share a run folder"):
        run_packed([BundleRun(tmp_path / "a"), BundleRun(tmp_path / "x" / ".." / "a")], slots=2)
    assert not any(tmp_path.iterdir())


def test_reused_processes_give_each_run_its_own_result_and_log(tmp_path, phantom_dir):
    """One worker process runs three runs in turn: the failed one between two good ones stops neither,
    both good ones end with the numbers of a run in a fresh process, and each log holds its own run."""
    settings = TRAIN_OVERRIDES | {"dataset_dir": str(phantom_dir), "epochs": 1, "epoch_length": 16}
    alone = BundleRun(tmp_path / "alone", settings)
    run_packed([alone], slots=1, progress=False)
    runs = [BundleRun(tmp_path / "a", settings), BundleRun(tmp_path / "bad", settings | {"epochs": 0})]
    runs.append(BundleRun(tmp_path / "b", settings))
    with pytest.raises(CardiosegError) as caught:
        run_packed(runs, slots=1, progress=False, reuse_processes=True)
    assert str(caught.value).startswith("1 of 3 runs failed")
    assert f"{tmp_path / 'bad'} (exit 1, log {tmp_path / 'bad.log'}): cardioseg: error:" in str(caught.value)
    expected = [(m["train_loss"], m["val_dice"]) for m in read_metrics(alone.output_dir / "metrics.jsonl")]
    for name in ("a", "b"):
        assert [(m["train_loss"], m["val_dice"]) for m in read_metrics(tmp_path / name / "metrics.jsonl")] == expected
        assert f"starting run in {tmp_path / name}:" in (tmp_path / f"{name}.log").read_text()
    assert str(tmp_path / "a") not in (tmp_path / "b.log").read_text()


def test_a_run_that_ends_its_worker_fails_alone(tmp_path, phantom_dir):
    """A run that takes its process down (a crash, an out-of-memory kill; here ``os._exit``) is reported
    with the worker's exit status; the slot starts a new worker for the next run."""
    crash = tmp_path / "crash.json"
    crash.write_text(json.dumps({"imports": ["$import os"], "training": ["$os._exit(3)"]}))
    settings = TRAIN_OVERRIDES | {"dataset_dir": str(phantom_dir), "epochs": 1, "epoch_length": 16}
    runs = [BundleRun(tmp_path / "crash", config_file=crash), BundleRun(tmp_path / "after", settings)]
    with pytest.raises(CardiosegError, match=r"1 of 2 runs failed:\n  .*crash \(exit 3, .*worker process ended"):
        run_packed(runs, slots=1, progress=False, reuse_processes=True)
    assert read_metrics(tmp_path / "after" / "metrics.jsonl")[0]["val_dice_mean"] is not None


INTERRUPTED_PACK = """
import signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (a background job ignores SIGINT)
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as SIGTERM is, unless a parent ignored it for its children
from cardioseg.study.packing import BundleRun, run_packed
work = Path(sys.argv[1])
runs = [BundleRun(work / name, config_file=work / "sleep.json") for name in "abc"]
try:
    run_packed(runs, slots=1, progress=False, reuse_processes=sys.argv[2] == "reuse")
except KeyboardInterrupt:
    sys.exit(130)
"""


def _stopped_pack_status(tmp_path, way: str, stop) -> int:
    """A pack of three sleeping runs, one at a time, in a process group of its own; ``stop(pid)`` once the first
    run sleeps. The pack's exit status, once it is checked that no further run started and nothing is left."""
    (tmp_path / "sleep.json").write_text(json.dumps({"training": "$__import__('time').sleep(300)"}))
    pack = subprocess.Popen([sys.executable, "-c", INTERRUPTED_PACK, str(tmp_path), way], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while "sleep" not in (tmp_path / "a.log").read_text() if (tmp_path / "a.log").exists() else True:
            assert time.monotonic() < deadline and pack.poll() is None
            time.sleep(0.5)
        stop(pack.pid)
        status = pack.wait(timeout=60)
        assert not (tmp_path / "b.log").exists()
        with pytest.raises(ProcessLookupError):  # the group is empty: no run or worker process outlived the pack
            os.killpg(pack.pid, 0)
        return status
    finally:  # a failed check leaves no sleeping run behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pack.pid, signal.SIGKILL)


@pytest.mark.parametrize("way", ["fresh", "reuse"])
def test_an_interrupt_stops_the_pack_and_its_processes(tmp_path, way):
    """Ctrl-C at a terminal reaches the pack and its runs: no further run starts and nothing is left running
    (the pool used to wait for its slots to run every run left)."""
    assert _stopped_pack_status(tmp_path, way, lambda pid: os.killpg(pid, signal.SIGINT)) == 130


@pytest.mark.parametrize("way", ["fresh", "reuse"])
def test_a_sigterm_stops_the_pack_and_its_processes(tmp_path, way):
    """``kill PID`` (as from ``timeout`` or a scheduler's time limit) reaches the pack's process alone: the pack
    stops its runs as for Ctrl-C and exits 143, as a process ended by SIGTERM (its runs used to outlive it)."""
    assert _stopped_pack_status(tmp_path, way, lambda pid: os.kill(pid, signal.SIGTERM)) == 128 + signal.SIGTERM
