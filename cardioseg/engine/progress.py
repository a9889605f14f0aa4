"""Progress bars on training loops for a person at a terminal; none in CI logs or redirected output."""

from __future__ import annotations

import os
import sys

from ignite.engine import Engine

from ..settings import as_flag


def progress_wanted() -> bool:
    """Progress bars for a person at a terminal: not in CI, nor where stderr goes to a file (a redirected
    log would fill with carriage-return redraws)."""
    return os.environ.get("CI", "").lower() not in ("1", "true") and sys.stderr.isatty()


def attach_progress_bar(trainer: Engine, enabled: bool | str) -> None:
    """A tqdm bar over each epoch's steps; it shows no loss, which would cost a GPU sync per step.
    ``enabled`` may be a command line's word ("false" from ``--progress false``)."""
    if as_flag(enabled, "progress"):
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer)
