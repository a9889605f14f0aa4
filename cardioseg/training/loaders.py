"""Batches for MONAI's engines from slices held on the training device.

A DataLoader with CPU workers re-copies every batch to the GPU and augments on two CPU cores; ACDC's
slices fit on any GPU many times over, so they are copied once and batches are cut and augmented there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from ..data.slicing import SliceSet
from ..engine.batches import EpochLoader, epoch_generator, epoch_order, to_device
from .augment import AugmentConfig, augment_batch

logger = logging.getLogger("cardioseg.training")

# An epoch holds at least this many optimiser steps when epoch_length is not set. A small data set in its own
# folder (7 patients: about 126 slices, 4 steps at batch 32) would otherwise give epochs so short that a
# 20-epoch schedule ends before the model leaves the background-only solution.
MIN_STEPS_PER_EPOCH = 16


def default_epoch_length(n_slices: int, batch_size: int, world_size: int = 1) -> int:
    """All training slices, but at least ``MIN_STEPS_PER_EPOCH`` global batches (said in the log)."""
    floor = MIN_STEPS_PER_EPOCH * batch_size * world_size
    if n_slices >= floor:
        return n_slices
    logger.warning(
        "only %d training slices: each epoch draws %d (%d steps of %d, slices repeated); set epoch_length to change it",
        n_slices,
        floor,
        MIN_STEPS_PER_EPOCH,
        batch_size * world_size,
    )
    return floor


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


class TrainSliceLoader(EpochLoader):
    """Epochs of ``epoch_length`` augmented slices drawn from the labelled ones, the same whatever the budget
    (by default all training slices, but never fewer than ``MIN_STEPS_PER_EPOCH`` steps).

    A small budget is oversampled (its slices repeat within an epoch, in a new order each time), as in
    Kalapos & Gyires-Tóth, so that epochs compare across budgets. The order and augmentation of epoch ``e``
    depend only on ``(seed, e)``: a resumed run sees the same batches as an uninterrupted one. Under DDP
    every rank draws the same order and takes its own ``batch_size`` part of each global batch.
    """

    def __init__(
        self,
        slices: SliceSet,
        labelled: np.ndarray,
        batch_size: int,
        device: torch.device | str,
        seed: int = 0,
        epoch_length: int | None = None,
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(labelled) == 0:
            raise ValueError("no labelled slices to train on")
        epoch_length = epoch_length or default_epoch_length(len(slices), batch_size, world_size)
        super().__init__(batch_size, epoch_length, seed, rank, world_size)
        self.device = torch.device(device)
        self.images = _to_device(slices.images, self.device)
        self.labels = _to_device(slices.labels, self.device)
        self.labelled = torch.as_tensor(np.asarray(labelled), dtype=torch.long)
        self.augment = augment
        self.memory_format = _memory_format(channels_last)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # A generator: the epoch is read at the first batch, after ignite's EPOCH_STARTED has set it.
        generator = epoch_generator(self.seed, self.epoch)
        order = epoch_order(self.labelled, len(self), self.batch_size, generator, self.rank, self.world_size)
        for batch in order.split(self.batch_size):
            index = to_device(batch, self.device)
            images = self.images[index].unsqueeze(1).float()
            labels = self.labels[index].unsqueeze(1).float()
            if self.augment is not None:
                images, labels = augment_batch(images, labels, self.augment, generator)
            yield {
                "image": images.contiguous(memory_format=self.memory_format),
                "label": labels,
            }


class VolumeLoader:
    """One batch per volume (all its slices), so validation metrics are 3D per volume as in SSL4MIS.

    ``slice_multiple`` pads each image batch with empty slices up to a multiple of it: volumes have 6 to 20
    slices, and cuDNN's autotuner (``cudnn.benchmark``) tunes every convolution again for each new batch
    shape, so padding turns a dozen first-time shapes into two or three. The label keeps the volume's own
    slices; :func:`slices_to_volume` cuts the padding's predictions off before scoring.
    """

    def __init__(
        self,
        slices: SliceSet,
        device: torch.device | str,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        slice_multiple: int = 1,
    ):
        """Under DDP each rank scores every ``world_size``-th volume; MONAI's metric handlers gather them."""
        self.device = torch.device(device)
        volumes = [np.flatnonzero(slices.volume == v) for v in np.unique(slices.volume)][rank::world_size]
        self.volumes = [torch.as_tensor(index, device=self.device) for index in volumes]  # copied once
        self.images = _to_device(slices.images, self.device)
        self.labels = _to_device(slices.labels, self.device)
        self.memory_format = _memory_format(channels_last)
        self.slice_multiple = int(slice_multiple)

    def __len__(self) -> int:
        return len(self.volumes)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for index in self.volumes:
            padding = -len(index) % self.slice_multiple
            image = self.images[index].unsqueeze(1).float()
            if padding:
                image = torch.cat([image, image.new_zeros((padding, *image.shape[1:]))])
            yield {
                "image": image.contiguous(memory_format=self.memory_format),
                "label": self.labels[index].unsqueeze(1).float(),
            }


def slices_to_volume(output: dict) -> dict:
    """Postprocessing for a volume batch: logits ``(S, C, H, W)`` to one-hot ``(1, C, S, H, W)``, and the
    label alike, so MONAI's Dice handlers score the 3D volume rather than each slice. Logits of padding
    slices beyond the label's (``VolumeLoader``'s ``slice_multiple``) are dropped."""
    label = output["label"]
    logits = output["pred"][: label.shape[0]]
    classes = logits.shape[1]
    pred = torch.nn.functional.one_hot(logits.argmax(1), classes).permute(3, 0, 1, 2).unsqueeze(0)
    truth = torch.nn.functional.one_hot(label[:, 0].long(), classes).permute(3, 0, 1, 2).unsqueeze(0)
    return {**output, "pred": pred.float(), "label": truth.float()}
