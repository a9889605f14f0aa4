"""Several bundle runs on one machine at once: the study's runs are small, and one alone leaves a GPU idle.

A few-label fine-tuning run moves a few hundred images per epoch and spends much of its time starting,
validating and logging; run one after another, the device waits through all of that. Here each run is
its own ``python -m monai.bundle run training --args_file ARGS`` process (MONAI's way to hand a run many
settings with their JSON types), at most ``slots`` at a time, so runs share nothing but the device: each
keeps its own run folder, lock, resume and log, and gives the same result as when run alone (up to
floating point on the CPU, where the cores are split between the runs). Or, for grids of many short runs,
each slot keeps one process that runs its runs one after another (``reuse_processes``,
``cardioseg.study.worker``), so the imports are paid once per slot rather than once per run. A failed run
does not stop the others; the failures are reported together at the end, each with its log.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..bundle import TRAIN_CONFIG
from ..errors import CardiosegError
from ..settings import SettingError
from ..termination import sigterm_raises_exit


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


def _args_file(run: BundleRun, args_dir: Path, index: int) -> Path:
    """The run's settings for ``--args_file``, with their JSON types."""
    path = args_dir / f"run{index}.json"
    settings = {"config_file": str(run.config_file), "output_dir": str(run.output_dir), **run.overrides}
    path.write_text(json.dumps(settings, default=str))
    return path


def _environment(threads: int) -> dict[str, str]:
    return os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def _run_alone(run: BundleRun, args_file: Path, threads: int, live: set[subprocess.Popen]) -> int:
    """The run as its own ``python -m monai.bundle run`` process; its exit status."""
    command = [sys.executable, "-m", "monai.bundle", "run", run.run_id, "--args_file", str(args_file)]
    with run.log.open("a") as log:  # appended: an earlier attempt's log is the user's, never overwritten
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment(threads))
        live.add(process)
        try:
            return process.wait()
        finally:
            live.discard(process)


class _Worker:
    """One slot's ``cardioseg.study.worker`` process, started at the slot's first run and again after one
    that ended it (a crash, an out-of-memory kill): that run fails, the next ones still run."""

    def __init__(self, threads: int, live: set[subprocess.Popen]):
        self.threads = threads
        self.live = live
        self.process: subprocess.Popen | None = None

    def run(self, run: BundleRun, args_file: Path) -> int:
        if self.process is None or self.process.poll() is not None:
            command = [sys.executable, "-m", "cardioseg.study.worker"]
            pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
            self.live.discard(self.process)  # the one that ended, if any
            self.process = subprocess.Popen(command, env=_environment(self.threads), **pipes)
            self.live.add(self.process)
        request = {
            "run_id": run.run_id,
            "args_file": str(args_file),
            "log": str(run.log),
            "output_dir": str(run.output_dir),
        }
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if answer:
            return int(json.loads(answer)["returncode"])
        status = self.process.wait() or 1
        with run.log.open("a") as log:
            print(f"cardioseg: error: the worker process ended (exit {status}) during this run", file=log)
        return status

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()
        self.live.discard(self.process)


def run_packed(
    runs: list[BundleRun], slots: int, *, progress: bool = True, reuse_processes: bool = False
) -> list[RunOutcome]:
    """Run every run, at most ``slots`` at once; outcomes in the order given. Raises a CardiosegError naming
    each failed run, its log and its last line, after the others have finished.

    Each run is its own process, or with ``reuse_processes`` each slot keeps one worker process
    (``cardioseg.study.worker``) that runs its share one after another and pays the imports once. On the
    CPU each process gets ``cpu_count // slots`` threads (at least one), so packed runs do not fight over
    the cores; on a GPU they share the device as separate CUDA contexts. An interrupt (Ctrl-C) ends the
    pack: no further run starts, the running ones are stopped, and KeyboardInterrupt is raised. A SIGTERM
    (``kill``, ``timeout``, a scheduler's time limit) ends it the same way but raises SystemExit(143), the
    status of a process ended by SIGTERM (128 + 15): not the command line's 130 for an interrupt, so that a
    script or scheduler still tells a termination from a Ctrl-C; and raised rather than ending the process
    on the spot, so that the callers' cleanup (a study folder's lock) still runs.
    """
    if not isinstance(slots, int) or slots < 1:
        raise SettingError("slots", slots, "must be a whole number of at least 1")
    folders = [run.output_dir.resolve() for run in runs]
    if len(set(folders)) != len(folders):
        raise CardiosegError("two runs of one pack share a run folder: a run folder belongs to one run")
    threads = max(1, (os.cpu_count() or 1) // min(slots, max(1, len(runs))))
    outcomes: dict[int, RunOutcome] = {}
    live: set[subprocess.Popen] = set()  # the running processes, stopped on an interrupt
    interrupted = threading.Event()
    pending: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(runs)):
        pending.put(index)
    with (
        sigterm_raises_exit(),
        tempfile.TemporaryDirectory(prefix="cardioseg_pack_") as args_dir,
        ThreadPoolExecutor(slots) as pool,
    ):
        args_files = [_args_file(run, Path(args_dir), index) for index, run in enumerate(runs)]
        bar = tqdm(total=len(runs), desc="runs", unit="run", disable=not progress)

        def slot() -> None:
            worker = _Worker(threads, live) if reuse_processes else None
            try:
                while not interrupted.is_set():
                    try:
                        index = pending.get_nowait()
                    except queue.Empty:
                        return
                    run, args_file = runs[index], args_files[index]
                    run.output_dir.parent.mkdir(parents=True, exist_ok=True)
                    status = worker.run(run, args_file) if worker else _run_alone(run, args_file, threads, live)
                    outcomes[index] = RunOutcome(run, status)
                    bar.update()
            finally:
                if worker is not None:
                    worker.close()

        try:
            for future in [pool.submit(slot) for _ in range(min(slots, len(runs)))]:
                future.result()
        except (KeyboardInterrupt, SystemExit):  # else the pool would wait for the slots to run every run left
            interrupted.set()
            for process in live.copy():  # copied in one step: the slots may add or drop one meanwhile
                process.terminate()
            raise
        finally:
            bar.close()
    ordered = [outcomes[i] for i in range(len(runs))]
    failed = [o for o in ordered if o.returncode != 0]
    if failed:
        lines = [f"{o.run.output_dir} (exit {o.returncode}, log {o.run.log}): {o.last_line()}" for o in failed]
        raise CardiosegError(f"{len(failed)} of {len(runs)} runs failed:\n  " + "\n  ".join(lines))
    return ordered
