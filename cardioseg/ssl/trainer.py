"""The pretraining step on MONAI's engine, and the optimiser and learning-rate schedule it steps.

``PretrainTrainer`` is MONAI's ``Trainer`` (an ignite engine with MONAI's handler support) with one
iteration: the method's loss over the batch's views, a backward pass, an optimiser step, then the method's
own update (the momentum target's). bf16 autocast on CUDA needs no loss scaling, so no GradScaler is made.
"""

from __future__ import annotations

from typing import Any

import torch
from lightly.models.utils import get_weight_decay_parameters
from lightly.utils.lars import LARS
from monai.engines import Trainer

from ..settings import SettingError
from .base import PretrainMethod

OPTIMIZERS = ("adamw", "lars")


class SyncFreeLARS(LARS):
    """lightly's LARS, its update written as tensor arithmetic. lightly's ``step`` asks ``p_norm != 0 and
    g_norm != 0`` in Python: two host syncs per parameter, hundreds per step for a ResNet-50 and its heads,
    each of which drains the GPU's queue. Here the same rule is a ``torch.where``; updates, state and
    checkpoints are lightly's."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            weight_decay, momentum = group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if weight_decay != 0:
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d_p)
                    trust = group["trust_coefficient"] * p_norm / (g_norm + p_norm * weight_decay + group["eps"])
                    d_p = torch.where((p_norm != 0) & (g_norm != 0), (d_p + weight_decay * p) * trust, d_p)
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = torch.clone(d_p).detach()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).add_(d_p, alpha=1 - group["dampening"])
                    d_p = d_p.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d_p, alpha=-group["lr"])
        return loss


def build_optimizer(name: str, method: PretrainMethod, learning_rate: float, weight_decay: float):
    """AdamW or LARS over the trainable parameters; biases and normalisation layers get no weight decay
    (lightly's ``get_weight_decay_parameters``), which also keeps them out of LARS's layer-wise scaling,
    as BYOL and SimCLR train."""
    decayed, not_decayed = get_weight_decay_parameters([method])
    groups = [
        {"params": [p for p in decayed if p.requires_grad]},
        {"params": [p for p in not_decayed if p.requires_grad], "weight_decay": 0.0},
    ]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=learning_rate, weight_decay=weight_decay)
    if name == "lars":
        return SyncFreeLARS(groups, lr=learning_rate, momentum=0.9, weight_decay=weight_decay)
    raise SettingError("optimizer", name, f"choose one of {', '.join(OPTIMIZERS)}")


class PretrainTrainer(Trainer):
    """Runs a pretraining method over a view loader; ``network`` and ``optimizer`` as MONAI's trainers
    name them, so MONAI's and cardioseg's handlers (LR schedule, epoch log, checkpoints) find them."""

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Any,
        method: PretrainMethod,
        optimizer: torch.optim.Optimizer,
        bf16: bool = False,
        world_size: int = 1,
        train_handlers: list | None = None,
    ):
        super().__init__(
            device=torch.device(device),
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=len(train_data_loader),
            handlers=train_handlers,
            decollate=False,
        )
        self.network = method
        self.optimizer = optimizer
        self.bf16 = bf16
        self.world_size = world_size

    def _iteration(self, engine: Trainer, batch: dict) -> dict[str, torch.Tensor]:
        method, optimizer = engine.network, engine.optimizer
        method.train()
        optimizer.zero_grad(set_to_none=True)
        device_type = torch.device(engine.state.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = method.training_loss(batch["views"], batch["label"], batch["generator"])
        loss.backward()
        if self.world_size > 1:
            average_gradients(method, self.world_size)
        optimizer.step()
        method.after_step(engine.state.iteration, engine.state.max_epochs * engine.state.epoch_length)
        return {"loss": loss.detach()}


def average_gradients(method: PretrainMethod, world_size: int) -> None:
    """Mean of every gradient over the DDP processes. Hand-written because a method's loss calls its
    sub-networks directly, not one module's ``forward``, which is where DistributedDataParallel hooks in."""
    for parameter in method.parameters():
        if parameter.grad is not None:
            torch.distributed.all_reduce(parameter.grad)
            parameter.grad /= world_size
