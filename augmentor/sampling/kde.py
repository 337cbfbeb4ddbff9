"""A kernel density on the training codes: a random code plus isotropic Gaussian noise.

The law is the equal-weight mixture ``(1 / N) sum_i N(mu_i, h^2 I)`` over the
``N`` training means ``mu_i``, with bandwidth ``h``. It is the baseline every
geometric sampler has to beat at equal memorisation: ``h -> 0`` replays the
training codes, a large ``h`` blurs them towards a wide Gaussian. In ``d``
dimensions the noise has norm about ``h sqrt(d)``.
"""

from __future__ import annotations

from typing import Any

import torch

from .samplers import LatentSampler

__all__ = ["KernelDensitySampler"]


class KernelDensitySampler(LatentSampler):
    """``(1 / N) sum_i N(mu_i, bandwidth^2 I)`` on the training means.

    Args:
        bandwidth: standard deviation ``h`` of the noise per dimension, ``> 0``.
    """

    name = "kde"

    def __init__(self, bandwidth: float = 0.25) -> None:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        self.bandwidth = float(bandwidth)
        self.codes: torch.Tensor | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor | None = None) -> "KernelDensitySampler":
        """Keep the ``(N, d)`` means (the log-variances are not used)."""
        if mu.ndim != 2 or len(mu) < 1 or not torch.isfinite(mu).all():
            raise ValueError(f"mu must be a finite (N, d) tensor with N >= 1, got shape {tuple(mu.shape)}")
        self.codes = mu.detach().cpu().float().clone()
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, d)`` latents: codes drawn uniformly with replacement, plus ``N(0, h^2 I)`` noise."""
        self._require_fitted("codes")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        generator = torch.Generator().manual_seed(seed)
        index = torch.randint(len(self.codes), (n,), generator=generator)
        noise = torch.randn(n, self.codes.shape[1], generator=generator)
        return self.codes[index] + self.bandwidth * noise

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("codes")
        return {"bandwidth": self.bandwidth, "codes": self.codes}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "KernelDensitySampler":
        sampler = cls(float(state["bandwidth"]))
        sampler.codes = state["codes"]
        return sampler
