"""Weight averaging for fine-tuning: an exponential moving average (EMA) of the network's weights.

With ``ema_decay`` set, validation, ``models/model.pt`` (hence evaluation and export) use the average,
which is smoother than the last step's weights: one of the time-to-accuracy levers. BatchNorm statistics
are averaged alike. The decay warms up as timm's ``ModelEmaV3`` does, ``min(decay, (1 + t) / (10 + t))``
after ``t`` updates, so a short run is not held back by its initial weights.

Hand-written as one multi-tensor lerp per step: torch's ``AveragedModel`` reads its update counter on the
host every step (a device sync under CUDA), and ignite's ``EMAHandler`` launches two kernels per tensor.
"""

from __future__ import annotations

import copy

import torch
from ignite.engine import Engine, Events

from ..settings import is_none

__all__ = ["WeightAverage"]


class WeightAverage:
    """The network to validate and save: the EMA of ``network`` when ``decay`` is set, else ``network``."""

    def __init__(self, network: torch.nn.Module, decay: float | None = None):
        self.online = network
        self.decay = None if is_none(decay) else float(decay)
        self.updates = 0
        self.averaged: torch.nn.Module | None = None
        if self.decay is not None:
            self.averaged = copy.deepcopy(network).requires_grad_(False)
            pairs = zip(self.averaged.state_dict().values(), network.state_dict(keep_vars=True).values(), strict=True)
            pairs = [(mean, current.detach()) for mean, current in pairs]
            self._floats = [pair for pair in pairs if pair[0].is_floating_point()]
            self._counters = [pair for pair in pairs if not pair[0].is_floating_point()]  # BatchNorm's step count

    @property
    def network(self) -> torch.nn.Module:
        return self.online if self.averaged is None else self.averaged

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, engine: Engine | None = None) -> None:
        """Move the average toward the network's current weights (after each optimiser step)."""
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_([m for m, _ in self._floats], [c for _, c in self._floats], weight)
        if self._counters:
            torch._foreach_copy_([m for m, _ in self._counters], [c for _, c in self._counters])
        self.updates += 1

    def attach(self, trainer: Engine) -> None:
        if self.averaged is not None:
            trainer.add_event_handler(Events.ITERATION_COMPLETED, self.update)

    def state_dict(self) -> dict:
        if self.averaged is None:
            return {}
        return {"averaged": self.averaged.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if self.averaged is not None:
            self.averaged.load_state_dict(state["averaged"])
            self.updates = int(state["updates"])
