"""Pretraining's outputs: checkpoints in the project's format at the epochs the study compares.

``models/epoch_NNNN.pt`` after epochs 1-10, every second epoch to 24, then 25, 50, 100, 200, ... (so that
"are a few epochs of cardiac pretraining enough?" can be answered), ``models/final.pt`` after the last
epoch, and the engine's resumable ``models/last.pt``. Each checkpoint holds the weights fine-tuning takes
under the U-Net's names (``encoder.*``, and ``decoder.*`` for whole-U-Net methods) and a header: method,
data sources with their image counts, epochs, image size, the whole initialisation chain, branch and
scope (``cardioseg.checkpoint.save_checkpoint``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ignite.engine import Engine

from ..checkpoint import save_checkpoint
from ..engine.resume import ResumeCheckpointer
from ..nets import LoadedWeights
from .base import PretrainMethod

logger = logging.getLogger("cardioseg.ssl")


def is_milestone(epoch: int) -> bool:
    """Epochs 1-10, every second one to 24, then 25 doubling: 25, 50, 100, 200, ..."""
    if epoch <= 10:
        return epoch >= 1
    if epoch <= 24:
        return epoch % 2 == 0
    while epoch % 2 == 0 and epoch > 25:
        epoch //= 2
    return epoch == 25


def checkpoint_name(epoch: int | None) -> str:
    """A run's checkpoint file in ``models/``: the milestone after ``epoch``, or ``final.pt`` for None."""
    return "final.pt" if epoch is None else f"epoch_{epoch:04d}.pt"


def init_chain(loaded: LoadedWeights | None) -> list[dict[str, Any]]:
    """Where the weights started, earliest first: a pretraining checkpoint brings its own chain along."""
    if loaded is None:
        return []
    extra = loaded.meta.get("extra") or {}
    entry = {
        "source": loaded.source,
        "sha256": loaded.sha256,
        "method": loaded.meta.get("method"),
        "epoch": loaded.meta.get("epoch"),
        "scope": loaded.scope,
        "data": extra.get("data"),
    }
    return [*extra.get("init_chain", []), entry]


class PretrainCheckpointer(ResumeCheckpointer):
    """After each epoch: a milestone checkpoint when the epoch is one, ``final.pt`` after the last epoch,
    then ``last.pt`` (written last, so a run killed in between redoes the epoch and rewrites the same
    bytes)."""

    def __init__(self, ckpt_dir: str | Path, objects: dict, method: PretrainMethod, header: dict[str, Any]):
        """``header``: ``source`` (the init, or "random") and ``extra`` (data, settings, init chain ...)."""
        super().__init__(ckpt_dir, objects)
        self.method = method
        self.header = header

    def milestone_path(self, epoch: int) -> Path:
        return self.ckpt_dir / checkpoint_name(epoch)

    @property
    def final_path(self) -> Path:
        return self.ckpt_dir / checkpoint_name(None)

    def save(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        paths = [self.milestone_path(epoch)] if is_milestone(epoch) else []
        if epoch == engine.state.max_epochs:
            paths.append(self.final_path)
        if paths:
            state = self.method.transferred_state()
            extra = {**self.header["extra"], "epochs_planned": engine.state.max_epochs, "steps": engine.state.iteration}
            for path in paths:
                sha256 = save_checkpoint(
                    path,
                    state,
                    method=self.method.name,
                    source=self.header["source"],
                    epoch=epoch,
                    encoder=self.method.encoder_name,
                    extra=extra,
                )
                logger.info("epoch %d: %s (sha256 %s)", epoch, path, sha256[:16])
        super().save(engine)
