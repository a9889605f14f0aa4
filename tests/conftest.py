"""Shared fixtures: a small phantom cohort made once per session, and the real ACDC data when present."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

# MONAI imports every installed submodule, the Deploy SDK's holoscan among them, and holoscan warns on import
# when the stack limit is under 32 MiB (its recommendation, also for running apps). Raised here, before any
# import of monai, so that this process and every command the tests start (which inherit it) stay quiet.
_HOLOSCAN_STACK = 32 * 1024 * 1024
_soft, _hard = resource.getrlimit(resource.RLIMIT_STACK)
if (
    _soft != resource.RLIM_INFINITY
    and _soft < _HOLOSCAN_STACK
    and (_hard == resource.RLIM_INFINITY or _hard >= _HOLOSCAN_STACK)
):
    resource.setrlimit(resource.RLIMIT_STACK, (_HOLOSCAN_STACK, _hard))

REPO = Path(__file__).resolve().parents[1]
ACDC_SSL4MIS = REPO.parent / "shared" / "data" / "acdc_ssl4mis"
CIFAR10_SUBSET = REPO.parent / "shared" / "data" / "cifar10_subset"


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """Three phantom patients in the raw ACDC layout, with DICOM under ``dicom/``."""
    from cardioseg.data.phantom import write_cohort

    out = tmp_path_factory.mktemp("phantom") / "cohort"
    write_cohort(out, n_patients=3, seed=0)
    return out


@pytest.fixture(scope="session")
def acdc_ssl4mis() -> Path:
    if not (ACDC_SSL4MIS / "volumes").is_dir():
        pytest.skip(f"real ACDC data not found at {ACDC_SSL4MIS} (needs ../shared/data beside the checkout)")
    return ACDC_SSL4MIS


@pytest.fixture(scope="session")
def cifar10_subset() -> Path:
    if not (CIFAR10_SUBSET / "train").is_dir():
        pytest.skip(f"natural-image subset not found at {CIFAR10_SUBSET}")
    return CIFAR10_SUBSET
