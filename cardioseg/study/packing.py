"""Several bundle runs on one machine at once: the study's runs are small, and one alone leaves a GPU idle.

A few-label fine-tuning run moves a few hundred images per epoch and spends much of its time starting,
validating and logging; run one after another, the device waits through all of that. Here each run is
its own ``python -m monai.bundle run training --args_file ARGS`` process (MONAI's way to hand a run many
settings with their JSON types), at most ``slots`` at a time, so runs share nothing but the device: each
keeps its own run folder, lock, resume and log, and gives the same result as when run alone (up to
floating point on the CPU, where the cores are split between the runs). A failed run does not stop the
others; the failures are reported together at the end, each with its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..bundle import TRAIN_CONFIG
from ..errors import CardiosegError
from ..settings import SettingError


@dataclass(frozen=True)
class BundleRun:
    """One run of a bundle config: its run folder and its overrides (``dataset_dir``, ``seed``, ...)."""

    output_dir: Path
    overrides: dict = field(default_factory=dict)
    config_file: Path = TRAIN_CONFIG
    run_id: str = "training"

    @property
    def log(self) -> Path:
        """The run's console output, appended beside its folder (``RUN.log``): it holds a failure's reason."""
        return self.output_dir.with_name(self.output_dir.name + ".log")


@dataclass(frozen=True)
class RunOutcome:
    run: BundleRun
    returncode: int

    def last_line(self) -> str:
        """The log's last non-empty line: for a bundle run that failed, ``cardioseg: error: ...``."""
        lines = [line for line in self.run.log.read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "(no output)"


def _start(run: BundleRun, args_dir: Path, index: int, threads: int) -> subprocess.Popen:
    args_file = args_dir / f"run{index}.json"
    args_file.write_text(
        json.dumps(
            {"config_file": str(run.config_file), "output_dir": str(run.output_dir), **run.overrides}, default=str
        )
    )
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "monai.bundle", "run", run.run_id, "--args_file", str(args_file)]
    run.output_dir.parent.mkdir(parents=True, exist_ok=True)
    with run.log.open("a") as log:  # appended: an earlier attempt's log is the user's, never overwritten
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_packed(runs: list[BundleRun], slots: int, *, progress: bool = True) -> list[RunOutcome]:
    """Run every run, at most ``slots`` at once; outcomes in the order given. Raises a CardiosegError naming
    each failed run, its log and its last line, after the others have finished.

    On the CPU each run gets ``cpu_count // slots`` threads (at least one), so packed runs do not fight
    over the cores; on a GPU they share the device as separate CUDA contexts.
    """
    if not isinstance(slots, int) or slots < 1:
        raise SettingError("slots", slots, "must be a whole number of at least 1")
    folders = [run.output_dir.resolve() for run in runs]
    if len(set(folders)) != len(folders):
        raise CardiosegError("two runs of one pack share a run folder: a run folder belongs to one run")
    threads = max(1, (os.cpu_count() or 1) // min(slots, max(1, len(runs))))
    outcomes: dict[int, RunOutcome] = {}
    with tempfile.TemporaryDirectory(prefix="cardioseg_pack_") as args_dir, ThreadPoolExecutor(slots) as pool:

        def launch(index: int) -> RunOutcome:
            return RunOutcome(runs[index], _start(runs[index], Path(args_dir), index, threads).wait())

        futures = {pool.submit(launch, i): i for i in range(len(runs))}
        for future in tqdm(as_completed(futures), total=len(runs), desc="runs", unit="run", disable=not progress):
            outcomes[futures[future]] = future.result()
    ordered = [outcomes[i] for i in range(len(runs))]
    failed = [o for o in ordered if o.returncode != 0]
    if failed:
        lines = [f"{o.run.output_dir} (exit {o.returncode}, log {o.run.log}): {o.last_line()}" for o in failed]
        raise CardiosegError(f"{len(failed)} of {len(runs)} runs failed:\n  " + "\n  ".join(lines))
    return ordered
