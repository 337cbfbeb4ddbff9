"""geometric-augmentor: data augmentation with geometry-aware VAEs, for MONAI / PyTorch."""

from .config import Config, ConfigError
from .metric import MetricConfig, RiemannianMetric
from .sampling import (
    GaussianMixtureSampler,
    HMCConfig,
    HMCDiagnostics,
    HMCSampler,
    LatentSampler,
    NormalSampler,
    RiemannianSampler,
)

__version__ = "0.1.0"
