"""Fine-tuning's per-epoch log: the engine's ``metrics.jsonl`` line plus that epoch's validation Dice.

Convergence-speed plots and the study read validation Dice against images seen and seconds of training
from these lines (``read_metrics``, re-exported here for them).
"""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine

from ..engine.epoch_log import EpochLog, read_metrics

__all__ = ["ConvergenceLog", "read_metrics"]


class ConvergenceLog(EpochLog):
    """Attach to the trainer after the ValidationHandler, so each line carries that epoch's validation."""

    def __init__(
        self,
        path,
        evaluator: Engine,
        batch_size: int,
        world_size: int = 1,
        class_names=("RV", "MYO", "LV"),
    ):
        """``batch_size`` per process; ``world_size`` processes (DDP) each take a batch per step."""
        super().__init__(path, batch_size, world_size, name="cardioseg.training")
        self.evaluator = evaluator
        self.class_names = tuple(class_names)

    def extra_fields(self, engine: Engine) -> dict[str, Any]:
        """This epoch's validation Dice and seconds; none (null) in an epoch that ``val_interval`` skips,
        where the evaluator still holds an earlier epoch's (MONAI's Evaluator.run sets its epoch to the
        trainer's)."""
        if self.evaluator.state.epoch != engine.state.epoch:
            return {"val_dice_mean": None, "val_dice": {}, "val_seconds": None}
        metrics = self.evaluator.state.metrics
        per_class = metrics.get("val_dice_per_class")
        per_class = [] if per_class is None else torch.as_tensor(per_class).flatten().tolist()
        return {
            "val_dice_mean": _round(metrics.get("val_mean_dice")),
            "val_dice": {name: _round(v) for name, v in zip(self.class_names, per_class)},
            # ignite's own timing of the evaluator's run (its metrics read the result back: no sync needed)
            "val_seconds": _round(self.evaluator.state.times.get("COMPLETED"), 3),
        }

    def describe(self, line: dict[str, Any]) -> str:
        per_class = ", ".join(f"{k} {v}" for k, v in line["val_dice"].items())
        validation = f"val Dice {line['val_dice_mean']} ({per_class})" if line["val_dice"] else "not validated"
        seconds = line["train_seconds"]
        return f"epoch {line['epoch']}: loss {line['train_loss']:.4f}, {validation}, {seconds:.1f} s training"


def _round(value, digits: int = 5) -> float | None:
    return None if value is None else round(float(value), digits)
