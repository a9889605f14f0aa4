"""Where a training step's memory traffic goes: bytes each kind of operator reads and writes, per image.

The eager profile of the H200 step (``train_throughput --profile``) gives each kind of operator's
milliseconds; dividing the bytes counted here by them gives the bandwidth each kind reaches, so it says
which kernels are slow for the work they do and which are at the memory's limit. It also models the
compiled step and the floor no compiler can go below (``PASSES_OVER_BATCH_NORM_INPUT``): the convolutions'
own traffic plus the passes batch norm's statistics need, everything else (normalising, ReLU, the adds,
casts, upsampling, concatenation) folded into the convolutions' reads and writes.

Counted by a ``TorchDispatchMode`` over one step (forward, the bundle's Dice + cross-entropy loss,
backward, fused AdamW) with bf16 autocast, as the GPU runs it: every tensor an operator reads or writes,
at its dtype's size, views excluded. Run at two batch sizes, which splits each kind's bytes into a part
per image and a part per step (weights, their gradients, the optimizer). The count is the same on any
machine, so it runs on the CPU. Then the network compiled by Inductor, by Inductor's own count of what
its kernels read and write: the compiled step's traffic without a model (``--no-compiled`` skips it).

    python -m benchmarks.step_traffic --encoder resnet50 --image-size 256 --batch-size 64
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import torch
from monai.losses import DiceCELoss
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from benchmarks.common import NARROW_DECODER, table, write_result
from cardioseg.nets import build_unet

# The kinds of the eager profile's table in benchmarks/README.md ("Where the step's time goes"), each the
# aten operator names it holds; the first that matches names an operator, "rest" (concatenation, pooling,
# the loss) takes the others.
KINDS = {
    "optimizer": ("_fused_adam", "_foreach"),
    "convolution": ("convolution",),
    "batch_norm": ("batch_norm",),
    "relu_add": ("relu", "clamp_min", "threshold_backward", "add"),
    "upsampling": ("upsample",),
    "casts_copies": ("_to_copy", "copy_", "clone"),
}
NO_TRAFFIC = ("empty", "new_empty")  # allocate without touching memory
# Two models of a fused step: the convolutions' traffic as counted, plus passes over tensors the size of
# batch norm's input. Compiled (Inductor: the convolutions stay cuDNN's, batch norm, ReLU and the adds
# become kernels of their own between them): forward, a statistics read and a read and write to
# normalise; backward, the reductions read the gradient and the input, then the gradient is read, the
# input read and the input's gradient written. The floor: only what must cross memory beyond the
# convolutions: the statistics read forward and the reductions' two reads backward.
PASSES_OVER_BATCH_NORM_INPUT = {
    "compiled model (convolutions + 8 passes over batch norm's input)": 8,
    "floor (convolutions + 3 passes: all else fused into them)": 3,
}


def kind_of(name: str) -> str:
    return next((kind for kind, parts in KINDS.items() if any(part in name for part in parts)), "rest")


class TrafficCounter(TorchDispatchMode):
    """Bytes read (tensor arguments) and written (tensor results) by each kind of operator."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: Counter[str] = Counter()
        self.batch_norm_input: int = 0  # bytes of batch norm's input (forward): its statistics read it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__
        if func.is_view or name.startswith(NO_TRAFFIC):
            return out
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        self.bytes[kind_of(name)] += sum(t.numel() * t.element_size() for t in tensors)
        if "batch_norm" in name and "backward" not in name:
            self.batch_norm_input += args[0].numel() * args[0].element_size()
        return out


def training_setup(encoder: str, decoder_channels, image_size: int, batch_size: int) -> tuple:
    """The network (train mode), the bundle's loss and a random batch of images and labels: what both counts
    run."""
    torch.manual_seed(0)
    network = build_unet(encoder, decoder_channels=decoder_channels).train()
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    image = torch.randn(batch_size, 1, image_size, image_size)
    label = torch.randint(0, 4, (batch_size, 1, image_size, image_size)).float()
    return network, loss_function, image, label


