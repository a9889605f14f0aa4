"""Pretraining throughput: cardioseg's view loader against lightly's example pipeline, same model and step.

Both ways run the same pretraining step, cardioseg's ``PretrainTrainer`` (MONAI's engine: the method's
loss over two views, backward, optimiser step, momentum update, LR schedule), with the same method, encoder,
optimiser (the recipes' LARS) and batch size, in one process; only where the views come from differs:
- ``cardioseg``: the recipes' ``ViewLoader``: images resident on the training device, both views of a batch
  cut and augmented there at once (``cardioseg.ssl.views``);
- ``lightly``: lightly's example pipeline: a dataset of PIL images (decoded from their files for an
  ImageFolder, as ``LightlyDataset``/``ImageFolder`` do; the same slices as 8-bit PIL images for cardiac
  data), lightly's view transform (``BYOLTransform`` for BYOL, ...) per image in ``DataLoader`` workers
  (one per CPU by default), ``pin_memory`` on CUDA, views copied to the device in the step. Images are read
  in grey, as cardioseg reads them (the encoder has one input channel); lightly's colour jitter and
  grey-scale steps run on them as they are.
On CUDA both steps use what the recipes use there: bf16 autocast and channels_last (``--baseline-step fp32``
runs the lightly way in fp32, contiguous, as lightly's examples train). Repeats alternate the two ways
(cardioseg, lightly, cardioseg, ...); each repeat times ``--steps`` steps after ``--warmup`` untimed ones
(DataLoader workers start afresh each repeat, inside the warm-up). Reported: images per second (an image
is its two views; augmentation, transfer and optimiser step included), the median per way, the ratio
cardioseg / lightly, and each loader alone (batches drawn, no step). Data reading and resizing to the
grid are one-time preparation, outside the timing. cuDNN autotuning is on for both ways on CUDA (as
fine-tuning and the pretraining recipes set it). Writes
``results/pretrain_throughput_<device>.json``.

CPU (the committed result; about 6 minutes on 2 cores shared with other jobs, where torch's two-thread
parallel regions stall on the busy cores, hence ``--threads 1``):

    python -m benchmarks.pretrain_throughput --encoder resnet18 --image-size 64 --batch-size 32 \\
        --images 2000 --warmup 2 --steps 8 --repeats 5 --loader-steps 8 --threads 1

GPU (the target: >= 2,500 images/s for BYOL ResNet-50 at 224x224 on one H200):

    python -m benchmarks.pretrain_throughput --method byol --encoder resnet50 --image-size 224 \\
        --batch-size 256 --images 5000 --warmup 5 --steps 20 --repeats 3

Smoke test (under a minute on a CPU):

    python -m benchmarks.pretrain_throughput --encoder resnet18 --image-size 32 --batch-size 8 \\
        --images 64 --warmup 1 --steps 2 --repeats 1 --loader-steps 2 --threads 1 --out-dir /tmp/pretrain_throughput
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.handlers import LrScheduleHandler
from monai.optimizers import WarmupCosineSchedule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from benchmarks.common import table, write_result
from cardioseg.data.formats import detect_format
from cardioseg.data.imagefolder import list_images
from cardioseg.ssl import METHODS, build_method
from cardioseg.ssl.data import NATURAL_FORMAT, PretrainData, load_pretrain_data
from cardioseg.ssl.loader import ViewLoader
from cardioseg.ssl.trainer import OPTIMIZERS, PretrainTrainer, build_optimizer
from cardioseg.ssl.views import ViewConfig

WAYS = ("cardioseg", "lightly")
TWO_VIEW_METHODS = tuple(n for n, c in METHODS.items() if c.views == 2 and not c.needs_labels)
GREY = {"mean": [0.449], "std": [0.226]}  # ImageNet's statistics in luma, for lightly's Normalize


def lightly_transform(method: str, size: int):
    """lightly's own view transform of the method, at ``size``, normalising one grey channel."""
    from lightly.transforms import (
        BYOLTransform,
        BYOLView1Transform,
        BYOLView2Transform,
        MoCoV2Transform,
        SimCLRTransform,
        VICRegTransform,
    )

    if method == "byol":
        return BYOLTransform(
            BYOLView1Transform(input_size=size, normalize=GREY), BYOLView2Transform(input_size=size, normalize=GREY)
        )
    maker = {"simclr": SimCLRTransform, "moco": MoCoV2Transform, "vicreg": VICRegTransform}[method]
    return maker(input_size=size, normalize=GREY)


