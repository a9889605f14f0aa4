"""End-to-end DICOM cine study to DICOM SEG: the cardioseg MONAI Deploy app against the SDK's stock path.

Both run in this one process, on the same study (a phantom of 10 slices x 25 phases at 128 x 128 unless
``--study`` names one) and the same exported bundle:

* **app**: ``app/`` (``python app``), timed per operator: study scan, series selection, cine reading (every
  phase), ONNX Runtime inference, post-processing, indices, writers (SEG, NIfTI, indices, report, picture).
  The model load (sha256 check, ONNX Runtime session) is timed as its own stage and included in the total.
* **stock**: the SDK's ``DICOMDataLoaderOperator`` -> ``DICOMSeriesSelectorOperator`` (MR) ->
  ``DICOMSeriesToVolumeOperator`` -> ``MonaiBundleInferenceOperator`` (PyTorch, the exported bundle's
  portable ``configs/inference.json`` + ``models/model.ts``, MONAI only) -> ``DICOMSegmentationWriterOperator``,
  timed per operator. ``DICOMSeriesToVolumeOperator`` keys instances on slice position, so a cine collapses
  to ONE phase: to give the stock path every phase, the study is split into per-phase folders of symlinks
  (made before timing starts) and one stock app runs over them, its loader ticking once per folder (a
  ``CountCondition`` and a two-line subclass that points the stock loader at the next folder); the bundle
  operator reloads ``models/model.ts`` on every tick (its behaviour for a bundle folder). One shim is
  needed for the stock operators to run on this bundle: ``AppContext.models`` is cleared (the SDK wraps a
  bundle folder in a ``Model`` without a predictor, which the bundle operator would call). The bundle's
  ``inference.json`` casts the image to float32 itself (``EnsureTyped``), because the bundle operator strips
  ``LoadImaged``, which would have cast it, and ``ScaleIntensityRangePercentilesd`` refuses integer pixels.
  Also reported: the stock app on the whole study folder (one tick), which yields one volume, whose shape is recorded.

Imports (torch, MONAI, Holoscan) are timed once, apart from both paths. Each run also records its process
CPU time (all threads) and the 1-minute load average before it: on a shared machine, wall time depends on
what else runs. The bundle's weights need not be trained for timing; without ``--bundle`` one is trained
for one short epoch on a phantom (timing only)::

    python -m benchmarks.deploy_pipeline --bundle RUN/cardiac_sax_seg
    python -m benchmarks.deploy_pipeline              # trains a ResNet-50 at 128 px for a few steps first
"""

from __future__ import annotations

import time

_IMPORT_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the app is a folder beside the package, not installed

from holoscan.conditions import CountCondition  # noqa: E402
from monai.deploy.core import AppContext, Application, Image, IOType, RuntimeEnv  # noqa: E402
from monai.deploy.operators import (  # noqa: E402
    DICOMDataLoaderOperator,
    DICOMSegmentationWriterOperator,
    DICOMSeriesSelectorOperator,
    DICOMSeriesToVolumeOperator,
    IOMapping,
    MonaiBundleInferenceOperator,
)
from monai.deploy.operators.dicom_seg_writer_operator import SegmentDescription  # noqa: E402
from pydicom.sr.codedict import codes  # noqa: E402

from app.cli import run as run_app  # noqa: E402
from benchmarks.common import table, train_bundle, write_result  # noqa: E402
from cardioseg.clinical.model import load_bundle_model  # noqa: E402
from cardioseg.data.dicom_study import scan_study  # noqa: E402

IMPORT_S = time.perf_counter() - _IMPORT_START

MR_RULES = json.dumps({"selections": [{"name": "MR series", "conditions": {"Modality": "(?i)MR"}}]})
SEGMENTS = (
    ("RV cavity", codes.SCT.RightVentricle),
    ("LV myocardium", codes.SCT.LeftVentricleMyocardium),
    ("LV cavity", codes.SCT.LeftVentricle),
)


# --- the stock path --------------------------------------------------------------------------------------


def timed(cls: type, stage: str, times: dict[str, list[float]]) -> type:
    """``cls`` with each ``compute`` call's wall-clock time appended to ``times[stage]``."""

    class Timed(cls):
        def compute(self, op_input, op_output, context):
            start = time.perf_counter()
            try:
                super().compute(op_input, op_output, context)
            finally:
                times.setdefault(stage, []).append(time.perf_counter() - start)

    Timed.__name__ = Timed.__qualname__ = f"Timed{cls.__name__}"
    return Timed