def count_step(encoder: str, decoder_channels, image_size: int, batch_size: int) -> dict:
    """Bytes by kind of one training step at ``batch_size`` (the second: the first makes the optimizer's
    state), and batch norm's input bytes."""
    network, loss_function, image, label = training_setup(encoder, decoder_channels, image_size, batch_size)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = network(image)
        loss_function(logits.float(), label).backward()
        optimizer.step()

    step()
    with TrafficCounter() as counter:
        step()
    return {**counter.bytes, "batch_norm_input": counter.batch_norm_input}


@dataclass(frozen=True)
class CompiledKernel:
    """One node of Inductor's schedule: a kernel it generated or a library call (a cuDNN convolution), with
    the bytes it reads and writes of each buffer and the aten operators fused into it."""

    kind: str  # convolution, other_library_calls, inductor_kernels_forward or inductor_kernels_backward
    bytes: int  # Inductor's count: each buffer once, read or written
    reads: dict[str, int]
    writes: dict[str, int]
    operators: tuple[str, ...]


def kernel_of(node, backward: bool) -> CompiledKernel:
    """The record of one scheduler node; only while Inductor's graph is being compiled can it say its sizes."""
    from torch._inductor.scheduler import ExternKernelSchedulerNode

    if not isinstance(node, ExternKernelSchedulerNode):
        kind = f"inductor_kernels_{'backward' if backward else 'forward'}"
    elif "convolution" in str(getattr(node.node, "op_overload", "")):
        kind = "convolution"
    else:
        kind = "other_library_calls"
    operators = {  # "aten.add.Tensor" -> "add"
        name.split(".")[1] if name.count(".") >= 2 else name
        for part in node.get_nodes()
        for name in (str(origin.target) for origin in getattr(part.node, "origins", ()))
    }
    return CompiledKernel(
        kind=kind,
        bytes=node.get_read_write_buffers_sizes(),
        reads=node.get_read_write_buffer_accesses(include_reads=True, include_writes=False),
        writes=node.get_read_write_buffer_accesses(include_reads=False, include_writes=True),
        operators=tuple(sorted(operators)),
    )


def compiled_kernels(
    network: torch.nn.Module, loss_function, image, label, inductor_settings: dict | None = None
) -> list[CompiledKernel]:
    """Every node Inductor schedules for one forward and backward of ``network`` compiled (as
    ``train_throughput``'s ``-compile`` levers compile it: the network alone), under ``inductor_settings``
    (``torch._inductor.config`` values). The bytes are Inductor's own count (``GraphLowering.count_bytes``:
    each buffer once per kernel, the best a kernel can do). On the CPU this is Inductor's CPU backend, whose
    fusion may differ from Triton's on a GPU."""
    import logging
    from unittest import mock

    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config
    from torch._inductor.compile_fx import inductor_metrics_log
    from torch._inductor.graph import GraphLowering

    torch._dynamo.reset()
    kernels: list[CompiledKernel] = []
    backward = False
    count_bytes = GraphLowering.count_bytes

    def recording_count_bytes(graph: GraphLowering):
        kernels.extend(kernel_of(node, backward) for node in graph.scheduler.nodes)
        return count_bytes(graph)

    compiled = torch.compile(network)
    # Inductor counts bytes only with its metrics log on (silenced here) and only when it compiles, not
    # when it reads a graph from its caches.
    level, propagate = inductor_metrics_log.level, inductor_metrics_log.propagate
    inductor_metrics_log.setLevel(logging.INFO)
    inductor_metrics_log.propagate = False
    try:
        with (
            mock.patch.object(GraphLowering, "count_bytes", recording_count_bytes),
            inductor_config.patch(fx_graph_cache=False, **(inductor_settings or {})),
            functorch_config.patch(enable_autograd_cache=False),
        ):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = compiled(image)
            backward = True  # the backward graph compiles at the backward
            loss_function(logits.float(), label).backward()
    finally:
        inductor_metrics_log.setLevel(level)
        inductor_metrics_log.propagate = propagate
    return kernels


