"""The published chain, for reproduction only: it does NOT sample the Riemannian uniform law.

This follows the algorithm of the authors' public code as described in the
project's issue tracker (written from that description), so that the paper's
numbers can be reproduced and compared with the exact chains of
:mod:`augmentor.hmc`. Per iteration, on every chain:

* momentum ``p ~ N(0, 0.25 I)`` (standard deviation 0.5) while the kinetic
  energy is ``|p|^2 / 2`` (which assumes ``N(0, I)``);
* leapfrog steps driven by the gradient of ``log det G`` (twice the target's
  ``0.5 log det G``), in which the floor ``lambda`` enters the denominator once
  per centroid: with ``D(z) = sum_j s_j omega_j(z) + k lambda``,
  ``grad_l = -(2 / rho^2) sum_j omega_j(z) s_jl (z_l - c_jl) sum_m s_jm / D_m(z)``;
* acceptance ``min(1, exp(H0 - H))`` with ``H = -0.5 log clamp(det G, 0, 1e10) + |p|^2 / 2``
  and no bounded domain;
* chains start at random training codes (all of them, not only the centroids);
  100 iterations of 10 leapfrog steps of 0.01; k = 100 centroids by k-medoids,
  ``rho`` the largest nearest-centroid distance, ``lambda = 0.01``.

Each of the first three points departs from an exact HMC chain on
``sqrt(det G)``; together they pull the chains into the bumps around the
centroids and shorten their moves. The law of the output is whatever this
chain reaches after 100 iterations; it is not stated by the paper and is not
the Riemannian uniform law. Never a default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .chain_location import locate_chains
from augmentor.utils.config import Config
from .diagnostics import HMCDiagnostics, effective_sample_size, split_rhat
from .metric import RiemannianMetric
from .samplers import LatentSampler

__all__ = [
    "PublishedChainConfig",
    "PublishedChainSampler",
    "published_gradient",
    "published_iteration",
    "published_log_target",
]

LABEL = "published chain (reproduction only; NOT the Riemannian uniform law)"


@dataclasses.dataclass
class PublishedChainConfig(Config):
    """Settings of the published chain (defaults: the published MNIST ones).

    Attributes:
        n_steps, n_leapfrog, step_size: iterations, leapfrog steps per iteration, step size.
        n_centroids: k-medoids centroids of the metric.
        lam: the metric's floor ``lambda``.
        momentum_std: standard deviation of the momentum draws (published: 0.5).
        det_clamp: upper clamp of ``det G`` in the acceptance (published: 1e10).
        seed: k-medoids seed.
    """

    n_steps: int = 100
    n_leapfrog: int = 10
    step_size: float = 0.01
    n_centroids: int = 100
    lam: float = 0.01
    momentum_std: float = 0.5
    det_clamp: float = 1e10
    seed: int = 0

    def validate(self) -> None:
        for name in ("n_steps", "n_leapfrog"):
            if getattr(self, name) < 1:
                self._fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.n_centroids < 2:
            self._fail("n_centroids", f"must be >= 2, got {self.n_centroids}")
        for name in ("step_size", "lam", "momentum_std", "det_clamp"):
            if not getattr(self, name) > 0:
                self._fail(name, f"must be > 0, got {getattr(self, name)}")


def _weights_and_differences(metric: RiemannianMetric, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``omega`` ``(B, k)``, ``s`` ``(k, d)`` and ``z - c`` ``(B, k, d)``, from differences."""
    s = torch.exp(-metric.centroid_log_var)
    diff = z[:, None, :] - metric.centroids[None]
    omega = torch.exp(-(s * diff * diff).sum(dim=2) / metric.rho**2)
    return omega, s, diff


def published_log_target(metric: RiemannianMetric, z: torch.Tensor, det_clamp: float = 1e10) -> torch.Tensor:
    """``(B,)`` ``0.5 log clamp(det G(z), 0, det_clamp)`` for ``z`` ``(B, d)``, with no domain.

    Computed as ``0.5 min(sum_m log g_m, log det_clamp)``, the same number without
    forming the product (``det G > 0``, so the lower clamp never acts).
    """
    omega, s, _ = _weights_and_differences(metric, z)
    log_det = (omega @ s + metric.lam).log().sum(dim=1)
    return 0.5 * torch.clamp(log_det, max=math.log(det_clamp))


