"""The ``cardioseg`` command. Bad input prints one line naming the file and the problem, and exits 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import CardiosegError, cardioseg_cause
from .settings import SettingError, multiple_of, output_file, real_number, whole_number
from .termination import TERMINATED, sigterm_raises_exit


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars for a person at a terminal; none under --quiet or in CI logs."""
    return not args.quiet and os.environ.get("CI", "").lower() not in ("1", "true")


def cmd_phantom(args: argparse.Namespace) -> None:
    from .data.phantom import write_cohort

    out = write_cohort(
        args.out,
        n_patients=args.patients,
        seed=args.seed,
        image_size=args.size,
        n_frames=args.frames,
        n_slices=args.slices,
        studies=args.studies,
        overwrite=args.overwrite,
        progress=show_progress(args),
    )
    studies = f", whole studies under {out / 'studies'}" if args.studies else ""
    print(f"wrote {args.patients} phantom patients to {out} (raw ACDC layout, DICOM under {out / 'dicom'}{studies})")


def cmd_data_summary(args: argparse.Namespace) -> None:
    from .data.summary import format_summary, summarize

    summary = summarize(args.path, fmt=args.format, progress=show_progress(args) and not args.json)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))


def cmd_data_contact_sheet(args: argparse.Namespace) -> None:
    from itertools import islice

    from .data.formats import read_records
    from .visualize import contact_sheet

    whole_number("--max", args.max, minimum=1)
    whole_number("--columns", args.columns, minimum=1)
    output_file("--out", args.out, args.overwrite)
    records = list(islice(read_records(args.path, args.format), args.max))
    path = contact_sheet(records, args.out, columns=args.columns, title=str(args.path))
    print(f"wrote {path} ({len(records)} volumes)")


def cmd_data_cache(args: argparse.Namespace) -> None:
    from .data.cache import save_cache
    from .data.formats import detect_format
    from .nets import SIZE_DIVISOR
    from .training.data import choose_split, load_slices

    output_file("--out", args.out, args.overwrite)
    real_number("--val-fraction", args.val_fraction, 0.0, 1.0, open_low=True, open_high=True)
    fmt = args.format or detect_format(args.path)
    if fmt == "cache" and args.size is not None:  # a cache is rewritten as it is (to change its compression)
        raise SettingError("--size", args.size, "a slice cache keeps the size it was made at; leave --size out")
    size = 256 if args.size is None else args.size
    multiple_of("--size", size, SIZE_DIVISOR)
    slices = load_slices(args.path, fmt, size, args.mode, progress=show_progress(args))
    split = choose_split(slices, args.path, fmt, args.seed, args.val_fraction)
    slices.meta["split"] = split.to_dict()
    path = save_cache(
        slices, args.out, image_dtype=args.dtype, compression=args.compression, progress=show_progress(args)
    )
    print(
        f"wrote {path}: {len(slices)} slices of {len(slices.patients())} patients, "
        f"{path.stat().st_size / 1e6:.1f} MB ({len(split.train)} train / {len(split.val)} val patients)"
    )


def run_config(run_id: str, config_file: Path | list[Path], **overrides: object) -> None:
    """``python -m monai.bundle run RUN_ID --config_file ...`` in this process; an error meant for the user
    (which MONAI wraps in its own) is raised as itself, so ``main`` prints it as one line."""
    from monai.bundle import run

    files = [str(path) for path in config_file] if isinstance(config_file, list) else [str(config_file)]
    _check_overrides(files, overrides)
    # MONAI warns that a config runs code; these are the package's own.
    warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
    try:
        run(run_id, config_file=files if len(files) > 1 else files[0], **overrides)
    except RuntimeError as exc:
        cause = cardioseg_cause(exc)
        if cause is None:
            raise
        raise cause from None


def _check_overrides(files: list[str], overrides: dict[str, object]) -> None:
    """Each override names a setting the configs have: MONAI would add an unknown one (``--epocs 5``) as a
    new key that nothing reads, and the run would train with its defaults, silently."""
    from .bundle import merged_config

    known = merged_config(files)
    for name, value in overrides.items():
        if name.split("#")[0] not in known:
            raise SettingError(name, value, f"not a setting of {Path(files[-1]).name}")


def cmd_finetune(args: argparse.Namespace, overrides: list[str]) -> None:
    """Run the bundle's training: every ``--key value`` after the known options is a config override."""
    from .bundle import TRAIN_CONFIG, parse_overrides

    run_config(
        "training",
        TRAIN_CONFIG,
        dataset_dir=str(args.dataset_dir),
        output_dir=str(args.out),
        **parse_overrides(overrides),
    )


