"""Which images each step of an epoch takes: a seeded order that depends only on (seed, epoch).

Shared by fine-tuning's slice loader and pretraining's view loader, whose data stay on the training
device and are cut into batches there. Because an epoch's order and its augmentation draws come from a
generator seeded with ``(seed, epoch)`` alone, a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events


def to_device(values: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A small CPU tensor (a batch's indices, per-image augmentation draws) on the training device, without
    stalling it: PyTorch waits for the CUDA stream to drain after a blocking copy from pageable memory, once
    per call; a pinned, non-blocking copy is queued instead (the caching host allocator keeps the pinned
    block until the copy is done)."""
    device = torch.device(device)
    if device.type != "cuda":
        return values.to(device, dtype)
    return values.pin_memory().to(device, dtype, non_blocking=True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch: its order, then its augmentation draws."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def epoch_order(
    pool: torch.Tensor, steps: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """This rank's indices (taken from ``pool``) for ``steps`` steps, in batch order.

    The pool is reshuffled as often as the epoch needs (a small pool repeats within an epoch, in a new
    order each time). Under DDP every rank draws the same order and takes its own ``batch_size`` part of
    each global batch.
    """
    needed = steps * batch_size * world_size
    repeats = -(-needed // len(pool))
    order = torch.cat([torch.randperm(len(pool), generator=generator) for _ in range(repeats)])
    global_batches = pool[order[:needed]].view(steps, world_size, batch_size)
    return global_batches[:, rank].flatten()


class EpochLoader:
    """What a device-resident loader shares: epochs of ``epoch_length`` images across all ranks, cut into
    ``batch_size`` batches per rank, following the trainer's epoch counter (also after a resume)."""

    def __init__(self, batch_size: int, epoch_length: int, seed: int, rank: int = 0, world_size: int = 1):
        self.batch_size, self.epoch_length, self.seed = batch_size, epoch_length, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 1

    def __len__(self) -> int:
        """Steps per epoch: ``epoch_length`` images across all ranks."""
        return max(1, self.epoch_length // (self.batch_size * self.world_size))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: setattr(self, "epoch", e.state.epoch))
