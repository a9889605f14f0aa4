"""One exception type for bad input, so the CLI can print one clear line and exit 2."""

from __future__ import annotations

from pathlib import Path


class CardiosegError(Exception):
    """A problem with the user's input or environment, not a bug: printed without a traceback."""


class DataError(CardiosegError):
    """A file or folder that cannot be used, with the path and what is wrong with it."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
