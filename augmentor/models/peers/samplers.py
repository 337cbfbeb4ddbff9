"""Samplers that belong to one peer model, with the fit/sample/state interface of
:class:`augmentor.samplers.LatentSampler` (states hold tensors and plain values only).

* :class:`MixtureSampler` (``"vamp"``): a uniform mixture of diagonal Gaussians,
  fitted on the VAMP model's pseudo-input posteriors, i.e. its VampPrior.
* :class:`RHVAESampler` (``"rhvae"``): HMC on the RHVAE's learned metric,
  targeting ``sqrt(det G^{-1}(z))`` as pythae's RHVAE sampler does, run by the
  toolkit's batched :class:`~augmentor.hmc.HMCSampler`.
"""

from __future__ import annotations

from typing import Any

import torch

from augmentor.sampling.hmc import HMCConfig
from augmentor.sampling.samplers import HMCLatentSampler, LatentSampler

from .learned_metric import RHVAEDensity

__all__ = ["MixtureSampler", "PEER_SAMPLERS", "RHVAESampler"]


class MixtureSampler(LatentSampler):
    """``1/K sum_k N(mu_k, diag(exp(log_var_k)))``: the VampPrior when fitted on the pseudo-inputs' posteriors."""

    name = "vamp"

    def __init__(self) -> None:
        self.means: torch.Tensor | None = None
        self.log_vars: torch.Tensor | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "MixtureSampler":
        """Take the ``(K, d)`` components' means and log-variances."""
        self.means, self.log_vars = mu.detach().cpu().float(), log_var.detach().cpu().float()
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        self._require_fitted("means")
        generator = torch.Generator().manual_seed(seed)
        component = torch.randint(len(self.means), (n,), generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means[component] + torch.exp(0.5 * self.log_vars[component]) * noise

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("means")
        return {"means": self.means, "log_vars": self.log_vars}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "MixtureSampler":
        return cls().fit(state["means"], state["log_vars"])


class RHVAESampler(HMCLatentSampler):
    """HMC on ``sqrt(det G^{-1}(z))``, the RHVAE's learned metric; chains start at random centroids.

    Args:
        temperature: the model's ``T``.
        regularization: the model's ``lam``.
        hmc_config: the chains' settings (the augmentor passes its ``hmc`` config,
            the budget of the Riemannian sampler).
    """

    name = "rhvae"
    target_attribute = "density"

    def __init__(self, temperature: float, regularization: float, hmc_config: HMCConfig | None = None) -> None:
        super().__init__(hmc_config)
        self.temperature, self.regularization = temperature, regularization
        self.density: RHVAEDensity | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "RHVAESampler":
        """Take the final metric: ``mu`` the ``(N, d)`` centroids, the second argument
        the ``(N, d, d)`` matrices ``M_i`` (see :meth:`augmentor.peers.RHVAE.final_metric`)."""
        self.density = RHVAEDensity(
            mu.detach().cpu().float(), log_var.detach().cpu().float(), self.temperature, self.regularization
        )
        return self

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("density")
        return {
            "temperature": self.temperature,
            "regularization": self.regularization,
            "hmc_config": self.hmc.config.to_dict(),
            "centroids": self.density.centroids,
            "matrices": self.density.matrices,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "RHVAESampler":
        hmc = HMCConfig.from_dict(state["hmc_config"])
        sampler = cls(float(state["temperature"]), float(state["regularization"]), hmc)
        return sampler.fit(state["centroids"], state["matrices"])


PEER_SAMPLERS: dict[str, type[LatentSampler]] = {cls.name: cls for cls in (MixtureSampler, RHVAESampler)}
"""The peer models' own samplers by name."""
