"""Which of Inductor's kernels move the compiled training step's bytes, and whether its settings move fewer.

``step_traffic`` counts Inductor's kernels of the compiled network at 2x the model's bytes in the backward.
This lists the backward's largest kernels with how many buffers they read, and counts the network again
under other Inductor settings or one network change, each against the default in the same run. Like
``step_traffic`` it runs on the CPU: Inductor's count of a kernel's reads and writes does not depend on the
machine, but its fusion does in part. Inductor decides which intermediates to write to memory with
thresholds of its own for CPU code; ``gpu-realize`` counts with those for GPU code instead.

    python -m benchmarks.inductor_traffic --encoder resnet50 --image-size 256 \\
        --variants default,gpu-realize,realize_reads_threshold=2,relu-mask-from-input+realize_reads_threshold=6

A variant is ``default`` or settings joined by ``+``:
- ``NAME=INTEGER`` sets ``torch._inductor.config.NAME`` (Inductor writes a reused intermediate to memory,
  rather than computing it again in each kernel that uses it, when it reads more than
  ``realize_reads_threshold`` buffers, 4 by default);
- ``relu-mask-from-input``: every ReLU's backward masks by its input (``ReLUMaskedByInput``);
- ``gpu-realize``: the thresholds of GPU code (``GPU_REALIZE``).
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch._inductor import config as inductor_config

from benchmarks.common import table, write_result
from benchmarks.step_traffic import CompiledKernel, compiled_kernels, per_image_and_step, training_setup

PARTS = ("inductor_kernels_forward", "inductor_kernels_backward")
# Inductor's thresholds for writing an intermediate to memory in GPU code, in place of the CPU's
# (torch._inductor.ir: the CPU has higher ones, and a rule of its own for intermediates of more than
# realize_opusers_threshold users, switched off here).
GPU_REALIZE = {
    "realize_opcount_threshold": inductor_config._realize_opcount_threshold_default,
    "realize_acc_reads_threshold": inductor_config._realize_acc_reads_threshold_default,
    "realize_opusers_threshold": 2**31 - 1,
}
# Two batch sizes split bytes per image from bytes per step; at batch 1 Inductor schedules other kernels.
BATCHES = (2, 4)


class ReLUMaskedByInput(torch.autograd.Function):
    """ReLU whose backward masks the gradient by its input, not by its output as torch's does.

    Inductor's batch-norm backward fused with ReLU's reads the saved ReLU output for the mask besides batch
    norm's input and the gradient: 7 passes over batch norm's input where 5 would do (one conv, batch norm,
    ReLU, conv block). Masking by the input, which Inductor can compute again from batch norm's input, is
    the change to measure. No library offers a ReLU with this backward, hence by hand; only this benchmark
    uses it.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.where(x > 0, gradient, 0)


class ReLUMaskedByInputModule(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ReLUMaskedByInput.apply(x)


def mask_relus_by_input(network: torch.nn.Module) -> None:
    """Put ``ReLUMaskedByInputModule`` in place of every ``nn.ReLU`` of ``network`` (encoder and decoder)."""
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, ReLUMaskedByInputModule())


def parse_variant(variant: str) -> tuple[dict, bool]:
    """A variant's Inductor settings and whether its ReLUs mask by their input."""
    settings, relu_by_input = {}, False
    for part in variant.split("+"):
        if part == "relu-mask-from-input":
            relu_by_input = True
        elif part == "gpu-realize":
            settings.update(GPU_REALIZE)
        elif "=" in part and part.split("=", 1)[1].lstrip("-").isdigit():
            name, value = part.split("=", 1)
            if name not in inductor_config.get_config_copy():
                raise SystemExit(f"--variants: {name!r} is not a setting of torch._inductor.config")
            settings[name] = int(value)
        elif part != "default":
            raise SystemExit(
                f"--variants: {part!r} is none of default, relu-mask-from-input, gpu-realize, NAME=INTEGER"
            )
    return settings, relu_by_input


