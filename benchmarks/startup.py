"""Where a fine-tuning run's seconds before steady training go, measured in fresh processes.

Parts, in the order a run meets them: importing torch and MONAI; reading the slice cache, xz-compressed
(what is carried to a GPU machine) and uncompressed (``cardioseg data cache CACHE --compression none``);
building the network; then its first training steps (forward and backward, bf16 autocast and
channels_last on CUDA), once with cuDNN's heuristic kernel choice and once with ``cudnn.benchmark`` (the
bundle's default unless ``deterministic``), each in a process of its own: torch caches the kernel chosen
for a convolution whichever way it was chosen, so a second setting in the same process would reuse the
first one's choices and autotune nothing. Each such process first runs one small step of another shape,
which loads the CUDA libraries (timed apart). A step is timed to the device's synchronisation. Time to
accuracy (``benchmarks.time_to_accuracy``) reports the total of these as "before the first step" and "the
first epoch's training"; this says which part is which. Before the steps, ``import monai`` again in a fresh
process under ``python -X importtime``, summed by top-level package: MONAI imports every optional package
it finds installed, so the machine's environment, not MONAI alone, decides that part.

    python -m benchmarks.startup --cache acdc256.xz --plain acdc256.npz --encoder resnet50 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import median


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return round(time.perf_counter() - start, 3), value


def step_seconds(net, batch, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, loss, backward)."""
    import torch

    cuda = batch.device.type == "cuda"
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = net(batch).float().square().mean()
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        times.append(round(time.perf_counter() - start, 3))
    return times


def first_steps(args: argparse.Namespace) -> dict:
    """In this (fresh) process: one small step that loads the CUDA libraries, then ``args.steps`` steps of
    the run's shape with ``cudnn.benchmark`` as ``args.first_steps`` says."""
    import torch

    from cardioseg.nets import build_unet

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    net = build_unet(args.encoder).to(device, memory_format=memory_format)

    def batch(n: int, size: int):
        return torch.randn(n, 1, size, size, device=device).contiguous(memory_format=memory_format)

    torch.backends.cudnn.benchmark = False
    libraries = step_seconds(net, batch(2, 64), 1)[0]
    torch.backends.cudnn.benchmark = args.first_steps == "benchmark"
    times = step_seconds(net, batch(args.batch_size, args.image_size), args.steps)
    return {"load_libraries": libraries, "first": times[0], "later_median": median(times[1:]), "all": times}


def in_fresh_process(args: argparse.Namespace, mode: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.startup", "--first-steps", mode, "--encoder", args.encoder]
    command += ["--batch-size", str(args.batch_size), "--image-size", str(args.image_size), "--steps", str(args.steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def import_breakdown(module: str = "monai", top: int = 12) -> dict:
    """Seconds of ``import module`` in a fresh process, and the ``top`` packages by their own import time
    (``-X importtime``'s self column, summed over each top-level package's modules)."""
    start = time.perf_counter()
    command = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
    done = subprocess.run(command, capture_output=True, text=True)
    wall = round(time.perf_counter() - start, 3)
    by_package: dict[str, int] = {}
    for line in done.stderr.splitlines():  # "import time: <self us> | <cumulative us> | <indented name>"
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        package = fields[2].strip().split(".")[0]
        by_package[package] = by_package.get(package, 0) + int(fields[0])
    ranked = sorted(by_package.items(), key=lambda item: -item[1])[:top]
    return {"seconds": wall, "packages": len(by_package), "top_self_seconds": {k: round(v / 1e6, 3) for k, v in ranked}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="an xz slice cache")
    parser.add_argument("--plain", type=Path, help="the same cache written with --compression none")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="steps timed with each cuDNN setting")
    parser.add_argument("--first-steps", choices=("heuristic", "benchmark"), help=argparse.SUPPRESS)  # the child
    parser.add_argument("--out-dir", type=Path, help="write the result here (default: benchmarks/results)")
    args = parser.parse_args()
    if args.first_steps:
        print(json.dumps(first_steps(args)))
        return
    if args.cache is None or args.plain is None:
        parser.error("--cache and --plain are required")

    parts, steps, imports = {}, {}, {}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}

    def measured(name: str, seconds: float) -> None:
        """Print and keep one part as soon as it is measured: a time limit that cuts the run keeps it."""
        parts[name] = seconds
        print(f"{name}: {seconds} s", flush=True)

    measured("import torch", timed(__import__, "torch")[0])
    measured("import monai", timed(__import__, "monai")[0])
    from benchmarks.common import table, write_result
    from cardioseg.data.cache import load_cache
    from cardioseg.nets import build_unet

    def save() -> None:
        result = {"settings": settings, "parts": parts, "steps": steps, "import_monai": imports}
        print("wrote", write_result("startup", result, args.out_dir), flush=True)

    for compression, path in (("xz", args.cache), ("none", args.plain)):
        measured(f"load_cache ({compression}, {path.stat().st_size / 1e6:.0f} MB)", timed(load_cache, path)[0])
    measured("build the network", timed(build_unet, args.encoder)[0])
    imports.update(import_breakdown())  # before the step processes: the largest part, and a limit may cut them
    print(f"import monai again, fresh process: {imports}", flush=True)
    save()
    for mode in ("heuristic", "benchmark"):
        steps[mode] = in_fresh_process(args, mode)
        print(f"{mode} process: {steps[mode]}", flush=True)
        save()
    rows = [{"part": name, "seconds": value} for name, value in parts.items()]
    for mode, times in steps.items():
        rows += [
            {"part": f"{mode} process: load the CUDA libraries", "seconds": times["load_libraries"]},
            {"part": f"{mode} process: first step", "seconds": times["first"]},
            {"part": f"{mode} process: later step", "seconds": times["later_median"]},
        ]
    rows.append({"part": "import monai again, fresh process (-X importtime)", "seconds": imports["seconds"]})
    rows += [{"part": f"  of which {name}", "seconds": sec} for name, sec in imports["top_self_seconds"].items()]
    print(table(rows, ["part", "seconds"]))
    save()


if __name__ == "__main__":
    main()
