"""Patient-level splits and nested, reproducible label budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardioseg.data.slicing import SliceSet
from cardioseg.data.splits import (
    LabelBudget,
    budget_patients,
    budget_slices,
    read_ssl4mis_split,
    split_patients,
)
from cardioseg.errors import DataError

PATIENTS = [f"patient{i:03d}" for i in range(1, 41)]


def slice_set(n_patients=6, slices_per_volume=5) -> SliceSet:
    """Index arrays only matter here; images are tiny."""
    patient = np.repeat([f"p{i}" for i in range(n_patients)], 2 * slices_per_volume)
    frame = np.tile(np.repeat([1, 12], slices_per_volume), n_patients)
    n = len(patient)
    return SliceSet(
        images=np.zeros((n, 2, 2), np.float32),
        labels=np.zeros((n, 2, 2), np.uint8),
        patient=patient,
        frame=frame.astype(np.int32),
        phase=np.where(frame == 1, "ED", "ES"),
        slice_index=np.tile(np.arange(slices_per_volume, dtype=np.int32), 2 * n_patients),
        volume=np.repeat(np.arange(2 * n_patients, dtype=np.int32), slices_per_volume),
    )


def test_split_is_patient_disjoint_complete_and_reproducible():
    split = split_patients(PATIENTS, val_fraction=0.25, seed=3)
    assert len(split.val) == 10 and len(split.train) == 30
    assert not set(split.train) & set(split.val)
    assert set(split.train) | set(split.val) == set(PATIENTS)
    assert split == split_patients(list(reversed(PATIENTS)), val_fraction=0.25, seed=3)  # order-free
    assert split != split_patients(PATIENTS, val_fraction=0.25, seed=4)
    assert len(split_patients(PATIENTS, n_val=7).val) == 7
    with pytest.raises(ValueError):
        split_patients(PATIENTS, n_val=41)


def test_split_of_slices_never_shares_a_patient():
    slices = slice_set()
    split = split_patients(slices.patients(), n_val=2, seed=0)
    train, val = slices.select_patients(split.train), slices.select_patients(split.val)
    assert len(train) + len(val) == len(slices)
    assert not set(train.patient) & set(val.patient)


def test_read_ssl4mis_split_files(tmp_path):
    (tmp_path / "volumes").mkdir()
    for patient in ("patient002", "patient003", "patient004"):  # split files may name only patients with volumes
        (tmp_path / "volumes" / f"{patient}_frame01.h5").touch()
    (tmp_path / "train.txt").write_text("patient003\npatient004\n\n")
    (tmp_path / "val.txt").write_text("patient002\n")
    split = read_ssl4mis_split(tmp_path)
    assert split.train == ("patient003", "patient004") and split.val == ("patient002",)
    (tmp_path / "val.txt").write_text("patient004\n")
    with pytest.raises(DataError, match="both"):
        read_ssl4mis_split(tmp_path)
    (tmp_path / "val.txt").unlink()
    with pytest.raises(DataError, match="val.txt"):
        read_ssl4mis_split(tmp_path)


def test_real_ssl4mis_split_is_70_10_disjoint(acdc_ssl4mis):
    split = read_ssl4mis_split(acdc_ssl4mis)
    assert len(split.train) == 70 and len(split.val) == 10
    assert not set(split.train) & set(split.val)


def test_patient_budgets_nested_reproducible_and_seeded():
    budgets = [budget_patients(PATIENTS, n, seed=7) for n in range(len(PATIENTS) + 1)]
    for smaller, larger in zip(budgets, budgets[1:]):
        assert set(smaller.patients) < set(larger.patients)
    assert budget_patients(PATIENTS, 5, seed=7) == budgets[5]
    assert budget_patients(PATIENTS, 5, seed=8).patients != budgets[5].patients
    with pytest.raises(ValueError):
        budget_patients(PATIENTS, 41)


def test_patient_budget_mask_selects_whole_patients():
    slices = slice_set()
    budget = budget_patients(slices.patients(), 2, seed=0)
    mask = budget.mask(slices)
    assert mask.sum() == 2 * 10 and set(slices.patient[mask]) == set(budget.patients)


def test_slice_budgets_nested_reproducible_and_seeded():
    slices = slice_set()
    sizes = [1, 3, 10, 25, 60]
    budgets = [budget_slices(slices, n, seed=1) for n in sizes]
    for smaller, larger in zip(budgets, budgets[1:]):
        assert set(smaller.slices) < set(larger.slices)
    assert budget_slices(slices.keys(), 10, seed=1) == budgets[2]
    assert budget_slices(slices, 10, seed=2).slices != budgets[2].slices
    mask = budgets[2].mask(slices)
    assert mask.sum() == 10
    assert set(budgets[2].patients) == set(slices.patient[mask])


def test_budget_json_round_trip():
    for budget in (budget_patients(PATIENTS, 4, seed=2), budget_slices(slice_set(), 6, seed=2)):
        text = json.dumps(budget.to_dict())
        assert LabelBudget.from_dict(json.loads(text)) == budget
