"""Time to accuracy on real ACDC: validation Dice against seconds since the command started.

Each variant is one fine-tuning run of the bundle's train.json as a user starts it (``python -m monai.bundle
run training``, a fresh process: imports, data loading, compilation and autotuning all count), on the
SSL4MIS split (train.txt to train, val.txt to validate: 3D Dice per volume every epoch), from random
initialisation. Variants run one after another in one benchmark and differ only in their overrides
(``variant_overrides``), so each change is measured against the path before it. Reports when each first reached
each mean validation Dice, in seconds since its command started, seconds of training and epochs, and
plots the curves.

    python -m benchmarks.time_to_accuracy --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet50 \\
        --image-size 256 --epochs 50 --batch-size 32 --variants plain,ema
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import NARROW_DECODER, RESULTS, add_data_arguments, device_tag, table, write_result
from cardioseg.study.packing import BundleRun, run_packed
from cardioseg.training.convergence import read_metrics
from cardioseg.visualize import convergence_plot

THRESHOLDS = (0.5, 0.8, 0.85, 0.88, 0.9, 0.92)


def variant_overrides(name: str, args: argparse.Namespace) -> dict:
    """What a variant changes over ``plain`` (the bundle's defaults with the benchmark's settings)."""
    variants = {
        "plain": {},
        "ema": {"ema_decay": args.ema_decay},
        "compile": {"compile": True},
        "ema-compile": {"ema_decay": args.ema_decay, "compile": True},
        "ds": {"deep_supervision": args.deep_supervision},
        "ema-ds": {"ema_decay": args.ema_decay, "deep_supervision": args.deep_supervision},
        "narrow-decoder": {"decoder_channels": list(NARROW_DECODER)},
        "unpadded-validation": {"validate#loader#slice_multiple": 1},  # one cuDNN autotune per slice count
    }
    if name not in variants:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(variants)}")
    return variants[name]


TIMING = ("epoch", "images_seen", "seconds_since_command", "train_seconds", "wall_seconds")


def first_reaching(metrics: list[dict], threshold: float) -> dict | None:
    for line in metrics:
        if line["val_dice_mean"] is not None and line["val_dice_mean"] >= threshold:
            return {k: line[k] for k in TIMING}
    return None


def run_variant(name: str, out: Path, args: argparse.Namespace) -> list[dict]:
    """One run as its own process; its log lines with the seconds since the command started added."""
    overrides = {
        "dataset_dir": args.dataset_dir,
        "dataset_format": args.dataset_format,
        "encoder": args.encoder,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "progress": False,
        **variant_overrides(name, args),
    }
    started = time.time()
    run_packed([BundleRun(out / name, overrides)], slots=1, progress=False)
    metrics = read_metrics(out / name / "metrics.jsonl")
    for line in metrics:
        line["seconds_since_command"] = round(line["time"] - started, 2)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument(
        "--variants",
        default="plain",
        help="comma-separated: plain, ema, compile, ema-compile, ds, ema-ds, narrow-decoder, unpadded-validation",
    )
    parser.add_argument("--ema-decay", type=float, default=0.99, help="ema_decay of the ema variants")
    parser.add_argument("--deep-supervision", type=int, default=3, help="deep_supervision of the ds variants")
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--name", default="time_to_accuracy", help="result files: NAME_<device>.json and .png")
    parser.add_argument("--out-dir", type=Path, help="write the result and plot here (default: benchmarks/results)")
    args = parser.parse_args()

    names = args.variants.split(",")
    for name in names:
        variant_overrides(name, args)  # an unknown name stops the benchmark before anything runs
    out = args.output_dir or Path(tempfile.mkdtemp(prefix="tta_"))
    runs, rows = {}, []
    for name in names:
        runs[name] = metrics = run_variant(name, out, args)
        best = max(metrics, key=lambda m: m["val_dice_mean"] or 0)
        for t in THRESHOLDS:
            rows.append({"variant": name, "val_dice": t, **(first_reaching(metrics, t) or {"epoch": "not reached"})})
        rows.append({"variant": name, "val_dice": f"best {best['val_dice_mean']}", **{k: best[k] for k in TIMING}})
        print(f"{name}: best mean val Dice {best['val_dice_mean']} at epoch {best['epoch']} ({best['val_dice']})")
    print(table(rows, ["variant", "val_dice", *TIMING]))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {"settings": settings, "variants": {n: variant_overrides(n, args) for n in names}, "reached": rows}
    print("wrote", write_result(args.name, {**result, "epochs": runs}, args.out_dir))
    plot = (args.out_dir or RESULTS) / f"{args.name}_{device_tag()}.png"
    labels = {f"{args.encoder}, {name}": metrics for name, metrics in runs.items()}
    convergence_plot(labels, plot, seconds="seconds_since_command", seconds_label="seconds since the command")
    print("wrote", plot)


if __name__ == "__main__":
    main()
