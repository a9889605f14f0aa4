"""What a study found, from its runs' per-epoch logs: accuracy per strategy and label budget, and how fast
each strategy converges.

The paper's two questions are data efficiency (how accurate with few labels) and convergence speed (how
many epochs of fine-tuning to get there). Accuracy is each run's best and last validation Dice (3D, per
volume, mean of RV, MYO and LV), summarised over seeds. Convergence is the epochs a run takes to first
reach a common target: ``convergence_fraction`` of the best accuracy any strategy reaches with that label
budget (the mean over seeds of the runs' best Dice), so that each budget's strategies race to the same
line. Where that best is below ``convergence_floor`` no strategy learned with the budget, the target would
be noise, and convergence is not measured there (its target is None). A strategy's speed-up is the
reference strategy's mean epochs to the target over its own, given only where every seed of both reached
it. Epochs, not seconds, since packed runs share the device. With
few seeds a mean hides much: each cell also says in how many seeds the strategy's best Dice beat the
reference's with the same labelled patients (a seed draws the same ones for every strategy).
"""

from __future__ import annotations

import statistics
from typing import Any

from .plan import StudyPlan, budget_label


def curve(metrics: list[dict]) -> list[tuple[int, float]]:
    """(epoch, mean validation Dice) of each validated epoch."""
    return [(m["epoch"], m["val_dice_mean"]) for m in metrics if m.get("val_dice_mean") is not None]


def run_row(strategy: str, budget: int | None, seed: int, metrics: list[dict]) -> dict[str, Any]:
    validated = [m for m in metrics if m.get("val_dice_mean") is not None]
    best = max(validated, key=lambda m: m["val_dice_mean"])
    return {
        "strategy": strategy,
        "label_budget": budget_label(budget),
        "seed": seed,
        "epochs": metrics[-1]["epoch"],
        "best_val_dice": best["val_dice_mean"],
        "best_epoch": best["epoch"],
        **{f"best_{name}": value for name, value in best["val_dice"].items()},
        "last_val_dice": validated[-1]["val_dice_mean"],
        "mean_over_epochs": round(statistics.fmean(m["val_dice_mean"] for m in validated), 5),
        "images_seen": metrics[-1]["images_seen"],
        "train_seconds": metrics[-1]["train_seconds"],
        "wall_seconds": metrics[-1]["wall_seconds"],
    }


def epochs_to(points: list[tuple[int, float]], target: float) -> int | None:
    return next((epoch for epoch, dice in points if dice >= target), None)


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    return round(statistics.fmean(values), 5), round(statistics.stdev(values), 5) if len(values) > 1 else None


def analyse(plan: StudyPlan, metrics: dict[tuple[str, int | None, int], list[dict]]) -> dict[str, Any]:
    """Rows per run, cells per (strategy, budget), the convergence targets; ``metrics`` by (strategy,
    budget, seed), each run's ``metrics.jsonl`` lines."""
    rows = {key: run_row(*key, lines) for key, lines in metrics.items()}
    cells: dict[tuple[str, int | None], dict[str, Any]] = {}
    for strategy in plan.strategies:
        for budget in plan.budgets:
            mine = [rows[(strategy, budget, seed)] for seed in plan.seeds]
            best_mean, best_sd = _mean_sd([r["best_val_dice"] for r in mine])
            last_mean, last_sd = _mean_sd([r["last_val_dice"] for r in mine])
            cells[(strategy, budget)] = {
                "strategy": strategy,
                "label_budget": budget_label(budget),
                "seeds": len(mine),
                "best_val_dice": best_mean,
                "best_val_dice_sd": best_sd,
                "last_val_dice": last_mean,
                "last_val_dice_sd": last_sd,
                "mean_over_epochs": _mean_sd([r["mean_over_epochs"] for r in mine])[0],
            }
    targets, best = {}, {}
    for budget in plan.budgets:
        best[budget] = max(cells[(strategy, budget)]["best_val_dice"] for strategy in plan.strategies)
        learned = best[budget] >= plan.convergence_floor
        targets[budget] = round(plan.convergence_fraction * best[budget], 5) if learned else None
        for strategy in plan.strategies:
            reached = []
            for seed in plan.seeds:
                row = rows[(strategy, budget, seed)]
                points = curve(metrics[(strategy, budget, seed)])
                row["epochs_to_target"] = epochs_to(points, targets[budget]) if learned else None
                if row["epochs_to_target"] is not None:
                    reached.append(row["epochs_to_target"])
            cell = cells[(strategy, budget)]
            cell["reached_target"] = f"{len(reached)}/{len(plan.seeds)}" if learned else None
            cell["epochs_to_target"] = round(statistics.fmean(reached), 2) if reached else None
    for (strategy, budget), cell in cells.items():
        if plan.reference is not None and strategy != plan.reference:
            wins = sum(
                rows[(strategy, budget, seed)]["best_val_dice"] > rows[(plan.reference, budget, seed)]["best_val_dice"]
                for seed in plan.seeds
            )
            cell["beats_reference"] = f"{wins}/{len(plan.seeds)}"
        reference = cells.get((plan.reference, budget))
        both = reference is not None and all(
            c["reached_target"] == f"{len(plan.seeds)}/{len(plan.seeds)}" for c in (cell, reference)
        )
        cell["speedup"] = round(reference["epochs_to_target"] / cell["epochs_to_target"], 2) if both else None
    return {
        "reference": plan.reference,
        "convergence_fraction": plan.convergence_fraction,
        "convergence_floor": plan.convergence_floor,
        "best_mean_val_dice": {budget_label(b): value for b, value in best.items()},
        "targets": {budget_label(b): t for b, t in targets.items()},
        "cells": list(cells.values()),
        "runs": list(rows.values()),
        "curves": {
            f"{strategy}/{budget_label(budget)}/seed{seed}": curve(lines)
            for (strategy, budget, seed), lines in metrics.items()
        },
    }
