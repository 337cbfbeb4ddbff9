"""Generative models: the paper's VAE (:mod:`.vae`), its training (:mod:`.training`), the fit
report (:mod:`.fit_report`) and the peer models with their registry (:mod:`.peers`).

The VAE's names are importable from here (``from augmentor.models import VAE``).
"""

from .vae import (
    MLPVAE,
    VAE,
    VAE_PRESETS,
    VAEConfig,
    VAEOutput,
    build_vae,
    default_vae_config,
    reconstruction_error,
    vae_loss,
    vae_preset,
)

__all__ = [
    "MLPVAE",
    "VAE",
    "VAE_PRESETS",
    "VAEConfig",
    "VAEOutput",
    "build_vae",
    "default_vae_config",
    "reconstruction_error",
    "vae_loss",
    "vae_preset",
]
