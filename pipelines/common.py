"""What the studies share beyond their run directories: class balancing of a training set."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["oversample"]


def oversample(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices that repeat minority-class images (drawn with replacement) up to the majority count.

    Args:
        labels: ``(N,)`` integer class labels.
        seed: seed of the draw (NumPy's ``default_rng``).

    Returns:
        ``(M,)`` int64 indices: ``0 .. N-1`` in order, then the minority classes' repeats.
    """
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    classes, counts = np.unique(y, return_counts=True)
    extra = [
        rng.choice(np.flatnonzero(y == c), size=counts.max() - k, replace=True)
        for c, k in zip(classes, counts)
        if k < counts.max()
    ]
    return torch.from_numpy(np.concatenate([np.arange(len(y))] + extra)).long()
