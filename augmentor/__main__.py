"""``python -m augmentor fit ...`` / ``python -m augmentor generate ...``: see :mod:`augmentor.cli`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
