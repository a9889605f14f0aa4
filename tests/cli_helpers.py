"""What the command promises on bad input, checked one way for every test: one error line, no traceback."""

from __future__ import annotations

import re

# MONAI's and cardioseg's log lines (timestamped) and Python warnings may precede the error; they are not it.
LOG_OR_WARNING = re.compile(r"^\d{4}-\d\d-\d\d |^\s|Warning: ")


def one_line_error(capsys) -> str:
    """The single ``cardioseg: error:`` line of what the command printed to stderr."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not LOG_OR_WARNING.search(line)]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("cardioseg: error:"), err
    return lines[0]
