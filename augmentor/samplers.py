"""Latent samplers: N(0, I) prior, Gaussian mixture on the codes, and Riemannian HMC.

All samplers share pythae's ``fit`` / ``sample`` interface: ``fit(mu, log_var)``
on a trained model's training codes, ``sample(n, seed)`` returning ``(n, d)``
latents, and ``state_dict`` / ``from_state_dict`` holding tensors and plain
values only, so a fitted sampler saves and loads without pickles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from .diagnostics import HMCDiagnostics
from .hmc import HMCConfig, HMCSampler
from .metric import MetricConfig, RiemannianMetric

__all__ = ["GaussianMixtureSampler", "LatentSampler", "NormalSampler", "RiemannianSampler", "SAMPLERS"]


class LatentSampler(ABC):
    """Draws latents for a trained VAE: ``fit`` on its codes, then ``sample``."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "LatentSampler":
        """Fit on the ``(N, d)`` posterior means and log-variances of the training data."""

    @abstractmethod
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, d)`` latents, reproducible for a given seed."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Fitted state: tensors and plain values only."""

    @classmethod
    @abstractmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "LatentSampler":
        """Rebuild a fitted sampler from :meth:`state_dict`."""

    def _require_fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(mu, log_var) first")


class NormalSampler(LatentSampler):
    """The prior N(0, I)."""

    name = "prior"

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "NormalSampler":
        self.dim = mu.shape[1]
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        self._require_fitted("dim")
        return torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed))

    def state_dict(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "NormalSampler":
        return cls(dim=int(state["dim"]))


class GaussianMixtureSampler(LatentSampler):
    """A full-covariance Gaussian mixture fitted on the means ``mu_i`` (Ghosh et al., 2020).

    Args:
        n_components: mixture size (paper: 10); reduced to the number of codes
            when a class has fewer.
        seed: seed of the EM initialisation.
    """

    name = "gmm"

    def __init__(self, n_components: int = 10, seed: int = 0) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.seed = seed
        self.weights: torch.Tensor | None = None
        self.means: torch.Tensor | None = None
        self.cholesky: torch.Tensor | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "GaussianMixtureSampler":
        from sklearn.mixture import GaussianMixture

        codes = mu.detach().cpu().double().numpy()
        k = min(self.n_components, codes.shape[0])
        gmm = GaussianMixture(k, covariance_type="full", random_state=self.seed, reg_covar=1e-6).fit(codes)
        self.weights = torch.as_tensor(gmm.weights_, dtype=torch.float64)
        self.means = torch.as_tensor(gmm.means_, dtype=torch.float64)
        self.cholesky = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, dtype=torch.float64))
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        self._require_fitted("means")
        generator = torch.Generator().manual_seed(seed)
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        z = self.means[component] + (self.cholesky[component] @ noise[:, :, None])[:, :, 0]
        return z.float()

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("means")
        return {
            "n_components": self.n_components,
            "seed": self.seed,
            "weights": self.weights,
            "means": self.means,
            "cholesky": self.cholesky,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "GaussianMixtureSampler":
        sampler = cls(int(state["n_components"]), int(state["seed"]))
        sampler.weights, sampler.means, sampler.cholesky = state["weights"], state["means"], state["cholesky"]
        return sampler


class RiemannianSampler(LatentSampler):
    """The Riemannian uniform law ``sqrt(det G(z))`` on the domain, drawn by batched HMC.

    Args:
        metric_config: how to build the metric from the codes.
        hmc_config: the chains' settings.
        device: where the chains run (``None``: where the codes are).
    """

    name = "riemannian"

    def __init__(
        self,
        metric_config: MetricConfig | None = None,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.metric_config = metric_config or MetricConfig()
        self.hmc = HMCSampler(config=hmc_config or HMCConfig())
        self.device = device
        self.metric: RiemannianMetric | None = None

    @property
    def diagnostics(self) -> HMCDiagnostics | None:
        return self.hmc.diagnostics

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "RiemannianSampler":
        cfg = self.metric_config
        self.metric = RiemannianMetric.from_codes(
            mu.detach().float(), log_var.detach().float(),
            n_centroids=cfg.n_centroids, lam=cfg.lam, rho=cfg.rho, seed=cfg.seed,
            domain_widths=cfg.domain_widths,
        )
        return self

    def sample(
        self,
        n: int,
        seed: int = 0,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``(n, d)`` latents on the CPU.

        ``hmc_config`` and ``device`` override the chains' settings and device for
        this call only: the sampler's own settings are unchanged, and
        ``diagnostics`` describes this call's run.
        """
        self._require_fitted("metric")
        hmc = self.hmc if hmc_config is None else HMCSampler(config=hmc_config)
        device = self.device if device is None else device
        metric = self.metric if device is None else self.metric.to(device=device)
        z = hmc.sample(metric, n, seed=seed).cpu()
        self.hmc.diagnostics = hmc.diagnostics  # reported by ``diagnostics``, whatever settings ran
        return z

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("metric")
        return {
            "metric_config": self.metric_config.to_dict(),
            "hmc_config": self.hmc.config.to_dict(),
            "metric": self.metric.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "RiemannianSampler":
        sampler = cls(MetricConfig.from_dict(state["metric_config"]), HMCConfig.from_dict(state["hmc_config"]))
        sampler.metric = RiemannianMetric.from_state_dict(state["metric"])
        return sampler


SAMPLERS: dict[str, type[LatentSampler]] = {
    cls.name: cls for cls in (NormalSampler, GaussianMixtureSampler, RiemannianSampler)
}

# Samplers of their own modules, registered by name here too (imported last: they build on LatentSampler).
from .kde import KernelDensitySampler  # noqa: E402
from .published_chain import PublishedChainSampler  # noqa: E402

SAMPLERS.update({cls.name: cls for cls in (KernelDensitySampler, PublishedChainSampler)})
