"""Portable inference (the exported bundle's inference.json, MONAI alone) against cardioseg's Segmenter.

Both segment the same real ACDC validation volumes with the same exported network: the bundle's
``configs/inference.json`` through ``python -m monai.bundle run`` (MONAI transforms, ``SliceInferer``,
``models/model.ts``), and :class:`cardioseg.inference.Segmenter` (scipy ``zoom``, ``models/model.pt``).
Reported per volume: voxels whose labels differ, label agreement, Dice of each against the ground truth
and the difference of those Dice values per class.

The SSL4MIS h5 volumes are normalised already (99th-percentile clip, min-max); they are written as NIfTI
(identity affine) and both paths apply the bundle's per-volume 0th/99th percentile scaling on top, so the
two see identical inputs. The model is trained here, briefly, on the CPU unless ``--run-dir`` names a
trained run:

    python -m benchmarks.portable_agreement --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet18 \\
        --image-size 96 --epochs 8 --epoch-length 512 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import add_data_arguments, table, train_bundle, write_result

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("RV", "MYO", "LV")


def train(args: argparse.Namespace, out: Path) -> None:
    train_bundle(
        out,
        dataset_dir=args.dataset_dir,
        dataset_format=args.dataset_format,
        encoder=args.encoder,
        image_size=args.image_size,
        epochs=args.epochs,
        epoch_length=args.epoch_length,
        batch_size=args.batch_size,
    )


def dice(pred: np.ndarray, truth: np.ndarray, label: int) -> float | None:
    a, b = pred == label, truth == label
    total = int(a.sum() + b.sum())
    return None if total == 0 else 2.0 * int((a & b).sum()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.set_defaults(encoder="resnet18", image_size=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--epoch-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--run-dir", type=Path, help="a trained run to export and use (skips training)")
    parser.add_argument("--work-dir", type=Path, help="keep the run, bundle and outputs here")
    args = parser.parse_args()
    if args.dataset_format != "ssl4mis":
        parser.error("this benchmark reads the SSL4MIS h5 validation patients (--dataset-format ssl4mis)")

    from cardioseg.bundle import package_run
    from cardioseg.data.formats import read_records
    from cardioseg.data.nifti_io import load_nifti, save_nifti
    from cardioseg.data.ssl4mis import read_split
    from cardioseg.inference import build_segmenter
    from cardioseg.training.convergence import read_metrics

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="portable_"))
    work.mkdir(parents=True, exist_ok=True)
    run_dir = args.run_dir or work / "run"
    train_seconds = None
    if args.run_dir is None:
        start = time.perf_counter()
        train(args, run_dir)
        train_seconds = round(time.perf_counter() - start, 1)
    bundle = package_run(run_dir, work / "bundle", overwrite=True)["bundle_dir"]

    patients = set(read_split(args.dataset_dir, "val"))
    records = [r for r in read_records(args.dataset_dir, "ssl4mis") if r.patient in patients and r.label is not None]
    inputs = work / "nifti"
    inputs.mkdir(exist_ok=True)
    paths = []
    for record in records:
        name = f"{record.patient}_frame{record.frame:02d}"
        paths.append(save_nifti(inputs / f"{name}.nii.gz", record.image.astype(np.float32), np.eye(4)))

    # The portable path as a user runs it: MONAI's command line, from another working directory.
    outputs = work / "portable"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", str(bundle / "configs" / "inference.json"),
            "--bundle_root", str(bundle),
            "--datalist", repr([str(p) for p in paths]),
            "--output_dir", str(outputs),
        ],
        check=True, cwd=tempfile.gettempdir(), env={**os.environ, "CI": "1"},
    )  # fmt: skip
    portable_seconds = round(time.perf_counter() - start, 1)

    segmenter = build_segmenter(bundle / "models" / "model.pt", device="cpu")
    volumes = []
    start = time.perf_counter()
    for record, path in zip(records, paths, strict=True):
        reference = segmenter.segment(record.image)  # percentile scaling, scipy zoom, nearest back
        portable = load_nifti(outputs / path.name.replace(".nii.gz", "_seg.nii.gz"))[0]
        differ = int((portable != reference).sum())
        row = {
            "volume": path.name.removesuffix(".nii.gz"),
            "shape": list(record.image.shape),
            "differing_voxels": differ,
            "label_agreement": 1.0 - differ / reference.size,
        }
        for index, name in enumerate(CLASSES, start=1):
            d_seg, d_port = dice(reference, record.label, index), dice(portable, record.label, index)
            row[f"dice_{name}_segmenter"] = d_seg
            row[f"dice_{name}_portable"] = d_port
            row[f"dice_{name}_abs_diff"] = None if d_seg is None else abs(d_port - d_seg)
            row[f"dice_{name}_between"] = dice(portable, reference, index)
        volumes.append(row)
    segmenter_seconds = round(time.perf_counter() - start, 1)

    diffs = [row[f"dice_{c}_abs_diff"] for row in volumes for c in CLASSES if row[f"dice_{c}_abs_diff"] is not None]
    summary = {
        "volumes": len(volumes),
        "voxels": int(sum(np.prod(row["shape"]) for row in volumes)),
        "differing_voxels": int(sum(row["differing_voxels"] for row in volumes)),
        "identical_volumes": sum(row["differing_voxels"] == 0 for row in volumes),
        "min_label_agreement": min(row["label_agreement"] for row in volumes),
        "max_abs_dice_difference": max(diffs) if diffs else None,
        "mean_dice_segmenter": {
            c: float(np.mean([r[f"dice_{c}_segmenter"] for r in volumes if r[f"dice_{c}_segmenter"] is not None]))
            for c in CLASSES
        },
        "mean_dice_portable": {
            c: float(np.mean([r[f"dice_{c}_portable"] for r in volumes if r[f"dice_{c}_portable"] is not None]))
            for c in CLASSES
        },
        "seconds": {"training": train_seconds, "portable": portable_seconds, "segmenter": segmenter_seconds},
    }
    columns = ["volume", "differing_voxels", "label_agreement", *(f"dice_{c}_abs_diff" for c in CLASSES)]
    print(table(volumes, columns))
    print(
        f"{summary['identical_volumes']} of {summary['volumes']} volumes identical; "
        f"{summary['differing_voxels']} of {summary['voxels']} voxels differ; "
        f"max |Dice difference| {summary['max_abs_dice_difference']}"
    )
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    record = json.loads((run_dir / "data.json").read_text())
    last_epoch = read_metrics(run_dir / "metrics.jsonl")[-1]
    model = {
        "training_settings": record["settings"],
        "last_epoch": {
            k: last_epoch.get(k) for k in ("epoch", "images_seen", "train_seconds", "val_dice_mean", "val_dice")
        },
    }
    result = {"settings": settings, "model": model, "bundle": str(bundle), "summary": summary, "per_volume": volumes}
    print("wrote", write_result("portable_agreement", result))


if __name__ == "__main__":
    main()
