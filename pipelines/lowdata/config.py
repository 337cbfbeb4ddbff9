"""The low-data study's configuration: its methods, its split, its MONAI augmentation, the whole study."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

from augmentor.utils.config import Config, ConfigError
from augmentor.utils.limits import check_fits
from augmentor.sampling.samplers import SAMPLERS

from ..common.cli import load_config_with_overrides
from ..common.methods import (FILTER_MARK, PEER_SOURCES, RATIO_MARK, REAL_METHODS, SHARED_PREFIX,
                              canonical_methods, is_filtered, method_sampler)
from ..common.settings import (MAX_REPETITIONS, MAX_SEED, AugmentationConfig, ClassifierConfig, check_workers,
                               RayConfig, SamplingConfig, VAESection, check_run_settings, seed_list)
from .sources import SourceConfig

__all__ = [
    "ALL",
    "LOWDATA_METHODS",
    "PAIRED_BASELINES",
    "LowDataConfig",
    "LowDataSplitConfig",
    "MonaiAugmentationConfig",
    "load_lowdata_config",
    "method_order",
    "size_name",
]

LOWDATA_METHODS: tuple[str, ...] = (
    "real", "resampled", "torchio", "monai",
    "real+prior", "real+gmm", "real+riemannian", "real+kde",
    "prior", "gmm", "riemannian", "kde",
)
# The methods a study runs unless its config lists them (the kernel density only when asked).
_DEFAULT_METHODS = tuple(m for m in LOWDATA_METHODS if m.removeprefix("real+") != "kde")
ALL = "all"  # a training size: every image of the class's pool
# Every method is compared, split by split, with real images alone and with each classical augmentation.
PAIRED_BASELINES = ("real", "torchio", "monai")


def method_order(method: str) -> tuple[int, bool, int]:
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


@dataclasses.dataclass
class LowDataConfig(Config):
    """The low-data study (see the module docstring).

    Attributes:
        data: which labelled image set (:class:`pipelines.lowdata.sources.SourceConfig`).
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
            autoencoder with a GMM on its codes; :data:`pipelines.common.methods.PEER_SOURCES`).
        num_threads: torch / BLAS / ITK threads of every job (results depend on it).
        workers: jobs run at once in separate processes by the ``local`` backend
            (results do not depend on it); ``auto``: as many as the CPUs hold at
            ``num_threads`` threads each (one on an accelerator;
            :func:`pipelines.common.local_pool.resolve_workers`).
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
        self.methods = canonical_methods(self.methods)
        # The shared-decoder augmentor is fitted by the OASIS study only.
        unknown = [m for m in self.methods
                   if m not in REAL_METHODS and (method_sampler(m) or SHARED_PREFIX).startswith(SHARED_PREFIX)]
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
        """The repetitions' seeds (see :func:`pipelines.common.settings.seed_list`)."""
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
    """Read a low-data study config, apply ``{"section.key": value}`` overrides, validate (see
    :func:`~pipelines.common.cli.load_config_with_overrides`)."""
    return load_config_with_overrides(path, LowDataConfig, overrides)
