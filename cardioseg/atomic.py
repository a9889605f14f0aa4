"""Atomic writes: a reader never sees a half-written file or folder, a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; the final file gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def check_folder_target(path: str | Path, overwrite: bool, *, what: str = "folder") -> None:
    """Refuse, before any work, a ``path`` that is a file, a non-empty folder (without ``overwrite``) or a
    place this user cannot write."""
    from .errors import DataError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, "exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(path, f"{what} exists and is not empty (use --overwrite to replace it)")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(existing, f"is not writable by this user, so {path} cannot be written")


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a staging folder whose content becomes ``path`` only if the block succeeds.

    A new ``path`` is staged beside it and renamed into place. An existing folder (empty, or replaced with
    ``overwrite``) is kept and filled instead: it may be a mount point (a container's output volume) or sit
    in a folder this user cannot write, where it can be neither removed nor renamed. Its staging folder is
    made inside it, and once the block succeeds the old entries are removed and the staged ones renamed in.
    """
    path = Path(path)
    check_folder_target(path, overwrite)
    existing = path.is_dir()
    if not existing:
        path.parent.mkdir(parents=True, exist_ok=True)
    prefix = ".partial." if existing else f".{path.name}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path if existing else path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700); the folder it becomes is not
    try:
        yield tmp
        if existing:
            _refill(path, tmp)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _refill(folder: Path, stage: Path) -> None:
    """Replace everything in ``folder`` (but ``stage``) by the entries of ``stage``, each by a rename."""
    for old in folder.iterdir():
        if old != stage:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    for new in stage.iterdir():
        os.replace(new, folder / new.name)
