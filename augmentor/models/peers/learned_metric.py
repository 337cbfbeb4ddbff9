"""The RHVAE's learned Riemannian metric (Chadebec et al., 2020) and its sampling target.

``G^{-1}(z) = sum_i M_i exp(-|z - c_i|^2 / T^2) + lam I`` with ``M_i = L(x_i) L(x_i)^T``
from the model's metric network and ``c_i`` posterior means. Gradients are in
closed form, so they are cheap, need no autograd inside HMC, and never
differentiate through a momentum that was itself computed from ``z``.
"""

from __future__ import annotations

import torch

from augmentor.sampling.metric import CentroidDensity

__all__ = ["RHVAEDensity", "inverse_metric", "kinetic_gradient"]


def _squared_distances(z: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    return ((z[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)


def inverse_metric(
    z: torch.Tensor, centroids: torch.Tensor, matrices: torch.Tensor, temperature: float, regularization: float
) -> torch.Tensor:
    """``G^{-1}(z) = sum_i M_i exp(-|z - c_i|^2 / T^2) + lam I``, ``(B, d, d)``.

    Args:
        z: ``(B, d)`` points.
        centroids: ``c_i``, ``(N, d)``.
        matrices: ``M_i``, ``(N, d, d)`` symmetric positive semi-definite.
        temperature: ``T``.
        regularization: ``lam``.
    """
    weights = torch.exp(-_squared_distances(z, centroids) / temperature**2)
    eye = torch.eye(z.shape[1], device=z.device, dtype=z.dtype)
    return torch.einsum("bn,nij->bij", weights, matrices) + regularization * eye


def kinetic_gradient(
    z: torch.Tensor,
    rho: torch.Tensor | None,
    centroids: torch.Tensor,
    matrices: torch.Tensor,
    temperature: float,
    regularization: float,
) -> torch.Tensor:
    """``d/dz [0.5 log det G(z) + 0.5 rho^T G^{-1}(z) rho]`` at fixed ``rho``, ``(B, d)``.

    In closed form: ``sum_i (z - c_i) w_i(z) / T^2 * (tr(G(z) M_i) - rho^T M_i rho)``
    with ``w_i(z) = exp(-|z - c_i|^2 / T^2)``. (Autograd through ``z`` would also
    differentiate through ``rho`` wherever ``rho`` was computed from ``z``, as in
    the implicit leapfrog equations.) ``rho=None`` leaves out the momentum term:
    the gradient of ``0.5 log det G`` alone.
    """
    weights = torch.exp(-_squared_distances(z, centroids) / temperature**2)  # (B, N)
    metric = torch.linalg.inv(inverse_metric(z, centroids, matrices, temperature, regularization))
    difference = torch.einsum("bjk,nkj->bn", metric, matrices)  # tr(G M_i)
    if rho is not None:
        outer = rho[:, :, None] * rho[:, None, :]  # tr(rho rho^T M_i) = rho^T M_i rho, without a (B, N, d) product
        difference = difference - torch.einsum("bjk,nkj->bn", outer, matrices)
    coefficient = weights * difference / temperature**2  # (B, N)
    return coefficient.sum(1, keepdim=True) * z - coefficient @ centroids


class RHVAEDensity(CentroidDensity):
    """The target ``log pi(z) = 0.5 log det G^{-1}(z)`` of the RHVAE sampler, for :class:`HMCSampler`.

    Args:
        centroids: ``(N, d)`` posterior means of the training images.
        matrices: ``(N, d, d)`` their metric matrices ``M_i``.
        temperature: ``T``.
        regularization: ``lam``.
    """

    def __init__(self, centroids: torch.Tensor, matrices: torch.Tensor, temperature: float, regularization: float):
        self.centroids, self.matrices = centroids, matrices
        self.temperature, self.regularization = temperature, regularization

    def to(self, device: torch.device | str | None = None) -> "RHVAEDensity":
        return RHVAEDensity(self.centroids.to(device), self.matrices.to(device), self.temperature, self.regularization)

    def _parts(self) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        return self.centroids, self.matrices, self.temperature, self.regularization

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log target at ``z`` ``(B, d)``."""
        return 0.5 * torch.logdet(inverse_metric(z, *self._parts()))

    def grad_log_density(self, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, d)`` gradient of :meth:`log_density` (``dtype`` is accepted for the HMC interface, not used)."""
        return -kinetic_gradient(z, None, *self._parts())

    def log_density_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_density(z), self.grad_log_density(z)
