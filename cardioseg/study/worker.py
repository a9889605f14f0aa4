"""A process that runs bundle runs one after another, so a pack pays for its imports once per slot.

A run started as ``python -m monai.bundle run`` spends its first seconds importing torch and MONAI
(MONAI imports every subpackage and every optional package it finds): 15 s on the H200 machine before a
few-label run's few seconds of training. ``run_packed(..., reuse_processes=True)`` keeps one of these
workers per slot and hands it runs one at a time: a JSON line on standard input names a run (its config,
run id, ``--args_file`` and log), the worker runs it with MONAI's own ``monai.bundle.run`` and answers one
JSON line with the run's exit status, as the command's would be. A run's output, Python's and the
libraries' alike, is appended to its log at the file-descriptor level; the run folder's lock is released
after it, and a failed run leaves the worker ready for the next. The command line stays the way for a
single run: it is what a user types and what time to accuracy measures.

    python -m cardioseg.study.worker   # driven by cardioseg.study.packing, not by hand
"""

from __future__ import annotations

import gc
import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import cardioseg_cause
from ..run_folder import RunFolder


@contextmanager
def output_appended_to(log: Path) -> Iterator[None]:
    """Standard output and error, of Python and of native code, appended to ``log`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def run_one(request: dict) -> int:
    """One run as ``python -m monai.bundle run RUN_ID --args_file ARGS`` would do it; its exit status."""
    with output_appended_to(Path(request["log"])):
        try:
            from monai.bundle import run  # inside the log, as the command's import warnings are

            run(request["run_id"], args_file=request["args_file"])
            status = 0
        except Exception as error:  # a failed run is this run's, not the worker's: the next one still runs
            traceback.print_exc()
            cause = cardioseg_cause(error)
            if cause is not None:
                print(f"cardioseg: error: {cause}", file=sys.stderr)
            status = 1
        finally:
            RunFolder(request["output_dir"]).release()
            gc.collect()  # the run's network, optimiser and graphs, before the next run allocates its own
            _empty_cuda_cache()
    return status


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # between runs nothing else may reach the answer pipe
    for line in sys.stdin:
        if line.strip():
            answers.write(json.dumps({"returncode": run_one(json.loads(line))}) + "\n")


if __name__ == "__main__":
    main()