def cmd_pretrain(args: argparse.Namespace, overrides: list[str]) -> None:
    """Run a pretraining recipe: the options set its main settings, every further ``--key value`` is a
    recipe override (``--batch_size 64 --optimizer adamw``)."""
    from .bundle import parse_overrides
    from .ssl.recipes import recipe_path

    given = {"method": args.method, "encoder": args.encoder, "init": args.init, "epochs": args.epochs}
    settings = {key: value for key, value in given.items() if value is not None}
    settings |= {"data": [str(path) for path in args.data], "output_dir": str(args.out)}
    if not show_progress(args):
        settings["progress"] = False
    run_config("pretraining", recipe_path(args.recipe), **{**settings, **parse_overrides(overrides)})


def cmd_study(args: argparse.Namespace, overrides: list[str]) -> None:
    """Run a study config (several: later ones overlay earlier ones); every further ``--key value`` is a
    config override (``--seeds "[0, 1]"``, ``--finetune#epochs 20``)."""
    from .bundle import parse_overrides
    from .study.plan import check_study_configs, study_config

    configs = [study_config(name) for name in args.config]
    overrides = parse_overrides(overrides)
    check_study_configs(configs, overrides)
    settings = {"output_dir": str(args.out)} | ({} if show_progress(args) else {"progress": False})
    run_config("study", configs, **settings, **overrides)


def cmd_export(args: argparse.Namespace) -> None:
    from .bundle import package_run

    result = package_run(args.run_dir, args.out, overwrite=args.overwrite)
    bundle = result["bundle_dir"]
    for name, info in result["model_files"].items():
        print(f"{bundle / name}  sha256 {info['sha256'][:16]}...")
    onnx = result["model_files"]["models/model.onnx"]
    worst = max(onnx["max_abs_diff_vs_pytorch"].values())
    print(f"ONNX (opset {onnx['opset']}, dynamic batch) matches PyTorch within {worst:.1e} (max abs logit difference)")
    print(f"bundle ready: {bundle} (large_files.yml records each model file's sha256)")


def cmd_infer(args: argparse.Namespace) -> None:
    import logging

    from .clinical.pipeline import run_study

    whole_number("--batch-size", args.batch_size, minimum=1)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every module it copies at INFO
    result = run_study(
        args.dicom_dir,
        args.bundle,
        args.out,
        overwrite=args.overwrite,
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        progress=show_progress(args),
    )
    idx, series = result.indices, result.series
    print(f"series {result.choice.series.label()}: {series.n_frames} phases x {series.pixels.shape[1]} slices")
    print(f"ED phase {idx.ed_phase + 1}, ES phase {idx.es_phase + 1}")
    print(f"LV  EDV {idx.lvedv_ml:7.1f} ml  ESV {idx.lvesv_ml:7.1f} ml  EF {idx.lvef_percent:5.1f} %")
    print(f"RV  EDV {idx.rvedv_ml:7.1f} ml  ESV {idx.rvesv_ml:7.1f} ml  EF {idx.rvef_percent:5.1f} %")
    print(f"LV mass {idx.lv_mass_g:.1f} g")
    print(f"wrote {len(result.outputs)} outputs to {result.out_dir} in {result.timings['total']:.1f} s")


def cmd_phantom_compare(args: argparse.Namespace) -> None:
    from .clinical.truth import compare_with_truth, comparison_table

    comparisons = compare_with_truth(args.indices, args.truth)
    print(comparison_table(comparisons))
    outside = [c.index for c in comparisons if not c.within]
    if outside:
        raise CardiosegError(
            f"{args.indices}: {', '.join(outside)} outside the stated tolerance of the phantom's truth"
        )


def cmd_curves(args: argparse.Namespace) -> None:
    from .training.convergence import read_metrics
    from .visualize import convergence_plot

    output_file("--out", args.out, args.overwrite)
    runs = {}
    for run in args.runs:
        path = run / "metrics.jsonl"
        if not path.is_file():
            raise CardiosegError(f"{path}: not found (is {run} a training run's output_dir?)")
        runs[run.name] = read_metrics(path)
        if not runs[run.name]:
            raise CardiosegError(f"{path}: no epoch has finished yet")
    kinds = {run: "val_dice_mean" in lines[0] for run, lines in runs.items()}
    if len(set(kinds.values())) > 1:
        pretraining = ", ".join(run for run, fine_tuning in kinds.items() if not fine_tuning)
        raise CardiosegError(f"{pretraining}: pretraining run(s) among fine-tuning runs: plot each kind apart")
    metric = "val_dice_mean" if all(kinds.values()) else "train_loss"
    print(f"wrote {convergence_plot(runs, args.out, metric=metric)}")


