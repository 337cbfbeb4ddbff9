"""Synthetic latents: one draw per sampler, and one per class with the seed scheme of the toolkit.

Every synthetic latent of the toolkit (:meth:`augmentor.GeometricAugmentor.generate`,
the OASIS and low-data studies, the generation benchmark) is drawn here, so that
the same sampler, count and seed give the same latents whichever of them asks.
"""

from __future__ import annotations

from typing import Sequence

import torch

from augmentor.sampling.hmc import HMCConfig
from augmentor.sampling.samplers import HMCLatentSampler, LatentSampler
from augmentor.utils.seeding import class_seed

__all__ = ["draw_class_latents", "draw_latents"]


def draw_latents(
    sampler: LatentSampler,
    n: int,
    seed: int,
    hmc: HMCConfig | None = None,
    device: torch.device | str | None = None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """``(n, d)`` latents of a fitted sampler, on the CPU.

    Args:
        sampler: any fitted :class:`~augmentor.samplers.LatentSampler`.
        n: number of latents.
        seed: the draw's seed.
        hmc: chain settings of an HMC sampler for this call (None: the sampler's
            saved ones); other samplers have no chains and ignore it.
        device: where an HMC sampler's chains run (None: the sampler's own
            device); the other samplers draw on the CPU.
        init: ``(n, d)`` chain starts of an HMC sampler (None: random centroids).

    Raises:
        ValueError: ``init`` given for a sampler without chains.
    """
    if isinstance(sampler, HMCLatentSampler):
        return sampler.sample(n, seed=seed, hmc_config=hmc, device=device, init=init)
    if init is not None:
        raise ValueError(f"init sets HMC chain starts, but sampler {sampler.name!r} runs no chains")
    return sampler.sample(n, seed=seed)


def draw_class_latents(
    samplers: Sequence[LatentSampler],
    n: int,
    seed: int,
    hmc: HMCConfig | None = None,
    device: torch.device | str | None = None,
    init: Sequence[torch.Tensor | None] | None = None,
) -> list[torch.Tensor]:
    """``n`` latents of each class, class ``i`` drawn by ``samplers[i]`` with seed ``class_seed(seed, i)``.

    Each class has its own stream (:func:`augmentor.seeding.class_seed`), so a
    class's latents do not depend on how many latents the other classes draw.

    Args:
        samplers: one fitted sampler per class, in class order.
        n: latents per class.
        seed: the draw's seed.
        hmc, device: as in :func:`draw_latents`.
        init: per class, ``(n, d)`` chain starts or None.

    Returns:
        One ``(n, d)`` CPU tensor per class, in the order of ``samplers``.
    """
    if init is not None and len(init) != len(samplers):
        raise ValueError(f"init must give one entry per class ({len(samplers)}), got {len(init)}")
    starts = init if init is not None else [None] * len(samplers)
    return [
        draw_latents(sampler, n, class_seed(seed, index), hmc=hmc, device=device, init=start)
        for index, (sampler, start) in enumerate(zip(samplers, starts))
    ]
