"""Command line of the OASIS study: ``python -m augmentor.oasis [--config FILE] [flags]``.

A thin entry point; the study itself lives in :mod:`pipelines.oasis_study`
(see ``python -m augmentor.oasis --help``).
"""

from __future__ import annotations

import sys

from pipelines.oasis_study import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