class GreyFiles(Dataset):
    """Image files decoded (in grey) when asked for, then transformed: torchvision's ImageFolder."""

    def __init__(self, paths: list[Path], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("L")), 0


class GreySlices(Dataset):
    """Slices in [0, 1] as 8-bit grey PIL images, transformed: cardiac data the lightly way."""

    def __init__(self, images: np.ndarray, transform):
        self.images = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index], mode="L")), 0


class WorkerViews:
    """lightly's example loader (per-image transforms in DataLoader workers) as the trainer's batches:
    ``steps`` batches a pass, views moved to the device in the step; workers start with each pass."""

    def __init__(self, dataset: Dataset, args, device: torch.device, memory_format, steps: int):
        self.device, self.memory_format, self.steps = device, memory_format, steps
        self.loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=RandomSampler(dataset, num_samples=steps * args.batch_size),
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
        )
        self._pass = None

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        self.close()
        self._pass = self._batches()
        return self._pass

    def _batches(self):
        for views, _ in self.loader:
            yield {
                "views": [v.to(self.device, non_blocking=True, memory_format=self.memory_format) for v in views],
                "label": None,
                "generator": torch.Generator().manual_seed(0),
            }

    def close(self) -> None:
        """End the pass: its DataLoader iterator, and so its workers, go."""
        if self._pass is not None:
            self._pass.close()
            self._pass = None


def prepare_data(args, workdir: Path) -> tuple[PretrainData, Dataset]:
    """``--images`` images of the source, evenly spread, for both ways: cardioseg's arrays on the grid
    (read by its own readers) and the lightly way's dataset of the same images."""
    transform = lightly_transform(args.method, args.image_size)
    if detect_format(args.data) == NATURAL_FORMAT:
        _, items = list_images(args.data)
        picked = [items[i][0] for i in np.linspace(0, len(items) - 1, min(args.images, len(items))).round().astype(int)]
        for path in picked:  # an ImageFolder of links to the picked files: cardioseg reads what lightly reads
            link = workdir / path.parent.name / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path.resolve())
        data = load_pretrain_data([workdir], args.image_size)
        return data, GreyFiles(picked, transform)
    data = load_pretrain_data([args.data], args.image_size)
    pick = np.linspace(0, len(data) - 1, min(args.images, len(data))).round().astype(int)
    data = dataclasses.replace(data, images=data.images[pick], labels=None)
    return data, GreySlices(data.images, transform)


def build_way(way: str, args, data: PretrainData, dataset: Dataset, device: torch.device) -> dict:
    """One way's method (same seed for both), optimiser and loader."""
    cuda = device.type == "cuda"
    fast_step = cuda and (way == "cardioseg" or args.baseline_step == "same")
    memory_format = torch.channels_last if fast_step else torch.contiguous_format
    torch.manual_seed(args.seed)
    method = build_method(args.method, args.encoder).to(device, memory_format=memory_format)
    optimizer = build_optimizer(args.optimizer, method, args.learning_rate, weight_decay=1e-5)
    steps = args.warmup + args.steps
    if way == "cardioseg":
        loader = ViewLoader(
            data,
            batch_size=args.batch_size,
            device=device,
            views=2,
            augment=ViewConfig(),
            seed=args.seed,
            epoch_length=steps * args.batch_size,
            channels_last=fast_step,
        )
    else:
        loader = WorkerViews(dataset, args, device, memory_format, steps)
    return {"method": method, "optimizer": optimizer, "loader": loader, "bf16": fast_step, "channels_last": fast_step}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_repeat(parts: dict, repeat: int, args, device: torch.device) -> float:
    """One repeat of one way: images per second over the steps after the warm-up."""
    loader = parts["loader"]
    if isinstance(loader, ViewLoader):
        loader.epoch = repeat + 1  # new views each repeat, as a new epoch
    steps = len(loader)
    scheduler = WarmupCosineSchedule(parts["optimizer"], warmup_steps=steps, t_total=10 * steps)
    trainer = PretrainTrainer(
        device,
        1,
        loader,
        parts["method"],
        parts["optimizer"],
        bf16=parts["bf16"],
        train_handlers=[LrScheduleHandler(scheduler, print_lr=False, epoch_level=False)],
    )
    marks = {}

    def mark(name):
        def handler(_):
            sync(device)
            marks[name] = time.perf_counter()

        return handler

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=args.warmup), mark("start"))
    trainer.add_event_handler(Events.COMPLETED, mark("end"))
    trainer.run()
    if isinstance(loader, WorkerViews):
        loader.close()
    return args.steps * args.batch_size / (marks["end"] - marks["start"])