def kernels_of(variant: str, encoder: str, image_size: int, batch_size: int) -> list[CompiledKernel]:
    settings, relu_by_input = parse_variant(variant)
    network, loss_function, image, label = training_setup(encoder, None, image_size, batch_size)
    if relu_by_input:
        mask_relus_by_input(network)
    return compiled_kernels(network, loss_function, image, label, settings)


def totals(kernels: list[CompiledKernel]) -> dict[str, int]:
    """Bytes read and written by Inductor's forward and backward kernels."""
    counts: Counter[str] = Counter()
    for kernel in kernels:
        if kernel.kind in PARTS:
            part = kernel.kind.removeprefix("inductor_kernels_")
            counts[f"{part}_reads"] += sum(kernel.reads.values())
            counts[f"{part}_writes"] += sum(kernel.writes.values())
    return dict(counts)


def backward_pairs(by_batch: dict[int, list[CompiledKernel]]) -> list[tuple[CompiledKernel, CompiledKernel]]:
    """The backward's kernels at the two batch sizes, paired by position: Inductor schedules as many
    kernels of each kind at both, though a small operator may join another kernel (buffer names shift too,
    so bytes pair by kernel, not by buffer)."""
    small, large = (by_batch[b] for b in BATCHES)
    if [k.kind for k in small] != [k.kind for k in large]:
        raise SystemExit(f"Inductor scheduled other kernels at batch {BATCHES[0]} than at {BATCHES[1]}")
    return [(a, b) for a, b in zip(small, large) if b.kind == "inductor_kernels_backward"]


def largest_backward_kernels(by_batch: dict[int, list[CompiledKernel]], count: int) -> list[dict]:
    """The ``count`` backward kernels that move the most bytes per image, with what they read."""
    step = BATCHES[1] - BATCHES[0]
    pairs = [((large.bytes - small.bytes) / step, small, large) for small, large in backward_pairs(by_batch)]

    def mb_per_image(small: dict, large: dict) -> float:
        return round((sum(large.values()) - sum(small.values())) / step / 1e6, 2)

    return [
        {
            "mb_per_image": round(per_image / 1e6, 2),
            "mb_read": mb_per_image(small.reads, kernel.reads),
            "mb_written": mb_per_image(small.writes, kernel.writes),
            "buffers_read": len(kernel.reads),
            "buffers_written": len(kernel.writes),
            "reduction": "sum" in kernel.operators or "var_mean" in kernel.operators,
            "operators": "+".join(op for op in kernel.operators if op not in ("convert_element_type", "view")),
        }
        for per_image, small, kernel in sorted(pairs, key=lambda pair: -pair[0])[:count]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--variants", default="default,realize_reads_threshold=2", help="the first is the base")
    parser.add_argument("--kernels", type=int, default=12, help="how many of the base's backward kernels to list")
    args = parser.parse_args()
    variants = args.variants.split(",")
    for variant in variants:
        parse_variant(variant)  # a bad variant stops the run before minutes of compiling

    rows, largest = [], []
    for variant in variants:
        by_batch = {b: kernels_of(variant, args.encoder, args.image_size, b) for b in BATCHES}
        per_image = {k: v[0] for k, v in per_image_and_step({b: totals(k) for b, k in by_batch.items()}).items()}
        row = {"variant": variant, **{k: round(v / 1e6, 1) for k, v in sorted(per_image.items())}}
        row["total"] = round(sum(per_image.values()) / 1e6, 1)
        rows.append(row)
        if not largest:
            largest = largest_backward_kernels(by_batch, args.kernels)
        print(f"{variant}: {row}", flush=True)
    base = rows[0]["total"]
    for row in rows:
        row["ratio_to_base"] = round(row["total"] / base, 3)

    columns = ["variant", "forward_reads", "forward_writes", "backward_reads", "backward_writes", "total"]
    print(f"\nInductor's kernels, MB per image ({args.encoder}, {args.image_size} px)")
    print(table(rows, [*columns, "ratio_to_base"]))
    print(f"\nthe backward kernels of {variants[0]} that move the most bytes per image")
    print(table(largest, list(largest[0])))
    result = {"settings": vars(args), "results": rows, "largest_backward_kernels": largest}
    print("wrote", write_result("inductor_traffic", result))


if __name__ == "__main__":
    main()