def published_gradient(metric: RiemannianMetric, z: torch.Tensor) -> torch.Tensor:
    """``(B, d)`` the published leapfrog force: ``grad log det G`` with ``k lambda`` in the denominator."""
    omega, s, diff = _weights_and_differences(metric, z)
    denominator = omega @ s + metric.n_centroids * metric.lam  # (B, d)
    per_centroid = omega * (s[None] / denominator[:, None, :]).sum(dim=2)  # (B, k)
    return -(2.0 / metric.rho**2) * (per_centroid[:, :, None] * s[None] * diff).sum(dim=1)


def published_iteration(
    metric: RiemannianMetric,
    z: torch.Tensor,
    p: torch.Tensor,
    uniform: torch.Tensor,
    step_size: float,
    n_leapfrog: int,
    det_clamp: float = 1e10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One iteration of the published chain from ``z`` ``(B, d)`` with momentum ``p`` ``(B, d)``.

    Args:
        uniform: ``(B,)`` uniform draws of the accept test.

    Returns:
        The new states ``(B, d)``, the acceptance probabilities ``(B,)`` and whether each chain moved ``(B,)``.
    """
    h0 = -published_log_target(metric, z, det_clamp) + 0.5 * (p * p).sum(dim=1)
    z_new = z
    p_new = p + 0.5 * step_size * published_gradient(metric, z)
    for step in range(n_leapfrog):
        z_new = z_new + step_size * p_new
        force = published_gradient(metric, z_new)
        p_new = p_new + (0.5 if step == n_leapfrog - 1 else 1.0) * step_size * force
    h = -published_log_target(metric, z_new, det_clamp) + 0.5 * (p_new * p_new).sum(dim=1)
    log_accept = torch.clamp(h0 - h, max=0.0).nan_to_num(nan=-math.inf)
    accept = torch.log(uniform) < log_accept
    return torch.where(accept[:, None], z_new, z), log_accept.exp(), accept


class PublishedChainSampler(LatentSampler):
    """The published chain (see the module docstring): for reproduction only, NOT the Riemannian uniform law.

    Args:
        config: its settings (defaults: the published ones).
    """

    name = "published"
    label = LABEL

    def __init__(self, config: PublishedChainConfig | None = None) -> None:
        self.config = config or PublishedChainConfig()
        self.metric: RiemannianMetric | None = None
        self.codes: torch.Tensor | None = None
        self.diagnostics: HMCDiagnostics | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "PublishedChainSampler":
        """k-medoids centroids and ``rho`` from the ``(N, d)`` codes; the chains will start at the codes."""
        cfg = self.config
        k = min(cfg.n_centroids, len(mu))
        self.metric = RiemannianMetric.from_codes(mu.detach().float(), log_var.detach().float(), n_centroids=k,
                                                  lam=cfg.lam, seed=cfg.seed)
        self.codes = mu.detach().cpu().float().clone()
        return self

    def _draw_momentum(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # N(0, 0.25 I), as published, although the kinetic energy |p|^2 / 2 assumes N(0, I).
        return self.config.momentum_std * torch.randn(like.shape, generator=generator, dtype=like.dtype)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, d)`` final states of ``n`` chains started at random training codes."""
        self._require_fitted("metric")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        cfg, metric = self.config, self.metric
        generator = torch.Generator().manual_seed(seed)
        start = self.codes[torch.randint(len(self.codes), (n,), generator=generator)].to(metric.dtype)
        z, trace, acceptance = start, [], []
        for _ in range(cfg.n_steps):
            p = self._draw_momentum(z, generator)
            uniform = torch.rand(n, generator=generator, dtype=z.dtype)
            z, accept_prob, _ = published_iteration(metric, z, p, uniform, cfg.step_size, cfg.n_leapfrog,
                                                    cfg.det_clamp)
            trace.append(published_log_target(metric, z, cfg.det_clamp))
            acceptance.append(accept_prob.mean())
        trace_t = torch.stack(trace)
        trace_np = trace_t.double().numpy()
        self.diagnostics = HMCDiagnostics(
            acceptance_rate=float(torch.stack(acceptance).mean()), step_size=cfg.step_size,
            split_rhat=split_rhat(trace_np), ess=effective_sample_size(trace_np), n_chains=n,
            n_steps=cfg.n_steps, n_leapfrog=cfg.n_leapfrog, outside_domain_rate=0.0, inner_gradient="exact",
            location=locate_chains(metric, z, start, trace_t).to_dict(),
        )
        return z

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("metric")
        return {"label": LABEL, "config": self.config.to_dict(), "metric": self.metric.state_dict(),
                "codes": self.codes}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "PublishedChainSampler":
        sampler = cls(PublishedChainConfig.from_dict(state["config"]))
        sampler.metric = RiemannianMetric.from_state_dict(state["metric"])
        sampler.codes = state["codes"]
        return sampler
