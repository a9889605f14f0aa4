"""One JSON line per epoch in ``OUT/metrics.jsonl``: what convergence plots, the study and people read.

MONAI's StatsHandler and TensorBoardStatsHandler log for people; this log is for programs: images seen,
seconds of training, mean loss and learning rate in one line per epoch, continued across a resume.
Fine-tuning adds the validation Dice to each line (``cardioseg.training.convergence``); pretraining
writes it as it is. An epoch whose mean loss is not finite stops the run (``TrainingDiverged``) before its
line or any checkpoint of it is written: weights that went NaN stay NaN, and would be trained, saved and
fine-tuned from without a word. The loss is read once per epoch, as the line needs it: no extra host sync.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..atomic import write_text_atomic
from ..errors import CardiosegError, DataError

logger = logging.getLogger("cardioseg.engine")


class TrainingDiverged(CardiosegError):
    """The training loss became NaN or infinite."""


class EpochLog:
    """Attach to the trainer; ``engine.optimizer`` gives the logged learning rate."""

    def __init__(self, path: str | Path, batch_size: int, world_size: int = 1, name: str = "cardioseg.engine"):
        """``batch_size`` per process; ``world_size`` processes (DDP) each take a batch per step; ``name``
        is the logger that prints each line for people."""
        self.path = Path(path)
        self.images_per_step = batch_size * world_size
        self.logger = logging.getLogger(name)
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

    def extra_fields(self, engine: Engine) -> dict[str, Any]:
        """Fields a subclass adds to each epoch's line."""
        return {}

    def describe(self, line: dict[str, Any]) -> str:
        """The line for people."""
        return f"epoch {line['epoch']}: loss {line['train_loss']:.4f}, {line['train_seconds']:.1f} s training"

    def _keep_earlier_epochs(self, epoch: int) -> None:
        """Keep the lines of epochs before ``epoch`` (done before a resume), drop any from beyond it."""
        kept = [line for line in read_metrics(self.path) if line["epoch"] < epoch] if self.path.exists() else []
        write_text_atomic(self.path, "".join(json.dumps(line) + "\n" for line in kept))
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
        loss = float(self._loss_sum) / max(1, self._iterations)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"{self.path.parent}: epoch {engine.state.epoch}: the mean training loss is {loss}: the run "
                "diverged (is the learning rate too high?); its checkpoints end before this epoch"
            )
        self.seconds["train"] += self._train_end - self._epoch_start
        self.seconds["wall"] += now - self._epoch_start
        line = {
            "epoch": engine.state.epoch,
            "step": engine.state.iteration,
            "images_seen": engine.state.iteration * self.images_per_step,
            "wall_seconds": round(self.seconds["wall"], 3),
            "train_seconds": round(self.seconds["train"], 3),
            "time": round(time.time(), 3),  # Unix time, so time since the command started can be read
            "train_loss": round(loss, 5),
            "lr": float(engine.optimizer.param_groups[0]["lr"]),  # a tensor under cuda_graphs "step"
            **self.extra_fields(engine),
        }
        with open(self.path, "a") as handle:
            handle.write(json.dumps(line) + "\n")
        self.logger.info(self.describe(line))

    @staticmethod
    def _sync(engine: Engine) -> None:
        if torch.device(engine.state.device).type == "cuda":
            torch.cuda.synchronize()


def read_metrics(path: str | Path) -> list[dict]:
    """The epochs of a run's ``metrics.jsonl``. A last line cut short (a run killed while appending it) is
    skipped with a warning; any other line that is not an epoch's JSON object is an error naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the metrics log ({exc})") from None
    lines = text.splitlines()
    epochs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if isinstance(entry, dict) and isinstance(entry.get("epoch"), int):
            epochs.append(entry)
        elif number == len(lines) and not text.endswith("\n"):
            logger.warning("%s: last line is cut short (a run stopped while writing it); ignored", path)
        else:
            raise DataError(path, f"line {number} is not an epoch record: {line[:60]!r}")
    return epochs
