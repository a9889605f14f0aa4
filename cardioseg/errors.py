"""One exception type for bad input, so the CLI can print one clear line and exit 2."""

from __future__ import annotations

import sys
from pathlib import Path


class CardiosegError(Exception):
    """A problem with the user's input or environment, not a bug: printed without a traceback."""


class DataError(CardiosegError):
    """A file or folder that cannot be used, with the path and what is wrong with it.

    The problem is folded onto one line: it often quotes a library's message (h5py, pydicom and nibabel
    write some over several lines), and the command promises one line per error.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{path}: {self.problem}")


def cardioseg_cause(exc: BaseException | None) -> CardiosegError | None:
    """The CardiosegError behind an exception, if any: MONAI's config parser re-raises errors from a
    config expression as ``RuntimeError("Failed to evaluate ...")``, hiding the message meant for the user."""
    while exc is not None:
        if isinstance(exc, CardiosegError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def show_cause_last() -> None:
    """Make an uncaught error's cause the last line printed (``cardioseg: error: ...``).

    ``python -m monai.bundle run`` ends in MONAI's traceback, whose last line is its own wrapper
    ("Failed to evaluate ConfigExpression ..."); a user reads the last line first. The traceback is still
    printed in full above it. Installed once per process; other exceptions print as before.
    """
    previous = sys.excepthook
    if getattr(previous, "cardioseg_cause_last", False):
        return

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        cause = cardioseg_cause(value)
        if cause is not None:
            print(f"cardioseg: error: {cause}", file=sys.stderr)

    hook.cardioseg_cause_last = True
    sys.excepthook = hook
