"""Evaluate a trained model on held-out patients with the SSL4MIS protocol; the bundle's ``evaluate.json``.

Each labelled volume is segmented slice by slice at ``image_size`` (:class:`cardioseg.inference.Segmenter`),
predictions are resized back to the volume's own grid with nearest neighbour, and Dice, IoU and HD95 are
computed per class on the whole 3D volume (:func:`cardioseg.metrics.volume_metrics`): HD95 in mm where the
data carries voxel spacing (raw ACDC NIfTI, phantom), in voxels (pixels) for SSL4MIS h5, which has none.

Which patients: the ``val`` (or ``train``) split recorded in the training run's ``data.json``; without one,
SSL4MIS's ``val.txt``/``train.txt`` or the seeded patient split training would have made. ``test`` reads
SSL4MIS's ``test.txt``. An explicit patient list overrides all of these.

A slice cache (``dataset_format`` ``cache``) holds slices on the training grid only, so it is scored there,
not at native resolution; its numbers do not follow the SSL4MIS protocol.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_text_atomic
from .checkpoint import file_sha256
from .data.acdc import find_patient_dirs
from .data.cache import load_cache
from .data.formats import read_records
from .data.nifti_io import save_nifti
from .data.records import Record
from .data.slicing import normalize_intensity
from .data.splits import Split, read_ssl4mis_split, split_patients
from .data.ssl4mis import list_volumes, read_split
from .errors import CardiosegError, DataError
from .inference import DEFAULT_PERCENTILES, OUTPUT_SUFFIX, Segmenter
from .metrics import format_summary, summarize, volume_metrics
from .settings import as_flag, is_none
from .training.data import DATASET_FORMATS

logger = logging.getLogger("cardioseg.evaluation")

SPLITS = ("val", "train", "test")
DEFAULT_DATASET_FORMAT = "ssl4mis"


@dataclass(frozen=True)
class RunInfo:
    """What a training run recorded in ``data.json`` that evaluation needs; all None without one."""

    path: Path | None = None
    dataset_format: str | None = None
    image_size: int | None = None
    mode: str | None = None
    image_order: int | None = None
    percentiles: tuple[float, float] | None = None
    split: Split | None = None
    encoder: str | None = None


def read_run_info(data_json: str | Path | None) -> RunInfo:
    """Read a run's ``data.json``; a missing file gives an empty RunInfo (and a warning)."""
    if is_none(data_json):
        return RunInfo()
    path = Path(data_json)
    if not path.is_file():
        logger.warning("%s not found: patients and settings come from the dataset and the defaults", path)
        return RunInfo()
    try:
        data = json.loads(path.read_text())
        prep = data.get("preparation") or {}
        split = data.get("split")
        normalization = prep.get("normalization")
        settings = data.get("settings") or {}
        return RunInfo(
            path=path,
            dataset_format=prep.get("dataset_format"),
            image_size=prep.get("size"),
            mode=prep.get("mode"),
            image_order=prep.get("image_order"),
            percentiles=None if not normalization else tuple(normalization["percentiles"]),
            split=None if not split else Split(train=tuple(split["train"]), val=tuple(split["val"])),
            encoder=settings.get("encoder"),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"not a training run's data.json ({type(exc).__name__}: {exc})") from None


def choose_format(dataset_format: str | None, run: RunInfo, dataset_dir: str | Path | None = None) -> str:
    """The given format; else ``cache`` for a file (a slice cache); else the run's; else SSL4MIS."""
    if is_none(dataset_format):
        if dataset_dir is not None and Path(dataset_dir).is_file():
            dataset_format = "cache"
        else:
            dataset_format = run.dataset_format or DEFAULT_DATASET_FORMAT
    if dataset_format not in DATASET_FORMATS:
        raise CardiosegError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}")
    if run.dataset_format and dataset_format not in (run.dataset_format, "cache"):
        logger.warning("evaluating %s data; the run trained on %s", dataset_format, run.dataset_format)
    return dataset_format


def choose_image_size(image_size: int | None, run: RunInfo) -> int | None:
    """The given size, else the one the run trained at (None: the Segmenter's default)."""
    if is_none(image_size):
        return run.image_size
    if run.image_size and int(image_size) != run.image_size:
        logger.warning("evaluating at image size %s; the run trained at %s", image_size, run.image_size)
    return int(image_size)


def dataset_patients(dataset_dir: str | Path, dataset_format: str) -> list[str]:
    """Every patient of a dataset folder (what training's seeded split chose from)."""
    if dataset_format == "ssl4mis":
        return sorted({patient for patient, _, _ in list_volumes(dataset_dir)})
    if dataset_format == "cache":
        return list(load_cache(dataset_dir).patients())
    return [d.name for d in find_patient_dirs(dataset_dir)]


