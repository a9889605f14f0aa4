"""Patient-level splits and label budgets, reproducible from a seed.

Everything is chosen by ranking items on ``sha256(seed, item)``: the choice depends only on the seed
and the item's name, not on numpy's generator, the order items arrive in, or what else is in the pool.
Taking the first ``n`` of that ranking makes budgets nested: with one seed, the 5-patient budget is
inside the 10-patient one, which is what a data-efficiency curve needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError
from .slicing import SliceKey, SliceSet
from .ssl4mis import read_split


def _rank(items: Iterable[Any], seed: int) -> list[Any]:
    """Items in a seeded pseudo-random order that is a pure function of (seed, item)."""

    def score(item: Any) -> str:
        return hashlib.sha256(json.dumps([seed, item]).encode()).hexdigest()

    return sorted(set(items), key=lambda item: (score(item), item))


@dataclass(frozen=True)
class Split:
    """Train and validation patients; never share a patient."""

    train: tuple[str, ...]
    val: tuple[str, ...]

    def __post_init__(self) -> None:
        shared = set(self.train) & set(self.val)
        if shared:
            raise ValueError(f"patients in both train and val: {sorted(shared)[:5]}")

    def to_dict(self) -> dict[str, list[str]]:
        return {"train": list(self.train), "val": list(self.val)}


def split_patients(
    patients: Iterable[str], val_fraction: float = 0.2, seed: int = 0, n_val: int | None = None
) -> Split:
    """Split patients (never slices, so no patient leaks into validation) into train and val.

    ``n_val`` overrides ``val_fraction``; the fraction rounds to at least one validation patient.
    """
    ranked = _rank(patients, seed)
    if n_val is None:
        n_val = max(1, round(val_fraction * len(ranked)))
    if not 0 <= n_val <= len(ranked):
        raise ValueError(f"n_val={n_val} outside 0..{len(ranked)} patients")
    return Split(train=tuple(sorted(ranked[n_val:])), val=tuple(sorted(ranked[:n_val])))


def read_ssl4mis_split(root: str | Path) -> Split:
    """The published SSL4MIS ACDC split from ``root/train.txt`` and ``root/val.txt``."""
    root = Path(root)
    train, val = tuple(read_split(root, "train")), tuple(read_split(root, "val"))
    shared = set(train) & set(val)
    if shared:
        raise DataError(root / "val.txt", f"lists patients in both train.txt and val.txt: {sorted(shared)[:5]}")
    return Split(train=train, val=val)


@dataclass(frozen=True)
class LabelBudget:
    """Which patients (``unit="patients"``) or slices (``unit="slices"``) may use their labels.

    ``slices`` holds ``(patient, frame, slice_index)`` keys for slice budgets and is empty for patient
    budgets; ``patients`` is every patient with labelled data in the budget.
    """

    unit: Literal["patients", "slices"]
    n: int
    seed: int
    patients: tuple[str, ...]
    slices: tuple[SliceKey, ...] = ()

    def mask(self, slices: SliceSet) -> np.ndarray:
        """Boolean per slice of ``slices``: True where its label is in the budget."""
        if self.unit == "patients":
            return np.isin(slices.patient, list(self.patients))
        chosen = set(self.slices)
        return np.array([key in chosen for key in slices.keys()], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description: enough to rebuild the budget without the data."""
        return {
            "unit": self.unit,
            "n": self.n,
            "seed": self.seed,
            "patients": list(self.patients),
            "slices": [list(key) for key in self.slices],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelBudget:
        return cls(
            unit=data["unit"],
            n=int(data["n"]),
            seed=int(data["seed"]),
            patients=tuple(data["patients"]),
            slices=tuple((str(p), int(f), int(s)) for p, f, s in data.get("slices", [])),
        )


def _take(ranked: list[Any], n: int, what: str) -> list[Any]:
    if not 0 <= n <= len(ranked):
        raise ValueError(f"budget of {n} {what} outside 0..{len(ranked)} available")
    return ranked[:n]


def budget_patients(patients: Iterable[str], n: int, seed: int = 0) -> LabelBudget:
    """``n`` labelled patients from ``patients`` (usually the training split)."""
    chosen = _take(_rank(patients, seed), n, "patients")
    return LabelBudget(unit="patients", n=n, seed=seed, patients=tuple(sorted(chosen)))


def budget_slices(slices: SliceSet | Sequence[SliceKey], n: int, seed: int = 0) -> LabelBudget:
    """``n`` labelled slices from a SliceSet (or its :meth:`SliceSet.keys`)."""
    pairs = slices.keys() if isinstance(slices, SliceSet) else slices
    keys = [(str(p), int(f), int(s)) for p, f, s in pairs]
    chosen = sorted(_take(_rank(keys, seed), n, "slices"))
    return LabelBudget(
        unit="slices", n=n, seed=seed, patients=tuple(sorted({p for p, _, _ in chosen})), slices=tuple(chosen)
    )
