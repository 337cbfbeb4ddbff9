"""What every peer model shares: the VAE's encoder/decoder presets and its reconstruction term.

A peer model wraps the network :func:`augmentor.models.build_vae` builds for
its config (same MONAI blocks, 2D and 3D, same presets) and changes only the
objective (:meth:`PeerModel.loss`) and, for some, how codes are sampled.
Deterministic models (AE, WAE, RAE) drop the log-variance head, so their
saved weights hold nothing unused.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from augmentor.models.vae import VAEConfig, build_vae, reconstruction_error

__all__ = ["PeerModel", "log_standard_normal"]


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` per row of ``z`` ``(B, d)``, ``(B,)``."""
    return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class PeerModel(nn.Module):
    """Base of the peer models: the VAE network of ``config`` and the shared terms.

    Subclasses set :attr:`config_class`, :attr:`stochastic` and implement :meth:`loss`;
    those with their own sampler set :attr:`own_sampler` and define ``fit_sampler``.

    Args:
        config: an instance of the subclass's :attr:`config_class` (a
            :class:`~augmentor.models.VAEConfig` with the model's own settings).

    Attributes:
        net: the :class:`~augmentor.models.VAE` or :class:`~augmentor.models.MLPVAE`
            whose encoder and decoder the model uses.
    """

    config_class: ClassVar[type[VAEConfig]]
    stochastic: ClassVar[bool] = True
    """Whether the encoder gives posterior variances (what the Riemannian metric is built from)."""
    own_sampler: ClassVar[str | None] = None
    """Name of the model's own sampler, fitted by ``fit_sampler(images, batch_size, device, hmc)``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.net = build_vae(config)
        if not self.stochastic:
            self.net.log_var_head = None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes of ``x`` ``(B, C, H, W[, D])``: ``(mu, log_var)``, each ``(B, d)``.

        Deterministic models return ``(z, None)``: they have no posterior variance.
        """
        if self.stochastic:
            return self.net.encode(x)
        self.net._check_input(x)
        return self.net.mu_head(self.net._features(x)), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W[, D])`` in [0, 1] of latents ``(B, d)``."""
        return self.net.decode(z)

    def reconstruction(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x | z)`` up to a constant, per image ``(B,)`` (the config's ``reconstruction``)."""
        return reconstruction_error(recon, x, self.config.reconstruction)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training objective on images ``x``: scalars, ``"loss"`` the one minimised."""
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The config fields this model adds to :class:`~augmentor.models.VAEConfig`."""
        base = {f.name for f in dataclasses.fields(VAEConfig)}
        return tuple(f.name for f in dataclasses.fields(cls.config_class) if f.name not in base and f.name != "model")