def choose_patients(
    dataset_dir: str | Path,
    dataset_format: str,
    split: str = "val",
    run: RunInfo | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    patients: Sequence[str] | None = None,
) -> list[str]:
    """The patients to evaluate (see the module docstring for the order of precedence)."""
    if not is_none(patients):
        chosen = [patients] if isinstance(patients, str) else list(patients)
        if not chosen:
            raise CardiosegError("the patient list to evaluate is empty")
        return chosen
    if split not in SPLITS:
        raise CardiosegError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "test":
        if dataset_format != "ssl4mis":
            raise CardiosegError("split 'test' needs SSL4MIS data with a test.txt; use 'val' or a patient list")
        return read_split(dataset_dir, "test")
    run = run or RunInfo()
    if run.split is not None:
        logger.info("%s patients from %s", split, run.path)
        found = run.split
    elif dataset_format == "ssl4mis":
        found = read_ssl4mis_split(dataset_dir)
    elif dataset_format == "cache" and "split" in (meta := load_cache(dataset_dir).meta):
        found = Split(train=tuple(meta["split"]["train"]), val=tuple(meta["split"]["val"]))
    else:
        found = split_patients(dataset_patients(dataset_dir, dataset_format), val_fraction=val_fraction, seed=seed)
    chosen = list(found.val if split == "val" else found.train)
    if not chosen:
        raise CardiosegError(f"the {split} split has no patients")
    return chosen


def _cache_records(dataset_dir: str | Path) -> Iterator[Record]:
    """Volumes rebuilt from a slice cache (on its grid; no spacing or affine)."""
    slices = load_cache(dataset_dir)
    if slices.labels is None:
        raise DataError(dataset_dir, "slice cache has no labels to evaluate against")
    for volume in np.unique(slices.volume):
        index = np.flatnonzero(slices.volume == volume)
        index = index[np.argsort(slices.slice_index[index], kind="stable")]
        frame = int(slices.frame[index[0]])
        yield Record(
            image=slices.images[index],
            label=slices.labels[index],
            patient=str(slices.patient[index[0]]),
            source=f"{dataset_dir}#volume{int(volume)}",
            frame=None if frame < 0 else frame,
            phase=str(slices.phase[index[0]]),
        )


def read_volumes(dataset_dir: str | Path, dataset_format: str, patients: Sequence[str]) -> list[Record]:
    """The labelled volumes of ``patients``, in the dataset's order; every patient must have some."""
    if dataset_format == "cache":
        records: Iterator[Record] = _cache_records(dataset_dir)
    else:
        records = read_records(dataset_dir, "ssl4mis" if dataset_format == "ssl4mis" else "acdc")
    wanted = set(patients)
    chosen = [record for record in records if record.patient in wanted]
    missing = sorted(wanted - {record.patient for record in chosen})
    if missing:
        raise DataError(dataset_dir, f"no labelled volumes for patients {missing[:5]}")
    return chosen


