"""The latent geometry of a 2-D VAE (paper Fig. 1): ``python -m augmentor.latent_map``.

* :mod:`~pipelines.latent_map.study`: the configuration, the geometry, the figures and the command line.
"""

from .study import LatentMapConfig, LatentMapResult, build_parser, load_latent_map_config, main, run_latent_map

__all__ = ["LatentMapConfig", "LatentMapResult", "build_parser", "load_latent_map_config", "main", "run_latent_map"]
