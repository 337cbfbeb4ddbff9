"""Peer generative models of the paper's comparison, in the VAE's framework.

Every model reuses the encoder/decoder presets of :mod:`augmentor.models` (2D
and 3D, MONAI blocks), trains with :func:`augmentor.training.train_vae` through
its ``loss(x)`` method, saves and loads with the augmentor's safe folder format,
and is picked per class in :class:`augmentor.GeometricAugmentor` by
``AugmentorConfig(model=..., model_options={...})``:

============  =====================================================  ==========================
name          model                                                  samplers
============  =====================================================  ==========================
``vae``       vanilla VAE (:mod:`augmentor.models`)                  prior, gmm, riemannian
``ae``        deterministic autoencoder                              prior, gmm
``wae``       WAE-MMD, IMQ kernel                                    prior, gmm
``vamp``      VAE with a VampPrior of 50 pseudo-inputs               vamp, prior, gmm, riemannian
``hvae``      Hamiltonian VAE                                        prior, gmm, riemannian
``rhvae``     Riemannian Hamiltonian VAE                             rhvae, prior, gmm, riemannian
``rae``       RAE, L2 on the codes                                   gmm, prior
``rae_l2``    RAE + decoder weight decay                             gmm, prior
``rae_gp``    RAE + decoder gradient penalty                         gmm, prior
``rae_sn``    RAE with a spectrally normalised decoder               gmm, prior
============  =====================================================  ==========================

The Riemannian sampler of the paper builds its metric from the encoder's
posterior covariances; the deterministic models (AE, WAE, RAE) have none, so it
is refused on them (see :func:`model_samplers`).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from augmentor.utils.config import ConfigError
from augmentor.models.vae import VAEConfig, build_vae

from .autoencoders import AE, RAE, WAE, AEConfig, RAEConfig, WAEConfig
from .base import PeerModel
from .hamiltonian import HVAE, RHVAE, HVAEConfig, RHVAEConfig
from .samplers import PEER_SAMPLERS, MixtureSampler, RHVAESampler
from .vamp import VAMP, VAMPConfig

__all__ = [
    "AE",
    "HVAE",
    "MODELS",
    "MODEL_CONFIGS",
    "MixtureSampler",
    "PEER_SAMPLERS",
    "PeerModel",
    "RAE",
    "RHVAE",
    "RHVAESampler",
    "VAMP",
    "WAE",
    "build_model",
    "model_config",
    "model_samplers",
    "MODEL_LABELS",
    "SAMPLER_LABELS",
    "riemannian_refusal",
]

MODELS: dict[str, Callable[[VAEConfig], nn.Module]] = {
    "vae": build_vae,
    "ae": AE,
    "wae": WAE,
    "vamp": VAMP,
    "hvae": HVAE,
    "rhvae": RHVAE,
    "rae": RAE,
    "rae_l2": RAE,
    "rae_gp": RAE,
    "rae_sn": RAE,
}
"""Model builders by name: each takes the model's config (:func:`model_config`)."""

MODEL_LABELS: dict[str, str] = {
    "vae": "VAE", "ae": "AE", "wae": "WAE", "vamp": "VAMP", "hvae": "HVAE", "rhvae": "RHVAE",
    "rae": "RAE", "rae_l2": "RAE-L2", "rae_gp": "RAE-GP", "rae_sn": "RAE-SN",
}
"""Each model's name in tables (paper Table 1)."""

SAMPLER_LABELS: dict[str, str] = {
    "prior": "N(0, I)", "gmm": "GMM", "riemannian": "ours", "vamp": "VAMP", "rhvae": "RHVAE",
    "kde": "kde",
}
"""Each sampler's name in tables: a row is ``"<model> - <sampler>"``, e.g. ``"VAMP - VAMP"``."""

MODEL_CONFIGS: dict[str, type[VAEConfig]] = {
    "vae": VAEConfig,
    "ae": AEConfig,
    "wae": WAEConfig,
    "vamp": VAMPConfig,
    "hvae": HVAEConfig,
    "rhvae": RHVAEConfig,
    **{name: RAEConfig for name in ("rae", "rae_l2", "rae_gp", "rae_sn")},
}
"""The config class of each model name."""


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid names are {', '.join(MODELS)}")


def option_names(name: str) -> tuple[str, ...]:
    """The settings model ``name`` adds to the architecture (``model_options`` keys)."""
    _check_name(name)
    model = MODELS[name]
    return model.option_names() if isinstance(model, type) and issubclass(model, PeerModel) else ()


def model_config(name: str, architecture: VAEConfig, options: dict[str, Any] | None = None) -> VAEConfig:
    """The config of model ``name``: the ``architecture``'s fields plus the model's ``options``.

    Args:
        name: a key of :data:`MODELS`.
        architecture: encoder/decoder (and ``reconstruction``, ``beta``) settings.
        options: the model's own settings, e.g. ``{"n_pseudo_inputs": 50}`` for ``"vamp"``.

    Raises:
        ConfigError: unknown name, unknown option or invalid value, named.
    """
    options = dict(options or {})
    allowed = option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"model_options: unknown key(s) {unknown} for model {name!r}; valid keys are {sorted(allowed) or 'none'}"
        )
    if name == "vae":
        return VAEConfig.from_dict(architecture.to_dict())
    return MODEL_CONFIGS[name].from_dict({**VAEConfig.to_dict(architecture), "model": name, **options})


def build_model(config: VAEConfig) -> nn.Module:
    """The network of a config from :func:`model_config` (a plain :class:`VAEConfig` gives the VAE)."""
    name = getattr(config, "model", "vae")
    _check_name(name)
    return MODELS[name](config)


def model_samplers(name: str) -> tuple[str, ...]:
    """Names of the samplers that apply to model ``name``: its own first, then the generic ones
    (the prior, the GMM, the Riemannian sampler, the kernel density on the codes).

    ``"riemannian"`` only where the encoder gives posterior variances (see :func:`riemannian_refusal`).
    """
    _check_name(name)
    model = MODELS[name]
    own = getattr(model, "own_sampler", None)
    generic = ("prior", "gmm") + (("riemannian",) if getattr(model, "stochastic", True) else ()) + ("kde",)
    return ((own,) if own else ()) + generic


def riemannian_refusal(name: str) -> str:
    """Why the Riemannian sampler does not apply to the deterministic model ``name``."""
    return (
        f"the Riemannian sampler does not apply to model {name!r}: its metric "
        "G(z) = sum_j diag(1 / sigma_j^2) omega_j(z) + lambda I (paper Eq. 7) is built from the encoder's "
        f"posterior variances sigma_j^2, and {name!r} is deterministic (its codes have no posterior variance). "
        "Assuming one variance for every code would reduce G to isotropic bumps of an arbitrary width around the "
        "codes, a sharpened kernel density rather than the geometry the encoder learned, so no substitute is "
        "offered. Use sampler 'gmm' (or 'prior') with this model, or a model with a posterior: "
        "'vae', 'vamp', 'hvae', 'rhvae'"
    )
