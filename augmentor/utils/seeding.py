"""Seeds: the global generators, and the seed of each class's stream of synthetic subjects."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["class_seed", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and CUDA) global random generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th class's stream when generating with ``seed``.

    :meth:`augmentor.GeometricAugmentor.generate` and the study's generate jobs
    both draw class ``index`` with this seed, so a job's latents are those of
    ``generate(n, sampler, seed)``. Taken modulo 2**64, as torch takes a negative
    seed, so it stays a valid seed for every valid ``seed`` and equals
    ``seed * 1009 + index`` wherever that was valid.
    """
    return (seed * 1009 + index) % 2**64
