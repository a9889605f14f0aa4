"""Small steps the bundle's ``initialize``/``training`` lists call, kept here so configs stay declarative."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..atomic import write_text_atomic
from .data import FinetuneData

logger = logging.getLogger("cardioseg.training")


def progress_wanted() -> bool:
    """Progress bars for a person at a terminal, not in CI logs."""
    return os.environ.get("CI", "").lower() not in ("1", "true")


def start_run(output_dir: str | Path, run_data: FinetuneData, resume: bool, settings: dict) -> Path:
    """Create the output folder; record the settings, split and label budget in ``data.json``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    description = {"settings": settings, **run_data.describe()}
    write_text_atomic(output_dir / "data.json", json.dumps(description, indent=2) + "\n")
    logger.info(
        "%s run in %s: %d training slices (%d labelled), %d validation volumes",
        "resuming" if resume else "starting",
        output_dir,
        len(run_data.train),
        len(run_data.labelled),
        description["val_volumes"],
    )
    return output_dir


def attach_progress_bar(trainer: Engine, enabled: bool) -> None:
    """A tqdm bar over each epoch's steps; it shows no loss, which would cost a GPU sync per step."""
    if enabled:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer)


def without_loss_scaling(trainer: Engine) -> Engine:
    """bf16 needs no loss scaling, but MONAI's ``amp=True`` builds a GradScaler at every ``run()``, whose
    ``step`` reads the overflow flags back to the host: a GPU sync every step. At STARTED (after MONAI made
    its scaler) this swaps in a disabled one, which passes the loss and the step straight through."""

    def swap(engine: Engine) -> None:
        engine.scaler = torch.amp.GradScaler("cuda", enabled=False)

    if getattr(trainer, "amp", False) and trainer.amp_kwargs.get("dtype") == torch.bfloat16:
        trainer.add_event_handler(Events.STARTED, swap)
    return trainer
