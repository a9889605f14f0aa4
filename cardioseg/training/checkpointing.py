"""Fine-tuning's checkpoints: ``models/model.pt``, the weights of the best epoch by the key metric, on top
of the engine's resumable ``models/last.pt`` (which also carries the best metric, so a resume remembers
which epoch was best; MONAI's CheckpointSaver keeps that record only inside ``model.pt``). Both are written
at the same moments, so they always agree."""

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
    """After each validation the weights validated (``best_model``, by default the network) are kept in
    host memory when the key metric improves; ``models/model.pt`` gets them, and ``models/last.pt``
    (network, optimiser, scheduler, trainer and log state) is written, when ``last.pt`` is due
    (``interval_seconds``)."""

    def __init__(
        self,
        ckpt_dir: str | Path,
        evaluator: Engine,
        objects: dict,
        key_metric: str = "val_mean_dice",
        best_model: torch.nn.Module | None = None,
        interval_seconds: float = 0.0,
    ):
        super().__init__(ckpt_dir, objects, interval_seconds)
        self.evaluator = evaluator
        self.best_model = objects["model"] if best_model is None else best_model
        self.key_metric = key_metric
        self.best = {"metric": float("-inf"), "epoch": 0}
        self._unwritten_best: dict[str, torch.Tensor] | None = None

    @property
    def best_path(self) -> Path:
        return self.ckpt_dir / "model.pt"

    def state_dict(self) -> dict:
        return dict(self.best)

    def load_state_dict(self, state: dict) -> None:
        self.best = {"metric": float(state["metric"]), "epoch": int(state["epoch"])}

    def observe(self, engine: Engine) -> None:
        metric = self.evaluator.state.metrics.get(self.key_metric)
        if metric is not None and float(metric) > self.best["metric"]:
            self.best = {"metric": float(metric), "epoch": engine.state.epoch}
            self._unwritten_best = {k: v.detach().to("cpu", copy=True) for k, v in self.best_model.state_dict().items()}
            logger.info("epoch %d: new best %s %.4f", engine.state.epoch, self.key_metric, metric)

    def save(self, engine: Engine) -> None:
        if self._unwritten_best is not None:
            save_torch_atomic(self._unwritten_best, self.best_path)
            self._unwritten_best = None
            logger.info("%s: the weights of epoch %d", self.best_path, self.best["epoch"])
        super().save(engine)
