"""CUDA graphs of the training network's forward and backward, captured once before the first step.

At batch 32 the eager step of a ResNet-50 U-Net is bound by the host launching its kernels: on an H200
an epoch of 128 px windows took as long as one of whole slices. ``torch.compile``'s ``cudagraphs``
backend replays the step as graphs (1.69x faster epochs there), but first traces the network with Dynamo
and AOT autograd: its first epoch took 8.6 s longer than an eager one, tracing and capturing.
``torch.cuda.make_graphed_callables`` captures the module as it is, with no tracing: a few warm-up steps
and one capture. The graphs serve training-mode calls with the captured batch shape; in eval mode the
module runs as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

__all__ = ["capture_training_graphs"]

logger = logging.getLogger("cardioseg.training")


def capture_training_graphs(
    module: torch.nn.Module,
    enabled: bool,
    loader: Iterable[dict[str, torch.Tensor]],
    amp: bool,
    amp_dtype: torch.dtype = torch.bfloat16,
) -> torch.nn.Module:
    """``module`` with its training forward and backward replayed from CUDA graphs when ``enabled`` on a
    CUDA device (on the CPU, or not enabled, ``module`` unchanged).

    The graphs are captured on the first batch of ``loader``, whose images have every training batch's
    shape, dtype and memory format (the training loaders yield only full batches). The capture runs under
    the autocast the trainer uses (``amp``, ``amp_dtype``), without autocast's weight cache, which graphs
    do not allow. The batch-norm statistics its warm-up steps move are put back, so the first real step
    starts where an eager run's would.
    """
    if not enabled:
        return module
    device = next(module.parameters()).device
    if device.type != "cuda":
        logger.warning("cuda_graphs: the network is on %s, not CUDA; it runs without graphs", device)
        return module
    sample = next(iter(loader))["image"]
    buffers = {name: buffer.clone() for name, buffer in module.named_buffers()}
    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp, cache_enabled=False):
        graphed = torch.cuda.make_graphed_callables(module.train(), (sample,))
    with torch.no_grad():
        for name, buffer in graphed.named_buffers():
            buffer.copy_(buffers[name])
    logger.info("cuda_graphs: training forward and backward captured for batches of %s", tuple(sample.shape))
    return graphed
