"""From a dataset folder to the slices a fine-tuning run trains and validates on, with its label budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import load_cache
from ..data.formats import read_records
from ..data.slicing import SliceSet, to_slices
from ..data.splits import (
    LabelBudget,
    Split,
    budget_patients,
    budget_slices,
    read_ssl4mis_split,
    split_patients,
)
from ..errors import CardiosegError, DataError
from ..settings import SettingError, whole_number

DATASET_FORMATS = ("ssl4mis", "acdc", "phantom", "cache")


@dataclass(frozen=True)
class FinetuneData:
    """Training slices (all of the training patients), which of them are labelled, and validation slices."""

    train: SliceSet
    val: SliceSet
    labelled: np.ndarray
    split: Split
    budget: LabelBudget | None

    def describe(self) -> dict:
        """What the run used, for ``OUT/data.json``: enough to repeat it."""
        return {
            "preparation": {k: v for k, v in self.train.meta.items() if k != "sources"},
            "split": self.split.to_dict(),
            "budget": None if self.budget is None else self.budget.to_dict(),
            "train_slices": len(self.train),
            "labelled_slices": int(len(self.labelled)),
            "val_slices": len(self.val),
            "val_volumes": len(np.unique(self.val.volume)),
        }


def load_slices(
    dataset_dir: str | Path, dataset_format: str, image_size: int, slice_mode: str, progress: bool = False
) -> SliceSet:
    """All labelled slices of a dataset; SSL4MIS volumes come normalised already, raw ACDC does not."""
    if dataset_format not in DATASET_FORMATS:
        raise CardiosegError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}")
    if dataset_format == "cache":
        return load_cache(dataset_dir)
    fmt = "ssl4mis" if dataset_format == "ssl4mis" else "acdc"
    percentiles = None if fmt == "ssl4mis" else (0.0, 99.0)
    records = read_records(dataset_dir, fmt)
    slices = to_slices(records, mode=slice_mode, size=image_size, percentiles=percentiles, progress=progress)
    slices.meta["dataset_format"] = dataset_format
    return slices


def choose_split(
    slices: SliceSet, dataset_dir: str | Path, dataset_format: str, seed: int, val_fraction: float
) -> Split:
    """SSL4MIS's published split where the data has one; otherwise a seeded patient-level split."""
    if dataset_format == "ssl4mis":
        return read_ssl4mis_split(dataset_dir)
    if "split" in slices.meta:
        return Split(train=tuple(slices.meta["split"]["train"]), val=tuple(slices.meta["split"]["val"]))
    return split_patients(slices.patients(), val_fraction=val_fraction, seed=seed)


def prepare_finetune_data(
    dataset_dir: str | Path,
    dataset_format: str = "ssl4mis",
    image_size: int = 256,
    seed: int = 0,
    val_fraction: float = 0.2,
    num_labelled_patients: int | None = None,
    num_labelled_slices: int | None = None,
    slice_mode: str = "ssl4mis",
) -> FinetuneData:
    """Slices, split and label budget; a budget of None (or a command line's "null") labels every training slice."""
    num_labelled_patients = whole_number("num_labelled_patients", num_labelled_patients, optional=True)
    num_labelled_slices = whole_number("num_labelled_slices", num_labelled_slices, optional=True)
    if num_labelled_patients is not None and num_labelled_slices is not None:
        raise SettingError("num_labelled_slices", num_labelled_slices, "give it or num_labelled_patients, not both")
    slices = load_slices(dataset_dir, dataset_format, image_size, slice_mode)
    split = choose_split(slices, dataset_dir, dataset_format, seed, val_fraction)
    train, val = slices.select_patients(split.train), slices.select_patients(split.val)
    for name, part in (("train", train), ("validation", val)):
        if len(part) == 0:
            raise DataError(dataset_dir, f"the {name} split has no patients with slices (val_fraction {val_fraction})")
    if num_labelled_patients is not None:
        _check_budget("num_labelled_patients", num_labelled_patients, len(train.patients()), "training patients")
        budget = budget_patients(train.patients(), num_labelled_patients, seed)
    elif num_labelled_slices is not None:
        _check_budget("num_labelled_slices", num_labelled_slices, len(train), "training slices")
        budget = budget_slices(train, num_labelled_slices, seed)
    else:
        budget = None
    labelled = np.arange(len(train)) if budget is None else np.flatnonzero(budget.mask(train))
    return FinetuneData(train=train, val=val, labelled=labelled, split=split, budget=budget)


def _check_budget(name: str, n: int, available: int, what: str) -> None:
    if not 1 <= n <= available:
        raise SettingError(name, n, f"must be between 1 and the {available} {what} of this split")
