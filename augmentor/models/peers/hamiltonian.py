"""Hamiltonian VAEs: HVAE (Caterini et al., 2018) and RHVAE (Chadebec et al., 2020).

Both refine the reparameterised code ``z_0 ~ q(z | x)`` with ``K`` tempered
leapfrog steps of a Hamiltonian flow whose potential is ``U(z) = -log p(x, z)``
(``-log p(x | z)`` is the reconstruction error, ``p(z) = N(0, I)``), and
maximise the ELBO of the extended space ``(z, rho)``:

``log p(x, z_K) + log N(rho_K; 0, G(z_K)) - log q(z_0 | x) - log N(gamma; 0, I) + 0.5 log det G(z_0)``

with ``rho_0 = G(z_0)^{1/2} gamma / sqrt(beta_0)``, ``gamma ~ N(0, I)``; the leapfrog
maps preserve volume and the tempering (:func:`tempering_factors`) multiplies
``rho`` by ``sqrt(beta_0)`` in all, which cancels the ``beta_0`` of ``rho_0``'s
density. The HVAE has ``G = I``; with a vanishing step both objectives are the
single-sample VAE loss (``beta = 1``).

``beta_0`` is Caterini et al.'s initial inverse temperature (``0 < beta_0 <= 1``);
pythae's ``beta_zero`` is its square root.

The RHVAE learns the metric ``G^{-1}(z) = sum_i M_i exp(-|z - c_i|^2 / T^2) + lam I``
with ``M_i = L(x_i) L(x_i)^T`` from a metric network and ``c_i`` the posterior
means, and integrates with the generalised (implicit) leapfrog, solved by
fixed-point iterations. During training and validation the centroids are the
batch's; the final metric uses every training image and defines its sampler
(:class:`augmentor.peers.samplers.RHVAESampler`).

**NaN guard** (pythae issue #162: the norm of the Hamiltonian's gradient
explodes during the leapfrog and ``z`` becomes infinite): the log-diagonal of
``L`` is bounded by ``bound * tanh(raw / bound)``, ``lam > 0`` keeps ``G^{-1}``
positive definite, the gradients of the Hamiltonian are computed in closed
form for the metric terms (no second-order autograd through the fixed-point
iterations) and each sample's ``dH/dz`` is clipped to ``max_grad_norm``. The
trainer still stops with a clear error if the loss ever becomes non-finite.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal

import torch
from torch import nn

from augmentor.utils.batching import map_batches
from augmentor.sampling.hmc import HMCConfig
from augmentor.models.vae import VAEConfig

from .base import PeerModel, log_standard_normal
from .learned_metric import inverse_metric, kinetic_gradient
from .samplers import RHVAESampler

__all__ = [
    "HVAE",
    "HVAEConfig",
    "RHVAE",
    "RHVAEConfig",
    "riemannian_leapfrog",
    "tempered_leapfrog",
    "tempering_factors",
]

GradientFn = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class HVAEConfig(VAEConfig):
    """HVAE settings (Caterini et al., 2018; ``beta`` of the VAE config is not used).

    Args:
        n_leapfrog: leapfrog steps ``K``.
        leapfrog_step: step size ``eps``.
        beta_zero: initial inverse temperature ``beta_0`` in (0, 1].
        max_grad_norm: clip each sample's ``dH/dz`` to this norm in the leapfrog
            steps; ``None`` never clips.
    """

    model: Literal["hvae"] = "hvae"
    n_leapfrog: int = 3
    leapfrog_step: float = 1e-3
    beta_zero: float = 0.3
    max_grad_norm: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.n_leapfrog < 1:
            self._fail("n_leapfrog", f"must be >= 1, got {self.n_leapfrog}")
        if not self.leapfrog_step > 0:
            self._fail("leapfrog_step", f"must be > 0, got {self.leapfrog_step}")
        if not 0 < self.beta_zero <= 1:
            self._fail("beta_zero", f"must lie in (0, 1], got {self.beta_zero}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            self._fail("max_grad_norm", f"must be > 0 or null, got {self.max_grad_norm}")


@dataclasses.dataclass
class RHVAEConfig(HVAEConfig):
    """RHVAE settings (pythae's defaults, plus the NaN guard of the module docstring).

    Args:
        temperature: ``T`` of the metric's kernel.
        regularization: ``lam``, the floor of ``G^{-1}``.
        metric_hidden: width of the metric network's hidden layer (an MLP on the
            flattened image, as pythae's default metric).
        fixed_point_steps: iterations solving each implicit leapfrog equation.
        metric_log_diag_bound: bound of the log-diagonal of ``L(x)``.
        max_grad_norm: as for the HVAE, here on by default.
    """

    model: Literal["rhvae"] = "rhvae"
    temperature: float = 1.5
    regularization: float = 1e-2
    metric_hidden: int = 400
    fixed_point_steps: int = 3
    metric_log_diag_bound: float = 3.0
    max_grad_norm: float | None = 1e3

    def validate(self) -> None:
        super().validate()
        for name in ("temperature", "regularization", "metric_log_diag_bound"):
            if not getattr(self, name) > 0:
                self._fail(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("metric_hidden", "fixed_point_steps"):
            if getattr(self, name) < 1:
                self._fail(name, f"must be >= 1, got {getattr(self, name)}")


def tempering_factors(beta_zero: float, n_steps: int) -> list[float]:
    """``sqrt(beta_{k-1} / beta_k)`` for ``k = 1..K``: the momentum's rescaling after each step.

    Quadratic schedule of Caterini et al.: ``1 / sqrt(beta_k) = (1 - 1 / sqrt(beta_0)) k^2 / K^2
    + 1 / sqrt(beta_0)``, from ``beta_0`` to ``beta_K = 1``; the factors multiply to ``sqrt(beta_0)``.
    """
    inv_sqrt_zero = 1.0 / math.sqrt(beta_zero)
    sqrt_beta = [1.0 / ((1.0 - inv_sqrt_zero) * (k / n_steps) ** 2 + inv_sqrt_zero) for k in range(n_steps + 1)]
    return [sqrt_beta[k - 1] / sqrt_beta[k] for k in range(1, n_steps + 1)]


def _clip_rows(grad: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """``grad`` ``(B, d)`` with each row's norm clipped to ``max_norm`` (None: unchanged)."""
    if max_norm is None:
        return grad
    norm = grad.norm(dim=1, keepdim=True)
    return grad * torch.clamp(max_norm / (norm + 1e-12), max=1.0)


def tempered_leapfrog(
    z: torch.Tensor,
    rho: torch.Tensor,
    grad_potential: GradientFn,
    step: float,
    beta_zero: float,
    n_steps: int,
    max_grad_norm: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The HVAE flow: ``n_steps`` leapfrog steps of ``U(z) + 0.5 |rho|^2``, each followed by tempering.

    Args:
        z, rho: ``(B, d)`` initial positions and momenta.
        grad_potential: ``z -> dU/dz``, ``(B, d) -> (B, d)``.
        step: leapfrog step size.
        beta_zero: initial inverse temperature.
        n_steps: number of steps ``K``.
        max_grad_norm: per-sample clipping of ``dU/dz`` (None: none).

    Returns:
        ``(z_K, rho_K)``.
    """
    grad = _clip_rows(grad_potential(z), max_grad_norm)
    for factor in tempering_factors(beta_zero, n_steps):
        rho = rho - 0.5 * step * grad
        z = z + step * rho
        grad = _clip_rows(grad_potential(z), max_grad_norm)
        rho = factor * (rho - 0.5 * step * grad)
    return z, rho


def riemannian_leapfrog(
    z: torch.Tensor,
    rho: torch.Tensor,
    grad_potential: GradientFn,
    grad_kinetic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inverse_metric_fn: Callable[[torch.Tensor], torch.Tensor],
    step: float,
    fixed_point_steps: int,
    max_grad_norm: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One generalised leapfrog step of ``H(z, rho) = U(z) + 0.5 log det G(z) + 0.5 rho^T G^{-1}(z) rho``.

    ``rho' = rho - eps/2 dH/dz(z, rho')`` and ``z' = z + eps/2 (G^{-1}(z) + G^{-1}(z')) rho'``
    are solved by ``fixed_point_steps`` fixed-point iterations, then
    ``rho'' = rho' - eps/2 dH/dz(z', rho')``. Without tempering (the caller applies it).

    Args:
        z, rho: ``(B, d)``.
        grad_potential: ``z -> dU/dz``.
        grad_kinetic: ``(z, rho) -> d/dz`` of the metric terms (:func:`kinetic_gradient`).
        inverse_metric_fn: ``z -> G^{-1}(z)``, ``(B, d, d)``.
        step: ``eps``.
        fixed_point_steps: iterations per implicit equation.
        max_grad_norm: per-sample clipping of ``dH/dz`` (None: none).

    Returns:
        ``(z', rho'')``.
    """
    grad_u = grad_potential(z)

    def grad_h(at: torch.Tensor, momentum: torch.Tensor, potential: torch.Tensor) -> torch.Tensor:
        return _clip_rows(potential + grad_kinetic(at, momentum), max_grad_norm)

    rho_half = rho
    for _ in range(fixed_point_steps):
        rho_half = rho - 0.5 * step * grad_h(z, rho_half, grad_u)
    velocity = (inverse_metric_fn(z) @ rho_half[:, :, None])[:, :, 0]
    z_new = z
    for _ in range(fixed_point_steps):
        z_new = z + 0.5 * step * (velocity + (inverse_metric_fn(z_new) @ rho_half[:, :, None])[:, :, 0])
    rho_new = rho_half - 0.5 * step * grad_h(z_new, rho_half, grad_potential(z_new))
    return z_new, rho_new


class HVAE(PeerModel):
    """Hamiltonian VAE: ``K`` tempered leapfrog steps of ``-log p(x, z) + 0.5 |rho|^2`` from ``z_0``."""

    config_class = HVAEConfig

    def _potential_gradient(self, x: torch.Tensor) -> GradientFn:
        """``z -> d/dz [-log p(x | z) - log N(z; 0, I)]`` per sample, differentiable when training."""
        keep_graph = torch.is_grad_enabled()

        def gradient(z: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():  # validation needs dU/dz too
                at = z if z.requires_grad else z.detach().requires_grad_()
                potential = self.reconstruction(self.decode(at), x) - log_standard_normal(at)
                (grad,) = torch.autograd.grad(potential.sum(), at, create_graph=keep_graph)
            return grad

        return gradient

    def _encode_sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``mu`` and ``z_0`` ``(B, d)`` and ``log q(z_0 | x)`` ``(B,)``, by the reparameterisation trick."""
        mu, log_var = self.encode(x)
        eps = torch.randn_like(mu)
        return mu, mu + torch.exp(0.5 * log_var) * eps, log_standard_normal(eps) - 0.5 * log_var.sum(1)

    def _elbo_terms(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction error at ``z_K`` and ``log p(x, z_K)``."""
        recon = self.reconstruction(self.decode(z), x)
        return recon, log_standard_normal(z) - recon

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon"}``: the negative extended-space ELBO (module docstring), batch mean."""
        config = self.config
        _, z0, log_q = self._encode_sample(x)
        gamma = torch.randn_like(z0)
        z, rho = tempered_leapfrog(
            z0, gamma / math.sqrt(config.beta_zero), self._potential_gradient(x),
            config.leapfrog_step, config.beta_zero, config.n_leapfrog, config.max_grad_norm,
        )
        recon, log_joint = self._elbo_terms(x, z)
        elbo = log_joint + log_standard_normal(rho) - log_q - log_standard_normal(gamma)
        return {"loss": -elbo.mean(), "recon": recon.mean()}


class _MetricNetwork(nn.Module):
    """``x -> L(x)``: lower-triangular ``(B, d, d)`` with a bounded positive diagonal."""

    def __init__(self, in_features: int, latent_dim: int, hidden: int, log_diag_bound: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.diagonal = nn.Linear(hidden, latent_dim)
        self.lower = nn.Linear(hidden, latent_dim * (latent_dim - 1) // 2)
        self.bound = log_diag_bound
        self.register_buffer("rows_cols", torch.tril_indices(latent_dim, latent_dim, offset=-1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        log_diag = self.bound * torch.tanh(self.diagonal(h) / self.bound)
        d = log_diag.shape[1]
        factor = torch.diag_embed(torch.exp(log_diag))
        lower = torch.zeros(len(x), d, d, device=x.device, dtype=h.dtype)
        lower[:, self.rows_cols[0], self.rows_cols[1]] = self.lower(h)
        return factor + lower


class RHVAE(HVAE):
    """Riemannian Hamiltonian VAE with a learned metric (module docstring)."""

    config_class = RHVAEConfig
    own_sampler = "rhvae"

    def __init__(self, config: RHVAEConfig) -> None:
        super().__init__(config)
        self.metric = _MetricNetwork(
            math.prod(config.in_shape), config.latent_dim, config.metric_hidden, config.metric_log_diag_bound
        )

    def metric_matrices(self, x: torch.Tensor) -> torch.Tensor:
        """``M(x) = L(x) L(x)^T``, ``(B, d, d)``."""
        factor = self.metric(x)
        return factor @ factor.transpose(1, 2)

    @torch.no_grad()
    def final_metric(
        self, images: torch.Tensor, batch_size: int, device: torch.device | str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Centroids ``(N, d)`` (posterior means) and matrices ``(N, d, d)`` of ``images``, on the CPU.

        The model is put in eval mode and left on ``device``.
        """
        self.to(device).eval()
        parts = map_batches(
            lambda x: (self.encode(x)[0].cpu(), self.metric_matrices(x).cpu()), images, batch_size, device
        )
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def fit_sampler(
        self, images: torch.Tensor, batch_size: int, device: torch.device | str, hmc: HMCConfig
    ) -> RHVAESampler:
        """The RHVAE sampler on the final metric of ``images`` (the class's training images)."""
        config = self.config
        centroids, matrices = self.final_metric(images, batch_size, device)
        return RHVAESampler(config.temperature, config.regularization, hmc).fit(centroids, matrices)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon"}``: the negative extended-space ELBO with the batch's metric, batch mean."""
        config = self.config
        mu, z0, log_q = self._encode_sample(x)
        centroids, matrices = mu, self.metric_matrices(x)
        metric = (centroids, matrices, config.temperature, config.regularization)
        inverse = lambda z: inverse_metric(z, *metric)  # noqa: E731

        # rho_0 ~ N(0, G(z_0) / beta_0): with G^{-1} = C C^T, G^{1/2} = C^{-T}.
        cholesky = torch.linalg.cholesky(inverse(z0))
        gamma = torch.randn_like(z0)
        rho = torch.linalg.solve_triangular(cholesky.transpose(1, 2), gamma[:, :, None], upper=True)[:, :, 0]
        rho = rho / math.sqrt(config.beta_zero)
        log_det_inverse_0 = 2 * torch.log(torch.diagonal(cholesky, dim1=1, dim2=2)).sum(1)

        z = z0
        grad_potential = self._potential_gradient(x)
        for factor in tempering_factors(config.beta_zero, config.n_leapfrog):
            z, rho = riemannian_leapfrog(
                z, rho, grad_potential, lambda at, r: kinetic_gradient(at, r, *metric), inverse,
                config.leapfrog_step, config.fixed_point_steps, config.max_grad_norm,
            )
            rho = factor * rho
        recon, log_joint = self._elbo_terms(x, z)
        inverse_k = inverse(z)
        log_rho = (
            -0.5 * (rho[:, None, :] @ inverse_k @ rho[:, :, None])[:, 0, 0]
            + 0.5 * torch.logdet(inverse_k)
            - 0.5 * z.shape[1] * math.log(2 * math.pi)
        )
        elbo = log_joint + log_rho - log_q - log_standard_normal(gamma) - 0.5 * log_det_inverse_0
        return {"loss": -elbo.mean(), "recon": recon.mean()}
