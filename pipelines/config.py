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
    augmentation:    # the classical (TorchIO) baseline
    seeds: 3         # R repetitions (seeds 0..R-1) or an explicit list
    methods: [original, resampled, prior, gmm, riemannian, original+riemannian, classical]
    device: auto
    backend: local   # or ray
    num_threads: 2   # torch / BLAS threads of every job (and Ray CPUs per job)
    workers: auto    # local backend: jobs at once, in worker processes (auto: CPUs // num_threads)
    ray: {address: null, gpus_per_job: 0}

Which values make a run directory: :func:`identity` lists the settings a job's
result depends on. ``seeds`` and ``methods`` only choose *which* jobs run, so a
run directory can be extended with more seeds or methods; paths (``data_dir``,
``csv``, ``cache_dir``), ``backend``, ``workers``, ``ray`` and ``progress`` do not change any
result either (the data enter through their fingerprint instead).
"""

from __future__ import annotations

import argparse

import copy
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from augmentor.utils.config import Config, ConfigError, load_config_file, read_config_data
from augmentor.utils.devices import DEVICE_CHOICES, is_device_name
from augmentor.sampling.hmc import HMCConfig
from augmentor.sampling.metric import MetricConfig
from augmentor.models.vae import VAE_PRESETS, VAEConfig, default_vae_config, vae_preset
from augmentor.models.peers import MODELS, model_samplers
from augmentor.sampling.samplers import SAMPLERS
from augmentor.models.training import TrainerConfig, result_settings
from augmentor.utils.limits import check_fits
from oasis.loader import T88_SHAPE
from oasis.simulate import SimulationConfig

__all__ = [
    "CLASS_NAMES",
    "MAX_REPETITIONS",
    "MAX_SEED",
    "MAX_THREADS",
    "METHODS",
    "PEER_SOURCES",
    "SELECTION_RULES",
    "AugmentationConfig",
    "ClassifierConfig",
    "DataConfig",
    "RayConfig",
    "SamplingConfig",
    "SplitConfig",
    "StudyConfig",
    "add_override_arguments",
    "command_line_overrides",
    "VAESection",
    "apply_overrides",
    "check_workers",
    "identity",
    "identity_hash",
    "load_study_config",
    "method_sampler",
    "seed_list",
    "split_source",
]

CLASS_NAMES = {0: "CN", 1: "AD"}

SHARED_PREFIX = "shared-"
"""Methods (and their latent sources) drawn from the shared-decoder augmentor start with this."""
PEER_SOURCES: tuple[str, ...] = tuple(
    f"{model}-{sampler}" for model in MODELS if model != "vae" for sampler in model_samplers(model)
)
"""Latent sources of the peer models (paper Table 2), each a per-class model and one of its samplers,
keyed ``<model>-<sampler>`` as in the generation benchmark: ``ae-gmm``, ``vamp-vamp``, ``rae_l2-gmm``, ..."""

# Training sets the classifier is compared on (see pipelines.jobs.training_set).
METHODS: tuple[str, ...] = (
    "original",  # real training subjects, unbalanced
    "resampled",  # real training subjects, minority class oversampled to balance
    "prior",  # synthetic only: VAE - N(0, I)
    "gmm",  # synthetic only: VAE - 10-component GMM on the codes
    "riemannian",  # synthetic only: VAE - Riemannian uniform (ours)
    "original+prior",
    "original+gmm",
    "original+riemannian",  # real + synthetic from ours
    "classical",  # real training subjects with TorchIO affine + elastic augmentation per epoch
    # The same samplers on one VAE shared by the classes (GeometricAugmentor(shared_vae=True)).
    "shared-prior",
    "shared-gmm",
    "shared-riemannian",
    "original+shared-gmm",
    "original+shared-riemannian",
    # Synthetic only, then real + synthetic, from the peer models.
    *PEER_SOURCES,
    *(f"original+{source}" for source in PEER_SOURCES),
)
DEFAULT_METHODS = ("original", "resampled", "prior", "gmm", "riemannian", "original+riemannian", "classical")

# The split's random_state (NumPy's legacy RandomState) takes seeds below 2**32.
MAX_SEED = 2**32 - 1
# Plans, reports and Ray submissions hold every job (one per seed and method) in memory.
MAX_REPETITIONS = 10_000
# Well above any machine's core count; Ray would wait forever for a job slot wider than a node.
MAX_THREADS = 1024


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """A study's repetition seeds from its ``seeds`` setting: ``0..R-1`` for a count ``R``, else the list as given."""
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)


