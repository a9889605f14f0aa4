"""``models/last.pt``: everything a run needs to continue after a kill, written atomically after an epoch.

MONAI's CheckpointSaver writes in place (its DiskSaver sets ``atomic=False``) and a run killed mid-write
could leave a broken file. This handler writes every object's state (network, optimiser, scheduler,
trainer, logs) through a temporary file after each epoch, or at most every ``interval_seconds`` (on an
H200 a ResNet-50 fine-tuning epoch trained in about 1.4 s and writing ``last.pt`` took 1.3 s more:
benchmarks/results/checkpoint_cadence_h200.json), always after the last epoch and when the run is stopped
between epochs; on resume it restores them before the first step, so the trainer continues after the
saved epoch. A resume to more epochs keeps the learning-rate schedule planned for them (the checkpoint's is
the old plan), and a run stopped before its first checkpoint starts over. Fine-tuning adds its best-model
file on top (``cardioseg.training.checkpointing``), pretraining its milestone checkpoints
(``cardioseg.ssl.checkpoints``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch.optim.lr_scheduler import LambdaLR

from ..checkpoint import load_torch_file, save_torch_atomic
from ..errors import CardiosegError, DataError
from ..run_folder import TEMPORARY_GLOB

logger = logging.getLogger("cardioseg.engine")


class ResumeCheckpointer:
    """``models/last.pt`` with every object's state after an epoch; restored at STARTED on resume.

    ``objects`` maps names to anything with ``state_dict``/``load_state_dict`` and must include the
    ``trainer``. ``interval_seconds``: 0 writes after every epoch, more writes after the first epoch that
    ends that long after the previous write (or the start). Subclasses add their own state
    (``state_dict``), what they note after every epoch (``observe``) and files (``save``, then
    ``super().save``).
    """

    def __init__(self, ckpt_dir: str | Path, objects: dict, interval_seconds: float = 0.0):
        self.ckpt_dir = Path(ckpt_dir)
        self.objects = objects
        self.interval_seconds = float(interval_seconds)
        self._written_at = time.monotonic()
        self._written_epoch = None

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    def attach(self, engine: Engine, resume: bool = False, save: bool = True) -> None:
        """Attach after the handlers whose state is saved (logs, validation).

        Under DDP every rank restores, but only the main one saves (``save``). A resume without ``last.pt``
        (checked by ``check_resume``: the run stopped before writing anything) starts from epoch 1."""
        if resume and self.last_path.exists():
            engine.add_event_handler(Events.STARTED, self.restore)
        if save:
            engine.add_event_handler(Events.STARTED, self._start_clock)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
            engine.add_event_handler(Events.TERMINATE, self._stopped)

    def _start_clock(self, engine: Engine) -> None:
        self._written_at = time.monotonic()

    def _epoch_completed(self, engine: Engine) -> None:
        self.observe(engine)
        due = time.monotonic() - self._written_at >= self.interval_seconds
        if due or engine.state.epoch >= engine.state.max_epochs:
            self._write(engine)

    def _stopped(self, engine: Engine) -> None:
        """A run stopped after an epoch (``terminate``) keeps that epoch; one stopped inside an epoch keeps
        the last write, as a kill would."""
        between_epochs = engine.state.iteration % engine.state.epoch_length == 0
        if between_epochs and self._written_epoch != engine.state.epoch:
            self._write(engine)

    def _write(self, engine: Engine) -> None:
        self.save(engine)
        self._written_at = time.monotonic()
        self._written_epoch = engine.state.epoch

    def observe(self, engine: Engine) -> None:
        """What a subclass notes after every epoch, written or not (fine-tuning: the best weights)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def save(self, engine: Engine) -> None:
        state = {name: obj.state_dict() for name, obj in self.objects.items()}
        save_torch_atomic({**state, "checkpointer": self.state_dict()}, self.last_path)

    def restore(self, engine: Engine) -> None:
        """Load ``last.pt`` into every object; the trainer then continues after the saved epoch."""
        max_epochs = engine.state.max_epochs
        state = read_resume_checkpoint(self.last_path, max_epochs, (*self.objects, "checkpointer"))
        schedules = {name: obj.state_dict() for name, obj in self.objects.items() if isinstance(obj, LambdaLR)}
        for name, obj in self.objects.items():
            obj.load_state_dict(state[name])  # module and optimiser move tensors to their device
        for name, planned in schedules.items():
            keep_schedule_plan(self.objects[name], planned)
        self.load_state_dict(state["checkpointer"])
        engine.state.max_epochs = max_epochs
        logger.info("resumed from %s at epoch %d", self.last_path, engine.state.epoch)


