"""Where a training step's time goes: torch.profiler's per-kernel table, summed into kinds of work.

``train_throughput --profile VARIANT`` records a few steps after the timed ones and writes the table
(``<name>_profile_<device>.txt``) and this summary into its JSON. On CUDA the rows are GPU kernels
(their own time on the device); on a CPU, operators' self time. The kinds are matched on kernel and
operator names, so "other" is shown rather than guessed.
"""

from __future__ import annotations

import re

import torch
from torch.autograd import DeviceType

# First match wins: cuDNN names its batch-norm kernels cudnn::bn_*, and its convolution kernels
# fprop/dgrad/wgrad/implicit-GEMM, so batch norm is tested first and convolutions before plain matrix multiplies.
KINDS = (
    ("batch norm", r"batch_norm|batchnorm|\bbn_|welford"),
    ("convolution", r"conv(?!ert)|fprop|dgrad|wgrad|implicit|xmma|winograd|cudnn"),
    ("matrix multiply", r"gemm|cutlass|matmul|addmm|\bmm\b"),
    ("optimizer", r"adam|multi_tensor|foreach|_fused"),
    ("augmentation (grid sample)", r"grid_sampler|affine_grid"),
    ("upsampling", r"upsample|interpolate"),
    ("softmax and loss", r"softmax|nll|cross_entropy|one_hot|scatter"),
    ("layout and copies", r"copy|transpose|nchw|nhwc|memcpy|memset|cat|contiguous"),
    ("reductions", r"reduce|sum|mean|norm"),
    ("elementwise", r"elementwise|vectorized|relu|add|mul|div|sub|where|clamp|fill|pow|sqrt|lerp"),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, lowered)), "other")


def timed_rows(profiler: torch.profiler.profile) -> tuple[list, str]:
    """The rows that carry time and which clock: device kernels where there are any, else CPU operators."""
    averages = profiler.key_averages()
    kernels = [  # a user annotation (ProfilerStep*, Optimizer.step#...) spans kernels: counting it counts them twice
        row
        for row in averages
        if row.device_type != DeviceType.CPU and row.self_device_time_total > 0 and not row.is_user_annotation
    ]
    if kernels:
        return [(row.key, row.self_device_time_total, row.count) for row in kernels], "device"
    return [(row.key, row.self_cpu_time_total, row.count) for row in averages if row.self_cpu_time_total > 0], "cpu"


def summarise(profiler: torch.profiler.profile, steps: int, step_seconds: float) -> dict:
    """Milliseconds per step by kind of work, the top kernels, and how busy the device was in a step
    (its kernels' time over the step's timed wall-clock time: well under 1 means the host or launches
    hold the GPU back, near 1 means the kernels themselves are the limit)."""
    rows, clock = timed_rows(profiler)
    total_us = sum(us for _, us, _ in rows)
    by_kind: dict[str, float] = {}
    for name, us, _ in rows:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + us
    per_step_ms = {kind: round(us / steps / 1000, 3) for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1])}
    top = sorted(rows, key=lambda row: -row[1])[:25]
    busy_ms = total_us / steps / 1000
    return {
        "clock": clock,
        "profiled_steps": steps,
        "timed_step_ms": round(step_seconds * 1000, 3),
        "busy_ms_per_step": round(busy_ms, 3),
        "busy_fraction": round(busy_ms / (step_seconds * 1000), 3) if clock == "device" else None,
        "ms_per_step_by_kind": per_step_ms,
        "share_by_kind": {kind: round(ms / busy_ms, 3) for kind, ms in per_step_ms.items()},
        "top": [
            {"name": name[:160], "kind": kind_of(name), "ms_per_step": round(us / steps / 1000, 3), "calls": n}
            for name, us, n in top
        ],
    }


def kernel_table(profiler: torch.profiler.profile, clock: str) -> str:
    """torch's own table, sorted by the clock the summary used."""
    sort_by = "self_device_time_total" if clock == "device" else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=60, max_name_column_width=90)
