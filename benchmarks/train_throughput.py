"""Train-step throughput: cardioseg's fast path against the same network through a plain MONAI pipeline.

Both run MONAI's SupervisedTrainer with the same U-Net, loss, optimiser and batch size, in one process:
- ``monai``: CacheDataset + DataLoader workers, MONAI's random transforms on the CPU, fp32;
- ``fast``: slices resident on the device, batched augmentation there (cardioseg.training), bf16 autocast
  and channels_last on CUDA. Suffixes add one lever each, in any combination (``fast-fused-compile``):
  ``-fused`` fused AdamW (CUDA only), ``-ema`` the weight average's update after every step
  (``ema_decay``), ``-ds`` deep supervision of 3 coarser decoder outputs (``deep_supervision``),
  ``-narrow`` the decoder at half its channels (``NARROW_DECODER``), ``-compile`` torch.compile of the
  network, ``-graphs`` the same in mode ``reduce-overhead`` (CUDA graphs), ``-cudagraphs`` CUDA graphs without
  Inductor (the bundle's ``compile_mode`` "cudagraphs"), ``-graphed`` CUDA graphs captured from the module
  as it is, with no tracing (the bundle's ``cuda_graphs`` "network"), ``-stepgraph`` the whole step (network,
  loss, optimiser) as one CUDA graph (``cuda_graphs`` "step"), ``-deterministic`` cuDNN's deterministic kernels
  only (what ``set_determinism`` leaves on; the bundle's ``deterministic``), ``-crop`` training on random
  windows of half the side (the bundle's ``crop_size``: images/s then counts windows, not whole slices),
  ``-fp32up`` the decoder's nearest upsampling as MONAI runs it, in float32 under CUDA autocast (every
  variant before bundle 0.8.0; ``build_unet``'s ``upsample_in_input_dtype``), ``-fp16`` float16 autocast
  with loss scaling in place of bfloat16: torch runs batch norm on bfloat16 input with its own kernels
  (about 1 TB/s in the profile, ``step_traffic``) and on float16 input with cuDNN's.
Reports images per second of steady-state training steps and the ratio to ``monai``. ``--profile VARIANTS``
(comma-separated) records ``--profile-steps`` more steps of each with torch.profiler after its timed ones: the
per-kernel table goes to ``<name>_profile_<variant>_<device>.txt`` and a summary by kind of work into the
JSON (``benchmarks.step_profile``). Profile the compiled variant too: its kernels are what stands between
the step and the convolutions' own time.

    python -m benchmarks.train_throughput --dataset-dir ../shared/data/acdc_ssl4mis --encoder resnet50 \\
        --image-size 256 --batch-size 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedTrainer
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandFlipd,
    RandRotated,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandZoomd,
)

from benchmarks.common import RESULTS, add_data_arguments, device_tag, table, write_result
from benchmarks.step_profile import kernel_table, summarise
from benchmarks.time_to_accuracy import NARROW_DECODER
from cardioseg.atomic import write_text_atomic
from cardioseg.nets import build_unet
from cardioseg.training.augment import AugmentConfig
from cardioseg.training.averaging import WeightAverage
from cardioseg.training.cuda_graphs import capture_training_graphs, step_graphs
from cardioseg.training.data import prepare_finetune_data
from cardioseg.training.deep_supervision import DeepSupervision
from cardioseg.training.loaders import TrainSliceLoader
from cardioseg.training.settings import compile_kwargs
from cardioseg.training.workflow import without_loss_scaling

KEYS = ("image", "label")


def monai_loader(data, batch_size: int, workers: int, pin: bool) -> DataLoader:
    """The textbook MONAI 2D pipeline, with the same augmentation ranges as the fast path."""
    config = AugmentConfig()
    transforms = Compose(
        [
            RandRotated(KEYS, range_x=config.max_rotation_deg * 3.14159 / 180, prob=1.0, mode=("bilinear", "nearest")),
            RandZoomd(
                KEYS,
                min_zoom=config.scale_range[0],
                max_zoom=config.scale_range[1],
                prob=1.0,
                mode=("bilinear", "nearest"),
            ),
            RandFlipd(KEYS, spatial_axis=0, prob=config.p_flip),
            RandFlipd(KEYS, spatial_axis=1, prob=config.p_flip),
            RandAdjustContrastd("image", gamma=config.gamma_range, prob=1.0),
            RandScaleIntensityd("image", factors=0.2, prob=1.0),
            RandShiftIntensityd("image", offsets=config.brightness, prob=1.0),
        ]
    )
    items = [
        {"image": data.train.images[i][None], "label": data.train.labels[i][None].astype("float32")}
        for i in data.labelled
    ]
    dataset = CacheDataset(items, transform=transforms, cache_rate=1.0, progress=False)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )


LEVERS = (
    "fused",
    "ema",
    "ds",
    "narrow",
    "compile",
    "graphs",
    "cudagraphs",
    "graphed",
    "stepgraph",
    "deterministic",
    "crop",
    "fp32up",
    "fp16",
)
COMPILE_LEVERS = {"compile": "default", "graphs": "reduce-overhead", "cudagraphs": "cudagraphs"}  # lever -> mode


def parse_variant(variant: str) -> tuple[bool, list[str]]:
    """``fast-fused-ema`` -> (True, ["fused", "ema"]); an unknown name stops the benchmark."""
    base, *levers = variant.split("-")
    if base not in ("monai", "fast") or not set(levers) <= set(LEVERS) or (levers and base != "fast"):
        raise SystemExit(f"unknown variant {variant!r}: monai, or fast with any of -{', -'.join(LEVERS)}")
    graph_levers = {"graphed", "stepgraph"} & set(levers)
    if len(graph_levers) > 1 or (graph_levers and set(levers) & set(COMPILE_LEVERS)):
        raise SystemExit(f"variant {variant!r}: -graphed or -stepgraph capture as it is: one, and no compile lever")
    return base == "fast", levers


def measure(variant: str, data, args, device: torch.device) -> dict:
    """Images per second of ``args.steps`` steps after ``args.warmup``; with the profile of
    ``args.profile_steps`` more when ``variant`` is one to profile."""
    cuda = device.type == "cuda"
    profiled = variant in args.profile
    fast, levers = parse_variant(variant)
    compile_mode = next((COMPILE_LEVERS[lever] for lever in levers if lever in COMPILE_LEVERS), None)
    channels_last = fast and cuda
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = build_unet(
        args.encoder,
        decoder_channels=NARROW_DECODER if "narrow" in levers else None,
        upsample_in_input_dtype="fp32up" not in levers,
    )
    net = net.to(device, memory_format=memory_format)
    stepped = DeepSupervision(net, 3 if "ds" in levers else 0)
    timed_end = args.warmup + args.steps
    steps = timed_end + (args.profile_steps if profiled else 0)
    if fast:
        loader = TrainSliceLoader(
            data.train,
            data.labelled,
            args.batch_size,
            device,
            seed=0,
            epoch_length=steps * args.batch_size,
            augment=AugmentConfig(crop_size=data.train.images.shape[-1] // 2 if "crop" in levers else None),
            channels_last=channels_last,
        )
    else:
        loader = monai_loader(data, args.batch_size, args.workers, pin=cuda)
    amp_dtype = torch.float16 if "fp16" in levers else torch.bfloat16
    if "graphed" in levers:
        stepped = capture_training_graphs(stepped, "network", loader, amp=fast and cuda, amp_dtype=amp_dtype)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        epoch_length=steps,
        network=stepped,
        optimizer=torch.optim.AdamW(stepped.parameters(), lr=1e-3, fused=cuda and "fused" in levers),
        loss_function=DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True, batch=True)),
        amp=fast and cuda,
        amp_kwargs={"dtype": amp_dtype},
        compile=compile_mode is not None,
        compile_kwargs=None if compile_mode is None else compile_kwargs(compile_mode),
        decollate=False,
        optim_set_to_none=True,
        iteration_update=step_graphs("step" if "stepgraph" in levers else None, stepped),
    )
    without_loss_scaling(trainer)  # bf16 only: float16 keeps MONAI's GradScaler
    WeightAverage(net, 0.99 if "ema" in levers else None).attach(trainer)
    torch.backends.cudnn.deterministic = "deterministic" in levers
    marks = {}

    def mark(name):
        def handler(_):
            if cuda:
                torch.cuda.synchronize()
            marks[name] = time.perf_counter()

        return handler

    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=args.warmup), mark("start"))
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=timed_end), mark("end"))
    profiler = step_profiler(trainer, timed_end, args.profile_steps, cuda) if profiled else None
    if profiler is None:
        trainer.run()
    else:
        with profiler:
            trainer.run()
    step_seconds = (marks["end"] - marks["start"]) / args.steps
    images_per_s = args.batch_size / step_seconds
    profile = {}
    if profiler is not None:
        profile = {"profile": summarise(profiler, args.profile_steps - 1, step_seconds)}
        path = (args.out_dir or RESULTS) / f"{args.name}_profile_{variant}_{device_tag()}.txt"
        kernels = kernel_table(profiler, profile["profile"]["clock"])
        write_text_atomic(path, f"{variant}, batch {args.batch_size}\n{kernels}\n")
        print("wrote", path)
    return {
        "variant": variant,
        "images_per_s": round(images_per_s, 1),
        "amp_bf16": fast and cuda and "fp16" not in levers,
        "channels_last": channels_last,
        **{lever: lever in levers for lever in LEVERS},
        "fused": cuda and "fused" in levers,  # torch's fused AdamW is for CUDA tensors
        **profile,
    }


def step_profiler(trainer, skip: int, steps: int, cuda: bool) -> torch.profiler.profile:
    """A profiler that records nothing for the first ``skip`` steps (the timed ones), warms up on one and
    records the remaining ``steps - 1``."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    schedule = torch.profiler.schedule(wait=skip, warmup=1, active=steps - 1, repeat=1)
    profiler = torch.profiler.profile(activities=activities, schedule=schedule)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: profiler.step())
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the monai variant")
    parser.add_argument("--variants", default="monai,fast", help="comma-separated, e.g. monai,fast,fast-fused")
    parser.add_argument("--profile", default="", help="profile these variants (comma-separated, among --variants)")
    parser.add_argument("--profile-steps", type=int, default=6, help="steps recorded by --profile (one warms up)")
    parser.add_argument("--name", default="train_throughput", help="result files: NAME_<device>.json, NAME_profile_...")
    parser.add_argument("--out-dir", type=Path, help="write the result here (default: benchmarks/results)")
    args = parser.parse_args()
    args.profile = [variant for variant in args.profile.split(",") if variant]
    if not set(args.profile) <= set(args.variants.split(",")):
        parser.error(f"--profile {','.join(args.profile)}: not all among --variants {args.variants}")
    if args.profile_steps < 2:
        parser.error("--profile-steps: at least 2 (one warms the profiler up)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    data = prepare_finetune_data(args.dataset_dir, args.dataset_format, image_size=args.image_size)
    rows = []
    for variant in args.variants.split(","):
        parse_variant(variant)  # all names checked before anything runs
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "variants"}
    for variant in args.variants.split(","):
        try:
            rows.append(measure(variant, data, args, device))
            print(f"{variant}: {rows[-1]['images_per_s']} images/s", flush=True)
        except Exception as error:  # a lever that fails on this machine is recorded; the others still run
            rows.append({"variant": variant, "images_per_s": None, "error": f"{type(error).__name__}: {error}"[:500]})
            print(f"{variant}: failed: {rows[-1]['error']}", flush=True)
        for reference in ("monai", "fast"):
            base = next((r["images_per_s"] for r in rows if r["variant"] == reference), None)
            for row in rows:
                measured = base and row["images_per_s"]
                row[f"ratio_to_{reference}"] = round(row["images_per_s"] / base, 2) if measured else None
        path = write_result(args.name, {"settings": settings, "results": rows}, args.out_dir)  # so far
    columns = ["variant", "images_per_s", "ratio_to_monai", "ratio_to_fast", "amp_bf16", "channels_last", *LEVERS]
    print(table(rows, columns))
    print("wrote", path)


if __name__ == "__main__":
    main()
