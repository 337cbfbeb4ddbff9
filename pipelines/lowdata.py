"""The low-data study: does synthetic data help a classifier trained on few real images, and by how much?

The TPAMI 2022 protocol on any labelled image set (:mod:`pipelines.sources`):
for each of R seeds, a per-class random order of the pool gives a fixed test set
and validation set (the first images of every class) and an ordered training
pool; the training set of ``n`` images per class is the first ``n`` images of
each class's pool, so for one seed the 10-per-class set lies inside the
50-per-class set (nested sizes: a larger size only adds images). For every
(seed, size): per-class VAEs and the three latent samplers are fitted on that
training set only; then each method's classifier is trained
``classifier_seeds`` times (different initial weights and batch orders, same
data), chosen on validation balanced accuracy and tested.

Methods (:data:`LOWDATA_METHODS`): ``real``; ``resampled`` (minority classes
oversampled; the same images as ``real`` when the classes have equal sizes);
``torchio`` (real + TorchIO ``RandomAffine`` and ``RandomElasticDeformation``
redrawn every epoch); ``monai`` (real + MONAI ``RandRotate``, ``RandZoom``,
``RandGaussianNoise`` redrawn every epoch); ``real+<sampler>`` (real + the
sampler's synthetic images) and ``<sampler>`` (synthetic only) for the samplers
``prior``, ``gmm`` and ``riemannian`` (ours), ``kde`` (the kernel density on the
codes), any other sampler of :data:`augmentor.sampling.samplers.SAMPLERS`, or a peer source ``<model>-<sampler>``
(e.g. ``ae-gmm``). With ``synthetic_ratios`` each synthetic method runs once per
synthetic-to-real ratio (``real+gmm@x5``); ``<method>+filtered`` keeps only the
synthetic images a classifier of the real images is confident about. The
classifier can stop early on the validation split (``classifier`` settings).

The report gives mean ± std per method and size with both sources of variance
(between splits, between classifier seeds on one split), a plot of balanced
accuracy against the training size, the paired differences of every method to
``real`` and to each classical augmentation split by split with 95 % intervals
(``paired.md``, :mod:`pipelines.stats`), and per sampler the mean distance from
its latents to the nearest training code next to the distance between
neighbouring training codes (a sampler that replays the training set has the
first much smaller than the second).

Run directory::

    .lock, study.json                                  lock and identity (see pipelines.runner)
    splits/seed_<s>.pt                                 that seed's indices and images (val, test, ordered pool)
    generate/seed_<s>/n_<size>/class_models[_<model>]/class_<c>/  class c's trained VAE (or peer model)
    generate/seed_<s>/n_<size>/augmentor/              fitted VAEs + samplers
    generate/seed_<s>/n_<size>/augmentor_<model>/      a peer model's augmentor (<model>-<sampler> methods)
    generate/seed_<s>/n_<size>/latents_<sampler>.pt    synthetic latent codes (decoded on use)
    generate/seed_<s>/n_<size>/latent_distances.json   nearest-training-code distances per sampler and class
    results/seed_<s>/n_<size>/<method>/clf_<k>.json    one finished classifier (never overwritten)
    report/                                            summary.csv/.md, per_run.csv, distances.csv, plot,
                                                       paired.csv/.md (each method against real and classical
                                                       augmentation, split by split; pipelines.stats)

Usage::

    python -m augmentor.study --config configs/mnist_lowdata_quick.yaml --out runs/mnist_lowdata_quick
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import pandas as pd
import torch

from augmentor.utils.artifacts import (NUMBER, check_fields, load_checked_tensors, load_intact, read_checked_json,
                                 save_checked_tensors, write_checked_json)
from augmentor.augmentor import CLASS_MODEL_KIND, GeometricAugmentor
from augmentor.utils.config import Config, ConfigError, load_config_file, read_config_data
from augmentor.utils.devices import resolve_device
from augmentor.utils.io import CorruptSaveError, write_bytes, write_json
from augmentor.utils.limits import check_fits
from augmentor.sampling.samplers import SAMPLERS
from augmentor.models.training import result_settings
from augmentor.utils.batching import map_batches

from .classifier import TorchIOAugmentation, classification_metrics, predict, train_classifier
from .config import (
    MAX_REPETITIONS,
    MAX_SEED,
    PEER_SOURCES,
    AugmentationConfig,
    ClassifierConfig,
    RayConfig,
    SamplingConfig,
    VAESection,
    add_override_arguments,
    apply_overrides,
    check_run_settings,
    check_workers,
    command_line_overrides,
    seed_list,
    split_source,
)
from .data import StudyData
from .common import RunDirectory, oversample
from .local_pool import execute_local, resolve_workers
from .jobs import (augmentor_config, augmentor_from_class_models, class_model_path, fitted_class_model,
                   intact_augmentor, job_environment, job_seed, per_class_generators, read_result)
from .report import METHOD_LABELS as STUDY_LABELS
from .ray_backend import RayTask
from .runner import StudyError, claim_run_directory, lock_run_directory, run_command, saved_identity
from .sources import SourceConfig, load_source
from .stats import write_paired_report

__all__ = [
    "FILTER_MARK",
    "LOWDATA_METHODS",
    "PAIRED_BASELINES",
    "RATIO_MARK",
    "REAL_METHODS",
    "LowDataConfig",
    "LowDataResult",
    "LowDataSplitConfig",
    "MonaiAugmentation",
    "MonaiAugmentationConfig",
    "is_filtered",
    "latent_distances",
    "load_lowdata_config",
    "low_data_split",
    "main",
    "method_label",
    "run_lowdata",
    "training_indices",
]

logger = logging.getLogger(__name__)

LOWDATA_METHODS: tuple[str, ...] = (
    "real", "resampled", "torchio", "monai",
    "real+prior", "real+gmm", "real+riemannian", "real+kde",
    "prior", "gmm", "riemannian", "kde",
)
# The methods a study runs unless its config lists them (the kernel density only when asked).
_DEFAULT_METHODS = tuple(m for m in LOWDATA_METHODS if m.removeprefix("real+") != "kde")
METHOD_LABELS = {
    "real": "Real",
    "resampled": "Real resampled",
    "torchio": "Real + TorchIO augmentation",
    "monai": "Real + MONAI augmentation",
    "real+prior": "Real + VAE - N(0, I)",
    "real+gmm": "Real + VAE - GMM",
    "real+riemannian": "Real + VAE - ours",
    "real+kde": "Real + VAE - kde on the codes",
    "prior": "Synthetic only: VAE - N(0, I)",
    "gmm": "Synthetic only: VAE - GMM",
    "riemannian": "Synthetic only: VAE - ours",
    "kde": "Synthetic only: VAE - kde on the codes",
}
ALL = "all"  # a training size: every image of the class's pool
# Every method is compared, split by split, with real images alone and with each classical augmentation.
PAIRED_BASELINES = ("real", "torchio", "monai")
REAL_METHODS = ("real", "resampled", "torchio", "monai")
"""Methods that train on the real images only (no generative model)."""
RATIO_MARK = "@x"  # "real+gmm@x5": real + 5 synthetic images per real image of each class
# "real+gmm+filtered": only the synthetic images a classifier of the real images gives their class confidently
FILTER_MARK = "+filtered"


def method_sampler(method: str) -> str | None:
    """The latent source whose synthetic images ``method`` trains on (a sampler of the per-class VAEs, or a
    peer model's ``<model>-<sampler>``), or None."""
    name = method.removeprefix("real+").split(RATIO_MARK)[0].removesuffix(FILTER_MARK)
    return name if name in SAMPLERS or name in PEER_SOURCES else None


def is_filtered(method: str) -> bool:
    """Whether ``method`` keeps only the synthetic images a real-image classifier is confident about."""
    return method.split(RATIO_MARK)[0].endswith(FILTER_MARK)


def method_label(method: str) -> str:
    """Display name of a method, with its synthetic-to-real ratio if it has one."""
    base, _, ratio = method.partition(RATIO_MARK)
    if is_filtered(base):
        return method_label(base.removesuffix(FILTER_MARK) + method[len(base):]) + ", confidence-filtered"
    source = base.removeprefix("real+")
    if base in METHOD_LABELS:
        label = METHOD_LABELS[base]
    elif source in PEER_SOURCES:
        label = ("Real + " if base != source else "Synthetic only: ") + STUDY_LABELS[source]
    else:
        label = f"Real + VAE - {source}" if base != source else f"Synthetic only: VAE - {source}"
    return f"{label} (x{ratio})" if ratio else label


def _method_order(method: str) -> tuple[int, bool, int]:
    """Sort key: the order of :data:`LOWDATA_METHODS` (other sources after), filtered after unfiltered, ratio."""
    base, _, ratio = method.partition(RATIO_MARK)
    plain = base.removesuffix(FILTER_MARK)
    order = LOWDATA_METHODS.index(plain) if plain in LOWDATA_METHODS else len(LOWDATA_METHODS)
    return order, is_filtered(base), int(ratio or 0)


def size_name(size: int | str) -> str:
    return f"n_{size}"


@dataclasses.dataclass
class LowDataSplitConfig(Config):
    """The fixed validation and test sets of every seed, per class.

    A count (``val_per_class``, ``test_per_class``) takes that many images of each
    class; null takes the fraction of each class instead (at least one image).
    """

    val_per_class: int | None = None
    test_per_class: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def validate(self) -> None:
        for name in ("val_per_class", "test_per_class"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                self._fail(name, f"must be >= 1 or null, got {getattr(self, name)}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                self._fail(name, f"must lie strictly between 0 and 1, got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 0.9:
            self._fail("test_fraction", "val_fraction + test_fraction must leave at least 10 % for training")

    def counts(self, n_class: int) -> tuple[int, int]:
        """``(n_val, n_test)`` images of a class holding ``n_class`` images."""
        n_val = self.val_per_class or max(1, round(self.val_fraction * n_class))
        n_test = self.test_per_class or max(1, round(self.test_fraction * n_class))
        return n_val, n_test


@dataclasses.dataclass
class MonaiAugmentationConfig(Config):
    """The MONAI baseline: ``RandRotate``, ``RandZoom``, ``RandGaussianNoise``, redrawn every epoch.

    Attributes:
        degrees: rotation range (+-degrees, in-plane; about every axis for 3D).
        zoom: zoom range (1 +- zoom).
        noise_std: standard deviation of the Gaussian noise (images in [0, 1]).
        p_rotate, p_zoom, p_noise: probability of applying each transform to an image.
    """

    degrees: float = 10.0
    zoom: float = 0.1
    noise_std: float = 0.02
    p_rotate: float = 0.5
    p_zoom: float = 0.5
    p_noise: float = 0.5

    def validate(self) -> None:
        for name in ("degrees", "noise_std"):
            if getattr(self, name) < 0:
                self._fail(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.zoom < 1:
            self._fail("zoom", f"must lie in [0, 1), got {self.zoom}")
        for name in ("p_rotate", "p_zoom", "p_noise"):
            if not 0 <= getattr(self, name) <= 1:
                self._fail(name, f"must lie in [0, 1], got {getattr(self, name)}")


class MonaiAugmentation:
    """MONAI random rotation, zoom and noise of 2D or 3D images, reproducible per (seed, epoch).

    Set up as in a MONAI training script (array transforms in a ``Compose``); the
    ``Compose``'s random state is reseeded from ``seed`` and the epoch, so a given
    epoch always sees the same augmented set.
    """

    def __init__(self, config: MonaiAugmentationConfig, spatial_dims: int, seed: int) -> None:
        from monai.transforms import Compose, RandGaussianNoise, RandRotate, RandZoom

        angle = math.radians(config.degrees)
        ranges = {"range_x": angle} if spatial_dims == 2 else {"range_x": angle, "range_y": angle, "range_z": angle}
        self.transform = Compose([
            RandRotate(**ranges, prob=config.p_rotate, keep_size=True, padding_mode="zeros"),
            RandZoom(min_zoom=1 - config.zoom, max_zoom=1 + config.zoom, prob=config.p_zoom, keep_size=True),
            RandGaussianNoise(prob=config.p_noise, std=config.noise_std),
        ])
        self.seed = seed

    def __call__(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """Augmented copy of ``(N, C, H, W[, D])`` images in [0, 1] (the input is not modified)."""
        self.transform.set_random_state(seed=(self.seed * 100_003 + epoch) % 2**32)
        out = torch.stack([torch.as_tensor(self.transform(image)).as_subclass(torch.Tensor).float()
                           for image in images.cpu()])
        return out.clamp_(0, 1)


@dataclasses.dataclass
class LowDataConfig(Config):
    """The low-data study (see the module docstring).

    Attributes:
        data: which labelled image set (:class:`pipelines.sources.SourceConfig`).
        split: the fixed validation and test sets per seed.
        train_sizes: training images per class, ascending (``all``: the whole pool).
        vae, sampling: the per-class VAEs and samplers (as in the OASIS study).
        classifier: the Table 4 CNN and its optimisation (early stopping on the
            validation split: ``classifier.early_stopping_patience``).
        classifier_steps: if set, every classifier trains for about this many
            optimiser steps (``epochs`` becomes ``ceil(steps / batches per epoch)``),
            so small and large training sets get the same optimisation budget;
            null trains ``classifier.epochs`` epochs.
        classifier_seeds: classifier repetitions per (seed, size, method).
        filter_confidence: methods ``<method>+filtered`` keep only the synthetic
            images to which a classifier of the real training images (trained and
            selected like the study's classifiers) gives at least this probability
            of their own class.
        synthetic_ratios: synthetic images per real training image and class,
            e.g. ``[1, 5, 10]``: every method with synthetic images then runs once
            per ratio (reported as ``<method>@x<ratio>``) on ``ratio x size``
            synthetic images per class; empty: ``sampling.n_per_class`` per class.
        augmentation: the TorchIO baseline; monai_augmentation: the MONAI baseline.
        seeds: R repetitions (seeds 0..R-1) or an explicit list.
        methods: names of :data:`LOWDATA_METHODS`, or ``real+<source>`` / ``<source>``
            for any sampler of :data:`augmentor.samplers.SAMPLERS` (on the per-class
            VAEs) or peer source ``<model>-<sampler>`` (e.g. ``ae-gmm``, a per-class
            autoencoder with a GMM on its codes; :data:`pipelines.config.PEER_SOURCES`).
        num_threads: torch / BLAS / ITK threads of every job (results depend on it).
        workers: jobs run at once in separate processes by the ``local`` backend
            (results do not depend on it); ``auto``: as many as the CPUs hold at
            ``num_threads`` threads each (one on an accelerator;
            :func:`pipelines.local_pool.resolve_workers`).
        backend: ``local`` (this machine, ``workers`` processes) or ``ray``: every
            (seed, size, class) VAE (or peer model) fit, every (seed, size)
            generate job and every classifier is a Ray task reserving
            ``num_threads`` CPUs and ``ray.gpus_per_job`` GPUs; a generate job runs
            after its class models, a classifier that trains on synthetic images
            after its generate job. Results do not depend on the backend.
        ray: the Ray cluster and the GPUs of each task.
    """

    name: str = "lowdata"
    data: SourceConfig = dataclasses.field(default_factory=SourceConfig)
    split: LowDataSplitConfig = dataclasses.field(default_factory=LowDataSplitConfig)
    train_sizes: tuple[int | str, ...] = (10, 50, 100)
    vae: VAESection = dataclasses.field(default_factory=VAESection)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    classifier_steps: int | None = None
    classifier_seeds: int = 3
    synthetic_ratios: tuple[int, ...] = ()
    filter_confidence: float = 0.9
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    monai_augmentation: MonaiAugmentationConfig = dataclasses.field(default_factory=MonaiAugmentationConfig)
    seeds: int | tuple[int, ...] = 5
    methods: tuple[str, ...] = _DEFAULT_METHODS
    device: str = "auto"
    num_threads: int = 1
    workers: int | Literal["auto"] = "auto"
    deterministic: bool = True
    progress: bool = True
    backend: Literal["local", "ray"] = "local"
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)

    def validate(self) -> None:
        check_workers(self)
        if not self.train_sizes:
            self._fail("train_sizes", "give at least one training size per class, e.g. [10, 50, 100]")
        numeric = [s for s in self.train_sizes if not isinstance(s, str)]
        words = [s for s in self.train_sizes if isinstance(s, str)]
        if [w for w in words if w != ALL] or words[1:] or (words and self.train_sizes[-1] != ALL):
            self._fail("train_sizes",
                       f"sizes are integers >= 1 with an optional final 'all', got {list(self.train_sizes)}")
        if any(s < 1 for s in numeric) or numeric != sorted(set(numeric)):
            self._fail("train_sizes",
                       f"integer sizes must be >= 1, distinct and ascending, got {list(self.train_sizes)}")
        if isinstance(self.seeds, int):
            if not 1 <= self.seeds <= MAX_REPETITIONS:
                self._fail("seeds", f"a count of repetitions must lie in 1..{MAX_REPETITIONS}, got {self.seeds}")
        elif (not self.seeds or len(set(self.seeds)) != len(self.seeds)
              or not all(0 <= s <= MAX_SEED for s in self.seeds)):
            self._fail("seeds", f"must be a non-empty list of distinct seeds in 0..{MAX_SEED}, got {list(self.seeds)}")
        if not 1 <= self.classifier_seeds <= MAX_REPETITIONS:
            self._fail("classifier_seeds", f"must lie in 1..{MAX_REPETITIONS}, got {self.classifier_seeds}")
        if self.classifier_steps is not None and self.classifier_steps < 1:
            self._fail("classifier_steps", f"must be >= 1 or null, got {self.classifier_steps}")
        unknown = [m for m in self.methods if m not in REAL_METHODS and method_sampler(m) is None]
        if not self.methods or unknown or len(set(self.methods)) != len(self.methods):
            self._fail("methods", f"must be distinct names of {list(REAL_METHODS)}, real+<source> or <source> "
                       f"with a sampler of {list(SAMPLERS)} or a peer source of {list(PEER_SOURCES)}; "
                       f"unknown: {unknown}, got {list(self.methods)}")
        if not 0 < self.filter_confidence < 1:
            self._fail("filter_confidence", f"must lie strictly between 0 and 1, got {self.filter_confidence}")
        ratios = list(self.synthetic_ratios)
        if ratios and (min(ratios) < 1 or ratios != sorted(set(ratios))):
            self._fail("synthetic_ratios", f"must be distinct ascending integers >= 1, got {ratios}")
        if ratios and ALL in self.train_sizes:
            self._fail("synthetic_ratios", "need integer training sizes (the size 'all' differs per class)")
        check_run_settings(self)
        size = self.data.expected_image_size()
        if size is not None:
            self.check_image_size(size)

    def check_image_size(self, size: tuple[int, ...]) -> None:
        """Raise :class:`ConfigError` if the VAE, the classifier or TorchIO cannot take images of ``size``."""
        try:
            self.vae.build((1, *size))
            self.classifier.check_image_size(size)
        except ConfigError as err:
            raise ConfigError(f"LowDataConfig (images {tuple(size)}): {err}") from None
        n = self.sampling.n_per_class
        check_fits(n * math.prod(size), f"LowDataConfig.sampling.n_per_class = {n}: the synthetic images of one class "
                                        f"(images {tuple(size)})")
        if len(size) != 2 and "torchio" in self.methods:
            raise ConfigError(f"LowDataConfig.methods: 'torchio' is set up for 2D images, the data are {tuple(size)}; "
                              "use 'monai' for volumes")

    @property
    def seed_list(self) -> list[int]:
        """The repetitions' seeds (see :func:`pipelines.config.seed_list`)."""
        return seed_list(self.seeds)

    @property
    def samplers(self) -> list[str]:
        """The latent sources the methods need: per-class VAE samplers first, then peer sources."""
        needed = {method_sampler(m) for m in self.methods} - {None}
        return [s for s in (*SAMPLERS, *PEER_SOURCES) if s in needed]

    def synthetic_per_class(self, size: int | str, ratio: int | None = None) -> int:
        """Synthetic images per class a method of ``ratio`` trains on at ``size`` (None: the largest ratio)."""
        if not self.synthetic_ratios:
            return self.sampling.n_per_class
        return int(size) * (max(self.synthetic_ratios) if ratio is None else ratio)

    def method_runs(self, method: str) -> list[str]:
        """The reported methods of ``method``: itself, or one per synthetic ratio."""
        if method_sampler(method) is None or not self.synthetic_ratios:
            return [method]
        return [f"{method}{RATIO_MARK}{r}" for r in self.synthetic_ratios]


def load_lowdata_config(path: str | Path, overrides: dict[str, Any] | None = None) -> LowDataConfig:
    """Read a low-data study config, apply ``{"section.key": value}`` overrides, validate.

    Raises:
        ConfigError: missing/invalid file, unknown key or bad value (named with the file).
    """
    if not overrides:
        return load_config_file(path, LowDataConfig)
    try:
        return LowDataConfig.from_dict(apply_overrides(read_config_data(path), overrides))
    except ConfigError as err:
        raise ConfigError(f"{path} (with overrides {sorted(overrides)}): {err}") from None


# --- splits -------------------------------------------------------------------------------------------------


def low_data_split(labels: torch.Tensor, seed: int, config: LowDataSplitConfig,
                   sizes: Sequence[int | str] = ()) -> dict[str, Any]:
    """The fixed validation / test sets and the ordered training pool of one seed.

    Each class's images are put in a random order drawn from ``(seed, class)``:
    the first ``n_test`` are test images, the next ``n_val`` validation images,
    the rest the class's training pool in that order. A training set of ``n`` per
    class is the first ``n`` of each pool (:func:`training_indices`), hence
    stratified, deterministic per seed and nested across sizes.

    Args:
        labels: ``(N,)`` class of every image, ``0..K-1``.
        seed: the repetition.
        config: validation and test sizes.
        sizes: the training sizes to check against the pools.

    Returns:
        ``{"val": [...], "test": [...], "pool": {"<class>": [...]}}``: image indices
        (val and test sorted, the pools in training order).

    Raises:
        ValueError: a class is too small for its test, validation and largest training set.
    """
    y = labels.cpu().numpy()
    largest = max([s for s in sizes if s != ALL], default=1)
    val, test, pool = [], [], {}
    for label in sorted(int(c) for c in np.unique(y)):
        members = np.flatnonzero(y == label)
        order = np.random.default_rng([seed, label]).permutation(members).tolist()
        n_val, n_test = config.counts(len(members))
        if n_test + n_val + largest > len(members):
            raise ValueError(
                f"class {label} has {len(members)} images, too few for {n_test} test + {n_val} validation + "
                f"{largest} training images; lower split.*_per_class or train_sizes"
            )
        test += order[:n_test]
        val += order[n_test:n_test + n_val]
        pool[str(label)] = order[n_test + n_val:]
    return {"val": sorted(val), "test": sorted(test), "pool": pool}


def training_indices(split: dict[str, Any], size: int | str) -> list[int]:
    """Sorted indices of the training set of ``size`` images per class (``all``: every pool image)."""
    return sorted(i for pool in split["pool"].values() for i in (pool if size == ALL else pool[:size]))


# --- run directory ------------------------------------------------------------------------------------------


class LowDataPaths(RunDirectory):
    """Where everything of a low-data run directory lives (see the module docstring)."""

    def split(self, seed: int) -> Path:
        return self.root / "splits" / f"seed_{seed}.pt"

    def generate(self, seed: int, size: int | str) -> Path:
        return self.root / "generate" / f"seed_{seed}" / size_name(size)

    def augmentor(self, seed: int, size: int | str, generator: str = "vae") -> Path:
        """The fitted augmentor of ``generator`` (``vae``: the per-class VAEs; a peer model's name)."""
        return self.generate(seed, size) / ("augmentor" if generator == "vae" else f"augmentor_{generator}")

    def class_model(self, seed: int, size: int | str, label: int, generator: str = "vae") -> Path:
        """Class ``label``'s trained model of ``generator`` (``vae`` or a peer model's name)."""
        return class_model_path(self.generate(seed, size), label, generator)

    def latents(self, seed: int, size: int | str, sampler: str) -> Path:
        return self.generate(seed, size) / f"latents_{sampler}.pt"

    def distances(self, seed: int, size: int | str) -> Path:
        return self.generate(seed, size) / "latent_distances.json"

    def result(self, seed: int, size: int | str, method: str, classifier_seed: int) -> Path:
        return self.root / "results" / f"seed_{seed}" / size_name(size) / method / f"clf_{classifier_seed}.json"


@dataclasses.dataclass(frozen=True)
class LowDataJob:
    """``vae`` (per seed, size, class and per-class generator), ``generate`` (per seed and size) or ``classify``
    (per seed, size, method and classifier seed); ``after``: the keys of the jobs whose outputs it reads."""

    kind: str
    seed: int
    size: int | str
    method: str = ""
    classifier_seed: int = 0
    label: int | None = None
    generator: str = "vae"
    after: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        base = f"{self.kind}/seed_{self.seed}/{size_name(self.size)}"
        if self.kind == "vae":
            return f"{base}/{'' if self.generator == 'vae' else f'{self.generator}/'}class_{self.label}"
        return base if self.kind == "generate" else f"{base}/{self.method}/clf_{self.classifier_seed}"


def plan_lowdata_jobs(config: LowDataConfig, classes: Sequence[int]) -> list[LowDataJob]:
    """Seed by seed and size by size: if a method needs synthetic images, a ``vae`` job per class and per-class
    generator and the generate job after them; then the classifiers.

    Args:
        config: the study.
        classes: the class ids of the data (every training set holds every class).
    """
    jobs = []
    generators = per_class_generators(config.samplers)
    for seed in config.seed_list:
        for size in config.train_sizes:
            models = [LowDataJob("vae", seed, size, label=c, generator=g) for g in generators for c in classes]
            generate = LowDataJob("generate", seed, size, after=tuple(job.key for job in models))
            if config.samplers:
                jobs += [*models, generate]
            jobs += [LowDataJob("classify", seed, size, run, k, after=(generate.key,) if method_sampler(run) else ())
                     for method in config.methods for run in config.method_runs(method)
                     for k in range(config.classifier_seeds)]
    return jobs


def _read_distances(path: Path) -> dict[str, Any]:
    """``latent_distances.json``, checksum and layout verified (sampler -> class -> the three distances)."""
    distances = read_checked_json(path)
    fields = {f"{sampler}.{label}.{key}": NUMBER for sampler, per_class in dict(distances).items()
              for label in dict(per_class) for key in ("to_nearest_code", "between_codes", "ratio")}
    check_fields(distances, fields)
    return distances


def _generate_done(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> bool:
    # Damaged files are moved aside here, so the job makes them again.
    return (intact_augmentor(paths.augmentor(job.seed, job.size))
            and load_intact(paths.distances(job.seed, job.size), _read_distances) is not None
            and all(load_intact(paths.latents(job.seed, job.size, s)) is not None for s in config.samplers))


def is_done(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> bool:
    if job.kind == "vae":
        return intact_augmentor(paths.class_model(job.seed, job.size, job.label, job.generator), CLASS_MODEL_KIND)
    if job.kind == "generate":
        return _generate_done(paths, config, job)
    return read_result(paths.result(job.seed, job.size, job.method, job.classifier_seed)) is not None


def _seed_data(paths: LowDataPaths, seed: int, size: int | str) -> dict[str, torch.Tensor]:
    """The seed's stored images and labels: ``train_x``, ``train_y`` (``size`` per class), ``val_*``, ``test_*``."""
    state = load_checked_tensors(paths.split(seed))
    split = state["split"]
    position = {index: row for row, index in enumerate(state["indices"])}
    parts = {"train": training_indices(split, size), "val": split["val"], "test": split["test"]}
    data = {}
    for name, indices in parts.items():
        rows = torch.tensor([position[i] for i in indices], dtype=torch.long)
        data[f"{name}_x"], data[f"{name}_y"] = state["images"][rows], state["labels"][rows]
    return data


def _nearest_distance(a: torch.Tensor, b: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """For each row of ``a`` ``(n, d)``, the Euclidean distance to its nearest row of ``b`` ``(m, d)``."""
    distances = torch.cdist(a.double(), b.double())
    if exclude_self:
        distances.fill_diagonal_(math.inf)
    return distances.min(dim=1).values


def latent_distances(codes: torch.Tensor, samples: torch.Tensor) -> dict[str, float]:
    """How far a sampler's latents lie from the training codes, against the codes' own spacing.

    Args:
        codes: ``(n, d)`` posterior means of one class's training images.
        samples: ``(m, d)`` latents drawn for that class.

    Returns:
        ``to_nearest_code``: mean distance from a sample to its nearest code;
        ``between_codes``: mean distance from a code to its nearest other code
        (NaN for a single code); ``ratio``: the first over the second (well below
        1: the sampler mostly replays training codes).
    """
    to_code = float(_nearest_distance(samples, codes).mean())
    between = float(_nearest_distance(codes, codes, exclude_self=True).mean()) if len(codes) > 1 else math.nan
    return {"to_nearest_code": to_code, "between_codes": between, "ratio": to_code / between}


def _vae_seed(job: LowDataJob) -> int:
    """The seed of the (seed, size) models' trainers (offset per class) and of the jobs that fit them."""
    return job_seed(job.seed, f"vae/{size_name(job.size)}")


def run_class_model(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Train and save the (seed, size) model of one class (the ``vae`` job), unless saved."""
    if is_done(paths, config, job):
        return
    label = int(job.label)  # type: ignore[arg-type]
    with job_environment(config, _vae_seed(job)):
        data = _seed_data(paths, job.seed, job.size)
        shape = tuple(data["train_x"].shape[1:])
        augmentor = GeometricAugmentor(augmentor_config(config, _vae_seed(job), shape, job.generator))
        fitted_class_model(paths.class_model(job.seed, job.size, label, job.generator), augmentor,
                           data["train_x"], data["train_y"], label)


def run_generate(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Fit the (seed, size) augmentor on its training set; draw each sampler's latents; measure distances."""
    vae_seed = _vae_seed(job)
    with job_environment(config, vae_seed):
        data = _seed_data(paths, job.seed, job.size)
        augmentors: dict[str, GeometricAugmentor] = {}
        distances: dict[str, dict[str, dict[str, float]]] = {}
        n = config.synthetic_per_class(job.size)
        for source in config.samplers:
            generator, sampler = split_source(source)
            if generator not in augmentors:
                augmentors[generator] = _fitted_augmentor(paths, config, job, data, vae_seed, generator)
            augmentor = augmentors[generator]
            z, labels = augmentor.class_latents(n, sampler, seed=job.seed)
            distances[source] = {}
            for label, samples in zip(augmentor.classes, z.split(n)):
                model = augmentor.models[label].cpu().eval()
                with torch.no_grad():
                    mu = model.encode(data["train_x"][data["train_y"] == label])[0]
                distances[source][str(label)] = latent_distances(mu, samples)
            target = paths.latents(job.seed, job.size, source)
            if load_intact(target) is None:
                save_checked_tensors(target, {"z": z, "labels": labels, "sampler": source, "n_per_class": n})
        write_checked_json(paths.distances(job.seed, job.size), distances)


def _fitted_augmentor(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob, data: dict[str, torch.Tensor],
                      seed: int, generator: str) -> GeometricAugmentor:
    """The (seed, size) augmentor of ``generator`` (``vae`` or a peer model): loaded if saved, else fitted, saved."""
    folder = paths.augmentor(job.seed, job.size, generator)
    saved = load_intact(folder, lambda path: GeometricAugmentor.load(path, device=config.device),
                        (CorruptSaveError,))  # only damage; other errors (a device) propagate
    if saved is not None:
        return saved
    augmentor = GeometricAugmentor(augmentor_config(config, seed, tuple(data["train_x"].shape[1:]), generator))
    augmentor_from_class_models(augmentor, data["train_x"], data["train_y"],
                                lambda c: paths.class_model(job.seed, job.size, c, generator))
    augmentor.save(folder)
    return augmentor


def _training_set(paths: LowDataPaths, config: LowDataConfig, data: dict[str, torch.Tensor],
                  job: LowDataJob) -> tuple[torch.Tensor, torch.Tensor]:
    """The images and labels ``job.method`` trains on (before on-the-fly augmentation)."""
    real_x, real_y = data["train_x"], data["train_y"]
    if job.method in ("real", "torchio", "monai"):
        return real_x, real_y
    if job.method == "resampled":
        index = oversample(real_y, job_seed(job.seed, f"resample/{size_name(job.size)}"))
        return real_x[index], real_y[index]
    sampler = method_sampler(job.method)
    latents = load_intact(paths.latents(job.seed, job.size, sampler))  # type: ignore[arg-type]
    if latents is None:
        raise StudyError(f"{paths.latents(job.seed, job.size, sampler)} is missing or was damaged; "
                         "rerun to draw it again")
    ratio = job.method.partition(RATIO_MARK)[2]
    z, synth_y = latents["z"], latents["labels"]
    if ratio:  # the first ratio x size codes of each class (chains are independent)
        keep = torch.cat([torch.nonzero(synth_y == c).flatten()[:config.synthetic_per_class(job.size, int(ratio))]
                          for c in synth_y.unique()])
        z, synth_y = z[keep], synth_y[keep]
    generator = split_source(sampler)[0]  # type: ignore[arg-type]
    augmentor = GeometricAugmentor.load(paths.augmentor(job.seed, job.size, generator), device=config.device)
    synth_x = augmentor.decode(z, synth_y)
    if is_filtered(job.method):
        confident = _confident(config, data, job, synth_x, synth_y)
        synth_x, synth_y = synth_x[confident], synth_y[confident]
    if job.method.startswith("real+"):
        return torch.cat([real_x, synth_x]), torch.cat([real_y, synth_y])
    return synth_x, synth_y


def _confident(config: LowDataConfig, data: dict[str, torch.Tensor], job: LowDataJob, images: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """Mask of the synthetic ``images`` ``(n, C, H, W[, D])`` to which a classifier of the (seed, size)'s real
    training images gives at least ``filter_confidence`` probability of their ``labels``."""
    seed = job_seed(job.seed, f"filter/{size_name(job.size)}")  # the same judge for every filtered method
    classifier = _classifier_config(config, len(data["train_x"]))
    device = resolve_device(config.device)
    judge = train_classifier(data["train_x"], data["train_y"], data["val_x"], data["val_y"], classifier, seed=seed,
                             device=device)
    probabilities = torch.cat(map_batches(lambda x: judge.model(x).softmax(1).cpu(), images,
                                          classifier.eval_batch_size, device))
    return probabilities[torch.arange(len(labels)), labels] >= config.filter_confidence


@contextlib.contextmanager
def _itk_threads(threads: int) -> Iterator[None]:
    """Give TorchIO's SimpleITK resampling the job's thread count for the block.

    ITK otherwise starts one thread per core for every image it resamples; on a
    busy 2-core machine that made a 28 x 28 affine + elastic draw 13 times slower
    (74 ms instead of 5.6 ms).
    """
    import SimpleITK

    before = SimpleITK.ProcessObject.GetGlobalDefaultNumberOfThreads()
    SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        yield
    finally:
        SimpleITK.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _classifier_config(config: LowDataConfig, n_train: int) -> ClassifierConfig:
    if config.classifier_steps is None:
        return config.classifier
    batches = math.ceil(n_train / config.classifier.batch_size)
    return config.classifier.replace(epochs=max(1, math.ceil(config.classifier_steps / batches)))


def run_classify(paths: LowDataPaths, config: LowDataConfig, job: LowDataJob) -> None:
    """Train and test one classifier of (seed, size, method, classifier seed); write its result."""
    start = time.perf_counter()
    seed = job_seed(job.seed, f"{job.method}/{size_name(job.size)}/clf_{job.classifier_seed}")
    with job_environment(config, seed) as device, _itk_threads(config.num_threads):
        data = _seed_data(paths, job.seed, job.size)
        x, y = _training_set(paths, config, data, job)
        augment: Any = None
        if job.method == "torchio":
            augment = TorchIOAugmentation(config.augmentation, x.shape[2:], seed)
        elif job.method == "monai":
            augment = MonaiAugmentation(config.monai_augmentation, x.ndim - 2, seed)
        classifier = _classifier_config(config, len(x))
        trained = train_classifier(x, y, data["val_x"], data["val_y"], classifier, seed=seed, device=device,
                                   augment=augment, progress=False)
        prediction = predict(trained.model, data["test_x"], classifier.eval_batch_size, device)
        classes = sorted(int(c) for c in data["test_y"].unique())
        metrics = classification_metrics(data["test_y"].numpy(), prediction, classes)
    write_json(paths.result(job.seed, job.size, job.method, job.classifier_seed), {
        "seed": job.seed, "size": job.size, "method": job.method, "classifier_seed": job.classifier_seed,
        "job_seed": seed, "test": metrics, "best_epoch": trained.best_epoch, "epochs": classifier.epochs,
        "best_val_balanced_accuracy": trained.best_val_balanced_accuracy, "n_train": len(x),
        "n_val": len(data["val_y"]), "n_test": len(data["test_y"]), "history": trained.history,
        "seconds": round(time.perf_counter() - start, 3),
    })


# --- identity and preparation -------------------------------------------------------------------------------

# Settings that choose which jobs run or how they are shown, never what a job computes.
_NOT_IDENTITY = ("name", "seeds", "methods", "classifier_seeds", "workers", "progress", "backend", "ray")


def lowdata_identity(config: LowDataConfig, device_type: str, data_fingerprint: str) -> dict[str, Any]:
    """The settings every job's result depends on; the data enter through their fingerprint, not their paths."""
    ident = config.to_dict()
    for key in _NOT_IDENTITY:
        ident.pop(key)
    ident["data"] = {"source": config.data.source, "fingerprint": data_fingerprint}
    ident["vae"]["trainer"] = result_settings(ident["vae"]["trainer"])
    ident["sampling"]["hmc"].pop("progress", None)
    ident["device"] = device_type
    return ident


def _check_outside_data(root: Path, config: SourceConfig) -> None:
    folders = []
    if config.source == "datadicts" and config.path:
        folders.append(Path(config.path).expanduser().resolve().parent)
    if config.source == "oasis" and config.oasis.data_dir:
        data = Path(config.oasis.data_dir).expanduser().resolve()
        folders.append(data.parent if data.suffix == ".npz" else data)
    out = root.resolve()
    for folder in folders:
        if out == folder or folder in out.parents:
            raise StudyError(f"the run directory {out} lies inside the data folder {folder}; "
                             "input data are never written to")


def prepare_lowdata_run(paths: LowDataPaths, config: LowDataConfig, data: StudyData, device_type: str) -> None:
    """Check every seed's split, then write (or verify) ``study.json`` and each seed's split file.

    Raises:
        RunDirectoryError: the folder holds another study or foreign files, or a stored split differs.
        ValueError: a class is too small for the split and the sizes.
    """
    _check_outside_data(paths.root, config.data)
    splits = {seed: low_data_split(data.labels, seed, config.split, config.train_sizes) for seed in config.seed_list}
    record = {"config": config.to_dict(), "data_source": data.source, "n_images": len(data.labels),
              "image_shape": list(data.images.shape[1:]), "class_counts": torch.bincount(data.labels).tolist(),
              "versions": {"torch": torch.__version__, "python": platform.python_version()}}
    claim_run_directory(paths, lowdata_identity(config, device_type, data.fingerprint()), record)
    largest = max([s for s in config.train_sizes if s != ALL], default=0)
    for seed, split in splits.items():
        target = paths.split(seed)
        stored = load_intact(target)  # a damaged split is moved aside and stored again
        if stored is not None:
            if stored["split"] != split:
                raise StudyError(f"{target} differs from the split computed now; not resuming")
            continue
        # Stored: the validation and test images and as much of each pool as the largest size uses.
        kept = {k: v if ALL in config.train_sizes else v[:largest] for k, v in split["pool"].items()}
        indices = sorted(set(split["val"]) | set(split["test"]) | {i for v in kept.values() for i in v})
        rows = torch.tensor(indices, dtype=torch.long)
        save_checked_tensors(target, {"split": split, "indices": indices, "images": data.images[rows].contiguous(),
                              "labels": data.labels[rows]})


# --- report -------------------------------------------------------------------------------------------------


def _size_order(size: Any) -> float:
    return math.inf if size == ALL else float(size)


def collect_lowdata_results(paths: LowDataPaths) -> pd.DataFrame:
    """One row per finished classifier of the run directory."""
    rows = []
    for file in sorted((paths.root / "results").glob("seed_*/n_*/*/clf_*.json")):
        result = read_result(file)
        if result is None:
            continue
        rows.append({"method": result["method"], "size": result["size"], "seed": result["seed"],
                     "classifier_seed": result["classifier_seed"],
                     "balanced_accuracy": result["test"]["balanced_accuracy"],
                     "accuracy": result["test"]["accuracy"], "best_epoch": result["best_epoch"],
                     "n_train": result["n_train"]})
    table = pd.DataFrame(rows, columns=["method", "size", "seed", "classifier_seed", "balanced_accuracy",
                                        "accuracy", "best_epoch", "n_train"])
    keys = table.assign(_m=table["method"].map(_method_order), _s=table["size"].map(_size_order))
    return table.loc[keys.sort_values(["_m", "_s", "seed", "classifier_seed"]).index].reset_index(drop=True)


def summarize_lowdata(per_run: pd.DataFrame) -> pd.DataFrame:
    """Balanced accuracy per (method, size): mean, std over all runs, and the two sources of variance.

    ``split_std`` is the std over seeds of each seed's mean (the split and its
    generative models); ``classifier_std`` is the root mean within-seed variance
    over classifier seeds (one split, other initial weights and batch orders).
    """
    rows = []
    for (method, size), group in per_run.groupby(["method", "size"], sort=False):
        per_seed = group.groupby("seed")["balanced_accuracy"]
        within = per_seed.var(ddof=1).dropna()
        rows.append({
            "method": method, "size": size, "runs": len(group), "seeds": per_seed.ngroups,
            "balanced_accuracy_mean": group["balanced_accuracy"].mean(),
            "balanced_accuracy_std": group["balanced_accuracy"].std(ddof=1) if len(group) > 1 else 0.0,
            "split_std": per_seed.mean().std(ddof=1) if per_seed.ngroups > 1 else 0.0,
            "classifier_std": math.sqrt(within.mean()) if len(within) else 0.0,
        })
    return pd.DataFrame(rows)


def summarize_distances(paths: LowDataPaths) -> pd.DataFrame:
    """Per sampler and size: mean over seeds and classes of the latent distances (see :func:`latent_distances`)."""
    rows = []
    for file in sorted((paths.root / "generate").glob("seed_*/n_*/latent_distances.json")):
        size_text = file.parent.name.removeprefix("n_")
        size = size_text if size_text == ALL else int(size_text)
        distances = load_intact(file, _read_distances)  # a damaged file is moved aside and made again by a rerun
        for sampler, per_class in (distances or {}).items():
            for values in per_class.values():
                rows.append({"sampler": sampler, "size": size, **values})
    if not rows:
        return pd.DataFrame(columns=["sampler", "size", "to_nearest_code", "between_codes", "ratio"])
    table = pd.DataFrame(rows).groupby(["sampler", "size"], sort=False).mean().reset_index()
    order = {s: i for i, s in enumerate(SAMPLERS)}
    keys = table.assign(_a=table["sampler"].map(order), _s=table["size"].map(_size_order))
    return table.loc[keys.sort_values(["_a", "_s"]).index].reset_index(drop=True)


def _sizes(summary: pd.DataFrame) -> list[Any]:
    return sorted(summary["size"].unique().tolist(), key=_size_order)


def _mean_std(row: Any) -> str:
    return f"{100 * row.balanced_accuracy_mean:.1f} ± {100 * row.balanced_accuracy_std:.1f}"


def lowdata_markdown(summary: pd.DataFrame, distances: pd.DataFrame) -> str:
    """Three Markdown tables: balanced accuracy per method and size (mean ± std, %), variance sources, distances."""
    sizes = _sizes(summary)
    cell = {(r.method, r.size): r for r in summary.itertuples()}
    methods = list(dict.fromkeys(summary["method"]))
    head = ["Method"] + [f"{s} / class" for s in sizes]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(sizes) + "|"]
    for method in methods:
        cells = [_mean_std(cell[method, s]) if (method, s) in cell else "" for s in sizes]
        lines.append("| " + " | ".join([method_label(method)] + cells) + " |")
    lines += ["", "Sources of variance (std of balanced accuracy, %: between splits / between classifier seeds "
              "on one split; runs = seeds x classifier seeds):", "",
              "| Method | Size / class | Runs | Mean | Std (all runs) | Split std | Classifier std |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {method_label(r.method)} | {r.size} | {r.runs} ({r.seeds} x "
                     f"{r.runs // max(r.seeds, 1)}) | {100 * r.balanced_accuracy_mean:.1f} | "
                     f"{100 * r.balanced_accuracy_std:.1f} | {100 * r.split_std:.1f} | {100 * r.classifier_std:.1f} |")
    if len(distances):
        lines += ["", "Latent distances (mean over seeds and classes): from a sampler's latent to the nearest "
                  "training code, and from a training code to its nearest other code:", "",
                  "| Sampler | Size / class | To nearest code | Between codes | Ratio |", "|---|---:|---:|---:|---:|"]
        for r in distances.itertuples():
            lines.append(f"| {r.sampler} | {r.size} | {r.to_nearest_code:.3f} | {r.between_codes:.3f} "
                         f"| {r.ratio:.2f} |")
    return "\n".join(lines)


def size_plot(summary: pd.DataFrame, title: str = "") -> bytes:
    """PNG bytes: mean balanced accuracy (%) against the training size per method, ± the between-split std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = _sizes(summary)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    styles = {"real": ("k", "-"), "resampled": ("grey", "-"), "torchio": ("tab:orange", "--"),
              "monai": ("tab:brown", "--"), "real+prior": ("tab:green", "-"), "real+gmm": ("tab:blue", "-"),
              "real+riemannian": ("tab:red", "-"), "prior": ("tab:green", ":"), "gmm": ("tab:blue", ":"),
              "riemannian": ("tab:red", ":")}
    for method, group in summary.groupby("method", sort=False):
        group = group.assign(_s=group["size"].map(_size_order)).sort_values("_s")
        x = [sizes.index(s) for s in group["size"]]
        color, line = styles.get(method.partition(RATIO_MARK)[0].removesuffix(FILTER_MARK), (None, "-"))
        ax.errorbar(x, 100 * group["balanced_accuracy_mean"], yerr=100 * group["split_std"], color=color, ls=line,
                    marker="o", ms=4, capsize=3, label=method_label(method))
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("real training images per class")
    ax.set_ylabel("test balanced accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_lowdata_report(paths: LowDataPaths, title: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Write ``report/`` from every finished result of the run directory; return (per_run, summary, markdown)."""
    per_run = collect_lowdata_results(paths)
    summary = summarize_lowdata(per_run)
    distances = summarize_distances(paths)
    table = lowdata_markdown(summary, distances)
    write_bytes(paths.report / "per_run.csv", per_run.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "summary.csv", summary.to_csv(index=False, float_format="%.6f").encode())
    write_bytes(paths.report / "distances.csv", distances.to_csv(index=False, float_format="%.6f").encode())
    header = (f"# {title}\n\nTest balanced accuracy (%), mean ± std over every seed and classifier seed; "
              "the size is the number of real training images per class.\n\n")
    write_bytes(paths.report / "summary.md", (header + table + "\n").encode())
    write_bytes(paths.report / "balanced_accuracy_vs_size.png", size_plot(summary, title))
    labels = {method: method_label(method) for method in per_run["method"].unique()}
    write_paired_report(paths.report, per_run, PAIRED_BASELINES, labels, ["size"], "Size / class",
                        f"{title}: paired differences")
    return per_run, summary, table


# --- the study ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LowDataResult:
    """What :func:`run_lowdata` returns: the tables and where everything was written."""

    out: Path
    per_run: pd.DataFrame
    summary: pd.DataFrame
    table: str
    jobs_run: int
    jobs_skipped: int
    seconds: float
    job_resources: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def _run_one(root: str, config_data: dict[str, Any], job: LowDataJob) -> None:
    """Run one job (the entry point of the worker processes)."""
    config = LowDataConfig.from_dict(config_data)
    run = {"vae": run_class_model, "generate": run_generate, "classify": run_classify}[job.kind]
    run(LowDataPaths(root), config, job)


def _run_jobs(paths: LowDataPaths, config: LowDataConfig, jobs: Sequence[LowDataJob]) -> list[tuple[str, str]]:
    """Run ``jobs`` with the local backend (:func:`pipelines.local_pool.execute_local`): in this process the class
    models first, then the generate jobs, then the classifiers; with several ``workers``, each job in a worker
    process once the jobs it reads (its ``after``) have finished.

    Every job fixes its own threads and seeds, so the results do not depend on the
    number of workers. A failed job skips the jobs that need it; other failures are
    collected and reported at the end.
    """
    workers = resolve_workers(config.workers, config.num_threads, resolve_device(config.device).type, len(jobs))
    # Worker processes share the terminal: only this process draws a progress bar.
    data = config.to_dict() if workers == 1 else {**config.to_dict(), "progress": False}
    phases = ("vae", "generate", "classify")
    ordered = sorted(jobs, key=lambda job: phases.index(job.kind))
    tasks = [RayTask(job.key, _run_one, (str(paths.root), data, job), job.after) for job in ordered]
    return execute_local(tasks, workers, config.progress)


def _run_jobs_on_ray(paths: LowDataPaths, config: LowDataConfig,
                     jobs: Sequence[LowDataJob]) -> tuple[list[tuple[str, str]], dict[str, dict[str, float]]]:
    """Run ``jobs`` as Ray tasks (see :class:`LowDataConfig`); return the failures and each task's resources."""
    from .ray_backend import RayTask, RayUnavailableError, execute_ray

    root = str(paths.root.resolve())
    data = {**config.to_dict(), "progress": False}  # no terminal inside a task
    todo = {job.key for job in jobs}  # finished jobs are not submitted, so nothing waits for them
    tasks = [RayTask(job.key, _run_one, (root, data, job), tuple(k for k in job.after if k in todo)) for job in jobs]
    try:
        outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    except RayUnavailableError as err:
        raise StudyError(str(err)) from err
    return outcome.failures, outcome.resources


def run_lowdata(config: LowDataConfig, out: str | Path, cache_dir: str | Path | None = None) -> LowDataResult:
    """Run (or resume) the low-data study into the run directory ``out``.

    Raises:
        RunDirectoryError: ``out`` holds a different study or foreign files, or another run is using it.
        JobFailure: some jobs failed; the finished ones are kept.
        ValueError, FileNotFoundError, ConfigError: the data cannot be used (named).
    """
    from .runner import JobFailure

    start = time.perf_counter()
    paths = LowDataPaths(out)
    device_type = resolve_device(config.device).type
    _check_outside_data(paths.root, config.data)  # before the lock file could be created in the data folder
    saved_identity(paths)  # refuse a foreign folder before the lock file is created in it
    with lock_run_directory(paths):
        data = load_source(config.data, cache_dir, progress=config.progress)
        config.check_image_size(tuple(data.images.shape[2:]))
        config.vae.build(tuple(data.images.shape[1:]))
        prepare_lowdata_run(paths, config, data, device_type)
        classes = sorted(int(c) for c in data.labels.unique())
        del data
        jobs = plan_lowdata_jobs(config, classes)
        todo = [job for job in jobs if not is_done(paths, config, job)]
        logger.info("Low-data study %r: %d seed(s) x %d size(s) x %d method(s) x %d classifier seed(s), "
                    "%d jobs (%d already finished), device %s, run directory %s", config.name,
                    len(config.seed_list), len(config.train_sizes), len(config.methods), config.classifier_seeds,
                    len(jobs), len(jobs) - len(todo), device_type, paths.root)
        resources: dict[str, dict[str, float]] = {}
        if config.backend == "ray" and todo:
            failures, resources = _run_jobs_on_ray(paths, config, todo)
        else:
            failures = _run_jobs(paths, config, todo)
        per_run, summary, table = write_lowdata_report(paths, f"Low-data study {config.name!r} ({config.data.source})")
        if failures:
            raise JobFailure(failures, paths.root)
        return LowDataResult(paths.root, per_run, summary, table, len(todo), len(jobs) - len(todo),
                             time.perf_counter() - start, resources)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.study",
        description="Low-data augmentation study on any labelled image set (OASIS-1, MNIST, digits, or your "
        "NIfTI data dicts): real / classical / synthetic training sets at several training sizes; resumable.",
    )
    parser.add_argument("--config", type=Path, required=True,
                        help="study YAML/JSON file, or a shipped config's name such as lowdata_tiny")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/lowdata_<config name>)")
    parser.add_argument("--seeds", type=int, help="number of repetitions (seeds 0..R-1)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--cache-dir", type=Path, help="cache root of simulated OASIS cohorts")
    add_override_arguments(parser, "'train_sizes=[10,50]'")
    return parser


def _print_result(config: LowDataConfig, result: LowDataResult, out: Path) -> None:
    """The study's table and where the report lies, for the terminal."""
    print()
    print(result.table)
    print(f"\nReport: {LowDataPaths(out).report} (summary.md, summary.csv, per_run.csv, distances.csv, "
          f"balanced_accuracy_vs_size.png, paired.md, paired.csv)")
    print(f"{result.jobs_run} job(s) run, {result.jobs_skipped} skipped, {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"seeds": args.seeds, "device": args.device}
    return run_command(
        lambda: load_lowdata_config(args.config, command_line_overrides(args, overrides)), "lowdata_{name}",
        args.out, lambda config, out: run_lowdata(config, out, cache_dir=args.cache_dir), _print_result,
    )