def count_compiled_network(encoder: str, decoder_channels, image_size: int, batch_size: int) -> dict:
    """Bytes of one forward and backward of the network compiled by Inductor, split into cuDNN's
    convolutions, Inductor's generated kernels (forward and backward) and other library calls."""
    counts: Counter[str] = Counter()
    for kernel in compiled_kernels(*training_setup(encoder, decoder_channels, image_size, batch_size)):
        counts[kernel.kind] += kernel.bytes
    return dict(counts)


def per_image_and_step(counts: dict[int, dict]) -> dict[str, tuple[float, float]]:
    """Each key's bytes as (per image, per step), from the counts at two batch sizes (linear in the batch)."""
    (small, at_small), (large, at_large) = sorted(counts.items())
    split = {}
    for key in at_large:
        per_image = (at_large[key] - at_small.get(key, 0)) / (large - small)
        split[key] = (per_image, at_large[key] - per_image * large)
    return split


def traffic(
    encoder: str, decoder_channels, image_size: int, batch_size: int, bandwidth_tbs: float, compiled: bool
) -> list[dict]:
    """Rows by kind: MB per image, MB per step, GB per step at ``batch_size`` and milliseconds at
    ``bandwidth_tbs``; then the eager total, the two models, and (``compiled``) Inductor's own count."""
    split = per_image_and_step({b: count_step(encoder, decoder_channels, image_size, b) for b in (1, 2)})

    def row(kind: str, per_image: float, per_step: float) -> dict:
        step_bytes = per_image * batch_size + per_step
        return {
            "kind": kind,
            "mb_per_image": round(per_image / 1e6, 1),
            "mb_per_step": round(per_step / 1e6, 1),
            "gb_per_step": round(step_bytes / 1e9, 2),
            "ms_at_bandwidth": round(step_bytes / (bandwidth_tbs * 1e12) * 1e3, 2),
        }

    kinds = [*KINDS, "rest"]
    rows = [row(kind, *split.get(kind, (0.0, 0.0))) for kind in kinds]
    total = [sum(split.get(kind, (0.0, 0.0))[i] for kind in kinds) for i in (0, 1)]
    rows.append(row("total (eager: every operator reads and writes memory)", *total))
    for name, passes in PASSES_OVER_BATCH_NORM_INPUT.items():
        rows.append(row(name, *(split["convolution"][i] + passes * split["batch_norm_input"][i] for i in (0, 1))))
    if compiled:
        counts = {b: count_compiled_network(encoder, decoder_channels, image_size, b) for b in (1, 2)}
        for kind, (per_image, per_step) in per_image_and_step(counts).items():
            rows.append(row(f"compiled network: {kind.replace('_', ' ')}", per_image, per_step))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="the step the GB and ms are for")
    parser.add_argument("--bandwidth-tbs", type=float, default=4.8, help="memory bandwidth, TB/s (H200: 4.8)")
    parser.add_argument(
        "--compiled",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also Inductor's count of the compiled network (four compilations: minutes each on a CPU)",
    )
    args = parser.parse_args()
    results = {}
    for name, channels in {"default": None, "narrow": NARROW_DECODER}.items():
        rows = traffic(args.encoder, channels, args.image_size, args.batch_size, args.bandwidth_tbs, args.compiled)
        print(f"\ndecoder {name}, batch {args.batch_size}, {args.bandwidth_tbs} TB/s")
        print(table(rows, ["kind", "mb_per_image", "mb_per_step", "gb_per_step", "ms_at_bandwidth"]))
        results[name] = rows
    print("wrote", write_result("step_traffic", {"settings": vars(args), "results": results}))


if __name__ == "__main__":
    main()