class FolderSequenceLoader(DICOMDataLoaderOperator):
    """The stock loader, reading the next folder of ``folders`` on each tick."""

    def __init__(self, fragment, *args, folders: list[Path], **kwargs):
        self.folders = list(folders)
        super().__init__(fragment, *args, input_folder=self.folders[0], **kwargs)

    def compute(self, op_input, op_output, context):
        self.input_path = self.folders[self.index]  # the stock compute increments self.index
        super().compute(op_input, op_output, context)


class StockApp(Application):
    """The SDK's operators, wired as its example apps wire them, over ``folders`` (one tick each)."""

    def __init__(self, *args, folders: list[Path], bundle: Path, out: Path, times: dict, shapes: list, **kwargs):
        self.folders, self.bundle, self.out, self.times, self.shapes = folders, bundle, out, times, shapes
        super().__init__(*args, **kwargs)

    def compose(self):
        context = AppContext(
            {"input": str(self.folders[0]), "output": str(self.out), "model": str(self.bundle)}, RuntimeEnv()
        )
        # The SDK's ModelFactory wraps a bundle folder in a plain Model without a predictor, which the bundle
        # operator would then call: without it, the operator loads the folder's models/model.ts itself.
        context.models = None
        shapes = self.shapes

        class ShapeRecordingToVolume(DICOMSeriesToVolumeOperator):
            """The stock operator, recording the shape of each volume it makes (one phase of the cine)."""

            def convert_to_image(self, study_selected_series_list):
                image = super().convert_to_image(study_selected_series_list)
                shapes.append(list(image.asnumpy().shape))
                return image

        loader = timed(FolderSequenceLoader, "load_study", self.times)(
            self, CountCondition(self, len(self.folders)), folders=self.folders, name="stock_loader"
        )
        selector = timed(DICOMSeriesSelectorOperator, "select_series", self.times)(
            self, rules=MR_RULES, name="stock_selector"
        )
        to_volume = timed(ShapeRecordingToVolume, "series_to_volume", self.times)(self, name="stock_to_volume")
        inference = timed(MonaiBundleInferenceOperator, "bundle_inference", self.times)(
            self,
            app_context=context,
            bundle_path=self.bundle,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            name="stock_inference",
        )
        descriptions = [
            SegmentDescription(
                segment_label=label,
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=code,
                algorithm_name="cardioseg stock-path benchmark",
                algorithm_family=codes.DCM.ArtificialIntelligence,
                algorithm_version="0.1.0",
            )
            for label, code in SEGMENTS
        ]
        writer = timed(DICOMSegmentationWriterOperator, "seg_writer", self.times)(
            self, segment_descriptions=descriptions, output_folder=self.out, name="stock_seg_writer"
        )
        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, inference, {("image", "image")})
        self.add_flow(inference, writer, {("pred", "seg_image")})
        self.add_flow(selector, writer, {("study_selected_series_list", "study_selected_series_list")})


def phase_folders(study: Path, root: Path) -> list[Path]:
    """One folder of symlinks per cardiac phase (the instances sharing a TriggerTime rank at each position)."""
    from cardioseg.clinical.selection import select_short_axis_cine
    from cardioseg.data.dicom_cine import read_cine_files

    scan = scan_study(study)
    (series,) = read_cine_files(list(select_short_axis_cine(scan).series.paths), study)
    folders = []
    for frame, files in enumerate(series.files):
        folder = root / f"phase{frame:02d}"
        folder.mkdir(parents=True)
        for path in files:
            (folder / path.name).symlink_to(path.resolve())
        folders.append(folder)
    return folders


def cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system: on a shared machine, what wall time hides."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_stock(folders: list[Path], bundle: Path, out: Path) -> dict:
    times: dict[str, list[float]] = {}
    shapes: list = []
    start, cpu, load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    StockApp(["stock"], folders=folders, bundle=bundle, out=out, times=times, shapes=shapes).run()
    total = time.perf_counter() - start
    ticks = len(times.get("seg_writer", []))
    if ticks != len(folders):
        raise RuntimeError(f"the stock app wrote {ticks} SEG(s) for {len(folders)} folder(s)")
    return {
        "total_s": round(total, 3),
        "cpu_s": round(cpu_seconds() - cpu, 3),
        "load_average_before": round(load, 2),
        "stages_s": {stage: round(sum(values), 3) for stage, values in times.items()},
        "first_tick_s": {stage: round(values[0], 3) for stage, values in times.items()},
        "ticks": ticks,
        "volume_shapes": shapes[:1] if len({tuple(s) for s in shapes}) == 1 else shapes,
        "seg_files": len(list(out.rglob("*.dcm"))),
    }


# --- the app ---------------------------------------------------------------------------------------------


