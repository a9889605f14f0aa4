"""Fine-tuning pieces the MONAI bundle wires together: device-resident data, batched augmentation, logs.

The submodules are imported here so a bundle config can reach them all after ``import cardioseg.training``.
"""

__all__ = [
    "augment",
    "averaging",
    "checkpointing",
    "convergence",
    "cuda_graphs",
    "data",
    "deep_supervision",
    "freezing",
    "loaders",
    "settings",
    "workflow",
]

from . import (
    augment,
    averaging,
    checkpointing,
    convergence,
    cuda_graphs,
    data,
    deep_supervision,
    freezing,
    loaders,
    settings,
    workflow,
)
