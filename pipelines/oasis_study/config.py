"""The OASIS study configuration: typed sections validated on construction.

A study is described by one YAML (or JSON) file with the sections below; every
section is a :class:`augmentor.config.Config`, so an unknown key or a bad value
raises :class:`~augmentor.config.ConfigError` naming the field (and the file).

.. code-block:: yaml

    name: quick
    data:            # where the images come from and how they are prepared
    split:           # subject-level stratified split (70 / 10 / 20)
    vae:             # per-class VAE: preset + architecture overrides + trainer
    sampling:        # synthetic images per class, HMC, metric, GMM
    classifier:      # the CNN of Table 4 and its optimisation
    augmentation:    # the TorchIO baseline (method torchio)
    seeds: 3         # R repetitions (seeds 0..R-1) or an explicit list
    methods: [real, resampled, prior, gmm, riemannian, real+riemannian, torchio]
    device: auto
    backend: local   # or ray
    num_threads: 2   # torch / BLAS threads of every job (and Ray CPUs per job)
    ray: {address: null, gpus_per_job: 0}

Which values make a run directory: :func:`identity` lists the settings a job's
result depends on. ``seeds`` and ``methods`` only choose *which* jobs run, so a
run directory can be extended with more seeds or methods; paths (``data_dir``,
``csv``, ``cache_dir``), ``backend``, ``ray`` and ``progress`` do not change any
result either (the data enter through their fingerprint instead).

The sections the OASIS study shares with the low-data study are
:mod:`pipelines.common.settings`'s and :mod:`pipelines.common.study_data`'s; its methods are
names of :mod:`pipelines.common.methods`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

from augmentor.models.training import result_settings
from augmentor.utils.config import Config, ConfigError
from augmentor.utils.limits import check_fits

from ..common.cli import load_config_with_overrides
from ..common.methods import PEER_SOURCES, REAL_PREFIX, canonical_methods, deprecated_name, method_sampler
from ..common.settings import (MAX_REPETITIONS, MAX_SEED, AugmentationConfig, ClassifierConfig, RayConfig, check_workers,
                               SamplingConfig, VAESection, check_run_settings, seed_list)
from ..common.study_data import DataConfig, SplitConfig

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_METHODS",
    "METHODS",
    "SEED_KEYS",
    "StudyConfig",
    "identity",
    "load_study_config",
]

CLASS_NAMES = {0: "CN", 1: "AD"}

# Training sets the classifier is compared on (see pipelines.oasis_study.jobs.training_set).
METHODS: tuple[str, ...] = (
    "real",  # real training subjects, unbalanced
    "resampled",  # real training subjects, minority class oversampled to balance
    "prior",  # synthetic only: VAE - N(0, I)
    "gmm",  # synthetic only: VAE - 10-component GMM on the codes
    "riemannian",  # synthetic only: VAE - Riemannian uniform (ours)
    "real+prior",
    "real+gmm",
    "real+riemannian",  # real + synthetic from ours
    "kde",  # synthetic only: VAE - kernel density on the codes (the geometric samplers' baseline)
    "real+kde",
    "torchio",  # real training subjects with TorchIO affine + elastic augmentation per epoch
    # The same samplers on one VAE shared by the classes (GeometricAugmentor(shared_vae=True)).
    "shared-prior",
    "shared-gmm",
    "shared-riemannian",
    "real+shared-gmm",
    "real+shared-riemannian",
    # Synthetic only, then real + synthetic, from the peer models.
    *PEER_SOURCES,
    *(f"{REAL_PREFIX}{source}" for source in PEER_SOURCES),
)
"""The OASIS study's methods (names of :mod:`pipelines.common.methods`), in the order of its tables."""
DEFAULT_METHODS = ("real", "resampled", "prior", "gmm", "riemannian", "real+riemannian", "torchio")
SEED_KEYS: dict[str, str] = {method: deprecated_name(method) for method in METHODS}
"""The string each method's classifier seed is derived from (:func:`pipelines.common.jobs.job_seed`): the name the
method had when the study's published numbers were made (``real`` -> ``original``, ``torchio`` ->
``classical``, ``real+<source>`` -> ``original+<source>``), so that renaming a method never changes a result."""

