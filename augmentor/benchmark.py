"""Command line of the generation benchmark: ``python -m augmentor.benchmark --config FILE [--out DIR]``.

A thin entry point; the benchmark itself lives in :mod:`pipelines.benchmark`
(see ``python -m augmentor.benchmark --help``).
"""

from __future__ import annotations

import sys

from pipelines.benchmark import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
