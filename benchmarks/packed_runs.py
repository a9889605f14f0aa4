"""Packed runs: several few-label fine-tuning runs at once against one after another, in one benchmark run.

The study trains hundreds of small runs (label budgets x seeds x initialisations). Each run here is the
bundle's ``train.json`` (``cardioseg.study.packing``); the same ``--runs`` runs (one per seed, each with
its own ``--labelled-patients`` draw) go four ways: one after another, each its own process (``slots 1``);
one after another in one reused process (a worker that imports torch and MONAI once:
``reuse_processes``); ``--slots`` at a time; and ``--slots`` at a time in reused processes (one worker per
slot runs its share in turn: give ``--runs`` more than ``--slots`` for reuse to show). Reported:
wall-clock time of each way from first process start to last exit, images trained per second over the
pack, the ratio to one after another, and the largest difference in a run's final validation Dice
between the ways (none up to floating point: packing must not change results).
``packed_runs_<device>.json`` in benchmarks/results/.

    python -m benchmarks.packed_runs --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet50 \\
        --image-size 256 --runs 8 --slots 4 --labelled-patients 3 --epochs 5 --epoch-length 320
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.common import add_data_arguments, few_label_settings, table, write_result
from cardioseg.engine.epoch_log import read_metrics
from cardioseg.study.packing import BundleRun, run_packed


def pack(args: argparse.Namespace, work: Path, slots: int, reuse_processes: bool = False) -> dict:
    """The runs, ``slots`` at a time, into ``work``; wall-clock seconds, images trained and final Dice."""
    runs = [
        BundleRun(
            work / f"seed{seed}",
            {
                "dataset_dir": args.dataset_dir,
                "dataset_format": args.dataset_format,
                **few_label_settings(args, seed),
                "progress": False,
            },
        )
        for seed in range(args.runs)
    ]
    start = time.perf_counter()
    run_packed(runs, slots, progress=False, reuse_processes=reuse_processes)
    seconds = time.perf_counter() - start
    last = [read_metrics(run.output_dir / "metrics.jsonl")[-1] for run in runs]
    images = sum(m["images_seen"] for m in last)
    return {
        "slots": slots,
        "reused_processes": reuse_processes,
        "seconds": round(seconds, 1),
        "images": images,
        "images_per_second": round(images / seconds, 1),
        "final_val_dice": [m["val_dice_mean"] for m in last],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--runs", type=int, default=4, help="runs in the pack (seeds 0 .. runs-1)")
    parser.add_argument("--slots", type=int, default=4, help="runs at once in the packed way")
    parser.add_argument("--labelled-patients", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-length", type=int, default=320, help="labelled slices per epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--out-dir", type=Path, default=None, help="default: benchmarks/results")
    args = parser.parse_args()

    ways = [
        ("one after another", 1, False),
        ("one after another, one reused process", 1, True),
        (f"{args.slots} at a time", args.slots, False),
        (f"{args.slots} at a time, reused processes", args.slots, True),
    ]
    with tempfile.TemporaryDirectory(prefix="packed_runs_") as work:
        rows = [
            {"way": way, **pack(args, Path(work) / f"way{i}", slots, reuse)}
            for i, (way, slots, reuse) in enumerate(ways)
        ]
    for row in rows:
        row["ratio"] = round(row["images_per_second"] / rows[0]["images_per_second"], 2)
    dice = [row["final_val_dice"] for row in rows]
    dice_gap = max(abs(a - b) for other in dice[1:] for a, b in zip(dice[0], other, strict=True))
    print(table(rows, ["way", "slots", "reused_processes", "seconds", "images", "images_per_second", "ratio"]))
    print(f"largest final val Dice difference between the ways {dice_gap:.2g}")
    path = write_result(
        "packed_runs",
        {
            "rows": rows,
            "largest_dice_difference": dice_gap,
            "settings": vars(args),
        },
        args.out_dir,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
