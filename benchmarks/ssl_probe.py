"""Does cardiac pretraining learn? Few-label fine-tuning on ACDC from a pretrained U-Net vs a random one.

Pretrains on the SSL4MIS *train* patients of ACDC (Bernard et al., IEEE TMI 2018) with the specialist
recipe (``pretraining/configs/specialist.json``; the data layer reads ``train.txt``'s patients only, never
``val.txt``'s), then fine-tunes the whole U-Net through the bundle's train.json on ``--labelled-patients``
labelled training patients, once from each pretrained checkpoint (``mim``: encoder and decoder, the other
methods: the encoder) and once from random initialisation, with the same seed (same labelled patients,
batches and initialisation of what the checkpoint does not hold), epochs and settings. With
``--freeze-encoder`` it is the frozen-encoder probe instead: the encoder's weights stay as pretrained (or
random) and only the decoder and head train, which asks how good the features are rather than how good a
starting point. Reports the validation Dice (3D, per volume, mean of RV, MYO, LV, on the 10 ``val.txt``
patients) of every epoch, the last, the best and the mean over epochs (the paper's question is convergence
speed), per seed, and in how many seeds each pretrained start beat random on the same labelled patients;
``ssl_probe_<finetune|frozen>_<N>patients_<device>.json`` and ``.png`` (mean curve and range over seeds) in
benchmarks/results/. Runs that an ``--output-dir`` already holds, finished with the same settings, are read
instead of run again (so seeds can be split between processes and gathered by one more call with all of them).

    python -m benchmarks.ssl_probe --dataset-dir ../shared/data/acdc_ssl4mis --methods mim byol \\
        --encoder resnet18 --image-size 64 --pretrain-epochs 10 --labelled-patients 7 --epochs 20 \\
        --epoch-length 320 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import (
    RESULTS,
    device_tag,
    few_label_settings,
    finished_run,
    run_config,
    save_plot,
    table,
    train_bundle,
    write_result,
)
from cardioseg.engine.epoch_log import read_metrics

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
        "epoch_length": args.pretrain_epoch_length,
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
        "dataset_format": args.dataset_format,
        "pretrained": None if pretrained is None else str(pretrained),
        "freeze_encoder": args.freeze_encoder,
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
        "mean_over_epochs": round(statistics.fmean(m["val_dice_mean"] or 0.0 for m in metrics), 4),
        "last_per_class": metrics[-1]["val_dice"],
    }


def init_summary(init: str, rows: list[dict]) -> dict:
    """Means over seeds, and in how many seeds the init beat random initialisation on the same labelled
    patients and batches (a paired comparison): at the last epoch and over all epochs (convergence)."""
    mine = {r["seed"]: r for r in rows if r["init"] == init}
    random = {r["seed"]: r for r in rows if r["init"] == "random"}
    out = {"init": init, "seed": "mean"}
    for key in ("last_val_dice", "best_val_dice", "mean_over_epochs"):
        out[key] = round(statistics.fmean(r[key] for r in mine.values()), 4)
    if init != "random":
        for key, name in (("last_val_dice", "wins_last"), ("mean_over_epochs", "wins_over_epochs")):
            out[name] = f"{sum(r[key] > random[seed][key] for seed, r in mine.items())}/{len(mine)}"
    return out


def mean_curves_plot(runs: dict[str, dict[int, list[dict]]], path: Path, title: str) -> Path:
    """Validation Dice against fine-tuning epoch: per initialisation the mean over seeds, and its range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (init, by_seed) in enumerate(runs.items()):
        dice = np.array([[m["val_dice_mean"] or 0.0 for m in metrics] for metrics in by_seed.values()])
        epochs = np.arange(1, dice.shape[1] + 1)
        ax.plot(epochs, dice.mean(0), color=f"C{i}", label=f"{init} (mean of {len(dice)} seeds)")
        ax.fill_between(epochs, dice.min(0), dice.max(0), color=f"C{i}", alpha=0.15)
    ax.set(xlabel="fine-tuning epoch", ylabel="mean validation Dice (RV, MYO, LV)", title=title, ylim=(0, None))
    return save_plot(fig, ax, path)


def add_pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, network and specialist-recipe settings the cardiac probes share."""
    parser.add_argument("--dataset-dir", type=Path, default=Path("../shared/data/acdc_ssl4mis"))
    parser.add_argument("--dataset-format", default="ssl4mis", help="ssl4mis, or cache (a slice cache)")
    parser.add_argument("--methods", nargs="+", default=["mim"], help="pretraining methods to compare")
    parser.add_argument("--patch-size", type=int, default=8, help="masked patches of mim, in pixels")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--pretrain-batch-size", type=int, default=64)
    parser.add_argument("--pretrain-epoch-length", type=int, help="images per pretraining epoch (default: all)")
    parser.add_argument("--pretrain-learning-rate", type=float, default=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_pretrain_arguments(parser)
    parser.add_argument("--labelled-patients", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--epoch-length", type=int, default=160, help="labelled slices per fine-tuning epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--freeze-encoder", action="store_true", help="train the decoder and head only")
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    work = args.output_dir or Path(tempfile.mkdtemp(prefix="ssl_probe_"))
    probe = "frozen" if args.freeze_encoder else "finetune"
    name = f"ssl_probe_{probe}_{args.labelled_patients}patients"
    checkpoints, pretraining = {"random": None}, {}
    for method in args.methods:
        checkpoints[method] = pretrain(args, method, work / f"pretrain_{method}")
        record = json.loads((work / f"pretrain_{method}" / "data.json").read_text())
        seconds = read_metrics(work / f"pretrain_{method}" / "metrics.jsonl")[-1]["train_seconds"]
        pretraining[method] = {"train_seconds": seconds, "data": record["data"]}
    runs, rows = {init: {} for init in checkpoints}, []
    for seed in args.seeds:
        for init, checkpoint in checkpoints.items():
            metrics = finetune(args, seed, checkpoint, work / f"{probe}_{init}_seed{seed}")
            runs[init][seed] = metrics
            rows.append(summary(init, seed, metrics) | {"seconds": metrics[-1]["wall_seconds"]})
    rows += [init_summary(init, rows) for init in checkpoints]
    columns = ["init", "seed", "last_val_dice", "best_val_dice", "best_epoch", "mean_over_epochs", "seconds"]
    print(table(rows, [*columns, "wins_last", "wins_over_epochs"]))
    curves = {
        f"{init} seed {seed}": [{"epoch": m["epoch"], "val_dice_mean": m["val_dice_mean"]} for m in metrics]
        for init, by_seed in runs.items()
        for seed, metrics in by_seed.items()
    }
    path = write_result(
        name,
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
    title += ", frozen encoder" if args.freeze_encoder else ""
    print("wrote", mean_curves_plot(runs, RESULTS / f"{name}_{device_tag()}.png", title))
    print(f"runs kept in {work}")


if __name__ == "__main__":
    main()
