"""Time to accuracy on real ACDC: validation Dice against seconds since the command started.

Each variant is one fine-tuning run of the bundle's train.json as a user starts it (``python -m monai.bundle
run training``, a fresh process: imports, data loading, compilation and autotuning all count), on the
SSL4MIS split (train.txt to train, val.txt to validate: 3D Dice per volume every epoch), from random
initialisation. Variants run one after another in one benchmark and differ only in their overrides
(``variant_overrides``), so each change is measured against the path before it. Reports when each first reached
each mean validation Dice, in seconds since its command started, seconds of training and epochs, and
plots the curves. Each variant's seconds are also split into phases: before the first step, the first
epoch's training, and a later epoch's training and period. The JSON and plot are rewritten after each
variant. ``--stop-at DICE`` ends each run at the first epoch that reaches it (the bundle's ``stop_at_dice``),
so a short GPU session spends no time on the rest of a schedule. When a time limit kills the benchmark
during a run, the same command with ``--report-only`` (and ``--output-dir``) reports the runs kept there,
the cut one with its epochs so far, on the machine that ran them.

    python -m benchmarks.time_to_accuracy --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet50 \\
        --image-size 256 --epochs 50 --batch-size 32 --variants plain,ema,ema+ds+epochs=30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from statistics import median

from benchmarks.common import NARROW_DECODER, RESULTS, add_data_arguments, device_tag, table, write_result
from cardioseg.atomic import write_text_atomic
from cardioseg.bundle import TRAIN_CONFIG
from cardioseg.errors import CardiosegError
from cardioseg.study.packing import BundleRun, run_packed
from cardioseg.training.convergence import read_metrics
from cardioseg.visualize import convergence_plot

THRESHOLDS = (0.5, 0.8, 0.85, 0.88, 0.9, 0.92)


LEVERS = {  # name -> what it changes over the bundle's defaults
    "ema": lambda args: {"ema_decay": args.ema_decay},
    "ds": lambda args: {"deep_supervision": args.deep_supervision},
    "compile": lambda args: {"compile": True},
    "graphs": lambda args: {"compile": True, "compile_mode": "reduce-overhead"},  # CUDA graphs
    "cudagraphs": lambda args: {"compile": True, "compile_mode": "cudagraphs"},  # CUDA graphs without Inductor
    "graphed": lambda args: {"cuda_graphs": "network"},  # the network's CUDA graphs, captured with no tracing
    "stepgraph": lambda args: {"cuda_graphs": "step"},  # the whole training step as one CUDA graph
    "deterministic": lambda args: {"deterministic": True},
    "no-autotune": lambda args: {"cudnn_benchmark": False},  # cuDNN's heuristic kernels, no first-epoch tuning
    "narrow-decoder": lambda args: {"decoder_channels": list(NARROW_DECODER)},
    "crop": lambda args: {"crop_size": args.image_size // 2},  # windows of half the side: give a cache its --image-size
    "unpadded-validation": lambda args: {"validate#loader#slice_multiple": 1},  # one cuDNN autotune per slice count
    "per-volume-validation": lambda args: {"validate#loader#max_slices": 0},  # one batch per volume, as until 0.6.0
}


def bundle_has(key: str) -> bool:
    """Whether ``key`` (``#``-separated for nested ones) names an entry of the bundle's train.json."""
    node = json.loads(TRAIN_CONFIG.read_text())
    for part in key.split("#"):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def variant_overrides(name: str, args: argparse.Namespace) -> dict:
    """What a variant changes over ``plain`` (the bundle's defaults with the benchmark's settings): levers
    and bundle overrides joined by ``+``, e.g. ``ema+ds`` or ``ema+epochs=30+learning_rate=0.004`` (a value
    is read as JSON where it parses, else kept as text)."""
    overrides = {}
    for token in [] if name == "plain" else name.split("+"):
        key, is_override, value = token.partition("=")
        if is_override and key:
            if not bundle_has(key):  # MONAI would add an unknown key silently and the variant would be mislabelled
                raise SystemExit(f"variant {name!r}: {key!r} is not a setting of {TRAIN_CONFIG}")
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        elif token in LEVERS:
            overrides.update(LEVERS[token](args))
        else:
            wanted = f"plain, or levers ({', '.join(LEVERS)}) and KEY=VALUE joined by +"
            raise SystemExit(f"unknown variant {name!r}: {wanted}")
    return overrides


STARTED = "started.json"
"""Under ``--output-dir``: each run's command start (Unix time), by variant."""
TIMING = ("epoch", "images_seen", "seconds_since_command", "train_seconds", "wall_seconds")


def first_reaching(metrics: list[dict], threshold: float) -> dict | None:
    for line in metrics:
        if line["val_dice_mean"] is not None and line["val_dice_mean"] >= threshold:
            return {k: line[k] for k in TIMING}
    return None


def run_variant(name: str, out: Path, args: argparse.Namespace) -> list[dict]:
    """One run as its own process; its log lines with the seconds since the command started added. The
    start is also kept in ``out/started.json``, so ``--report-only`` can report a run a time limit cut."""
    overrides = {
        "dataset_dir": args.dataset_dir,
        "dataset_format": args.dataset_format,
        "encoder": args.encoder,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "progress": False,
        "stop_at_dice": args.stop_at,
        **variant_overrides(name, args),
    }
    started = time.time()
    print(f"{name}: command started at {started:.3f} (Unix time)", flush=True)
    write_text_atomic(out / STARTED, json.dumps({**read_starts(out), name: started}, indent=2) + "\n")
    run_packed([BundleRun(out / name, overrides)], slots=1, progress=False)
    return since_command(read_metrics(out / name / "metrics.jsonl"), started)


def read_starts(out: Path) -> dict[str, float]:
    path = out / STARTED
    return json.loads(path.read_text()) if path.exists() else {}


def since_command(metrics: list[dict], started: float) -> list[dict]:
    for line in metrics:
        line["seconds_since_command"] = round(line["time"] - started, 2)
    return metrics


def logged_runs(out: Path, names: list[str]) -> dict[str, list[dict]]:
    """``--report-only``: the runs of ``names`` under ``out`` that logged an epoch, also those a time limit
    cut (their epochs so far)."""
    starts, runs = read_starts(out), {}
    for name in names:
        log = out / name / "metrics.jsonl"
        metrics = read_metrics(log) if name in starts and log.exists() else []
        if metrics:
            runs[name] = since_command(metrics, starts[name])
        print(f"{name}: {len(metrics)} epochs logged" if metrics else f"{name}: no epoch logged, left out")
    if not runs:
        raise SystemExit(f"--report-only: no run of {', '.join(names)} under {out} logged an epoch")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=0.002)
    parser.add_argument(
        "--variants",
        default="plain",
        help=f"comma-separated: plain, or levers ({', '.join(LEVERS)}) and bundle KEY=VALUE joined by +",
    )
    parser.add_argument("--ema-decay", type=float, default=0.99, help="ema_decay of the ema variants")
    parser.add_argument("--deep-supervision", type=int, default=3, help="deep_supervision of the ds variants")
    parser.add_argument("--stop-at", type=float, help="end each run once its mean val Dice reaches this")
    parser.add_argument("--output-dir", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--name", default="time_to_accuracy", help="result files: NAME_<device>.json and .png")
    parser.add_argument("--out-dir", type=Path, help="write the result and plot here (default: benchmarks/results)")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the runs under --output-dir, with the epochs of any a time limit cut",
    )
    args = parser.parse_args()
    if args.report_only and args.output_dir is None:
        parser.error("--report-only needs --output-dir, the folder of the runs to report")

    names = args.variants.split(",")
    for name in names:
        variant_overrides(name, args)  # an unknown name stops the benchmark before anything runs
    if args.report_only:
        report(logged_runs(args.output_dir, names), args)
        return
    out = args.output_dir or Path(tempfile.mkdtemp(prefix="tta_"))
    runs, failed = {}, {}
    for name in names:
        try:
            runs[name] = metrics = run_variant(name, out, args)
        except CardiosegError as error:  # a lever that fails on this machine is recorded; the others still run
            failed[name] = str(error)
            print(f"{name}: {error}", flush=True)
            continue
        best = max(metrics, key=lambda m: m["val_dice_mean"] or 0)
        print(f"{name}: best mean val Dice {best['val_dice_mean']} at epoch {best['epoch']} ({best['val_dice']})")
        report(runs, args, failed)  # after each variant, so a time limit keeps the ones that finished
    if failed and not runs:
        raise SystemExit(f"every run failed: {', '.join(failed)}")


