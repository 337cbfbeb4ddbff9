"""The tempered Riemannian target ``p_alpha(z) ∝ (sqrt(det G(z)))^alpha`` on the metric's domain.

``alpha = 1`` is the Riemannian uniform law of the paper. ``alpha > 1``
sharpens the bumps around the centroids (more mass where the metric is large);
``alpha < 1`` flattens them towards the uniform law on the bounded domain
(``alpha = 0``). HMC on :class:`TemperedDensity` is exact for ``p_alpha``: the
log-density and its gradient are those of the base target times ``alpha``.
"""

from __future__ import annotations

import torch

from .metric import CentroidDensity

__all__ = ["TemperedDensity"]


class TemperedDensity(CentroidDensity):
    """``alpha`` times the log-density of ``base`` (a :class:`~augmentor.metric.RiemannianMetric`).

    Args:
        base: the untempered target; its centroids, domain and floor are this target's.
        alpha: the exponent, ``> 0``.
    """

    def __init__(self, base: CentroidDensity, alpha: float) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.base = base
        self.alpha = float(alpha)
        self.centroids = base.centroids

    def __getattr__(self, name: str):
        # lam, lower, upper, metric_diagonal, in_domain ...: those of the base target.
        return getattr(self.__dict__["base"], name)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``alpha`` times the base log-density (``-inf`` outside the domain stays so)."""
        return self.alpha * self.base.log_density(z)

    def log_density_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B,)`` log target and its ``(B, d)`` gradient, both ``alpha`` times the base's."""
        log_p, grad = self.base.log_density_and_grad(z)
        return self.alpha * log_p, self.alpha * grad

    def grad_log_density(self, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, d)`` gradient of the tempered log target."""
        return self.alpha * self.base.grad_log_density(z, dtype=dtype)
