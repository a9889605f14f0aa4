"""Where a fine-tuning run's seconds before steady training go, measured in one fresh process.

Parts, in the order a run meets them: importing torch and MONAI; reading the slice cache, xz-compressed
(what is carried to a GPU machine) and uncompressed (``cardioseg data cache CACHE --compression none``);
then the network's first training steps (forward and backward, bf16 autocast and channels_last on CUDA),
first with cuDNN's heuristic kernel choice, whose first step loads the CUDA libraries, and then with
``cudnn.benchmark`` (the bundle's default), whose first step autotunes every convolution. A step is timed
to the device's synchronisation. Time to accuracy (``benchmarks.time_to_accuracy``) reports the total of
these as "before the first step" and "the first epoch's training"; this says which part is which.

    python -m benchmarks.startup --cache acdc256.xz --plain acdc256.npz --encoder resnet50 --batch-size 64
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from statistics import median


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args)
    return round(time.perf_counter() - start, 3), value


def step_seconds(net, batch, steps: int, benchmark: bool) -> list[float]:
    """Seconds of each of ``steps`` training steps (forward, loss, backward) with cudnn.benchmark as given."""
    import torch

    torch.backends.cudnn.benchmark = benchmark
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="an xz slice cache")
    parser.add_argument("--plain", type=Path, required=True, help="the same cache written with --compression none")
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="steps timed with each cuDNN setting")
    parser.add_argument("--out-dir", type=Path, help="write the result here (default: benchmarks/results)")
    args = parser.parse_args()

    parts = {}
    parts["import torch"], torch = timed(__import__, "torch")
    parts["import monai"], _ = timed(__import__, "monai")
    from benchmarks.common import table, write_result
    from cardioseg.data.cache import load_cache
    from cardioseg.nets import build_unet

    for compression, path in (("xz", args.cache), ("none", args.plain)):
        parts[f"load_cache ({compression}, {path.stat().st_size / 1e6:.0f} MB)"], slices = timed(load_cache, path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    parts["build the network"], net = timed(lambda: build_unet(args.encoder).to(device, memory_format=memory_format))
    images = torch.from_numpy(slices.images[: args.batch_size, None]).to(device, memory_format=memory_format)
    steps = {}
    for benchmark in (False, True):  # heuristic choice first: its first step alone loads the libraries
        times = step_seconds(net, images, args.steps, benchmark)
        steps[f"cudnn.benchmark {benchmark}"] = {"first": times[0], "later_median": median(times[1:]), "all": times}
    rows = [{"part": name, "seconds": value} for name, value in parts.items()]
    rows += [{"part": f"first step, {k}", "seconds": v["first"]} for k, v in steps.items()]
    rows += [{"part": f"later step, {k}", "seconds": v["later_median"]} for k, v in steps.items()]
    print(table(rows, ["part", "seconds"]))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print("wrote", write_result("startup", {"settings": settings, "parts": parts, "steps": steps}, args.out_dir))


if __name__ == "__main__":
    main()
