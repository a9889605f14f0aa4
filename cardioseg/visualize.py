"""Pictures a person checks faster than numbers: contact sheets of images with label overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .data.labels import FOREGROUND  # noqa: E402
from .data.records import Record  # noqa: E402

# RV blue, MYO green, LV red, as in most ACDC figures.
LABEL_COLOURS = ("#00000000", "#3b82f6", "#22c55e", "#ef4444")
LABEL_CMAP = ListedColormap(LABEL_COLOURS)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """The figure as a 100 dpi PNG, written atomically, and closed."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def mid_slice(record: Record) -> int:
    """The slice with the most foreground (or the middle one when unlabelled)."""
    if record.label is not None and record.label.any():
        return int(np.argmax((record.label > 0).reshape(record.num_slices, -1).sum(axis=1)))
    return record.num_slices // 2


def contact_sheet(records: Sequence[Record], path: str | Path, columns: int = 4, title: str = "") -> Path:
    """Write a PNG grid: each record's mid slice with RV/MYO/LV outlines filled at 40% opacity."""
    if not records:
        raise ValueError("contact_sheet needs at least one record")
    rows = -(-len(records) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, record in zip(axes.ravel(), records):
        index = mid_slice(record)
        ax.imshow(record.image[index], cmap="gray", interpolation="nearest")
        if record.label is not None:
            overlay = np.ma.masked_equal(record.label[index], 0)
            ax.imshow(overlay, cmap=LABEL_CMAP, vmin=0, vmax=3, alpha=0.4, interpolation="nearest")
        ax.set_title(f"{record.patient} {record.phase} z={index}", fontsize=8)
    handles = [Patch(color=LABEL_COLOURS[k], label=name) for k, name in FOREGROUND.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)


def convergence_plot(
    runs: dict[str, list[dict]],
    path: str | Path,
    title: str = "",
    seconds: str = "train_seconds",
    seconds_label: str = "training seconds",
    metric: str = "val_dice_mean",
) -> Path:
    """Validation mean Dice (or, for pretraining runs, ``metric="train_loss"``) against seconds (the lines'
    ``seconds`` field) and against images seen, one line per run (epochs without the metric skipped); the
    legend below both, where long run names fit."""
    legend_inches = 0.25 * len(runs)
    fig, (by_time, by_images) = plt.subplots(1, 2, figsize=(11, 4 + legend_inches), sharey=True)
    for label, metrics in runs.items():
        measured = [m for m in metrics if m[metric] is not None]
        values = [m[metric] for m in measured]
        by_time.plot([m[seconds] for m in measured], values, marker=".", label=label)
        by_images.plot([m["images_seen"] for m in measured], values, marker=".")
    if metric == "val_dice_mean":
        by_time.set(ylabel="mean validation Dice (RV, MYO, LV)", ylim=(0, 1))
    else:
        by_time.set(ylabel="training loss (mean over the epoch)")
    by_time.set(xlabel=seconds_label)
    by_images.set(xlabel="images seen")
    for ax in (by_time, by_images):
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight() + 0.02, 1, 1))
    return save_figure(fig, path)
