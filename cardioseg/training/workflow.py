"""Small steps the bundle's ``initialize``/``training`` lists call, kept here so configs stay declarative."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..atomic import write_text_atomic
from ..engine.progress import attach_progress_bar, progress_wanted
from ..engine.resume import check_resume
from ..engine.seeding import seed_run
from ..errors import show_cause_last
from ..run_folder import RunFolder
from .data import FinetuneData
from .settings import check_crop_fits, check_finetune_settings, check_run_options

logger = logging.getLogger("cardioseg.training")

__all__ = [
    "attach_progress_bar",
    "check_run",
    "progress_wanted",
    "seed_run",
    "start_run",
    "without_loss_scaling",
]  # train.json calls them


def check_run(output_dir: str | Path, ckpt_dir: str | Path, settings: dict, options: dict) -> None:
    """Everything that can be checked before the data is read, with nothing written: the settings, the
    flags, the output folder (a run there is only continued or replaced when asked) and, for a resume,
    the recorded settings and ``last.pt``. The first step of the bundle's ``initialize``."""
    show_cause_last()
    flags = check_run_options(output_dir, options)
    check_finetune_settings(settings)
    RunFolder(output_dir).check(flags["resume"], flags["overwrite"], settings)
    if flags["resume"]:
        check_resume(ckpt_dir, int(settings["epochs"]))


def start_run(
    output_dir: str | Path, run_data: FinetuneData, settings: dict, options: dict, pretrained: dict | None
) -> Path:
    """Claim the output folder (locked, checked again, stale temporary files removed; the previous run's
    outputs removed under ``overwrite``) and record settings, pretrained weights, split and label budget in
    ``data.json``. Runs after the data and the pretrained weights have loaded, so a failure there leaves
    no folder behind."""
    flags = check_run_options(output_dir, options)
    check_crop_fits(settings["crop_size"], run_data.train.images.shape[1:])
    folder = RunFolder(output_dir)
    folder.claim(flags["resume"], flags["overwrite"], settings)
    description = {"settings": settings, "pretrained": pretrained, **run_data.describe()}
    write_text_atomic(folder.record_path, json.dumps(description, indent=2) + "\n")
    logger.info(
        "%s run in %s: %d training slices (%d labelled), %d validation volumes",
        "resuming" if flags["resume"] else "starting",
        output_dir,
        len(run_data.train),
        len(run_data.labelled),
        description["val_volumes"],
    )
    return folder.path


def without_loss_scaling(trainer: Engine) -> Engine:
    """bf16 needs no loss scaling, but MONAI's ``amp=True`` builds a GradScaler at every ``run()``, whose
    ``step`` reads the overflow flags back to the host: a GPU sync every step. At STARTED (after MONAI made
    its scaler) this swaps in a disabled one, which passes the loss and the step straight through."""

    def swap(engine: Engine) -> None:
        engine.scaler = torch.amp.GradScaler("cuda", enabled=False)

    if getattr(trainer, "amp", False) and trainer.amp_kwargs.get("dtype") == torch.bfloat16:
        trainer.add_event_handler(Events.STARTED, swap)
    return trainer
