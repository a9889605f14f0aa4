"""What every benchmark records beside its numbers: the machine, the software and the command."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from cardioseg.atomic import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
NARROW_DECODER = (128, 64, 32, 16, 16)  # half of FlexibleUNet's decoder channels: 0.76x a ResNet-50 step (unet_flops)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data and network every benchmark is run on."""
    parser.add_argument("--dataset-dir", default="../shared/data/acdc_ssl4mis")
    parser.add_argument("--dataset-format", default="ssl4mis")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)


def run_config(config_file: Path, run_id: str, output_dir: str | Path, **overrides) -> None:
    """One run of a bundle-style config (``training`` of the bundle, ``pretraining`` of a recipe), as a user
    runs it, into ``output_dir``, with the config's logging and no progress bars."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(config_file),
        logging_file=str(Path(config_file).with_name("logging.conf")),
        run_id=run_id,
        workflow_type=None,
        output_dir=str(output_dir),
        progress=False,
        **overrides,
    )
    workflow.initialize()
    workflow.run()


def train_bundle(output_dir: str | Path, **overrides) -> None:
    """One fine-tuning run through the bundle's train.json into ``output_dir``."""
    from cardioseg.bundle import TRAIN_CONFIG

    run_config(TRAIN_CONFIG, "training", output_dir, **overrides)


def few_label_settings(args: argparse.Namespace, seed: int) -> dict:
    """The bundle overrides of one few-label fine-tuning run, from the arguments the benchmarks share."""
    return {
        "encoder": args.encoder,
        "image_size": args.image_size,
        "num_labelled_patients": args.labelled_patients,
        "seed": seed,
        "epochs": args.epochs,
        "epoch_length": args.epoch_length,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }


def finished_run(out: Path, settings: dict, last: str = "models/final.pt") -> bool:
    """Whether ``out`` holds a run with these settings that wrote ``last`` (then it is read, not run again);
    a run there with other settings stops the benchmark."""
    if not (out / "data.json").exists() or not (out / last).exists():
        return False
    recorded = json.loads((out / "data.json").read_text())["settings"]
    changed = [k for k, v in settings.items() if recorded.get(k) != v]
    if changed:
        raise SystemExit(f"{out} holds a run with other settings ({', '.join(changed)})")
    return True


def machine() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores)",
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
    }


def command() -> str:
    """The command line as typed: ``python -m benchmarks.NAME ...`` (run as a module from the repo root)."""
    spec = sys.modules["__main__"].__spec__
    program = ["-m", spec.name] if spec else sys.argv[:1]
    return " ".join(["python", *program, *sys.argv[1:]])


def device_tag() -> str:
    """A short file-name tag for the machine: ``cpu`` or the GPU model (``h100``, ``h200`` ...)."""
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0).lower()
    return next((tag for tag in ("h200", "h100", "a100", "l40s", "a10") if tag in name), "gpu")


def write_result(name: str, result: dict, out_dir: Path | None = None) -> Path:
    path = (out_dir or RESULTS) / f"{name}_{device_tag()}.json"
    text = json.dumps({"machine": machine(), "command": command(), **result}, indent=2, default=str)  # Paths
    write_text_atomic(path, text + "\n")  # makes the folder
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def save_plot(fig, ax, path: Path) -> Path:
    """How every benchmark plot ends: a light grid and the legend on ``ax`` (one axis or several), a tight
    layout, a 100 dpi PNG."""
    from cardioseg.visualize import save_figure

    for axis in ax if isinstance(ax, list | tuple) else [ax]:
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)
