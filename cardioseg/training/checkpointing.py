"""Fine-tuning's checkpoints: ``models/model.pt`` when the key metric improves, on top of the engine's
resumable ``models/last.pt`` (which also carries the best metric, so a resume remembers which epoch was
best; MONAI's CheckpointSaver keeps that record only inside ``model.pt``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine

from ..checkpoint import save_torch_atomic
from ..engine.resume import ResumeCheckpointer, read_resume_checkpoint

__all__ = ["RunCheckpointer", "read_resume_checkpoint"]

logger = logging.getLogger("cardioseg.training")


class RunCheckpointer(ResumeCheckpointer):
    """After each validation: ``models/model.pt`` (the weights validated: ``best_model``, by default the
    network) when the key metric improves, and ``models/last.pt`` (network, optimiser, scheduler, trainer
    and log state) every epoch."""

    def __init__(
        self,
        ckpt_dir: str | Path,
        evaluator: Engine,
        objects: dict,
        key_metric: str = "val_mean_dice",
        best_model: torch.nn.Module | None = None,
    ):
        super().__init__(ckpt_dir, objects)
        self.evaluator = evaluator
        self.best_model = objects["model"] if best_model is None else best_model
        self.key_metric = key_metric
        self.best = {"metric": float("-inf"), "epoch": 0}

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "model.pt"

    def state_dict(self) -> dict:
        return dict(self.best)

    def load_state_dict(self, state: dict) -> None:
        self.best = {"metric": float(state["metric"]), "epoch": int(state["epoch"])}

    def save(self, engine: Engine) -> None:
        metric = self.evaluator.state.metrics.get(self.key_metric)
        if metric is not None and float(metric) > self.best["metric"]:
            self.best = {"metric": float(metric), "epoch": engine.state.epoch}
            save_torch_atomic(self.best_model.state_dict(), self.best_path)
            logger.info("epoch %d: new best %s %.4f -> %s", engine.state.epoch, self.key_metric, metric, self.best_path)
        super().save(engine)
