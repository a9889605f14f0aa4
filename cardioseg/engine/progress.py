"""Progress bars on training loops for a person at a terminal; none in CI logs."""

from __future__ import annotations

import os

from ignite.engine import Engine

from ..settings import as_flag


def progress_wanted() -> bool:
    """Progress bars for a person at a terminal, not in CI logs."""
    return os.environ.get("CI", "").lower() not in ("1", "true")


def attach_progress_bar(trainer: Engine, enabled: bool | str) -> None:
    """A tqdm bar over each epoch's steps; it shows no loss, which would cost a GPU sync per step.
    ``enabled`` may be a command line's word ("false" from ``--progress false``)."""
    if as_flag(enabled, "progress"):
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer)
