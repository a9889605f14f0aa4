"""What every operator of the app shares: named ports, one timed job, and a clean stop on bad input.

An operator's job is ``process(**inputs) -> {output: value}``. Its wall-clock time is recorded under its
stage name (the names ``cardioseg.clinical.pipeline.run_study`` uses, so the two paths' timings line up).
A :class:`~cardioseg.errors.CardiosegError` (bad input: a corrupt file, no short-axis cine ...) is not
raised into Holoscan, which would log it with a traceback of its own: it is kept in the shared
:class:`RunState`, nothing is emitted, and the graph is stopped, so no later operator (no writer) runs and
the command prints the error as one line. Any other exception is a bug and propagates as usual.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from monai.deploy.core import Operator, OperatorSpec

from cardioseg.errors import CardiosegError

logger = logging.getLogger("app.operators")


@dataclass
class RunState:
    """Shared by the operators of one run: stage times, the first bad-input error, the files written."""

    timings: dict[str, float] = field(default_factory=dict)
    error: CardiosegError | None = None
    outputs: dict[str, Path] = field(default_factory=dict)


class StageOperator(Operator):
    """Base of the app's operators; subclasses set ``STAGE``, ``INPUTS``, ``OUTPUTS`` and ``process``."""

    STAGE: ClassVar[str] = ""
    INPUTS: ClassVar[tuple[str, ...]] = ()
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, fragment, *args, run_state: RunState, **kwargs):
        self.run_state = run_state  # set before Operator.__init__, which calls setup()
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec) -> None:
        for name in self.INPUTS:
            spec.input(name)
        for name in self.OUTPUTS:
            spec.output(name)

    def process(self, **inputs: Any) -> dict[str, Any]:
        raise NotImplementedError

    def compute(self, op_input, op_output, context) -> None:
        inputs = {name: op_input.receive(name) for name in self.INPUTS}
        start = time.perf_counter()
        try:
            outputs = self.process(**inputs)
        except CardiosegError as exc:
            self.run_state.error = exc
            logger.debug("%s stopped the run: %s", self.name, exc)
            self.stop_execution()
            return
        finally:
            self.run_state.timings[self.STAGE] = round(time.perf_counter() - start, 4)
        for name in self.OUTPUTS:
            op_output.emit(outputs[name], name)
