"""Command line of the latent-geometry figure (paper Fig. 1): ``python -m augmentor.latent_map --config FILE [--out DIR]``.

A thin entry point; the experiment itself lives in :mod:`pipelines.latent_map`
(see ``python -m augmentor.latent_map --help``).
"""

from __future__ import annotations

import sys

from pipelines.latent_map import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
