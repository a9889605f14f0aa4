"""Label conventions. cardioseg uses ACDC's everywhere; others are mapped at the boundary."""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("background", "RV", "MYO", "LV")
FOREGROUND = {1: "RV", 2: "MYO", 3: "LV"}
NUM_CLASSES = 4

# MONAI model zoo's ventricular_short_axis_3label bundle: 1 LV pool, 2 MYO, 3 RV pool.
# Swapping 1 and 3 is its own inverse, so one table maps both ways.
MONAI_ZOO_TO_ACDC = ACDC_TO_MONAI_ZOO = np.array([0, 3, 2, 1], dtype=np.uint8)


def remap(label: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map label values through a lookup table (e.g. ``MONAI_ZOO_TO_ACDC``)."""
    return table[label]
