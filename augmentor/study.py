"""Command line of the low-data study: ``python -m augmentor.study --config FILE [--out DIR]``.

A thin entry point; the study itself lives in :mod:`pipelines.lowdata`
(see ``python -m augmentor.study --help``).
"""

from __future__ import annotations

import sys

from pipelines.lowdata import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
