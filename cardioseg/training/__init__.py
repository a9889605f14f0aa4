"""Fine-tuning pieces the MONAI bundle wires together: device-resident data, batched augmentation, logs.

The submodules are imported here so a bundle config can reach them all after ``import cardioseg.training``.
"""

from . import augment, averaging, checkpointing, convergence, data, loaders, settings, workflow  # noqa: F401
