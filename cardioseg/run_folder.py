"""A run folder belongs to one run: locked while a run writes it, never replaced or rewritten unasked.

Training into a folder that holds a finished run used to replace its results without a word, and two
runs into one folder interleaved their logs. Every command that writes a run (fine-tuning, pretraining)
goes through :class:`RunFolder`: it refuses a folder that holds a run unless the user resumes it or asks
to overwrite it, checks a resume against the recorded settings before anything changes, holds an
exclusive lock (``filelock``, an OS-level lock that dies with the process) while the run writes, and
removes temporary files that a killed write left behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .errors import CardiosegError, DataError
from .settings import is_none

logger = logging.getLogger("cardioseg.runs")

LOCK_NAME = ".cardioseg.lock"
RECORD_NAME = "data.json"  # settings, data and split of the run: what marks a folder as a run
# What a run writes (its export included); --overwrite removes exactly these, nothing else in the folder.
RUN_OUTPUTS = (RECORD_NAME, "metrics.jsonl", "models", "tensorboard", "eval", "cardiac_sax_seg")
TEMPORARY_GLOB = ".*.tmp"  # cardioseg.atomic's temporary files and folders
# What a resume may change by default: a longer schedule continues the same run.
RESUMABLE_CHANGES = ("epochs", "checkpoint_seconds", "stop_at_dice")

# Locks this process holds, by folder: a second run into the same folder in this process (a resume in a
# test, a notebook) takes the lock over instead of waiting for itself.
_HELD: dict[Path, FileLock] = {}


class RunFolderError(CardiosegError):
    """A run folder that cannot be used as asked: in use, holding another run, or not resumable."""


class RunFolder:
    """The output folder of one run (``settings`` are what the run records and a resume must match)."""

    OUTPUTS = RUN_OUTPUTS  # what marks the folder as holding a run, and what overwrite removes

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME

    def outputs(self) -> list[str]:
        """The run outputs present in the folder (empty for a new or unrelated folder)."""
        return [name for name in self.OUTPUTS if (self.path / name).exists()]

    def read_record(self) -> dict[str, Any]:
        """The recorded ``data.json``; a missing or unreadable one is an error naming it."""
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(self.record_path, "not found: this folder holds no run to resume") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(self.record_path, f"unreadable run record ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
            raise DataError(self.record_path, "run record without 'settings'")
        return record

    def check(
        self, resume: bool, overwrite: bool, settings: dict, may_change: tuple[str, ...] = RESUMABLE_CHANGES
    ) -> None:
        """Refuse what would lose or mix results; reads only. A resume must find the run's record and the
        same settings, except those in ``may_change`` (``epochs``, to extend a run)."""
        if resume and overwrite:
            raise RunFolderError("resume and overwrite exclude each other: continue the run, or replace it")
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"{self.path}: output_dir is a file, not a folder")
        found = self.outputs()
        if resume:
            recorded = self.read_record()["settings"]
            differences = changed_settings(recorded, settings, may_change)
            if differences:
                raise RunFolderError(
                    f"{self.path}: cannot resume with other settings than the run's ({'; '.join(differences)}); "
                    "resume with the recorded values or start a new run in another output_dir"
                )
        elif found and not overwrite:
            raise RunFolderError(
                f"{self.path}: holds a run already ({', '.join(found)}); pass resume true to continue it, "
                "overwrite true to replace it, or choose another output_dir"
            )

    def claim(
        self, resume: bool, overwrite: bool, settings: dict, may_change: tuple[str, ...] = RESUMABLE_CHANGES
    ) -> None:
        """Make the folder, lock it for this process, check again under the lock, clear stale temporary
        files, and (``overwrite``) remove the previous run's outputs."""
        self.check(resume, overwrite, settings, may_change)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        self.check(resume, overwrite, settings, may_change)  # another run may have started meanwhile
        for stale in sorted(self.path.rglob(TEMPORARY_GLOB)):
            logger.warning("removing %s, left by an interrupted write", stale)
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        if overwrite:
            for name in self.outputs():
                target = self.path / name
                logger.warning("overwrite: removing the previous run's %s", target)
                shutil.rmtree(target) if target.is_dir() else target.unlink()

    def _lock(self) -> None:
        key = self.path.resolve()
        if key in _HELD:
            return
        lock = FileLock(self.path / LOCK_NAME, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunFolderError(
                f"{self.path}: another run is writing to this folder (locked by {self.path / LOCK_NAME}); "
                "wait for it to finish or choose another output_dir"
            ) from None
        _HELD[key] = lock
        logger.debug("locked %s for process %d", self.path, os.getpid())

    def release(self) -> None:
        """Unlock (the lock also ends with the process)."""
        lock = _HELD.pop(self.path.resolve(), None)
        if lock is not None:
            lock.release()


def changed_settings(recorded: dict, settings: dict, may_change: tuple[str, ...] = (), prefix: str = "") -> list[str]:
    """``name: recorded -> new`` for every setting that differs, paths compared after resolving; inside
    settings that are mappings on both sides, each nested setting that differs (``finetune#epochs: 2 -> 3``)."""
    differences = []
    for name in sorted(set(recorded) | set(settings)):
        if name in may_change:
            continue
        old, new = recorded.get(name), settings.get(name)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += changed_settings(old, new, prefix=f"{prefix}{name}#")
        elif not _same_setting(old, new):
            differences.append(f"{prefix}{name}: {old!r} -> {new!r}")
    return differences


def _same_setting(old: Any, new: Any) -> bool:
    if old == new or (is_none(old) and is_none(new)):  # a command line's "null" is None
        return True
    if isinstance(old, str) and isinstance(new, str) and (os.sep in old or os.sep in new):
        return Path(old).resolve() == Path(new).resolve()
    return False
