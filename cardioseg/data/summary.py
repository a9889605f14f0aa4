"""``cardioseg data summary``: what a data folder holds, so a user can check it before training on it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .formats import detect_format, read_records
from .labels import CLASS_NAMES
from .records import Record

MAX_ITEMS = 8  # per line of the text summary; --json has them all


def summarize(path: str | Path, fmt: str | None = None, progress: bool = True) -> dict:
    """Counts, sizes, spacing, phases and label fractions of every record under ``path``."""
    fmt = fmt or detect_format(path)
    records = tqdm(read_records(path, fmt), desc=f"reading {fmt}", unit="vol", disable=not progress)
    return {"format": fmt, "path": str(path), **_tally(records)}


def _tally(records: Iterable[Record]) -> dict:
    patients, sizes, phases, groups, categories = set(), Counter(), Counter(), {}, Counter()
    volumes = slices = labelled = cine_frames = 0
    label_counts = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    spacings = []
    for record in records:
        volumes += 1
        patients.add(record.patient)
        is_natural = record.category is not None
        slices += 0 if is_natural else record.num_slices
        sizes["x".join(map(str, record.image.shape[-2:]))] += 1
        phases[record.phase] += 1
        if is_natural:
            categories[record.patient] += 1
        if record.spacing:
            spacings.append(record.spacing)
        if record.label is not None:
            labelled += 1
            label_counts += np.bincount(record.label.ravel(), minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
        if "Group" in record.meta:
            groups[record.patient] = record.meta["Group"]
        if record.phase == "ED" and "NbFrame" in record.meta:
            cine_frames += int(record.meta["NbFrame"])
    summary = {
        "patients": len(patients),
        "volumes": volumes,
        "slices": slices,
        "labelled_volumes": labelled,
        "image_sizes": dict(sizes.most_common()),
        "phases": dict(phases),
    }
    if categories:
        summary = {
            "classes": len(categories),
            "images": volumes,
            "images_per_class": dict(categories),
            "image_sizes": dict(sizes.most_common()),
        }
    if spacings:
        lo, hi = np.min(spacings, axis=0), np.max(spacings, axis=0)
        summary["spacing_mm"] = {"min": [round(float(v), 3) for v in lo], "max": [round(float(v), 3) for v in hi]}
    if cine_frames:
        summary["cine_frames"] = cine_frames
    if groups:
        summary["groups"] = dict(Counter(groups.values()))
    if label_counts.sum():
        fractions = label_counts / label_counts.sum()
        summary["label_fractions"] = {name: round(float(f), 5) for name, f in zip(CLASS_NAMES, fractions)}
    return summary


def format_summary(summary: dict) -> str:
    """Human-readable lines, one fact each."""
    lines = [f"{summary['path']}  (format: {summary['format']})"]
    for key, value in summary.items():
        if key in ("path", "format"):
            continue
        if isinstance(value, dict):
            items = [f"{k}: {v}" for k, v in value.items()]
            more = f", ... {len(items) - MAX_ITEMS} more" if len(items) > MAX_ITEMS else ""
            value = ", ".join(items[:MAX_ITEMS]) + more
        lines.append(f"  {key.replace('_', ' '):<18} {value}")
    return "\n".join(lines)
