"""CUDA graphs of training, captured once before the first step: of the network, or of the whole step.

At batch 32 the eager step of a ResNet-50 U-Net is bound by the host launching its kernels: on an H200
an epoch of 128 px windows took as long as one of whole slices. ``torch.compile``'s ``cudagraphs``
backend replays the network as graphs (1.69x faster epochs there), but first traces it with Dynamo and
AOT autograd (its first epoch took 8.6 s longer than an eager one), and the loss, the optimiser and the
engine's own work stay on the host: an epoch of windows still took 24 ms a step, several times the GPU's
share. The bundle's ``cuda_graphs`` setting captures without tracing, in one of two scopes:

- ``"network"``: ``torch.cuda.make_graphed_callables`` replays the network's training forward and
  backward; the loss and the optimiser run eagerly, as MONAI's trainer runs them.
- ``"step"``: ``GraphedTrainStep``, MONAI's ``SupervisedTrainer`` iteration as one graph: forward, loss,
  backward and the optimiser's update (PyTorch's "whole network capture"). What stays on the host is the
  batch's augmentation, two copies into the graph's inputs, one replay and the engine's handlers.

Both are hand-written around torch's capture APIs: neither MONAI nor ignite captures a training step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from ignite.engine import Engine
from monai.utils import CommonKeys

from ..settings import SettingError, is_off

__all__ = ["GraphedTrainStep", "capture_training_graphs", "cuda_graphs_mode", "step_graphs"]

logger = logging.getLogger("cardioseg.training")

CUDA_GRAPH_SCOPES = ("network", "step")


def cuda_graphs_mode(value: Any) -> str | None:
    """The ``cuda_graphs`` setting: None (false, the default), "network" or "step"."""
    if isinstance(value, str) and value.strip().lower() in CUDA_GRAPH_SCOPES:
        return value.strip().lower()
    if is_off(value):
        return None
    raise SettingError("cuda_graphs", value, f"choose false, {' or '.join(CUDA_GRAPH_SCOPES)}")


def _on_cuda(module: torch.nn.Module, scope: str) -> bool:
    device = next(module.parameters()).device
    if device.type != "cuda":
        logger.warning("cuda_graphs %s: the network is on %s, not CUDA; it runs without graphs", scope, device)
    return device.type == "cuda"


def capture_training_graphs(
    module: torch.nn.Module,
    mode: Any,
    loader: Iterable[dict[str, torch.Tensor]],
    amp: bool,
    amp_dtype: torch.dtype = torch.bfloat16,
) -> torch.nn.Module:
    """``module`` with its training forward and backward replayed from CUDA graphs when ``mode`` is
    "network" on a CUDA device (otherwise ``module`` unchanged).

    The graphs are captured on the first batch of ``loader``, whose images have every training batch's
    shape, dtype and memory format (the training loaders yield only full batches). The capture runs under
    the autocast the trainer uses (``amp``, ``amp_dtype``), without autocast's weight cache, which graphs
    do not allow. What its warm-up steps move (batch-norm statistics) is put back, so the first real step
    starts where an eager run's would. In eval mode the module runs as it is.
    """
    if cuda_graphs_mode(mode) != "network" or not _on_cuda(module, "network"):
        return module
    sample = next(iter(loader))["image"]
    before = TrainingState(module)
    with torch.autocast("cuda", dtype=amp_dtype, enabled=amp, cache_enabled=False):
        graphed = torch.cuda.make_graphed_callables(module.train(), (sample,))
    before.restore()
    logger.info("cuda_graphs: training forward and backward captured for batches of %s", tuple(sample.shape))
    return graphed


def step_graphs(mode: Any, network: torch.nn.Module, warmup_steps: int = 3) -> GraphedTrainStep | None:
    """The trainer's ``iteration_update`` for ``cuda_graphs`` "step" on a CUDA device; None (MONAI's own
    iteration) otherwise."""
    if cuda_graphs_mode(mode) != "step" or not _on_cuda(network, "step"):
        return None
    return GraphedTrainStep(warmup_steps)


class TrainingState:
    """A copy of what warm-up steps before a capture change (the network's parameters and buffers, the
    optimiser's state if one is given), put back in place, into the same tensors, so that a graph that
    captured them still sees them.

    Optimiser state made after the copy (a fresh run's first steps) is zeroed: Adam's moments and step
    count start at zero."""

    def __init__(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None):
        self.network, self.optimizer = network, optimizer
        self.tensors = {name: value.detach().clone() for name, value in network.state_dict().items()}
        self.optimizer_state = {
            param: {key: value.clone() for key, value in state.items() if torch.is_tensor(value)}
            for param, state in ({} if optimizer is None else optimizer.state).items()
        }

    @torch.no_grad()
    def restore(self) -> None:
        for name, value in self.network.state_dict().items():
            value.copy_(self.tensors[name])
        for param, state in ({} if self.optimizer is None else self.optimizer.state).items():
            saved = self.optimizer_state.get(param)
            for key, value in state.items():
                if torch.is_tensor(value) and saved is not None:
                    value.copy_(saved[key])
                elif torch.is_tensor(value):
                    value.zero_()


def make_capturable(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Switch ``optimizer`` to updates a graph can replay: ``capturable`` (its step counts on the device)
    and a learning rate held in a device tensor, which a schedule then fills in place (a float would be
    frozen into the graph at its captured value)."""
    for group in optimizer.param_groups:
        group["capturable"] = True
        lr = group["lr"]
        if not (torch.is_tensor(lr) and lr.device == device):
            group["lr"] = torch.tensor(float(lr), device=device)


def check_graphable(engine: Engine) -> None:
    """What a replayed step cannot do, said before the capture."""
    scaler = getattr(engine, "scaler", None)
    if scaler is not None and scaler.is_enabled():
        raise SettingError("cuda_graphs", "step", "not with float16 loss scaling (it reads the step's overflow check)")
    if getattr(engine, "accumulation_steps", 1) != 1:
        raise SettingError("cuda_graphs", "step", "not with gradient accumulation")


class GraphedTrainStep:
    """MONAI's ``SupervisedTrainer`` iteration (forward under the trainer's autocast, loss, backward,
    optimiser step) replayed from one CUDA graph, as an ``iteration_update``.

    The first call captures it on that call's batch: ``warmup_steps`` steps on a side stream (cuDNN's
    choices, cuBLAS workspaces, the optimiser's state), then the capture; the parameters, buffers and
    optimiser state those steps moved are put back, so the first replay is the run's first step. Each
    later call copies its batch into the graph's input tensors and replays. The returned output holds the
    graph's own tensors, which the next step overwrites (the handlers read them within the iteration).
    MONAI's per-stage events (forward, loss, backward completed) do not fire: a replay has no stages.
    """

    def __init__(self, warmup_steps: int = 3):
        self.warmup_steps = warmup_steps
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, Any] = {}

    def step(self, engine: Engine) -> dict[str, Any]:
        """One training step on the input tensors, as MONAI's ``_iteration`` computes it (the body the
        graph holds)."""
        image, label = self.inputs[CommonKeys.IMAGE], self.inputs[CommonKeys.LABEL]
        autocast = {**engine.amp_kwargs, "enabled": engine.amp, "cache_enabled": False}  # no weight cache in graphs
        with torch.autocast(image.device.type, **autocast):
            pred = engine.inferer(image, engine.network)
            loss = engine.loss_function(pred, label).mean()
        loss.backward()
        engine.optimizer.step()
        return {CommonKeys.IMAGE: image, CommonKeys.LABEL: label, CommonKeys.PRED: pred, CommonKeys.LOSS: loss.detach()}

    def capture(self, engine: Engine, batch: dict[str, torch.Tensor]) -> None:
        check_graphable(engine)
        network, optimizer = engine.network.train(), engine.optimizer
        self.inputs = {key: batch[key].clone() for key in (CommonKeys.IMAGE, CommonKeys.LABEL)}
        device = self.inputs[CommonKeys.IMAGE].device
        make_capturable(optimizer, device)
        before = TrainingState(network, optimizer)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                optimizer.zero_grad(set_to_none=True)
                self.step(engine)
        torch.cuda.current_stream(device).wait_stream(side)
        optimizer.zero_grad(set_to_none=True)  # the graph's backward then writes the gradients, not adds
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = self.step(engine)
        before.restore()
        shape = tuple(self.inputs[CommonKeys.IMAGE].shape)
        logger.info("cuda_graphs: the training step captured for batches of %s", shape)

    def __call__(self, engine: Engine, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        if self.graph is None:
            self.capture(engine, batch)
        for key, static in self.inputs.items():
            if batch[key].shape != static.shape:
                shapes = f"{tuple(batch[key].shape)} after capturing {tuple(static.shape)}"
                raise ValueError(f"cuda_graphs step: a batch of {shapes}: every step's batch must match")
            static.copy_(batch[key])
        self.graph.replay()
        return self.outputs
