"""``python app ...``: the entry point MONAI Deploy packages and runs (``python /opt/holoscan/app`` in a MAP).

Run as a folder, Python puts ``app/`` itself first on ``sys.path``, where ``import app`` would find
``app/app.py`` instead of this package: the folder's parent goes there instead, so the package imports as
``app`` whether it is run as ``python app``, ``python -m app`` or from its installed place in a container.
"""

import sys
from pathlib import Path

if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from app.cli import main  # noqa: E402  (after the sys.path fix above)

if __name__ == "__main__":
    sys.exit(main())