def run_cardioseg_app(study: Path, bundle: Path, out: Path) -> dict:
    start, cpu, load = time.perf_counter(), cpu_seconds(), os.getloadavg()[0]
    state = run_app(study, out, bundle)
    total = time.perf_counter() - start
    return {
        "total_s": round(total, 3),
        "cpu_s": round(cpu_seconds() - cpu, 3),
        "load_average_before": round(load, 2),
        "stages_s": state.timings,
        "outputs": sorted(path.name for path in state.outputs.values()),
    }


# --- main ------------------------------------------------------------------------------------------------


def make_bundle(work: Path, encoder: str, image_size: int) -> Path:
    """A bundle for timing only: one short epoch on a small phantom (the weights are close to random)."""
    from cardioseg.bundle import BUNDLE_NAME, package_run
    from cardioseg.data.phantom import write_cohort

    data = write_cohort(work / "train_phantom", 3, image_size=128, progress=False)
    run_dir = work / "run"
    train_bundle(
        run_dir,
        dataset_dir=str(data),
        dataset_format="phantom",
        encoder=encoder,
        image_size=image_size,
        epochs=1,
        epoch_length=8,
        batch_size=8,
    )
    package_run(run_dir)
    return run_dir / BUNDLE_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, help="an exported bundle (default: train a throwaway one)")
    parser.add_argument("--encoder", default="resnet50", help="encoder of the throwaway bundle")
    parser.add_argument("--image-size", type=int, default=128, help="image size of the throwaway bundle")
    parser.add_argument("--study", type=Path, help="a DICOM cine study folder (default: a phantom)")
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--size", type=int, default=128, help="phantom image rows and columns")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each path (the minimum is reported)")
    parser.add_argument("--out-dir", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    logging.getLogger("highdicom").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="deploy_bench_") as tmp:
        work = Path(tmp)
        bundle = args.bundle or make_bundle(work / "bundle", args.encoder, args.image_size)
        if args.study:
            study, study_source = args.study, str(args.study)
        else:
            from cardioseg.data.phantom import write_cohort

            cohort = write_cohort(
                work / "phantom", 1, image_size=args.size, n_frames=args.frames, n_slices=args.slices, progress=False
            )
            study, study_source = cohort / "dicom" / "patient001", "phantom (cardioseg.data.phantom, seed 0)"
        folders = phase_folders(study, work / "phases")
        model = load_bundle_model(bundle).describe()
        settings = json.loads((bundle / "configs" / "metadata.json").read_text())["training"]["settings"]
        training = {key: settings.get(key) for key in ("dataset_format", "epochs", "epoch_length", "batch_size")}
        training["note"] = "timing only: the accuracy of these weights does not matter here"
        n_files = sum(1 for p in study.rglob("*") if p.is_file())
        n_slices = len(list(folders[0].iterdir()))

        runs: dict[str, list[dict]] = {"app": [], "stock_all_phases": [], "stock_one_volume": []}
        for repeat in range(args.repeats):
            runs["app"].append(run_cardioseg_app(study, bundle, work / f"app_out{repeat}"))
            print(f"app: {runs['app'][-1]['total_s']:.1f} s", flush=True)
            runs["stock_all_phases"].append(run_stock(folders, bundle, work / f"stock_out{repeat}"))
            print(f"stock, all phases: {runs['stock_all_phases'][-1]['total_s']:.1f} s", flush=True)
            runs["stock_one_volume"].append(run_stock([study], bundle, work / f"stock_one{repeat}"))
            print(f"stock, one volume: {runs['stock_one_volume'][-1]['total_s']:.1f} s", flush=True)

    best = {name: min(results, key=lambda r: r["total_s"]) for name, results in runs.items()}
    app_s, stock_s = best["app"]["total_s"], best["stock_all_phases"]["total_s"]
    result = {
        "study": {
            "source": study_source,
            "files": n_files,
            "frames": len(folders),
            "slices": n_slices,
        },
        "model": {
            "encoder": model["encoder"],
            "image_size": model["image_size"],
            "sha256": model["sha256"],
            "training": training,
        },
        "import_s": round(IMPORT_S, 3),
        "best": best,
        "runs": runs,
        "speedup_vs_stock_all_phases": round(stock_s / app_s, 2),
        "targets": {"app_under_20_s": app_s < 20.0, "at_least_2x_faster_than_stock": stock_s / app_s >= 2.0},
    }
    path = write_result("deploy_pipeline", result, args.out_dir)
    rows = [
        {"path": name, "total_s": f"{r['total_s']:.2f}", **{k: f"{v:.2f}" for k, v in r["stages_s"].items()}}
        for name, r in best.items()
    ]
    for row in rows:
        print(table([row], list(row)))
    print(f"app {app_s:.1f} s vs stock (all phases) {stock_s:.1f} s: {stock_s / app_s:.2f}x; wrote {path}")


if __name__ == "__main__":
    main()
