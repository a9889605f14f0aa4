"""Time to accuracy on real ACDC: validation Dice against training seconds and images seen.

Trains through the bundle's train.json (the same code users run) on the SSL4MIS split (train.txt to train,
val.txt to validate: 3D Dice per volume every epoch) from random initialisation, then reports when the
mean validation Dice first reached each threshold, and plots the curves.

    python -m benchmarks.time_to_accuracy --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet50 \\
        --image-size 256 --epochs 60 --batch-size 32
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import RESULTS, add_data_arguments, device_tag, table, train_bundle, write_result
from cardioseg.training.convergence import read_metrics
from cardioseg.visualize import convergence_plot

THRESHOLDS = (0.5, 0.8, 0.85, 0.88, 0.9, 0.92)


def first_reaching(metrics: list[dict], threshold: float) -> dict | None:
    for line in metrics:
        if line["val_dice_mean"] is not None and line["val_dice_mean"] >= threshold:
            return {k: line[k] for k in ("epoch", "images_seen", "train_seconds", "wall_seconds")}
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--output-dir", type=Path, help="keep the run here (default: a temporary folder)")
    args = parser.parse_args()

    out = args.output_dir or Path(tempfile.mkdtemp(prefix="tta_"))
    train_bundle(
        out,
        dataset_dir=args.dataset_dir,
        dataset_format=args.dataset_format,
        encoder=args.encoder,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        compile=args.compile,
    )
    metrics = read_metrics(out / "metrics.jsonl")
    reached = {str(t): first_reaching(metrics, t) for t in THRESHOLDS}
    best = max(metrics, key=lambda m: m["val_dice_mean"] or 0)
    rows = [{"val_dice": t, **(reached[str(t)] or {"epoch": "not reached"})} for t in THRESHOLDS]
    print(table(rows, ["val_dice", "epoch", "images_seen", "train_seconds", "wall_seconds"]))
    print(f"best mean val Dice {best['val_dice_mean']} at epoch {best['epoch']} ({best['val_dice']})")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(
        "wrote",
        write_result("time_to_accuracy", {"settings": settings, "reached": reached, "best": best, "epochs": metrics}),
    )
    plot = convergence_plot({f"{args.encoder}, random init": metrics}, RESULTS / f"time_to_accuracy_{device_tag()}.png")
    print("wrote", plot)


if __name__ == "__main__":
    main()
