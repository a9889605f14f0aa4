"""Batches of random views for the pretraining engine, cut from images held on the training device.

As fine-tuning's slice loader does, the images are copied to the device once and each batch is cut and
augmented there (``views.make_view``); the order and every random draw of epoch ``e`` come from a
generator seeded with ``(seed, e)`` alone (``cardioseg.engine.batches``), so a resumed run sees the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..engine.batches import EpochLoader, epoch_generator, epoch_order, to_device
from .data import PretrainData
from .views import ViewConfig, make_view


class ViewLoader(EpochLoader):
    """Epochs of ``epoch_length`` images (default: all of them once), each batch as ``views`` random views.

    A batch is ``{"views": [(B, 1, H, W), ...], "label": (B,) or None, "generator": torch.Generator}``;
    the generator (CPU, seeded from the epoch's) serves a method's own random draws, such as its masks.
    """

    def __init__(
        self,
        data: PretrainData,
        batch_size: int,
        device: torch.device | str,
        views: int = 2,
        augment: ViewConfig | None = None,
        seed: int = 0,
        epoch_length: int | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(batch_size, epoch_length or len(data), seed, rank, world_size)
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(data.images)).to(self.device)
        self.labels = None if data.labels is None else torch.from_numpy(data.labels).to(self.device)
        self.views = views
        self.augment = augment or ViewConfig()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __iter__(self) -> Iterator[dict]:
        # A generator: the epoch is read at the first batch, after ignite's EPOCH_STARTED has set it.
        generator = epoch_generator(self.seed, self.epoch)
        pool = torch.arange(len(self.images))
        order = epoch_order(pool, len(self), self.batch_size, generator, self.rank, self.world_size)
        for batch in order.split(self.batch_size):
            index = to_device(batch, self.device)
            images = self.images[index].unsqueeze(1)
            views = [make_view(images, self.augment, generator) for _ in range(self.views)]
            yield {
                "views": [view.contiguous(memory_format=self.memory_format) for view in views],
                "label": None if self.labels is None else self.labels[index],
                "generator": torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator))),
            }