def check_run_settings(config: Config) -> None:
    """The checks every experiment config shares: ``name``, ``device`` and ``num_threads``.

    Raises:
        ConfigError: naming the first field that is wrong.
    """
    if not config.name or "/" in config.name:
        config._fail("name", f"must be a non-empty name without '/', got {config.name!r}")
    if not is_device_name(config.device):
        config._fail("device", f"must be {DEVICE_CHOICES}, got {config.device!r}")
    if not 1 <= config.num_threads <= MAX_THREADS:
        config._fail("num_threads", f"must lie in 1..{MAX_THREADS}, got {config.num_threads}")


def check_workers(config: Config) -> None:
    """The ``workers`` setting of a local backend: an integer in ``1..MAX_THREADS`` or ``auto``.

    Raises:
        ConfigError: naming the value.
    """
    workers = config.workers
    if workers != "auto" and not 1 <= workers <= MAX_THREADS:
        config._fail("workers", f"must be 'auto' or lie in 1..{MAX_THREADS}, got {workers}")


def method_sampler(method: str) -> str | None:
    """The latent source a method draws its synthetic images from (``riemannian``,
    ``shared-riemannian``, ``vamp-vamp``, ...), or None for the methods of real images only."""
    name = method.removeprefix("original+")
    return name if name.removeprefix(SHARED_PREFIX) in SAMPLERS or name in PEER_SOURCES else None


def split_source(source: str) -> tuple[str, str]:
    """A latent source's generator and sampler: ``"gmm"`` -> ``("vae", "gmm")`` (the per-class VAEs),
    ``"shared-gmm"`` -> ``("shared", "gmm")`` (the shared-decoder VAE), ``"ae-gmm"`` -> ``("ae", "gmm")``
    (a peer model per class)."""
    if source.startswith(SHARED_PREFIX):
        return "shared", source.removeprefix(SHARED_PREFIX)
    if source in PEER_SOURCES:
        model, sampler = source.split("-", 1)
        return model, sampler
    return "vae", source