def _json_safe(value: Any) -> Any:
    """NaN (undefined metric) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def evaluate(
    segmenter: Segmenter,
    dataset_dir: str | Path,
    patients: Sequence[str],
    output_dir: str | Path,
    dataset_format: str = DEFAULT_DATASET_FORMAT,
    percentiles: Sequence[float] | None = DEFAULT_PERCENTILES,
    split: str | None = "val",
    ckpt_path: str | Path | None = None,
    save_predictions: bool | str = False,
    progress: bool | str = False,
) -> dict[str, Any]:
    """Score ``segmenter`` on the labelled volumes of ``patients``; write ``OUT/evaluation.json``.

    ``percentiles`` normalise raw volumes as training did (SSL4MIS h5 and caches are normalised already
    and are left alone). ``save_predictions`` also writes ``OUT/predictions/<patient>_frameNN_seg.nii.gz``.
    Returns what ``evaluation.json`` holds: settings, a ``summary`` (:func:`cardioseg.metrics.summarize`),
    the same per phase (``by_phase``), and one entry per volume.
    """
    from tqdm import tqdm

    if dataset_format not in DATASET_FORMATS:
        raise CardiosegError(f"dataset_format must be one of {DATASET_FORMATS}, got {dataset_format!r}")
    normalise = dataset_format not in ("ssl4mis", "cache") and percentiles is not None
    records = read_volumes(dataset_dir, dataset_format, patients)
    output_dir = Path(output_dir)
    volumes, predictions = [], []
    for record in tqdm(records, desc="evaluating", unit="volume", disable=not as_flag(progress)):
        image = normalize_intensity(record.image, *percentiles) if normalise else record.image
        pred = segmenter.segment(image, normalize=False)
        metrics = volume_metrics(pred, record.label, spacing=record.spacing)
        volumes.append(
            {
                "patient": record.patient,
                "frame": record.frame,
                "phase": record.phase,
                "source": record.source,
                "shape": list(record.image.shape),
                "spacing": None if record.spacing is None else list(record.spacing),
                **metrics,
            }
        )
        if as_flag(save_predictions):
            predictions.append((record, pred))
        logger.info("%s frame %s: mean Dice %.4f", record.patient, record.frame, metrics["dice"]["mean"])
    if not volumes:
        raise DataError(dataset_dir, "no labelled volumes to evaluate")
    by_phase = {
        phase: summarize([v for v in volumes if v["phase"] == phase])
        for phase in ("ED", "ES")
        if any(v["phase"] == phase for v in volumes)
    }
    result = {
        "protocol": "cache grid" if dataset_format == "cache" else "ssl4mis",
        "checkpoint": None if ckpt_path is None else str(ckpt_path),
        "checkpoint_sha256": None if ckpt_path is None else file_sha256(ckpt_path),
        "dataset_dir": str(dataset_dir),
        "dataset_format": dataset_format,
        "split": split,
        "patients": sorted(set(patients)),
        "image_size": segmenter.image_size,
        "image_order": segmenter.image_order,
        "flip_tta": segmenter.flip_tta,
        "postprocess": segmenter.postprocess,
        "normalization": {"percentiles": list(percentiles)} if normalise else None,
        "summary": summarize(volumes),
        "by_phase": by_phase,
        "volumes": volumes,
    }
    result = _json_safe(result)
    path = output_dir / "evaluation.json"
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    for record, pred in predictions:
        stem = f"{record.patient}_frame{record.frame:02d}" if record.frame is not None else Path(record.source).stem
        affine = record.affine if record.affine is not None else np.eye(4)
        save_nifti(output_dir / "predictions" / f"{stem}{OUTPUT_SUFFIX}", pred, affine)
    logger.info("wrote %s (%d volume(s) of %d patient(s))", path, len(volumes), len(result["patients"]))
    result["path"] = str(path)
    return result


def run_evaluation(
    segmenter: Segmenter,
    dataset_dir: str | Path,
    output_dir: str | Path,
    dataset_format: str | None = None,
    split: str = "val",
    patients: Sequence[str] | None = None,
    run: RunInfo | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    ckpt_path: str | Path | None = None,
    save_predictions: bool | str = False,
    progress: bool | str = False,
) -> dict[str, Any]:
    """Choose the format, patients and normalisation as the run did, then :func:`evaluate`."""
    run = run or RunInfo()
    if is_none(patients):
        patients = None
    if run.mode not in (None, "ssl4mis"):
        raise CardiosegError(
            f"{run.path}: the run prepared slices in mode {run.mode!r}; evaluation follows the SSL4MIS "
            "protocol and supports runs trained with slice_mode 'ssl4mis'"
        )
    if run.image_order is not None and run.image_order != segmenter.image_order:
        logger.warning(
            "the run resized images with order %s, evaluation with %s", run.image_order, segmenter.image_order
        )
    dataset_format = choose_format(dataset_format, run, dataset_dir)
    chosen = choose_patients(dataset_dir, dataset_format, split, run, seed, val_fraction, patients)
    return evaluate(
        segmenter,
        dataset_dir,
        chosen,
        output_dir,
        dataset_format=dataset_format,
        percentiles=run.percentiles or DEFAULT_PERCENTILES,
        split=None if patients is not None else split,
        ckpt_path=ckpt_path,
        save_predictions=save_predictions,
        progress=progress,
    )


def report(result: dict[str, Any]) -> str:
    """The summary table (and one per phase) as text, for the console."""
    lines = [
        f"{result['summary']['n_volumes']} volume(s) of {len(result['patients'])} patient(s) "
        f"({result['dataset_format']}, {'split ' + result['split'] if result['split'] else 'patients given'}, "
        f"{result['protocol']} protocol, "
        f"{result['image_size']}x{result['image_size']}, "
        f"flip TTA {'on' if result['flip_tta'] else 'off'}, post-processing {result['postprocess']})",
        format_summary(result["summary"]),
    ]
    for phase, table in result["by_phase"].items():
        lines += ["", f"{phase} ({table['n_volumes']} volume(s))", format_summary(table)]
    if "path" in result:
        lines += ["", f"wrote {result['path']}"]
    return "\n".join(lines)