def loader_alone(parts: dict, args, device: torch.device) -> float | None:
    """Images per second the loader alone delivers to the device (no step), after ``--warmup`` batches."""
    if args.loader_steps <= 0:
        return None
    loader = parts["loader"]
    if isinstance(loader, ViewLoader):
        loader.epoch = 0
    timed = min(args.loader_steps, args.steps)
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    sync(device)
    start = time.perf_counter()
    for _ in range(timed):
        next(batches)
    sync(device)
    elapsed = time.perf_counter() - start
    if isinstance(loader, WorkerViews):
        loader.close()
    return timed * args.batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10_subset", help="any source cardioseg pretrains on")
    parser.add_argument("--images", type=int, default=5000, help="images taken from the source, evenly spread")
    parser.add_argument("--method", default="byol", choices=TWO_VIEW_METHODS)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--optimizer", default="lars", choices=OPTIMIZERS)
    parser.add_argument("--learning-rate", type=float, default=1.0, help="peak of a warm-up the run stays in")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them, each repeat")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per way, alternating the ways")
    parser.add_argument("--loader-steps", type=int, default=10, help="loader-alone batches (<= --steps; 0: skip)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="lightly way's workers")
    parser.add_argument("--baseline-step", default="same", choices=("same", "fp32"), help="lightly way's step on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads in the main process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=None, help="default: benchmarks/results")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"

    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        data, dataset = prepare_data(args, Path(workdir))
        print(f"{len(data)} images from {args.data} on a {args.image_size}x{args.image_size} grid", flush=True)
        ways = {way: build_way(way, args, data, dataset, device) for way in WAYS}
        rates: dict[str, list[float]] = {way: [] for way in WAYS}
        for repeat in range(args.repeats):
            for way in WAYS:
                rates[way].append(timed_repeat(ways[way], repeat, args, device))
                print(f"repeat {repeat + 1} {way}: {rates[way][-1]:.1f} images/s", flush=True)
        alone = {way: loader_alone(ways[way], args, device) for way in WAYS}

    medians = {way: statistics.median(rates[way]) for way in WAYS}
    rows = [
        {
            "way": way,
            "images_per_s": round(medians[way], 1),
            "repeats": [round(r, 1) for r in rates[way]],
            "ratio_to_lightly": round(medians[way] / medians["lightly"], 2),
            "loader_alone_images_per_s": None if alone[way] is None else round(alone[way], 1),
            "workers": args.workers if way == "lightly" else 0,
            "bf16": ways[way]["bf16"],
            "channels_last": ways[way]["channels_last"],
        }
        for way in WAYS
    ]
    columns = ["way", "images_per_s", "ratio_to_lightly", "repeats", "loader_alone_images_per_s", "workers"]
    print(table(rows, columns + ["bf16", "channels_last"]))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {
        "settings": settings,
        "images": len(data),
        "ratio_cardioseg_to_lightly": rows[0]["ratio_to_lightly"],
        "wall_seconds": round(time.perf_counter() - wall, 1),
        "results": rows,
    }
    print("wrote", write_result("pretrain_throughput", result, args.out_dir))


if __name__ == "__main__":
    main()
