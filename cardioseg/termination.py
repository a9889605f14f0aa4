"""SIGTERM ends a command as Ctrl-C does: through the code's own clean-up, with one line and a status.

Left to its default, SIGTERM (``kill``, ``timeout``, a scheduler's stop) ends the process at once: no
message, and a study's worker processes left running, orphaned. While ``sigterm_raises_exit`` is active it
raises ``SystemExit(TERMINATED)`` in the main thread instead, so ``finally`` blocks and context managers
run (a pack stops its runs, a temporary file is removed) and ``cardioseg`` prints ``terminated``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

TERMINATED = 128 + signal.SIGTERM  # the exit status of a process ended by SIGTERM


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def sigterm_raises_exit() -> Iterator[None]:
    """For the block, SIGTERM raises SystemExit(TERMINATED) in the main thread. Set only where it may be (the
    main thread) and where the caller left the default; the default comes back after the block."""
    ours = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if ours:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
