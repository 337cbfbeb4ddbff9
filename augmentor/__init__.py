"""geometric-augmentor: data augmentation with geometry-aware VAEs, for MONAI / PyTorch.

Layout, from the bottom layer up (a module imports only from its own layer or below):
:mod:`augmentor.utils` (configs, files, seeds, batches, devices, figures),
:mod:`augmentor.data` (inputs, data sets, transforms, the toy data),
:mod:`augmentor.sampling` (the metric, HMC, the latent samplers, the per-class draw),
:mod:`augmentor.models` (the VAE, training, the fit report, the peer models),
:mod:`augmentor.metrics` (FID and the other generation metrics), then
:mod:`augmentor.augmentor` (:class:`GeometricAugmentor`), the demo and the command lines.
"""

from ._moved import install as _install_moved_paths

_install_moved_paths()

from .augmentor import AugmentorConfig, ClassModel, GeometricAugmentor
from .utils.config import Config, ConfigError
from .data.inputs import load_data_dicts
from .sampling.metric import MetricConfig, RiemannianMetric
from .sampling.diagnostics import HMCDiagnostics
from .sampling.hardware import native_bfloat16
from .sampling.hmc import HMCConfig, HMCSampler
from .models.vae import VAE, MLPVAE, VAEConfig, build_vae, default_vae_config, vae_preset
from .sampling.samplers import GaussianMixtureSampler, LatentSampler, NormalSampler, RiemannianSampler
from .models.training import TrainerConfig, train_vae

__version__ = "0.1.0"

__all__ = [
    "AugmentorConfig",
    "ClassModel",
    "Config",
    "ConfigError",
    "GaussianMixtureSampler",
    "GeometricAugmentor",
    "HMCConfig",
    "HMCDiagnostics",
    "HMCSampler",
    "LatentSampler",
    "MLPVAE",
    "MetricConfig",
    "NormalSampler",
    "RiemannianMetric",
    "RiemannianSampler",
    "TrainerConfig",
    "VAE",
    "VAEConfig",
    "build_vae",
    "default_vae_config",
    "load_data_dicts",
    "native_bfloat16",
    "train_vae",
    "vae_preset",
]
