"""The paper's rings-and-disks toy data (Sec. 4.5, Fig. 1): binary images of disks and rings.

Disks and rings of random radius and thickness; a VAE with a 2-D latent space
trained on them shows the geometric structure the metric captures
(:mod:`augmentor.toy` runs that experiment and draws it).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["rings_and_disks"]


def rings_and_disks(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred disks (label 0) and rings (label 1) of random size and thickness.

    Args:
        n_per_class: images per class.
        size: image side in pixels.
        seed: random seed.

    Returns:
        images ``(2 * n_per_class, 1, size, size)`` in {0, 1}, labels ``(2 * n_per_class,)``.
    """
    rng = np.random.default_rng(seed)
    axis = np.arange(size) - (size - 1) / 2
    radius = np.hypot(*np.meshgrid(axis, axis, indexing="ij"))
    outer = rng.uniform(0.2, 0.45, size=2 * n_per_class) * size
    thickness = rng.uniform(0.15, 0.5, size=n_per_class) * outer[n_per_class:]
    inner = np.concatenate([np.zeros(n_per_class), outer[n_per_class:] - thickness])
    images = (radius[None] <= outer[:, None, None]) & (radius[None] >= inner[:, None, None])
    labels = np.repeat([0, 1], n_per_class)
    return torch.as_tensor(images, dtype=torch.float32).unsqueeze(1), torch.as_tensor(labels)
