"""One DICOM cine study to SEG, label maps, indices and a picture: the whole chain as one function.

``cardioseg infer`` runs it for scripts; the MONAI Deploy app in ``app/`` wires the same steps as
operators, so both give the same outputs. Each stage is timed, and the times go into the run's provenance
(``indices.json``) and the result, for the deployment benchmark. A model can be loaded once and passed in
to run many studies in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.dicom_cine import CineSeries, read_cine_files
from ..data.dicom_study import StudyScan, scan_study
from ..errors import DataError
from ..postprocess import clean_cine
from .indices import CardiacIndices, cardiac_indices
from .model import BundleModel, load_bundle_model
from .outputs import check_output_folder, write_study_outputs
from .segment import DEFAULT_BATCH_SIZE, segment_cine
from .selection import SeriesChoice, select_short_axis_cine

logger = logging.getLogger("cardioseg.clinical.pipeline")


@dataclass
class StageTimer:
    """Wall-clock seconds per named stage, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)


@dataclass(frozen=True)
class StudyResult:
    out_dir: Path
    outputs: dict[str, Path]
    indices: CardiacIndices
    choice: SeriesChoice
    series: CineSeries
    labels: np.ndarray
    timings: dict[str, float]


def read_short_axis_cine(scan: StudyScan, choice: SeriesChoice) -> CineSeries:
    """The chosen series read in full (every phase kept), with the strict per-file checks."""
    (series,) = read_cine_files(list(choice.series.paths), scan.folder)
    return series


def provenance(scan: StudyScan, choice: SeriesChoice, model: BundleModel, timings: dict[str, float]) -> dict:
    """What produced these outputs: input, chosen series and why, model and hash, software, stage times."""
    return {
        "software": {"name": "cardioseg", "version": __version__},
        "input": {"folder": str(scan.folder), "series": len(scan.series), "files_skipped": len(scan.skipped)},
        "series_selection": choice.describe(),
        "model": model.describe(),
        "timings_s": timings,
    }


def run_study(
    dicom_dir: str | Path,
    bundle_dir: str | Path | None,
    out_dir: str | Path,
    *,
    model: BundleModel | None = None,
    overwrite: bool = False,
    backend: str = "onnx",
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> StudyResult:
    """Segment the short-axis cine of the study in ``dicom_dir`` and write every output to ``out_dir``."""
    check_output_folder(out_dir, overwrite)
    timer = StageTimer()
    start = time.perf_counter()
    if model is None:
        if bundle_dir is None:
            raise DataError(Path(dicom_dir), "no model: pass the exported bundle folder")
        with timer.stage("load_model"):
            model = load_bundle_model(bundle_dir, backend=backend, device=device)
    with timer.stage("scan_study"):
        scan = scan_study(dicom_dir, progress=progress)
    with timer.stage("select_series"):
        choice = select_short_axis_cine(scan)
    with timer.stage("read_cine"):
        series = read_short_axis_cine(scan, choice)
    with timer.stage("segment"):
        raw = segment_cine(model, series.pixels, batch_size=batch_size, progress=progress)
    with timer.stage("postprocess"):
        labels = clean_cine(raw)
    with timer.stage("indices"):
        indices = cardiac_indices(labels, series.spacing)
    record = provenance(scan, choice, model, dict(timer.seconds))  # stage times up to the writers
    with timer.stage("write_outputs"):
        outputs = write_study_outputs(out_dir, series, labels, indices, record, overwrite=overwrite)
    timings = {**timer.seconds, "total": round(time.perf_counter() - start, 4)}
    logger.info("%s -> %s in %.1f s", dicom_dir, out_dir, timings["total"])
    return StudyResult(Path(out_dir), outputs, indices, choice, series, labels, timings)
