"""Config sections and run settings more than one study shares.

Every section is a :class:`augmentor.utils.config.Config`, so an unknown key or a bad value raises
:class:`~augmentor.utils.config.ConfigError` naming the field. The OASIS study
(:class:`pipelines.oasis_study.StudyConfig`) and the low-data study
(:class:`pipelines.lowdata.LowDataConfig`) are made of these sections; the generation benchmark
takes :class:`VAESection` and :class:`RayConfig`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, Sequence

from augmentor.models.training import TrainerConfig
from augmentor.models.vae import VAE_PRESETS, VAEConfig, default_vae_config, vae_preset
from augmentor.sampling.hmc import HMCConfig
from augmentor.sampling.metric import MetricConfig
from augmentor.utils.config import Config, ConfigError
from augmentor.utils.devices import DEVICE_CHOICES, is_device_name

__all__ = [
    "MAX_REPETITIONS",
    "MAX_SEED",
    "MAX_THREADS",
    "check_workers",
    "SELECTION_RULES",
    "AugmentationConfig",
    "AugmentorSettings",
    "ClassifierConfig",
    "RayConfig",
    "RunSettings",
    "SamplingConfig",
    "VAESection",
    "check_run_settings",
    "seed_list",
]

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
    if workers != "auto" and not (isinstance(workers, int) and 1 <= workers <= MAX_THREADS):
        config._fail("workers", f"must be 'auto' or lie in 1..{MAX_THREADS}, got {workers}")


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


class RunSettings(Protocol):
    """What every study's config has that a job's environment depends on."""

    device: str
    num_threads: int
    deterministic: bool


class AugmentorSettings(RunSettings, Protocol):
    """What a study's config has that its augmentors are built from (the OASIS and low-data studies)."""

    vae: VAESection
    sampling: SamplingConfig
    progress: bool
