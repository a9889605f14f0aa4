"""Progress bars on training loops for a person at a terminal; none in CI logs."""

from __future__ import annotations

import os

from ignite.engine import Engine


def progress_wanted() -> bool:
    """Progress bars for a person at a terminal, not in CI logs."""
    return os.environ.get("CI", "").lower() not in ("1", "true")


def attach_progress_bar(trainer: Engine, enabled: bool) -> None:
    """A tqdm bar over each epoch's steps; it shows no loss, which would cost a GPU sync per step."""
    if enabled:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer)
