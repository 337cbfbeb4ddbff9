"""VAE with a VampPrior (Tomczak & Welling, 2018).

The prior is the mixture of the encoder's posteriors at ``K`` learned
pseudo-inputs ``u_k``: ``p(z) = 1/K sum_k q(z | u_k)``. The KL term of the ELBO
has no closed form then and is estimated with the reparameterised sample:
``log q(z | x) - log p(z)``. New codes are drawn from that prior, through the
pseudo-inputs' posteriors (:meth:`VAMP.pseudo_posteriors` and
:class:`augmentor.peers.samplers.MixtureSampler`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from augmentor.models.vae import VAEConfig

from augmentor.sampling.hmc import HMCConfig

from .base import PeerModel
from .samplers import MixtureSampler

__all__ = ["VAMP", "VAMPConfig", "log_normal_diag", "vamp_log_prior"]


@dataclasses.dataclass
class VAMPConfig(VAEConfig):
    """VampPrior settings.

    Args:
        n_pseudo_inputs: number ``K`` of learned pseudo-inputs (paper: 50).
        log_var_range: ``(low, high)`` the encoder's log-variances are clipped to
            (a hard tanh, as in Tomczak & Welling's code: -6 to 2); ``None`` leaves them
            free. Unclipped, on the paper's MNIST network (Conv 128-1024, BatchNorm,
            beta 0.01), the log-variances of pseudo-inputs the data no longer use drift
            up to 150 within 60 Adam steps (``benchmarks/vamp_stability.py --free``),
            not far below 177, where ``exp(log_var / 2)`` overflows in float32 and the
            loss turns NaN.
    """

    model: Literal["vamp"] = "vamp"
    n_pseudo_inputs: int = 50
    log_var_range: tuple[float, float] | None = (-6.0, 2.0)

    def validate(self) -> None:
        super().validate()
        if self.n_pseudo_inputs < 1:
            self._fail("n_pseudo_inputs", f"must be >= 1, got {self.n_pseudo_inputs}")
        if self.log_var_range is not None and not self.log_var_range[0] < self.log_var_range[1]:
            self._fail("log_var_range", f"must be null or [low, high] with low < high, got {self.log_var_range}")


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag(exp(log_var)))`` summed over the last axis (broadcasting)."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (z - mu) ** 2 * torch.exp(-log_var)).sum(-1)


def vamp_log_prior(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``log (1/K sum_k N(z; mu_k, diag(exp(log_var_k))))`` per code, ``(B,)``.

    Args:
        z: codes ``(B, d)``.
        mu: the components' means ``(K, d)``.
        log_var: their log-variances ``(K, d)``.
    """
    per_component = log_normal_diag(z[:, None, :], mu[None], log_var[None])  # (B, K)
    return torch.logsumexp(per_component, dim=1) - math.log(len(mu))


class VAMP(PeerModel):
    """VAE whose prior is the VampPrior of ``config.n_pseudo_inputs`` learned pseudo-inputs.

    The pseudo-inputs are images of ``in_shape`` kept in [0, 1] by a hard tanh,
    initialised uniformly at random from the global torch RNG.
    """

    config_class = VAMPConfig
    own_sampler = "vamp"

    def __init__(self, config: VAMPConfig) -> None:
        super().__init__(config)
        self.pseudo_inputs = nn.Parameter(torch.rand(config.n_pseudo_inputs, *config.in_shape))

    def pseudo_images(self) -> torch.Tensor:
        """The pseudo-inputs in [0, 1], ``(K, C, H, W[, D])``."""
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means and log-variances ``(B, d)``, the latter clipped to ``config.log_var_range``."""
        mu, log_var = self.net.encode(x)
        if self.config.log_var_range is not None:
            log_var = F.hardtanh(log_var, *self.config.log_var_range)
        return mu, log_var

    def pseudo_posteriors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu_k, log_var_k)``, each ``(K, d)``: the prior's mixture components."""
        return self.encode(self.pseudo_images())

    @torch.no_grad()
    def fit_sampler(
        self, images: torch.Tensor, batch_size: int, device: torch.device | str, hmc: HMCConfig
    ) -> MixtureSampler:
        """The VampPrior as a sampler: the pseudo-inputs' posteriors in eval mode (``images``,
        ``batch_size`` and ``hmc`` are not needed). The model is left in eval mode on ``device``."""
        self.to(device).eval()
        return MixtureSampler().fit(*self.pseudo_posteriors())

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss", "recon", "kl"}``: reconstruction plus ``beta`` times the sampled KL to the VampPrior.

        The images and the pseudo-inputs go through the encoder as one batch. Encoded
        apart, in training mode, every step would also feed BatchNorm's running
        statistics a batch of the ``K`` pseudo-inputs alone, so the eval-mode encoder
        (the codes, the sampler's prior) would normalise with statistics that neither
        pass used. On MNIST that gave a prior far from the codes and blurred
        8-like samples (FID 159 against 43 for the VAE's GMM; see the README).
        """
        pseudo = self.pseudo_images()
        mu_all, log_var_all = self.encode(torch.cat([x, pseudo]))
        mu, log_var = mu_all[: len(x)], log_var_all[: len(x)]
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        recon = self.reconstruction(self.decode(z), x).mean()
        prior = vamp_log_prior(z, mu_all[len(x):], log_var_all[len(x):])
        kl = (log_normal_diag(z, mu, log_var) - prior).mean()
        return {"loss": recon + self.config.kl_weight * kl, "recon": recon, "kl": kl}