def phases(metrics: list[dict]) -> dict:
    """Where the seconds since the command went: before the first step (imports, data, model), the first
    epoch's training (cuDNN autotuning and warm-up), and a later epoch's training, validation (where the
    log has it) and whole period (checkpoint writes included), as medians over epochs 2 on."""
    first = metrics[0]

    def later_median(field: str) -> float | None:
        steps = [b[field] - a[field] for a, b in zip(metrics, metrics[1:])]
        return round(median(steps), 3) if steps else None

    validations = [m["val_seconds"] for m in metrics[1:] if m.get("val_seconds") is not None]
    return {
        "before_first_step": round(first["seconds_since_command"] - first["wall_seconds"], 2),
        "first_epoch_training": first["train_seconds"],
        "later_epoch_training": later_median("train_seconds"),
        "later_validation": round(median(validations), 3) if validations else None,
        "later_epoch_period": later_median("seconds_since_command"),
    }


def report(runs: dict[str, list[dict]], args: argparse.Namespace, failed: dict[str, str] | None = None) -> None:
    """The thresholds table, phases, JSON and plot of the variants run so far (and the errors of those that
    failed)."""
    rows = []
    for name, metrics in runs.items():
        best = max(metrics, key=lambda m: m["val_dice_mean"] or 0)
        for t in THRESHOLDS:
            rows.append({"variant": name, "val_dice": t, **(first_reaching(metrics, t) or {"epoch": "not reached"})})
        rows.append({"variant": name, "val_dice": f"best {best['val_dice_mean']}", **{k: best[k] for k in TIMING}})
    print(table(rows, ["variant", "val_dice", *TIMING]))
    seconds = {name: phases(metrics) for name, metrics in runs.items()}
    print(table([{"variant": n, **p} for n, p in seconds.items()], ["variant", *next(iter(seconds.values()))]))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    variants = {name: variant_overrides(name, args) for name in runs}
    result = {"settings": settings, "variants": variants, "reached": rows, "seconds": seconds, "epochs": runs}
    if failed:
        result["failed"] = failed
    print("wrote", write_result(args.name, result, args.out_dir))
    plot = (args.out_dir or RESULTS) / f"{args.name}_{device_tag()}.png"
    labels = {f"{args.encoder}, {name}": metrics for name, metrics in runs.items()}
    convergence_plot(labels, plot, seconds="seconds_since_command", seconds_label="seconds since the command")
    print("wrote", plot)


if __name__ == "__main__":
    main()
