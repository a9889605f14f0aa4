"""Best-model and resume checkpoints for a fine-tuning run, written atomically.

MONAI's CheckpointSaver writes in place (its DiskSaver sets ``atomic=False``) and keeps the best-metric
record only inside ``model.pt``; a run killed mid-write could leave a broken ``model.pt`` and a resume
would forget which epoch was best. This one handler writes both files through a temporary file and
carries everything a resume needs in ``models/last.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..atomic import atomic_path
from ..errors import CardiosegError

logger = logging.getLogger("cardioseg.training")


class RunCheckpointer:
    """After each validation: ``models/model.pt`` (network weights) when the key metric improves, and
    ``models/last.pt`` (network, optimiser, scheduler, trainer and log state) every epoch."""

    def __init__(self, ckpt_dir: str | Path, evaluator: Engine, objects: dict, key_metric: str = "val_mean_dice"):
        self.ckpt_dir = Path(ckpt_dir)
        self.evaluator = evaluator
        self.objects = objects
        self.key_metric = key_metric
        self.best = {"metric": float("-inf"), "epoch": 0}

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "model.pt"

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    def attach(self, engine: Engine, resume: bool = False, save: bool = True) -> None:
        """Attach after the ValidationHandler and the ConvergenceLog (their state is saved too).

        Under DDP every rank restores, but only the main one saves (``save``)."""
        if resume:
            engine.add_event_handler(Events.STARTED, self.restore)
        if save:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def state_dict(self) -> dict:
        return dict(self.best)

    def load_state_dict(self, state: dict) -> None:
        self.best = {"metric": float(state["metric"]), "epoch": int(state["epoch"])}

    def save(self, engine: Engine) -> None:
        metric = self.evaluator.state.metrics.get(self.key_metric)
        if metric is not None and float(metric) > self.best["metric"]:
            self.best = {"metric": float(metric), "epoch": engine.state.epoch}
            _save(self.objects["model"].state_dict(), self.best_path)
            logger.info("epoch %d: new best %s %.4f -> %s", engine.state.epoch, self.key_metric, metric, self.best_path)
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        _save({**state, "checkpointer": self.state_dict()}, self.last_path)

    def restore(self, engine: Engine) -> None:
        """Load ``last.pt`` into every object; the trainer then continues after the saved epoch."""
        if not self.last_path.exists():
            raise CardiosegError(f"{self.last_path}: no checkpoint to resume from (run without resume first)")
        state = torch.load(self.last_path, map_location=engine.state.device, weights_only=True)
        missing = sorted(set(self.objects) - set(state))
        if missing:
            raise CardiosegError(f"{self.last_path}: resume checkpoint lacks {missing}")
        max_epochs = engine.state.max_epochs
        for name, obj in self.objects.items():
            obj.load_state_dict(state[name])
        self.load_state_dict(state["checkpointer"])
        engine.state.max_epochs = max_epochs
        if engine.state.epoch >= max_epochs:
            raise CardiosegError(f"{self.last_path}: run already finished {engine.state.epoch} of {max_epochs} epochs")
        logger.info("resumed from %s at epoch %d", self.last_path, engine.state.epoch)


def _save(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
