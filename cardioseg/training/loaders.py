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
from ..settings import whole_number
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
        epoch_length = whole_number("epoch_length", epoch_length, optional=True)  # a command line's "null": None
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


PAD_LABEL = -1.0
"""The label of a padding slice: ``slices_to_volume`` scores it as background in prediction and truth."""


class VolumeLoader:
    """Validation batches of whole volumes, so validation metrics are 3D per volume as in SSL4MIS.

    A batch holds one volume, or on a GPU several (``max_slices`` slices at most): per batch, a validation
    pays the evaluator's fixed costs (eval mode set on every module, metric updates with their device
    syncs), which on an H200 outweigh a ResNet-50 U-Net's forward pass over one volume. Volumes are
    grouped in order of depth, and each is padded with empty slices to its batch's depth, rounded up to a
    multiple of ``slice_multiple``: ACDC's volumes have 6 to 18 slices, and cuDNN's autotuner
    (``cudnn.benchmark``) tunes every convolution again for each new batch shape, so the batches come in a
    few shapes, the same every epoch. Labels of padding slices are ``PAD_LABEL``; the label comes as
    ``(volumes, 1, depth, H, W)`` and the image as ``(volumes * depth, 1, H, W)``.
    """

    def __init__(
        self,
        slices: SliceSet,
        device: torch.device | str,
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        slice_multiple: int = 1,
        max_slices: int = 0,
    ):
        """Under DDP each rank scores every ``world_size``-th volume; MONAI's metric handlers gather them.
        ``max_slices`` 0 (or below one volume's padded depth) gives one volume per batch."""
        self.device = torch.device(device)
        volumes = [np.flatnonzero(slices.volume == v) for v in np.unique(slices.volume)][rank::world_size]
        self.slice_multiple = int(slice_multiple)
        self.batches = [
            [torch.as_tensor(index, device=self.device) for index in group]  # copied once
            for group in _group_volumes(volumes, int(max_slices), self.slice_multiple)
        ]
        self.images = _to_device(slices.images, self.device)
        self.labels = _to_device(slices.labels, self.device)
        self.memory_format = _memory_format(channels_last)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        height, width = self.images.shape[1:]
        for group in self.batches:
            depth = _padded_depth(max(len(index) for index in group), self.slice_multiple)
            image = torch.zeros((len(group), depth, height, width), device=self.device)
            label = torch.full((len(group), depth, height, width), PAD_LABEL, device=self.device)
            for i, index in enumerate(group):
                image[i, : len(index)] = self.images[index]
                label[i, : len(index)] = self.labels[index]
            yield {
                "image": image.reshape(-1, 1, height, width).contiguous(memory_format=self.memory_format),
                "label": label.unsqueeze(1),
            }


def _padded_depth(depth: int, multiple: int) -> int:
    return depth + -depth % multiple


def _group_volumes(volumes: list[np.ndarray], max_slices: int, slice_multiple: int) -> list[list[np.ndarray]]:
    """Volumes, shallowest first, in consecutive groups whose padded batch stays within ``max_slices``;
    one per group, in their own order, when ``max_slices`` is 0."""
    if max_slices <= 0:
        return [[index] for index in volumes]
    groups: list[list[np.ndarray]] = []
    for index in sorted(volumes, key=len):
        depth = _padded_depth(len(index), slice_multiple)  # the deepest so far, as they come sorted
        if groups and (len(groups[-1]) + 1) * depth <= max_slices:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def slices_to_volume(output: dict) -> dict:
    """Postprocessing for a batch of ``VolumeLoader``: logits ``(volumes * depth, C, H, W)`` to one-hot
    ``(volumes, C, depth, H, W)``, and the label alike, so MONAI's Dice handlers score each 3D volume rather
    than each slice. Padding slices (``PAD_LABEL``) are background in both, which changes no foreground
    class's Dice."""
    label = output["label"][:, 0]
    logits = output["pred"]
    classes = logits.shape[1]
    padding = label == PAD_LABEL
    pred = logits.argmax(1).reshape(label.shape).masked_fill(padding, 0)
    truth = label.masked_fill(padding, 0).long()

    def one_hot(classes_map: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(classes_map, classes).permute(0, 4, 1, 2, 3).float()

    return {**output, "pred": one_hot(pred), "label": one_hot(truth)}
