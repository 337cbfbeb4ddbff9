"""geometric-augmentor: data augmentation with geometry-aware VAEs, for MONAI / PyTorch."""

from .augmentor import AugmentorConfig, GeometricAugmentor
from .config import Config, ConfigError
from .data import load_data_dicts
from .metric import MetricConfig, RiemannianMetric
from .diagnostics import HMCDiagnostics
from .hardware import native_bfloat16
from .hmc import HMCConfig, HMCSampler
from .models import VAE, MLPVAE, VAEConfig, build_vae, default_vae_config, vae_preset
from .samplers import GaussianMixtureSampler, LatentSampler, NormalSampler, RiemannianSampler
from .training import TrainerConfig, train_vae

__version__ = "0.1.0"

__all__ = [
    "AugmentorConfig",
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
