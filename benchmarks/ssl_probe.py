"""Does cardiac pretraining learn? Few-label fine-tuning on ACDC from a pretrained U-Net vs a random one.

Pretrains on the SSL4MIS *train* patients of ACDC (Bernard et al., IEEE TMI 2018) with the specialist
recipe (``pretraining/configs/specialist.json``; the data layer reads ``train.txt``'s patients only, never
``val.txt``'s), then fine-tunes the whole U-Net through the bundle's train.json on ``--labelled-patients``
labelled training patients, once from each pretrained checkpoint (``mim``: encoder and decoder, the other
methods: the encoder) and once from random initialisation, with the same seed (same labelled patients,
batches and initialisation of what the checkpoint does not hold), epochs and settings. Reports the
validation Dice (3D, per volume, mean of RV, MYO, LV, on the 10 ``val.txt`` patients) of every epoch, the
last and the best, per seed; ``ssl_probe_<device>.json`` and ``.png`` in benchmarks/results/. Runs that
an ``--output-dir`` already holds, finished with the same settings, are read instead of run again.

    python -m benchmarks.ssl_probe --dataset-dir ../shared/data/acdc_ssl4mis --methods mim \\
        --encoder resnet18 --image-size 64 --pretrain-epochs 10 --labelled-patients 3 --epochs 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    device_tag,
    few_label_settings,
    finished_run,
    run_config,
    table,
    train_bundle,
    write_result,
)
from cardioseg.engine.epoch_log import read_metrics
from cardioseg.visualize import convergence_plot

RECIPE = Path(__file__).resolve().parents[1] / "pretraining" / "configs" / "specialist.json"


def pretrain_settings(args: argparse.Namespace, method: str) -> dict:
    """What the specialist recipe is run with (besides its output folder)."""
    return {
        "method": method,
        "method_options": {"patch_size": args.patch_size} if method == "mim" else {},
        "encoder": args.encoder,
        "data": [str(args.dataset_dir)],
        "image_size": args.image_size,
        "epochs": args.pretrain_epochs,
        "batch_size": args.pretrain_batch_size,
        "optimizer": "adamw",
        "learning_rate": args.pretrain_learning_rate,
        "weight_decay": 1e-4,
        "warmup_epochs": 1,
        "seed": 0,
    }


def pretrain(args: argparse.Namespace, method: str, out: Path) -> Path:
    """The specialist recipe on the dataset's training patients; returns its ``final.pt``."""
    settings = pretrain_settings(args, method)
    if not finished_run(out, settings):
        run_config(RECIPE, "pretraining", out, **settings)
    return out / "models" / "final.pt"


def finetune(args: argparse.Namespace, seed: int, pretrained: Path | None, out: Path) -> list[dict]:
    """One few-label fine-tuning run through the bundle; its per-epoch metrics."""
    settings = {
        "dataset_dir": str(args.dataset_dir),
        "dataset_format": "ssl4mis",
        "pretrained": None if pretrained is None else str(pretrained),
        **few_label_settings(args, seed),
    }
    if not (finished_run(out, settings, "metrics.jsonl") and len(read_metrics(out / "metrics.jsonl")) == args.epochs):
        train_bundle(out, **settings)
    return read_metrics(out / "metrics.jsonl")


def summary(init: str, seed: int, metrics: list[dict]) -> dict:
    best = max(metrics, key=lambda m: m["val_dice_mean"] or 0.0)
    return {
        "init": init,
        "seed": seed,
        "last_val_dice": metrics[-1]["val_dice_mean"],
        "best_val_dice": best["val_dice_mean"],
        "best_epoch": best["epoch"],
        "last_per_class": metrics[-1]["val_dice"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", type=Path, default=Path("../shared/data/acdc_ssl4mis"))
    parser.add_argument("--methods", nargs="+", default=["mim"], help="pretraining methods to compare")
    parser.add_argument("--patch-size", type=int, default=8, help="masked patches of mim, in pixels")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--pretrain-batch-size", type=int, default=64)
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)
    parser.add_argument("--labelled-patients", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epoch-length", type=int, default=160, help="labelled slices per fine-tuning epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.output_dir or Path(tempfile.mkdtemp(prefix="ssl_probe_"))
    checkpoints, pretraining = {"random": None}, {}
    for method in args.methods:
        checkpoints[method] = pretrain(args, method, work / f"pretrain_{method}")
        record = json.loads((work / f"pretrain_{method}" / "data.json").read_text())
        seconds = read_metrics(work / f"pretrain_{method}" / "metrics.jsonl")[-1]["train_seconds"]
        pretraining[method] = {"train_seconds": seconds, "data": record["data"]}
    runs, rows = {}, []
    for seed in args.seeds:
        for init, checkpoint in checkpoints.items():
            metrics = finetune(args, seed, checkpoint, work / f"finetune_{init}_seed{seed}")
            runs[f"{init} seed {seed}"] = metrics
            rows.append(summary(init, seed, metrics) | {"seconds": metrics[-1]["wall_seconds"]})
    for init in checkpoints:
        mine = [r for r in rows if r["init"] == init]
        rows.append(
            {
                "init": init,
                "seed": "mean",
                "last_val_dice": round(sum(r["last_val_dice"] for r in mine) / len(mine), 4),
                "best_val_dice": round(sum(r["best_val_dice"] for r in mine) / len(mine), 4),
            }
        )
    print(table(rows, ["init", "seed", "last_val_dice", "best_val_dice", "best_epoch", "seconds"]))
    curves = {
        name: [{"epoch": m["epoch"], "val_dice_mean": m["val_dice_mean"]} for m in ms] for name, ms in runs.items()
    }
    path = write_result(
        "ssl_probe",
        {
            "rows": rows,
            "pretraining": pretraining,
            "curves": curves,
            "settings": vars(args),
            "data_citation": "Bernard et al., IEEE TMI 37(11) 2514-2525, 2018 (ACDC); SSL4MIS split",
        },
    )
    print(f"wrote {path}")
    title = f"{args.labelled_patients} labelled patients, {args.encoder}, {args.image_size} px"
    print("wrote", convergence_plot(runs, RESULTS / f"ssl_probe_{device_tag()}.png", title))
    print(f"runs kept in {work}")


if __name__ == "__main__":
    main()
