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
from .metric import CentroidDensity, MetricConfig, RiemannianMetric

__all__ = [
    "GaussianMixtureSampler", "HMCLatentSampler", "LatentSampler", "NormalSampler", "RiemannianSampler", "SAMPLERS",
]


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


class HMCLatentSampler(LatentSampler):
    """A sampler that runs batched HMC chains on a fitted target density.

    Subclasses fit the target into the attribute named by ``target_attribute``. The chains'
    settings (``hmc``, saved with the sampler) apply unless a call overrides
    them. The target is copied once to each device it runs on and the copy is
    reused by later calls: building it again would repeat its setup (the
    Riemannian metric's float64 accuracy probe) on every call. The fitted target
    itself is never changed by sampling.

    Args:
        hmc_config: the chains' settings.
        device: where the chains run (``None``: where the target is).
    """

    target_attribute: ClassVar[str]

    def __init__(self, hmc_config: HMCConfig | None = None, device: torch.device | str | None = None) -> None:
        self.hmc = HMCSampler(config=hmc_config or HMCConfig())
        self.device = device
        self._copies: dict[torch.device, tuple[CentroidDensity, CentroidDensity]] = {}

    @property
    def diagnostics(self) -> HMCDiagnostics | None:
        """What the last :meth:`sample` call's chains did (None before any)."""
        return self.hmc.diagnostics

    def target(self) -> CentroidDensity | None:
        """The fitted density the chains sample (None before ``fit``)."""
        return getattr(self, self.target_attribute)

    def target_on(self, device: torch.device | str | None) -> CentroidDensity:
        """The fitted target on ``device`` (its own device when None), copied there once."""
        target = self.target()
        device = torch.device(device) if device is not None else target.device
        source, copy = self._copies.get(device, (None, None))
        if source is not target:  # first use of this device, or refitted since
            copy = target.to(device)
            self._copies[device] = (target, copy)
        return copy

    def sample(
        self,
        n: int,
        seed: int = 0,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(n, d)`` latents on the CPU, the final states of ``n`` chains.

        Args:
            n: number of chains (= latents).
            seed: seed of the chains' starts, momenta and accept draws.
            hmc_config: settings for this call only; None: the sampler's own.
            device: where the chains run for this call only; None: the sampler's ``device``.
            init: ``(n, d)`` chain starts; None: random centroids of the target.

        ``diagnostics`` then describes this call's run, whatever settings ran.
        """
        self._require_fitted(self.target_attribute)
        hmc = self.hmc if hmc_config is None else HMCSampler(config=hmc_config)
        target = self.target_on(self.device if device is None else device)
        target.reset_adaptation()
        z = hmc.sample(target, n, seed=seed, init=init).cpu()
        self.hmc.diagnostics = hmc.diagnostics
        return z


class RiemannianSampler(HMCLatentSampler):
    """The Riemannian uniform law ``sqrt(det G(z))`` on the domain, drawn by batched HMC.

    Args:
        metric_config: how to build the metric from the codes.
        hmc_config: the chains' settings.
        device: where the chains run (``None``: where the codes are).
    """

    name = "riemannian"
    target_attribute = "metric"

    def __init__(
        self,
        metric_config: MetricConfig | None = None,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(hmc_config, device)
        self.metric_config = metric_config or MetricConfig()
        self.metric: RiemannianMetric | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "RiemannianSampler":
        cfg = self.metric_config
        self.metric = RiemannianMetric.from_codes(
            mu.detach().float(), log_var.detach().float(),
            n_centroids=cfg.n_centroids, lam=cfg.lam, rho=cfg.rho, seed=cfg.seed,
            domain_widths=cfg.domain_widths,
        )
        return self

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