def build_parser() -> argparse.ArgumentParser:
    from .data.formats import FORMATS

    parser = argparse.ArgumentParser(prog="cardioseg", description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)

    phantom = commands.add_parser("phantom", help="write a synthetic cine cohort (raw ACDC layout + DICOM)")
    phantom.add_argument("--patients", type=int, required=True)
    phantom.add_argument("--out", type=Path, required=True)
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--size", type=int, default=128, help="in-plane matrix size (pixels)")
    phantom.add_argument("--frames", type=int, default=12, help="cine frames per cardiac cycle")
    phantom.add_argument("--slices", type=int, default=8, help="short-axis slices base to apex")
    phantom.add_argument(
        "--studies",
        action="store_true",
        help="also studies/patientNNN/: the cine beside a localizer and a 4-chamber cine",
    )
    phantom.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    phantom.set_defaults(func=cmd_phantom)

    data = commands.add_parser("data", help="inspect data folders").add_subparsers(dest="data_command", required=True)
    summary = data.add_parser("summary", help="format, patients, volumes, slices, sizes, label fractions")
    summary.add_argument("path", type=Path)
    summary.add_argument("--json", action="store_true")
    summary.add_argument("--format", choices=FORMATS, help="skip detection")
    summary.set_defaults(func=cmd_data_summary)

    sheet = data.add_parser("contact-sheet", help="PNG of mid slices with label overlays")
    sheet.add_argument("path", type=Path)
    sheet.add_argument("--out", type=Path, required=True)
    sheet.add_argument("--max", type=int, default=16, help="volumes shown")
    sheet.add_argument("--columns", type=int, default=4)
    sheet.add_argument("--format", choices=FORMATS, help="skip detection")
    sheet.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    sheet.set_defaults(func=cmd_data_contact_sheet)

    cache = data.add_parser("cache", help="prepared slices and split in one file (compressed, for a GPU machine)")
    cache.add_argument("path", type=Path, help="a data folder, or a slice cache to rewrite with another --compression")
    cache.add_argument("--out", type=Path, required=True)
    cache.add_argument("--format", choices=("ssl4mis", "acdc", "phantom", "cache"), help="skip detection")
    cache.add_argument("--mode", choices=("ssl4mis", "spacing", "native"), default="ssl4mis")
    cache.add_argument("--size", type=int, help="image size in pixels (default 256; a cache keeps its own)")
    cache.add_argument("--dtype", choices=("uint8", "float16"), default="uint8")
    cache.add_argument(
        "--compression",
        choices=("xz", "none"),  # cardioseg.data.cache.COMPRESSIONS, not imported here: it loads MONAI (seconds)
        default="xz",
        help="xz: small, to carry (default); none: four times larger, loads seconds faster",
    )
    cache.add_argument("--seed", type=int, default=0, help="seed of the patient split where none is published")
    cache.add_argument("--val-fraction", type=float, default=0.2)
    cache.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    cache.set_defaults(func=cmd_data_cache)

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune through the MONAI bundle; extra --key value pairs override train.json",
        description="Runs bundles/cardiac_sax_seg/configs/train.json. Any further '--key value' is a bundle "
        "override, e.g. --dataset_format phantom --encoder resnet18 --epochs 5 --num_labelled_patients 4.",
    )
    finetune.add_argument("dataset_dir", type=Path)
    finetune.add_argument("--out", type=Path, required=True, help="the run's output_dir")
    finetune.set_defaults(func=cmd_finetune, takes_overrides=True)

    pretrain = commands.add_parser(
        "pretrain",
        help="pretrain the U-Net's encoder (or whole U-Net); extra --key value pairs override the recipe",
        description="Runs a recipe of pretraining/configs (generalist, specialist, hierarchical). Any further "
        "'--key value' is a recipe override, e.g. --image_size 128 --batch_size 64 --optimizer adamw.",
    )
    pretrain.add_argument("--method", help="byol, simclr, moco, vicreg, mim (whole U-Net) or supervised")
    pretrain.add_argument("--encoder", help="resnet18, resnet34 or resnet50 (the recipe's by default)")
    pretrain.add_argument(
        "--data", type=Path, action="append", required=True, help="a data folder or slice cache; repeat to mix"
    )
    pretrain.add_argument(
        "--init", help="none, imagenet, torchvision:ARCH[:TAG] or a weights file, e.g. an earlier run's final.pt"
    )
    pretrain.add_argument("--epochs", help="epochs to train (the recipe's by default)")
    pretrain.add_argument("--recipe", default="specialist", help="generalist, specialist, hierarchical or a .json")
    pretrain.add_argument("--out", type=Path, required=True, help="the run's output_dir")
    pretrain.set_defaults(func=cmd_pretrain, takes_overrides=True)

    study = commands.add_parser(
        "study",
        help="the paper's study: pretraining strategies x label budgets x seeds, with figures and a report",
        description="Runs a study config of experiments/configs (paper; small and demo overlay it) or a .json of "
        "your own; repeat --config to overlay one on another. Any further '--key value' is a config override, e.g. "
        "--seeds '[0, 1]' --label_budgets '[1, 3, null]' --finetune#epochs 20 --slots 2 --resume true.",
    )
    study.add_argument(
        "--config", action="append", required=True, help="paper, small, demo, or a study .json; repeat to overlay"
    )
    study.add_argument("--out", type=Path, required=True, help="the study's folder")
    study.set_defaults(func=cmd_study, takes_overrides=True)

    export = commands.add_parser(
        "export", help="package a trained run as a bundle: ONNX + TorchScript export, sha256 in metadata"
    )
    export.add_argument("run_dir", type=Path, help="a training run's output_dir (holds models/model.pt)")
    export.add_argument("--out", type=Path, help="the bundle folder to write (default: RUN/cardiac_sax_seg)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    export.set_defaults(func=cmd_export)

    infer = commands.add_parser(
        "infer", help="DICOM cine study -> DICOM SEG, NIfTI labels, clinical indices, report and picture"
    )
    infer.add_argument("dicom_dir", type=Path, help="a study folder (any series; the short-axis cine is chosen)")
    infer.add_argument("--bundle", type=Path, required=True, help="an exported bundle ('cardioseg export RUN')")
    infer.add_argument("--out", type=Path, required=True, help="the output folder (must be new or empty)")
    infer.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    infer.add_argument("--backend", choices=("onnx", "torch"), default="onnx", help="ONNX Runtime or PyTorch")
    infer.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    infer.add_argument("--batch-size", type=int, default=32, help="slices per model call")
    infer.set_defaults(func=cmd_infer)

    compare = commands.add_parser(
        "phantom-compare", help="a phantom study's indices (infer's indices.json) against the phantom's truth"
    )
    compare.add_argument("indices", type=Path, help="indices.json written by 'cardioseg infer' or the app")
    compare.add_argument("truth", type=Path, help="the phantom cohort's ground_truth.json")
    compare.set_defaults(func=cmd_phantom_compare)

    curves = commands.add_parser(
        "curves", help="PNG of validation Dice (pretraining: the loss) against seconds and images seen, per run"
    )
    curves.add_argument("runs", type=Path, nargs="+", help="fine-tuning or pretraining runs' output_dir folders")
    curves.add_argument("--out", type=Path, required=True)
    curves.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    curves.set_defaults(func=cmd_curves)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Importing MONAI imports the Deploy SDK in its namespace, and so Holoscan, which warns of a small stack
    # on import; only the MONAI Deploy app (app/) runs a Holoscan graph, and it is run with the stack it asks.
    warnings.filterwarnings("ignore", message="Current stack size", category=RuntimeWarning)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with sigterm_raises_exit():
            args.func(args, extra) if getattr(args, "takes_overrides", False) else args.func(args)
    except CardiosegError as exc:
        print(f"cardioseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cardioseg: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130
    except SystemExit as exc:  # SIGTERM (cardioseg.termination)
        if exc.code != TERMINATED:
            raise
        print(f"cardioseg: terminated{_resume_hint(args)}", file=sys.stderr)
        return TERMINATED
    return 0


def _resume_hint(args: argparse.Namespace) -> str:
    resumable = args.command in ("finetune", "pretrain", "study")
    return ": --resume true continues from the last checkpoint" if resumable else ""


if __name__ == "__main__":
    sys.exit(main())