@dataclasses.dataclass
class StudyConfig(Config):
    """The whole OASIS study (see the module docstring for the layout)."""

    name: str = "oasis"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    vae: VAESection = dataclasses.field(default_factory=VAESection)
    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    seeds: int | tuple[int, ...] = 20
    methods: tuple[str, ...] = DEFAULT_METHODS
    device: str = "auto"
    backend: Literal["local", "ray"] = "local"
    num_threads: int = 1
    workers: int | Literal["auto"] = "auto"  # local backend: jobs at once (pipelines.common.local_pool)
    deterministic: bool = True
    progress: bool = True
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)

    def validate(self) -> None:
        if isinstance(self.seeds, int):
            if not 1 <= self.seeds <= MAX_REPETITIONS:
                self._fail("seeds", f"a count of repetitions must lie in 1..{MAX_REPETITIONS}, got {self.seeds}")
        else:
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                self._fail("seeds", f"must be a non-empty list of distinct seeds, got {list(self.seeds)}")
            if len(self.seeds) > MAX_REPETITIONS:
                self._fail("seeds", f"lists {len(self.seeds)} seeds; at most {MAX_REPETITIONS} repetitions")
            outside = [s for s in self.seeds if not 0 <= s <= MAX_SEED]
            if outside:
                self._fail("seeds", f"seed(s) {outside[:5]} out of range; each seed must lie in 0..2**32-1 ({MAX_SEED})")
        self.methods = canonical_methods(self.methods)
        if not self.methods:
            self._fail("methods", f"choose at least one of {list(METHODS)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            self._fail("methods", f"unknown method(s) {unknown}; valid methods are {list(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            self._fail("methods", f"lists a method twice: {list(self.methods)}")
        check_run_settings(self)
        check_workers(self)
        # Checks that need the image size, predicted from the data settings.
        size = self.data.expected_image_size()
        try:
            self.vae.build((1, *size))
        except ConfigError as err:
            raise ConfigError(f"StudyConfig.vae: {err}") from None
        n = self.sampling.n_per_class
        check_fits(n * math.prod(size), f"StudyConfig.sampling.n_per_class = {n}: the synthetic images of one class "
                                        f"(images {tuple(size)})")
        try:
            self.classifier.check_image_size(size)
        except ConfigError as err:
            raise ConfigError(f"StudyConfig.classifier: {err}") from None

    @property
    def seed_list(self) -> list[int]:
        """The repetitions' seeds (see :func:`pipelines.common.settings.seed_list`)."""
        return seed_list(self.seeds)

    @property
    def samplers(self) -> list[str]:
        """Latent sources the chosen methods need, in the order of :data:`METHODS`."""
        needed = {method_sampler(m) for m in self.methods} - {None}
        return [m for m in METHODS if m in needed]


# Settings that choose which jobs run or how they are scheduled, never what a job computes.
_NOT_IDENTITY = ("name", "seeds", "methods", "backend", "workers", "progress", "ray")
_NOT_IDENTITY_DATA = ("data_dir", "csv", "cache_dir")


def identity(config: StudyConfig, device_type: str, data_fingerprint: str) -> dict[str, Any]:
    """The settings every job's result depends on (what a run directory is tied to).

    Args:
        config: the study configuration.
        device_type: the resolved device (``cpu``, ``cuda``, ``mps``).
        data_fingerprint: digest of the loaded images, labels and subject IDs.
    """
    data = config.to_dict()
    for key in _NOT_IDENTITY:
        data.pop(key)
    for key in _NOT_IDENTITY_DATA:
        data["data"].pop(key)
    if config.data.data_dir is not None:
        data["data"].pop("simulation")  # not used: the data fingerprint stands for the images
    # Replaced by the study's own settings when the jobs run, or display only.
    data["vae"]["trainer"] = result_settings(data["vae"]["trainer"])
    data["sampling"]["hmc"].pop("progress")
    data["device"] = device_type
    data["data_fingerprint"] = data_fingerprint
    return data


def load_study_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study config file, apply ``{"section.key": value}`` overrides, validate (see
    :func:`~pipelines.common.cli.load_config_with_overrides`)."""
    return load_config_with_overrides(path, StudyConfig, overrides)
