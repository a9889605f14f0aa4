"""One JSON line per epoch in ``OUT/metrics.jsonl``: what convergence-speed plots and the study read.

MONAI's StatsHandler and TensorBoardStatsHandler log for people; this log is for programs: images seen,
seconds of training and the validation Dice per class, in one line per epoch, continued across a resume.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from ..atomic import write_text_atomic

logger = logging.getLogger("cardioseg.training")


class ConvergenceLog:
    """Attach to the trainer after the ValidationHandler, so each line carries that epoch's validation."""

    def __init__(
        self,
        path: str | Path,
        evaluator: Engine,
        batch_size: int,
        world_size: int = 1,
        class_names=("RV", "MYO", "LV"),
    ):
        """``batch_size`` per process; ``world_size`` processes (DDP) each take a batch per step."""
        self.path = Path(path)
        self.evaluator = evaluator
        self.images_per_step = batch_size * world_size
        self.class_names = tuple(class_names)
        self.seconds = {"wall": 0.0, "train": 0.0}
        self._loss_sum = torch.zeros(())
        self._iterations = 0
        self._first_epoch = True

    def state_dict(self) -> dict:
        return {"wall_seconds": self.seconds["wall"], "train_seconds": self.seconds["train"]}

    def load_state_dict(self, state: dict) -> None:
        self.seconds = {"wall": float(state["wall_seconds"]), "train": float(state["train_seconds"])}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _keep_earlier_epochs(self, epoch: int) -> None:
        """Keep the lines of epochs before ``epoch`` (done before a resume), drop any from beyond it."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        kept = [line for line in lines if json.loads(line)["epoch"] < epoch]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        self._first_epoch = False

    def _epoch_started(self, engine: Engine) -> None:
        if self._first_epoch:  # here, unlike at STARTED, a resumed trainer's epoch is restored already
            self._keep_earlier_epochs(engine.state.epoch)
        self._sync(engine)
        self._epoch_start = time.perf_counter()
        self._loss_sum = torch.zeros((), device=engine.state.device)
        self._iterations = 0

    def _iteration_completed(self, engine: Engine) -> None:
        self._loss_sum += engine.state.output["loss"].detach()  # stays on the device: no sync per step
        self._iterations += 1
        if self._iterations == engine.state.epoch_length:
            self._sync(engine)
            self._train_end = time.perf_counter()

    def _epoch_completed(self, engine: Engine) -> None:
        now = time.perf_counter()
        self.seconds["train"] += self._train_end - self._epoch_start
        self.seconds["wall"] += now - self._epoch_start
        metrics = self.evaluator.state.metrics
        per_class = metrics.get("val_dice_per_class")
        per_class = [] if per_class is None else torch.as_tensor(per_class).flatten().tolist()
        line = {
            "epoch": engine.state.epoch,
            "step": engine.state.iteration,
            "images_seen": engine.state.iteration * self.images_per_step,
            "wall_seconds": round(self.seconds["wall"], 3),
            "train_seconds": round(self.seconds["train"], 3),
            "train_loss": round(float(self._loss_sum) / max(1, self._iterations), 5),
            "lr": engine.optimizer.param_groups[0]["lr"],
            "val_dice_mean": _round(metrics.get("val_mean_dice")),
            "val_dice": {name: _round(v) for name, v in zip(self.class_names, per_class)},
        }
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        logger.info(
            "epoch %d: loss %.4f, val Dice %s (%s), %.1f s training",
            line["epoch"],
            line["train_loss"],
            line["val_dice_mean"],
            ", ".join(f"{k} {v}" for k, v in line["val_dice"].items()),
            line["train_seconds"],
        )

    @staticmethod
    def _sync(engine: Engine) -> None:
        if torch.device(engine.state.device).type == "cuda":
            torch.cuda.synchronize()


def _round(value) -> float | None:
    return None if value is None else round(float(value), 5)


def read_metrics(path: str | Path) -> list[dict]:
    """The epochs of a run's ``metrics.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