# What a LambdaLR's state holds of its progress; the rest (MONAI's WarmupCosineSchedule: t_total,
# warmup_steps, cycles) is its plan.
_SCHEDULE_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step")


def keep_schedule_plan(scheduler: LambdaLR, planned: dict) -> None:
    """Keep the schedule ``planned`` for this run (its ``state_dict`` before the checkpoint was loaded) with
    the checkpoint's progress, and set the learning rate the plan gives at that step.

    A resume with more epochs would otherwise carry on the old plan: a cosine past its end climbs back to
    its peak. With the same epochs the plan is the checkpoint's, and nothing changes."""
    restored = scheduler.state_dict()
    if all(planned.get(k) == restored.get(k) for k in planned if k not in _SCHEDULE_PROGRESS):
        return
    scheduler.load_state_dict({**planned, **{k: restored[k] for k in _SCHEDULE_PROGRESS if k in restored}})
    rates = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        if torch.is_tensor(group["lr"]):  # a device tensor under CUDA graphs: filled in place
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports; torch has no public setter
    logger.info("learning-rate schedule re-planned for the new epochs: %.3g at step %d", rates[0], scheduler.last_epoch)


def check_resume(ckpt_dir: str | Path, max_epochs: int) -> None:
    """Before a resume changes anything: ``ckpt_dir/last.pt`` readable and not finished. A run stopped
    before it wrote any checkpoint (interrupted in its first epoch) has nothing to continue and nothing to
    lose: it starts over. A folder with checkpoints but no ``last.pt`` (a finished run's is removed by the
    study) is refused."""
    ckpt_dir = Path(ckpt_dir)
    written = [p.name for p in sorted(ckpt_dir.glob("*")) if not p.match(TEMPORARY_GLOB)]  # a killed write's
    if not written:
        logger.warning("%s: no checkpoint yet (the run stopped in its first epoch): starting it over", ckpt_dir)
        return
    if "last.pt" not in written:
        raise CardiosegError(
            f"{ckpt_dir / 'last.pt'}: no checkpoint to resume from, but the run wrote {', '.join(written)}: "
            "start a new run in another output_dir, or pass overwrite true to replace this one"
        )
    read_resume_checkpoint(ckpt_dir / "last.pt", max_epochs)


def read_resume_checkpoint(path: str | Path, max_epochs: int, objects: tuple[str, ...] = ("trainer",)) -> dict:
    """``last.pt`` checked for a resume to ``max_epochs``: readable (a truncated file names itself), with
    every object's state, and not finished already. Used before a resume changes anything, and by it."""
    path = Path(path)
    if not path.exists():
        raise CardiosegError(f"{path}: no checkpoint to resume from (run without resume first)")
    state = load_torch_file(path)
    missing = sorted({*objects, "trainer"} - set(state)) if isinstance(state, dict) else ["everything"]
    if missing:
        raise DataError(path, f"resume checkpoint lacks {missing}")
    trainer = state["trainer"]  # ignite saves the iteration, or the epoch
    done = int(trainer["epoch"]) if "epoch" in trainer else int(trainer["iteration"]) // int(trainer["epoch_length"])
    if done >= max_epochs:
        raise CardiosegError(
            f"{path}: the run finished {done} of {max_epochs} epochs already; to train longer, resume with a "
            f"larger epochs"
        )
    return state