@dataclasses.dataclass
class DataConfig(Config):
    """Where the images come from and how each subject becomes one 2D image or one 3D volume.

    Attributes:
        data_dir: a local OASIS-1 copy (``disc*/OAS1_XXXX_MR1``), or the authors'
            ``OASIS.npz``; ``null`` uses the simulated cohort of ``simulation``.
        csv: the clinical table; default ``data_dir/oasis_cross-sectional.csv``.
        cohort: ``all`` (100 AD / 316 CN on the real table) or ``clinicadl``
            (age >= 62 with a CDR: 100 AD / 93 CN).
        dim: 2 for the transposed axial slice ``(H, W)``, 3 for the whole volume
            ``(X, Y, Z)`` (the study then runs the 3D VAE and the 3D classifier).
        slice_index: axial slice ``k`` of the T88 volume (``dim: 2``); default the middle one.
        image_size: output ``[H, W]`` (``dim: 2``) or ``[X, Y, Z]`` (``dim: 3``),
            area-averaged; or use ``downsample``.
        downsample: integer factor dividing every size (1 = 208 x 176 slices or
            176 x 208 x 176 volumes on T88; 4 gives 52 x 44 or 44 x 52 x 44).
        cache_dir: where simulated cohorts are cached (see :func:`resolve_cache_dir`).
        simulation: parameters of the simulated cohort (used when ``data_dir`` is null).
    """

    data_dir: str | None = None
    csv: str | None = None
    cohort: Literal["all", "clinicadl"] = "all"
    dim: Literal[2, 3] = 2
    slice_index: int | None = None
    image_size: tuple[int, ...] | None = None
    downsample: int = 1
    cache_dir: str | None = None
    simulation: SimulationConfig = dataclasses.field(default_factory=SimulationConfig)

    def validate(self) -> None:
        if self.downsample < 1:
            self._fail("downsample", f"must be a positive integer, got {self.downsample}")
        if self.image_size is not None:
            if len(self.image_size) != self.dim or min(self.image_size) < 1:
                wanted = "[H, W]" if self.dim == 2 else "[X, Y, Z]"
                self._fail("image_size", f"must be {wanted} with positive sizes (dim {self.dim}), "
                           f"got {list(self.image_size)}")
            if self.downsample != 1:
                self._fail("image_size", "give either image_size or downsample, not both")
        if self.dim == 3 and self.slice_index is not None:
            self._fail("slice_index", "applies to 2D slices only; dim 3 uses the whole volume (set it to null)")
        if self.dim == 3 and self.data_dir is not None and Path(self.data_dir).suffix == ".npz":
            self._fail("dim", "the authors' OASIS.npz holds 2D slices only; dim 3 needs an OASIS-1 copy or the "
                       "simulated cohort")
        if self.slice_index is not None and self.slice_index < 0:
            self._fail("slice_index", f"must be >= 0 or null, got {self.slice_index}")
        if self.data_dir is None and self.slice_index is not None and self.slice_index >= self.simulation.shape[2]:
            self._fail(
                "slice_index",
                f"{self.slice_index} lies outside the simulated grid's {self.simulation.shape[2]} axial slices "
                f"(0..{self.simulation.shape[2] - 1})",
            )
        if self.csv is not None and self.data_dir is None:
            self._fail("csv", "a clinical table needs data_dir (the simulated cohort writes its own)")

    def expected_image_size(self) -> tuple[int, ...]:
        """The ``(H, W)`` or ``(X, Y, Z)`` the loader will produce, predicted from the settings alone."""
        if self.image_size is not None:
            return tuple(self.image_size)
        volume = self.simulation.shape if self.data_dir is None else T88_SHAPE
        x, y, _ = volume
        # The 2D image is the transposed axial slice (Y, X); volumes keep file order (X, Y, Z).
        base = (y, x) if self.dim == 2 else tuple(volume)
        return tuple(n // self.downsample for n in base)


@dataclasses.dataclass
class SplitConfig(Config):
    """Subject-level stratified split; the rest of the subjects is the training set (70 %)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def validate(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 1:
                self._fail(name, f"must lie strictly between 0 and 1, got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 0.9:
            self._fail("test_fraction", "val_fraction + test_fraction must leave at least 10 % for training")


@dataclasses.dataclass
class VAESection(Config):
    """The per-class VAE: a named architecture, field overrides, and its trainer.

    Attributes:
        preset: a name of :func:`augmentor.models.vae_preset` (``oasis`` is the
            paper's network), or null for :func:`augmentor.default_vae_config`.
        architecture: :class:`augmentor.models.VAEConfig` fields overriding the preset
            (``latent_dim``, ``channels``, ``strides``, ``kernel_size``, ``norm``,
            ``act``, ``log_var_bound``, ``beta``, ...). ``in_shape`` always comes
            from the data.
        trainer: optimisation settings; its ``seed`` is offset per repetition, and
            ``device`` / ``progress`` are taken from the study.
        encode_batch_size: images per batch when the fitted VAEs encode the training
            images and decode the synthetic sets. It bounds memory: the decoder's
            last feature maps of a batch of 256 volumes of 44 x 52 x 44 take gigabytes.
    """

    preset: str | None = "oasis"
    architecture: dict[str, Any] = dataclasses.field(default_factory=dict)
    trainer: TrainerConfig = dataclasses.field(
        default_factory=lambda: TrainerConfig(
            epochs=1000, batch_size=100, lr=1e-4, lr_patience=20, early_stopping_patience=None
        )
    )
    encode_batch_size: int = 256

    def validate(self) -> None:
        if self.encode_batch_size < 1:
            self._fail("encode_batch_size", f"must be >= 1, got {self.encode_batch_size}")
        if self.preset is not None and self.preset not in VAE_PRESETS:
            self._fail("preset", f"unknown preset {self.preset!r}; valid names are {', '.join(VAE_PRESETS)} or null")
        if "in_shape" in self.architecture:
            self._fail("architecture", "in_shape is taken from the data; remove it")
        names = {f.name for f in dataclasses.fields(VAEConfig)} - {"in_shape"}
        unknown = sorted(set(self.architecture) - names)
        if unknown:
            self._fail("architecture", f"unknown key(s) {unknown}; valid keys are {sorted(names)}")

    def build(self, in_shape: tuple[int, ...]) -> VAEConfig:
        """The :class:`VAEConfig` for images of ``in_shape`` ``(C, H, W)``."""
        if self.preset is None:
            base = default_vae_config(in_shape).to_dict()
        else:
            base = vae_preset(self.preset).to_dict()
        try:
            return VAEConfig.from_dict({**base, **self.architecture, "in_shape": list(in_shape)})
        except ConfigError as err:
            raise ConfigError(f"VAESection.architecture (images {tuple(in_shape)}): {err}") from None


@dataclasses.dataclass
class SamplingConfig(Config):
    """Synthetic images per class and the settings of the three latent samplers.

    Attributes:
        n_per_class: images generated per class with each sampler (paper: 2000).
        hmc: the Riemannian sampler's chains (paper: 100 x 10 steps of 0.01).
        metric: how the metric is built from the codes (centroids, lambda, rho).
        gmm_components: components of the GMM baseline (paper: 10).
    """

    n_per_class: int = 2000
    hmc: HMCConfig = dataclasses.field(default_factory=HMCConfig)
    metric: MetricConfig = dataclasses.field(default_factory=MetricConfig)
    gmm_components: int = 10

    def validate(self) -> None:
        if self.n_per_class < 1:
            self._fail("n_per_class", f"must be >= 1, got {self.n_per_class}")
        if self.gmm_components < 1:
            self._fail("gmm_components", f"must be >= 1, got {self.gmm_components}")


SELECTION_RULES = ("balanced_accuracy", "balanced_accuracy_then_loss")
"""How a classifier's kept epoch is chosen on the validation set (see :class:`ClassifierConfig`)."""


@dataclasses.dataclass
class ClassifierConfig(Config):
    """The CNN of Table 4 and its optimisation (defaults: the paper's).

    One block per entry of ``channels``: Conv(kernel_size, stride) -> BatchNorm ->
    LeakyReLU -> MaxPool(2); then Linear(flattened -> hidden) -> ReLU ->
    Linear(hidden -> classes). ``padding`` 0 gives the paper's Linear(256 -> 100)
    on 208 x 176 images; downsampled images need ``padding: 1`` (or fewer blocks).

    Attributes:
        epochs, batch_size, lr: Adam optimisation (paper: 50, 200, 1e-4).
        lr_patience, lr_factor: the learning rate is multiplied by ``lr_factor``
            after ``lr_patience`` epochs without a better validation balanced accuracy.
        eval_batch_size: images per batch at evaluation.
        early_stopping_patience: stop after this many epochs without a better
            validation score (``epochs`` is then the maximum); null trains every epoch.
        selection: how the kept epoch is chosen: ``balanced_accuracy`` (the best
            validation balanced accuracy, the first such epoch on ties) or
            ``balanced_accuracy_then_loss`` (ties broken by the lower validation
            cross-entropy; on a small validation set many epochs tie, e.g. every
            epoch that predicts a single class).
        recalibrate_batchnorm: before each validation, recompute the BatchNorm
            running statistics as the exact average over the epoch's training
            images (one forward pass without gradients); false keeps the running
            averages of the training batches (momentum 0.1).
    """

    channels: tuple[int, ...] = (8, 16, 32, 64)
    strides: tuple[int, ...] = (1, 1, 2, 2)
    kernel_size: int = 3
    padding: int = 0
    hidden: int = 100
    negative_slope: float = 0.01
    epochs: int = 50
    batch_size: int = 200
    lr: float = 1e-4
    lr_patience: int = 5
    lr_factor: float = 0.5
    eval_batch_size: int = 500
    early_stopping_patience: int | None = None
    selection: str = "balanced_accuracy"
    recalibrate_batchnorm: bool = False

    def validate(self) -> None:
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            self._fail("early_stopping_patience", f"must be >= 1 or null, got {self.early_stopping_patience}")
        if self.selection not in SELECTION_RULES:
            self._fail("selection", f"must be one of {list(SELECTION_RULES)}, got {self.selection!r}")
        if not self.channels or min(self.channels) < 1:
            self._fail("channels", f"must be a non-empty list of positive integers, got {list(self.channels)}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            self._fail("strides", f"needs one positive stride per block ({len(self.channels)}), got {list(self.strides)}")
        for name in ("kernel_size", "hidden", "epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                self._fail(name, f"must be >= 1, got {getattr(self, name)}")
        if self.padding < 0:
            self._fail("padding", f"must be >= 0, got {self.padding}")
        if self.lr_patience < 0:
            self._fail("lr_patience", f"must be >= 0, got {self.lr_patience}")
        if not 0 < self.lr_factor < 1:
            self._fail("lr_factor", f"must lie strictly between 0 and 1, got {self.lr_factor}")
        if not self.lr > 0:
            self._fail("lr", f"must be > 0, got {self.lr}")
        if self.negative_slope < 0:
            self._fail("negative_slope", f"must be >= 0, got {self.negative_slope}")

    def feature_grid(self, image_size: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial size after the last block, for images of ``image_size`` (sizes < 1 if it vanishes)."""
        grid = tuple(image_size)
        for stride in self.strides:
            grid = tuple((n + 2 * self.padding - self.kernel_size) // stride + 1 for n in grid)
            if min(grid) < 1:
                return grid
            grid = tuple(n // 2 for n in grid)
        return grid

    def check_image_size(self, image_size: tuple[int, ...]) -> None:
        grid = self.feature_grid(image_size)
        if min(grid) < 1:
            raise ConfigError(
                f"ClassifierConfig: images of size {tuple(image_size)} vanish after {len(self.channels)} blocks "
                f"(kernel {self.kernel_size}, strides {list(self.strides)}, padding {self.padding}, max-pool 2); "
                "use larger images, padding: 1, or fewer blocks"
            )


@dataclasses.dataclass
class AugmentationConfig(Config):
    """The classical baseline: TorchIO RandomAffine then RandomElasticDeformation, per epoch.

    Attributes:
        degrees: in-plane rotation range (+-degrees).
        scales: isotropic scaling range (1 +- scales).
        translation: translation range as a fraction of the image size.
        elastic_control_points: control points of the B-spline grid per axis (>= 5).
        elastic_max_displacement: maximum displacement as a fraction of the image size.
        p_affine, p_elastic: probability of applying each transform to an image.
    """

    degrees: float = 10.0
    scales: float = 0.1
    translation: float = 0.05
    elastic_control_points: int = 7
    elastic_max_displacement: float = 0.02
    p_affine: float = 1.0
    p_elastic: float = 1.0

    def validate(self) -> None:
        for name in ("degrees", "translation", "elastic_max_displacement"):
            if getattr(self, name) < 0:
                self._fail(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.scales < 1:
            self._fail("scales", f"must lie in [0, 1), got {self.scales}")
        if self.elastic_control_points < 5:
            self._fail("elastic_control_points", f"must be >= 5 (TorchIO), got {self.elastic_control_points}")
        for name in ("p_affine", "p_elastic"):
            if not 0 <= getattr(self, name) <= 1:
                self._fail(name, f"must lie in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass
class RayConfig(Config):
    """Ray backend settings.

    Attributes:
        address: cluster to join (``ray.init(address=...)``, e.g. ``auto`` or
            ``ray://head:10001``); null starts a local instance, or joins the one
            named by the ``RAY_ADDRESS`` environment variable. On a multi-node
            cluster the run directory must be on a file system every node sees.
        gpus_per_job: GPUs reserved by each job (fractions share a GPU).
    """

    address: str | None = None
    gpus_per_job: float = 0.0

    def validate(self) -> None:
        if self.gpus_per_job < 0:
            self._fail("gpus_per_job", f"must be >= 0, got {self.gpus_per_job}")


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
    workers: int | Literal["auto"] = "auto"  # local backend: jobs at once (pipelines.local_pool)
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
        """The repetitions' seeds (see :func:`seed_list`)."""
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


def identity_hash(ident: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {'.'.join(keys[: i + 1])} is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw config ``data`` with ``{"section.key": value}`` overrides applied."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        _set_path(data, dotted, value)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"classifier.epochs=5"`` -> ``("classifier.epochs", 5)`` (the value is read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key, value


def add_override_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The ``--set KEY=VALUE`` and ``--no-progress`` flags every experiment command line takes."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override any config value, e.g. --set {example} (repeatable; value read as YAML)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def command_line_overrides(args: argparse.Namespace, named: dict[str, Any]) -> dict[str, Any]:
    """Config overrides of a command line: every ``--set``, then the named flags that were given."""
    overrides: dict[str, Any] = dict(parse_override(text) for text in args.overrides)
    named = {**named, "progress": False if args.no_progress else None}
    overrides.update({key: value for key, value in named.items() if value is not None})
    return overrides


def load_study_config(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """Read a study config file, apply ``{"section.key": value}`` overrides, validate.

    Raises:
        ConfigError: missing/invalid file, unknown key or bad value (the message
            names the file and the field).
    """
    if not overrides:
        return load_config_file(path, StudyConfig)
    data = apply_overrides(read_config_data(path), overrides)
    try:
        return StudyConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path} (with overrides {sorted(overrides)}): {err}") from None
