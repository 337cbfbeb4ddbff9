"""What every study shares: the files every run directory has, and class balancing of a training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["RunDirectory", "oversample"]


class RunDirectory:
    """The files every study's run directory has; each study's layout extends it.

    ``lock`` (held by the running invocation), ``study.json`` (the run's identity:
    settings, data fingerprint, device type), ``report/`` and ``tensorboard/``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def study(self) -> Path:
        return self.root / "study.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def tensorboard(self, *parts: str) -> Path:
        return self.root.joinpath("tensorboard", *parts)


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
