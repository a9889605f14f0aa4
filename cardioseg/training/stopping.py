"""Stop a fine-tuning run once its validation reaches a target: ``stop_at_dice``.

Time-to-accuracy runs and the study's convergence grids ask when a run first reaches a Dice, not where its
whole schedule ends; stopping there spends no device time on the rest. The learning-rate schedule stays
the one of ``epochs``, so the epochs before the stop are those of the full run. MONAI's ``EarlyStopHandler``
(ignite's ``EarlyStopping``) stops when a score stops improving, not when it reaches a value, hence this.
"""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events

from ..settings import is_none

__all__ = ["StopAtScore"]

logger = logging.getLogger("cardioseg.training")


class StopAtScore:
    """Terminates the trainer after the first validation whose ``key`` metric is at least ``target`` (None:
    never). Attach after the ValidationHandler, the log and the checkpointer, so the epoch that reaches it
    is validated, logged and checkpointed like any other (the checkpointer also writes on the stop)."""

    def __init__(self, evaluator: Engine, target: Any = None, key: str = "val_mean_dice"):
        self.evaluator = evaluator
        self.target = None if is_none(target) else float(target)
        self.key = key

    def attach(self, trainer: Engine) -> None:
        if self.target is not None:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._check)

    def _check(self, trainer: Engine) -> None:
        if self.evaluator.state.epoch != trainer.state.epoch:  # val_interval skipped this epoch
            return
        score = self.evaluator.state.metrics.get(self.key)
        if score is not None and float(score) >= self.target:
            logger.info("epoch %d: %s %.4f reached %g: stopping", trainer.state.epoch, self.key, score, self.target)
            trainer.terminate()
