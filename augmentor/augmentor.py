"""The :class:`GeometricAugmentor`: one VAE and one latent geometry per class.

``fit`` trains a vanilla VAE per class, encodes that class's images and fits the
three latent samplers on the codes (N(0, I) prior, 10-component GMM on the
means, Riemannian uniform by HMC). With ``shared_vae=True`` one VAE is trained
on the images of every class instead, and each class's samplers (its metric
included) are fitted on the codes of that class's own images: every class gets
all the data for its decoder, and the synthetic images of all classes come from
the same decoder, so a classifier cannot tell them apart by which decoder made
them. ``generate`` draws latents with the chosen
sampler and decodes them into synthetic subjects of each class.
``AugmentorConfig.model`` swaps the VAE for a peer model of
:mod:`augmentor.peers` (AE, WAE, VAMP, HVAE, RHVAE, RAE variants) on the same
architecture, with the samplers that apply to it (its own sampler for VAMP
and RHVAE; no Riemannian sampler on a deterministic model's codes). The whole
fitted state saves to a folder (JSON configs, weights and sampler state as
tensors) that loads without unpickling arbitrary code.

Classes are the integer labels as given: labels ``{0, 5}`` give classes 0 and 5
(folders ``class_0`` and ``class_5``, generated labels 0 and 5), never remapped.
A fit checks everything it can before training the first class and replaces the
fitted state only once every class has trained, so a failed (re)fit leaves the
augmentor as it was. ``generate`` changes no fitted state.

``fit`` is two steps that can also run apart, e.g. one process (or GPU) per class:
:meth:`GeometricAugmentor.fit_class_model` trains one class's model exactly as
``fit`` does (same seed, same images) and returns a :class:`ClassModel`, which
saves to its own checksummed folder; :meth:`GeometricAugmentor.fit_from_class_models`
then fits every class's samplers on those models, the cheap part of ``fit``.
The result equals ``fit``'s, weights and samplers bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .utils.config import Config, ConfigError
from .utils.io import (
    CorruptSaveError,
    class_id,
    class_labels,
    load_tensors,
    read_saved_folder,
    save_tensors,
    saved_folder,
    write_json,
)
from .sampling.metric import MetricConfig
from .utils.batching import decode_batches, encode_batches
from .metrics.features import images_digest
from .data.inputs import check_images, load_data_dicts
from .utils.devices import DEVICE_CHOICES, is_device_name, resolve_device
from .sampling.diagnostics import HMCDiagnostics
from .sampling.hmc import HMCConfig
from .models.vae import VAEConfig, default_vae_config
from .models.peers import MODELS, PEER_SAMPLERS, build_model, model_config, model_samplers, option_names
from .models.peers import riemannian_refusal
from .sampling.samplers import SAMPLERS, GaussianMixtureSampler, HMCLatentSampler, LatentSampler, NormalSampler, RiemannianSampler
from .sampling import draw_class_latents, draw_latents
from .sampling.kde import KernelDensitySampler
from .utils.seeding import seed_everything
from .models.training import TrainerConfig, TrainingResult, result_settings, train_vae, validation_size
from .utils.limits import check_fits

__all__ = ["AugmentorConfig", "ClassModel", "GeometricAugmentor"]

SAVE_KIND = "geometric-augmentor"
CLASS_MODEL_KIND = "geometric-augmentor-class-model"
"""Manifest kind of a folder saved by :meth:`ClassModel.save`."""
SHARED_FOLDER = "shared_vae"
"""Folder of a saved augmentor that holds the one VAE of ``shared_vae=True``."""
# Every sampler a saved class may hold, by name.
_ALL_SAMPLERS: dict[str, type[LatentSampler]] = {**SAMPLERS, **PEER_SAMPLERS}
# The seeds torch.Generator.manual_seed accepts; negative ones count modulo 2**64.
_SEED_MIN, _SEED_MAX = -(2**63), 2**64 - 1


@dataclasses.dataclass
class AugmentorConfig(Config):
    """Everything a :class:`GeometricAugmentor` needs, JSON/YAML round-trippable.

    Attributes:
        vae: architecture; None picks :func:`default_vae_config` for the data's shape.
        model: the generative model trained per class, a name of
            :data:`augmentor.peers.MODELS` (``"vae"``, the paper's, or a peer:
            ``"ae"``, ``"wae"``, ``"vamp"``, ``"hvae"``, ``"rhvae"``, ``"rae"``,
            ``"rae_l2"``, ``"rae_gp"``, ``"rae_sn"``) on the ``vae`` architecture.
        model_options: the model's own settings (e.g. ``{"n_pseudo_inputs": 50}``
            for ``"vamp"``); see :func:`augmentor.peers.model_config`.
        trainer: optimisation settings (its ``seed`` is offset by the class index).
        metric: how each class's metric is built.
        hmc: default HMC settings of the Riemannian sampler.
        gmm_components: components of the GMM baseline (paper: 10).
        kde_bandwidth: bandwidth of the kernel density on the codes (sampler ``"kde"``,
            :class:`~augmentor.sampling.kde.KernelDensitySampler`), the baseline of the geometric samplers.
        device: where training and sampling run (``auto``, ``cpu``, ``cuda[:N]``, ``mps``);
            it replaces ``trainer.device``.
        encode_batch_size: images per batch when encoding and decoding.
        shared_vae: train one VAE on the images of all classes (seed
            ``trainer.seed``) and fit each class's samplers on the codes of its
            own images, instead of one VAE per class.
    """

    vae: VAEConfig | None = None
    model: str = "vae"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    metric: MetricConfig = dataclasses.field(default_factory=MetricConfig)
    hmc: HMCConfig = dataclasses.field(default_factory=HMCConfig)
    gmm_components: int = 10
    kde_bandwidth: float = 0.25
    device: str = "auto"
    encode_batch_size: int = 256
    shared_vae: bool = False

    def validate(self) -> None:
        if self.model not in MODELS:
            self._fail("model", f"unknown model {self.model!r}; valid names are {', '.join(MODELS)}")
        unknown = sorted(set(self.model_options) - set(option_names(self.model)))
        if unknown:
            valid = sorted(option_names(self.model)) or "none"
            self._fail("model_options", f"unknown key(s) {unknown} for model {self.model!r}; valid keys are {valid}")
        if self.vae is not None:  # otherwise the values are checked once the data gives the architecture
            try:
                model_config(self.model, self.vae, self.model_options)
            except ConfigError as err:
                self._fail("model_options", str(err))
        if self.gmm_components < 1:
            self._fail("gmm_components", f"must be >= 1, got {self.gmm_components}")
        if not self.kde_bandwidth > 0:
            self._fail("kde_bandwidth", f"must be > 0, got {self.kde_bandwidth}")
        if self.encode_batch_size < 1:
            self._fail("encode_batch_size", f"must be >= 1, got {self.encode_batch_size}")
        if not is_device_name(self.device):
            self._fail("device", f"must be {DEVICE_CHOICES}, got {self.device!r}")


def _check_classes(labels: Any, n: int) -> torch.Tensor:
    """``(n,)`` int64 class labels of at least two classes of at least two subjects each."""
    labels = class_labels(labels, n)
    classes, counts = labels.unique(return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"found a single class ({classes.tolist()}); class-conditional augmentation needs at least two classes"
        )
    small = [int(c) for c, k in zip(classes, counts) if k < 2]
    if small:
        raise ValueError(f"class(es) {small} have fewer than 2 subjects; each class needs at least 2")
    return labels


def _check_trainable(vae: VAEConfig, trainer: TrainerConfig, label: int | str, n_images: int) -> None:
    """Refuse, before any training, a class whose training batches ``vae`` cannot normalise."""
    needed = vae.min_train_batch
    n_val = validation_size(n_images, trainer, needed)
    smallest_batch = min(trainer.batch_size, n_images - n_val)
    if smallest_batch < needed:
        grid = " x ".join(map(str, vae.encoder_grid()))
        raise ValueError(
            f"class {label}: the VAE's last encoder feature map is {grid}, so batch normalisation needs at least "
            f"{needed} images in every training batch, but class {label} has {n_images} images "
            f"({n_images - n_val} left for training after {n_val} held out for validation) and "
            f"trainer.batch_size={trainer.batch_size}; give each class more images, use a larger batch, "
            "fewer or smaller strides, or norm='none'"
        )


def _check_int(value: Any, name: str) -> int:
    """``value`` as a Python int; floats, strings and booleans are refused, not converted."""
    try:
        if isinstance(value, (bool, np.bool_)):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})") from None


def _check_count(value: Any, name: str) -> int:
    """``value`` as an int >= 1."""
    count = _check_int(value, name)
    if count < 1:
        raise ValueError(f"{name} must be >= 1, got {count}")
    return count


def _check_seed(value: Any) -> int:
    """``value`` as an int that torch can seed a generator with."""
    seed = _check_int(value, "seed")
    if not _SEED_MIN <= seed <= _SEED_MAX:
        raise ValueError(f"seed must lie in [-2**63, 2**64 - 1] (what torch generators accept), got {seed}")
    return seed


class _FittedClass(NamedTuple):
    """One fitted class of a :class:`GeometricAugmentor`: its model, training history and samplers."""

    model: nn.Module
    history: list[dict[str, float]]
    samplers: dict[str, LatentSampler]


class _Prepared(NamedTuple):
    """Checked training data of a fit: the config (``vae`` filled in), ``(N, C, H, W[, D])`` float32
    images, ``(N,)`` int64 labels and the sorted class ids."""

    config: AugmentorConfig
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[int]

    def class_images(self, label: int) -> torch.Tensor:
        """``(n, C, H, W[, D])``: the images of class ``label``."""
        return self.images[self.labels == label]


def _class_trainer(config: AugmentorConfig, index: int) -> TrainerConfig:
    """The trainer of the ``index``-th class (sorted ids): seed ``trainer.seed + index``, on ``config.device``."""
    return config.trainer.replace(seed=config.trainer.seed + index, device=config.device)


def _model_settings(config: AugmentorConfig) -> dict[str, Any]:
    """The settings a class model's weights depend on, flattened (``"trainer.lr"``): the architecture, the
    model and its options, and the trainer's result settings (not its device or progress bar)."""
    data = config.to_dict()
    settings = {key: data[key] for key in ("vae", "model", "model_options")}
    settings.update({f"trainer.{key}": value for key, value in result_settings(data["trainer"]).items()})
    return settings


@dataclasses.dataclass
class ClassModel:
    """One class's trained generative model, trained as :meth:`GeometricAugmentor.fit` trains it.

    Made by :meth:`GeometricAugmentor.fit_class_model`; the models of every class
    make a fitted augmentor with :meth:`GeometricAugmentor.fit_from_class_models`.

    Attributes:
        label: the class id.
        index: the class's position among the sorted class ids of the training
            data; its trainer's seed is ``config.trainer.seed + index``.
        config: the augmentor settings it was trained under (``vae`` filled in).
        model: the trained model, in eval mode on the CPU.
        history: one dict per evaluation of its training
            (:attr:`~augmentor.models.training.TrainingResult.history`).
        images_digest: SHA-256 of the class's training images ``(n, C, H, W[, D])``
            as float32 (:func:`~augmentor.metrics.features.images_digest`).
    """

    label: int
    index: int
    config: AugmentorConfig
    model: nn.Module
    history: list[dict[str, float]]
    images_digest: str

    def save(self, path: str | Path) -> Path:
        """Save to a new folder (atomic; refuses a non-empty folder).

        Layout: ``config.json``, ``class.json`` (label, index, images digest),
        ``model.pt`` (weights), ``history.json`` and a ``manifest.json`` of checksums.
        """
        with saved_folder(path, CLASS_MODEL_KIND) as tmp:
            (tmp / "config.json").write_text(self.config.to_json())
            write_json(tmp / "class.json",
                       {"label": self.label, "index": self.index, "images_digest": self.images_digest})
            save_tensors(tmp / "model.pt", self.model.state_dict())
            write_json(tmp / "history.json", self.history)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "ClassModel":
        """Load a folder written by :meth:`save`; checksums are verified first.

        Raises:
            CorruptSaveError: the folder is missing, damaged or not a saved class model.
        """
        folder = read_saved_folder(path, CLASS_MODEL_KIND)
        try:
            config = AugmentorConfig.from_json((folder / "config.json").read_text())
            record = json.loads((folder / "class.json").read_text())
            label, index = class_id(record["label"]), _check_int(record["index"], "index")
            digest = record["images_digest"]
            if not isinstance(digest, str):
                raise TypeError(f"images_digest must be a string, got {type(digest).__name__}")
        except (ValueError, ConfigError, TypeError, KeyError) as err:
            raise CorruptSaveError(f"{folder}: invalid config.json or class.json ({err})") from err
        if config.vae is None:
            raise CorruptSaveError(f"{folder}: config.json has AugmentorConfig.vae = null; a class model records it")
        model, history = _load_model(config, folder)
        return cls(label, index, config, model, history, digest)


class GeometricAugmentor:
    """Per-class VAEs and latent geometries that generate labelled synthetic subjects.

    Args:
        config: an :class:`AugmentorConfig` (defaults if None).

    Example::

        aug = GeometricAugmentor(AugmentorConfig(trainer=TrainerConfig(epochs=50)))
        aug.fit(images, labels)          # (N, 1, H, W) in [0, 1], (N,)
        fake, fake_labels = aug.generate(200, sampler="riemannian", seed=0)
        aug.save("runs/augmentor")
    """

    def __init__(self, config: AugmentorConfig | None = None) -> None:
        self.config = config or AugmentorConfig()
        self.classes: list[int] = []
        self.models: dict[int, nn.Module] = {}
        self.samplers: dict[int, dict[str, LatentSampler]] = {}
        self.histories: dict[int, list[dict[str, float]]] = {}
        self.diagnostics: dict[int, HMCDiagnostics] = {}

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.device)

    @property
    def is_fitted(self) -> bool:
        return bool(self.models)

    def fit(
        self,
        images: torch.Tensor | np.ndarray | Sequence[dict[str, Any]],
        labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
        transform: Callable | None = None,
        log_dir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> "GeometricAugmentor":
        """Train one VAE per class and fit the latent samplers on its codes.

        Everything that can be checked (images, labels, configs, whether each
        class's batches suit the architecture) is checked before the first class
        trains. The fitted state is replaced only when every class has trained:
        if a (re)fit fails, the augmentor keeps its previous models unchanged.
        Without ``shared_vae`` this is :meth:`fit_class_model` for every class,
        then :meth:`fit_from_class_models`, which can also run apart.

        Args:
            images: ``(N, C, H, W)`` or ``(N, C, H, W, D)`` floats in [0, 1], a
                torch tensor or a NumPy array (taken as a tensor by
                ``torch.as_tensor``; never modified); or a list of MONAI data dicts
                ``{"image": path, "label": int}`` read through ``transform`` (then
                ``labels`` is taken from the dicts).
            labels: ``(N,)`` integer class ids (tensor or array input only). They
                are kept as given, e.g. ``{0, 5}`` gives classes 0 and 5; integral
                floats (``1.0``) are accepted, ``0.7`` or class names are refused
                (see :func:`augmentor.io.class_labels`).
            transform: MONAI preprocessing applied to each data dict.
            log_dir: TensorBoard folder; each class logs under ``class_{label}``.
            checkpoint_dir: per-class training checkpoints (resume after interruption).

        Returns:
            self, fitted.
        """
        prepared = self._prepare(images, labels, transform)
        if prepared.config.shared_vae:
            fitted = self._fit_shared(prepared, log_dir, checkpoint_dir)
        else:
            models = [self._train_class(prepared, label, log_dir, checkpoint_dir) for label in prepared.classes]
            fitted = self._fit_class_samplers(prepared, models)
        self._set_fitted(prepared, fitted)
        return self

    def fit_class_model(
        self,
        images: torch.Tensor | np.ndarray | Sequence[dict[str, Any]],
        labels: torch.Tensor | np.ndarray | Sequence[int] | None,
        label: int,
        transform: Callable | None = None,
        log_dir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> ClassModel:
        """Train the model of class ``label`` exactly as :meth:`fit` trains it, and return it.

        Given the same data as :meth:`fit` (every class: the class's position
        among the sorted ids seeds its trainer), the weights are those :meth:`fit`
        trains for that class, so the classes can train in separate processes or on
        separate GPUs; :meth:`fit_from_class_models` then completes the fit. The
        augmentor itself is not changed. Per-class models only (``shared_vae=False``).

        Args:
            images: the whole training data, every class, as in :meth:`fit`.
            labels: as in :meth:`fit`.
            transform: as in :meth:`fit`.
            log_dir: as in :meth:`fit`.
            checkpoint_dir: as in :meth:`fit`.
            label: the class whose model trains.

        Returns:
            the class's :class:`ClassModel` (model on the CPU, in eval mode).

        Raises:
            ValueError: ``shared_vae`` is set, ``label`` is not a class of the data,
                or the data fail a check of :meth:`fit`.
        """
        prepared = self._prepare(images, labels, transform)
        self._refuse_shared(prepared.config, "fit_class_model")
        label = class_id(label)
        if label not in prepared.classes:
            raise ValueError(f"class {label} is not in the data; its classes are {prepared.classes}")
        return self._train_class(prepared, label, log_dir, checkpoint_dir)

    def fit_from_class_models(
        self,
        images: torch.Tensor | np.ndarray | Sequence[dict[str, Any]],
        labels: torch.Tensor | np.ndarray | Sequence[int] | None,
        class_models: Sequence[ClassModel],
        transform: Callable | None = None,
    ) -> "GeometricAugmentor":
        """Complete a fit from every class's trained model: fit the latent samplers as :meth:`fit` does.

        With the models of :meth:`fit_class_model` on the same data and config, the
        fitted state equals that of :meth:`fit` (weights and samplers).

        Args:
            images: the training data, as in :meth:`fit`.
            labels: as in :meth:`fit`.
            transform: as in :meth:`fit`.
            class_models: one :class:`ClassModel` per class of the data, in any order.

        Returns:
            self, fitted.

        Raises:
            ValueError: a class lacks a model or has two, a model belongs to no class
                of the data, or was trained under other settings, at another class
                position or on other images than this class's.
        """
        prepared = self._prepare(images, labels, transform)
        self._refuse_shared(prepared.config, "fit_from_class_models")
        by_label: dict[int, ClassModel] = {}
        for class_model in class_models:
            if class_model.label in by_label:
                raise ValueError(f"two models of class {class_model.label}; give one per class")
            by_label[class_model.label] = class_model
        missing, extra = sorted(set(prepared.classes) - set(by_label)), sorted(set(by_label) - set(prepared.classes))
        if missing or extra:
            raise ValueError(f"the data have classes {prepared.classes}; models are missing for {missing} "
                             f"and given for classes not in the data: {extra}")
        models = [by_label[label] for label in prepared.classes]
        for class_model in models:
            _check_class_model(prepared, class_model)
        self._set_fitted(prepared, self._fit_class_samplers(prepared, models))
        return self

    def _prepare(
        self,
        images: torch.Tensor | np.ndarray | Sequence[dict[str, Any]],
        labels: torch.Tensor | np.ndarray | Sequence[int] | None,
        transform: Callable | None,
    ) -> _Prepared:
        """Check the training data and settings (see :meth:`fit`), before anything trains."""
        if isinstance(images, np.ndarray):
            images = torch.as_tensor(images)
        elif not isinstance(images, torch.Tensor):
            if labels is not None:
                raise ValueError("with data dicts the labels come from the dicts; do not pass labels")
            images, labels = load_data_dicts(images, transform)
        if labels is None:
            raise ValueError("labels are required with tensor images")
        if images.ndim not in (4, 5):
            raise ValueError(f"images must have shape (N, C, H, W) or (N, C, H, W, D), got {tuple(images.shape)}")
        config = self.config.replace(vae=self.config.vae or default_vae_config(images.shape[1:]))
        images = check_images(images, tuple(config.vae.in_shape), "images", min_count=2)
        labels = _check_classes(labels, len(images))
        classes, counts = labels.unique(return_counts=True)
        k = config.metric.n_centroids
        if k is not None and k > int(counts.min()):
            raise ValueError(
                f"metric.n_centroids={k} is larger than the number of codes of class "
                f"{int(classes[counts.argmin()])} ({int(counts.min())} subjects)"
            )
        prepared = _Prepared(config, images, labels, [int(c) for c in classes])
        if config.shared_vae:
            _check_trainable(config.vae, config.trainer.replace(device=config.device), "(all, shared VAE)", len(images))
        else:
            # Build (and so validate) every class's trainer settings before training any.
            trainers = [_class_trainer(config, index) for index in range(len(prepared.classes))]
            for label, trainer, count in zip(prepared.classes, trainers, counts.tolist()):
                _check_trainable(config.vae, trainer, label, count)
        return prepared

    @staticmethod
    def _refuse_shared(config: AugmentorConfig, method: str) -> None:
        if config.shared_vae:
            raise ValueError(f"{method} works on per-class models; with shared_vae=True one model trains on every "
                             "class's images: use fit")

    def _set_fitted(self, prepared: _Prepared, fitted: dict[int, _FittedClass]) -> None:
        """Replace the fitted state (only once every class has its model and samplers)."""
        self.config, self.classes = prepared.config, prepared.classes
        self.models = {label: f.model for label, f in fitted.items()}
        self.histories = {label: f.history for label, f in fitted.items()}
        self.samplers = {label: f.samplers for label, f in fitted.items()}
        self.diagnostics = {}

    def _train_class(
        self, prepared: _Prepared, label: int, log_dir: str | Path | None, checkpoint_dir: str | Path | None
    ) -> ClassModel:
        """Class ``label``'s model trained on its images (seed ``trainer.seed + class index``)."""
        config, index = prepared.config, prepared.classes.index(label)
        class_images = prepared.class_images(label)
        model, history = self._train(
            config, _class_trainer(config, index), class_images, f"class_{label}", log_dir, checkpoint_dir
        )
        return ClassModel(label, index, config, model, history, images_digest(class_images))

    def _fit_class_samplers(self, prepared: _Prepared, models: Sequence[ClassModel]) -> dict[int, _FittedClass]:
        """Each class's samplers fitted on the codes of its images under its own model."""
        seed = prepared.config.trainer.seed
        return {
            m.label: _FittedClass(
                m.model, m.history,
                self._fit_samplers(prepared.config, seed + m.index, m.model, prepared.class_images(m.label)),
            )
            for m in models
        }

    def _fit_shared(
        self, prepared: _Prepared, log_dir: str | Path | None, checkpoint_dir: str | Path | None
    ) -> dict[int, _FittedClass]:
        """One VAE on every image; each class's samplers fitted on the codes of its own images."""
        config = prepared.config
        trainer = config.trainer.replace(device=config.device)
        model, history = self._train(config, trainer, prepared.images, SHARED_FOLDER, log_dir, checkpoint_dir)
        return {
            label: _FittedClass(
                model, history, self._fit_samplers(config, trainer.seed + index, model, prepared.class_images(label))
            )
            for index, label in enumerate(prepared.classes)
        }

    def _train(
        self,
        config: AugmentorConfig,
        trainer: TrainerConfig,
        images: torch.Tensor,
        folder: str,
        log_dir: str | Path | None,
        checkpoint_dir: str | Path | None,
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        """A model (the VAE or ``config.model``) trained on ``(n, C, H, W[, D])`` images, logging and checkpointing under ``folder``."""
        seed_everything(trainer.seed)
        model = build_model(model_config(config.model, config.vae, config.model_options))
        sub = lambda root: None if root is None else Path(root) / folder  # noqa: E731
        result: TrainingResult = train_vae(
            model, images, trainer, log_dir=sub(log_dir), checkpoint_dir=sub(checkpoint_dir)
        )
        return model.cpu().eval(), result.history

    def _fit_samplers(
        self, config: AugmentorConfig, seed: int, model: nn.Module, images: torch.Tensor
    ) -> dict[str, LatentSampler]:
        """The prior, the GMM, the kernel density on the codes, the Riemannian sampler (models with posterior variances) and the
        model's own sampler (VAMP, RHVAE) fitted on the codes of ``images``."""
        mu, log_var = self._encode(model, images)
        samplers: list[LatentSampler] = [NormalSampler(), GaussianMixtureSampler(config.gmm_components, seed=seed),
                                         KernelDensitySampler(config.kde_bandwidth)]
        if log_var is not None:  # the metric needs posterior variances; deterministic codes have none
            samplers.append(RiemannianSampler(config.metric, config.hmc))
        fitted = {sampler.name: sampler.fit(mu, log_var) for sampler in samplers}
        if getattr(model, "own_sampler", None):
            fitted[model.own_sampler] = model.fit_sampler(images, config.encode_batch_size, self.device, config.hmc)
            model.cpu()
        return fitted

    def encode(self, images: torch.Tensor, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means and log-variances ``(n, d)`` of ``(n, C, H, W[, D])`` images under class
        ``label``'s VAE (the shared one with ``shared_vae``), on the CPU."""
        self._require_fitted()
        if label not in self.models:
            raise ValueError(f"unknown class {label}; fitted classes are {self.classes}")
        images = check_images(images, tuple(self.config.vae.in_shape), "images", min_count=1)
        return self._encode(self.models[label], images)

    def _encode(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes ``(n, d)`` of ``(n, C, H, W[, D])`` images, on the CPU: means and log-variances
        (None for a deterministic model); the model is left on the CPU."""
        return encode_batches(model, images, self.config.encode_batch_size, self.device)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images of latents, each decoded by the VAE of its class.

        Args:
            z: ``(n, d)`` latents, e.g. from :meth:`sample_latents`.
            labels: ``(n,)`` the class of each latent.

        Returns:
            ``(n, C, H, W[, D])`` float32 images in [0, 1] on the CPU, in the order of ``z``.
        """
        self._require_fitted()
        unknown = sorted(set(labels.unique().tolist()) - set(self.classes))
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; fitted classes are {self.classes}")
        images = torch.empty((len(z), *self.config.vae.in_shape))
        for label in labels.unique().tolist():
            rows = (labels == label).nonzero().flatten()
            images[rows] = decode_batches(self.models[label], z[rows], self.config.encode_batch_size, self.device)
        return images

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("the augmentor is not fitted: call fit(images, labels) or GeometricAugmentor.load(path)")

    def _fitted_sampler(self, label: int, sampler: str) -> LatentSampler:
        """Class ``label``'s fitted ``sampler``; a clear error for an unknown class or a sampler the model lacks."""
        if label not in self.samplers:
            raise ValueError(f"unknown class {label}; fitted classes are {self.classes}")
        if sampler not in _ALL_SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(_ALL_SAMPLERS)}")
        fitted = self.samplers[label]
        if sampler not in fitted:
            if sampler == "riemannian":
                raise ValueError(riemannian_refusal(self.config.model))
            raise ValueError(
                f"sampler {sampler!r} does not apply to model {self.config.model!r}; "
                f"its samplers are {', '.join(model_samplers(self.config.model))}"
            )
        return fitted[sampler]

    def _record_diagnostics(self, label: int, sampler: LatentSampler) -> None:
        if isinstance(sampler, HMCLatentSampler):
            self.diagnostics[label] = sampler.diagnostics

    def sample_latents(
        self, label: int, n: int, sampler: str = "riemannian", seed: int = 0, hmc: HMCConfig | None = None
    ) -> torch.Tensor:
        """``(n, d)`` latents of class ``label`` drawn by ``sampler`` with ``seed`` as given.

        ``hmc`` overrides the HMC settings saved with the fitted sampler for this
        call only; the fitted samplers are not changed (``diagnostics[label]``
        reports the run). :meth:`class_latents` draws every class with the seeds
        of :meth:`generate`.
        """
        self._require_fitted()
        n, seed = _check_count(n, "n"), _check_seed(seed)
        check_fits(n * self.config.vae.latent_dim, f"sample_latents(n={n}): the latent codes")
        chosen = self._fitted_sampler(label, sampler)
        z = draw_latents(chosen, n, seed, hmc=hmc, device=self.device)
        self._record_diagnostics(label, chosen)
        return z

    def class_latents(
        self, n_per_class: int, sampler: str = "riemannian", seed: int = 0, hmc: HMCConfig | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The latents that :meth:`generate` decodes: ``n_per_class`` of every class.

        Class ``i`` (in the order of ``classes``) draws from its own stream,
        seeded ``augmentor.seeding.class_seed(seed, i)``
        (:func:`augmentor.sampling.draw_class_latents`). Arguments as in :meth:`generate`.

        Returns:
            latents ``(n_classes * n_per_class, d)`` and their labels
            ``(n_classes * n_per_class,)`` int64, grouped by class, on the CPU.
        """
        self._require_fitted()
        n_per_class, seed = _check_count(n_per_class, "n_per_class"), _check_seed(seed)
        check_fits(n_per_class * len(self.classes) * self.config.vae.latent_dim,
                   f"class_latents(n_per_class={n_per_class}): the latent codes")
        chosen = [self._fitted_sampler(label, sampler) for label in self.classes]
        latents = draw_class_latents(chosen, n_per_class, seed, hmc=hmc, device=self.device)
        for label, fitted in zip(self.classes, chosen):
            self._record_diagnostics(label, fitted)
        labels = torch.tensor(self.classes, dtype=torch.int64).repeat_interleave(n_per_class)
        return torch.cat(latents), labels

    def generate(
        self,
        n_per_class: int,
        sampler: str = "riemannian",
        seed: int = 0,
        hmc: HMCConfig | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic subjects of every class.

        Args:
            n_per_class: images per class, an integer >= 1.
            sampler: ``"riemannian"`` (ours), ``"gmm"`` or ``"prior"``, or a peer
                model's own sampler (``"vamp"``, ``"rhvae"``); which apply to the
                configured model: :func:`augmentor.peers.model_samplers`.
            seed: an integer in ``[-2**63, 2**64 - 1]``; the same seed gives the
                same images (each class draws from its own stream).
            hmc: HMC settings for this call only; None: those saved with each
                class's fitted sampler (``config.hmc`` when it was fitted).

        Returns:
            images ``(n_classes * n_per_class, C, H, W[, D])`` float32 in [0, 1] and
            labels ``(n_classes * n_per_class,)`` int64, grouped by class.
        """
        self._require_fitted()
        n_per_class, seed = _check_count(n_per_class, "n_per_class"), _check_seed(seed)
        shape = tuple(self.config.vae.in_shape)
        check_fits(n_per_class * len(self.classes) * math.prod(shape),
                   f"generate(n_per_class={n_per_class}): {len(self.classes)} classes of images {shape}")
        z, labels = self.class_latents(n_per_class, sampler, seed, hmc)
        return self.decode(z, labels), labels

    def save(self, path: str | Path) -> Path:
        """Save the fitted state to a new folder (atomic; refuses a non-empty folder).

        Layout: ``config.json``, ``classes.json``, and per class ``class_{label}/``
        with ``model.pt`` (weights), ``samplers.pt`` (metric, GMM and prior state)
        and ``history.json``, plus a ``manifest.json`` of checksums. With
        ``shared_vae`` the one VAE's ``model.pt`` and ``history.json`` are in
        ``shared_vae/`` and the class folders hold only ``samplers.pt``.
        """
        self._require_fitted()
        shared = self.config.shared_vae
        with saved_folder(path, SAVE_KIND) as tmp:
            (tmp / "config.json").write_text(self.config.to_json())
            write_json(tmp / "classes.json", self.classes)
            if shared:
                first = self.classes[0]
                save_tensors(tmp / SHARED_FOLDER / "model.pt", self.models[first].state_dict())
                write_json(tmp / SHARED_FOLDER / "history.json", self.histories[first])
            for label in self.classes:
                folder = tmp / f"class_{label}"
                save_tensors(folder / "samplers.pt", {n: s.state_dict() for n, s in self.samplers[label].items()})
                if not shared:
                    save_tensors(folder / "model.pt", self.models[label].state_dict())
                    write_json(folder / "history.json", self.histories[label])
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "GeometricAugmentor":
        """Load a folder written by :meth:`save`; checksums are verified first.

        Args:
            path: the saved folder.
            device: overrides the saved ``device`` setting (e.g. ``"cpu"``).
        """
        folder = read_saved_folder(path, SAVE_KIND)
        try:
            config = AugmentorConfig.from_json((folder / "config.json").read_text())
            classes = _saved_classes(folder / "classes.json")
        except (ValueError, ConfigError, TypeError) as err:
            raise CorruptSaveError(f"{folder}: invalid config or class list ({err})") from err
        if config.vae is None:
            raise CorruptSaveError(
                f"{folder}: config.json has AugmentorConfig.vae = null; a saved augmentor must record its VAE"
            )
        if device is not None:
            config = config.replace(device=device)
        augmentor = cls(config)
        augmentor.classes = classes
        shared = _load_model(config, folder / SHARED_FOLDER) if config.shared_vae else None
        for label in classes:
            sub = folder / f"class_{label}"
            model, history = shared or _load_model(config, sub)
            try:
                states = load_tensors(sub / "samplers.pt")
                augmentor.samplers[label] = {n: _ALL_SAMPLERS[n].from_state_dict(s) for n, s in states.items()}
            except (RuntimeError, KeyError, ValueError, TypeError) as err:
                raise CorruptSaveError(f"{sub}: cannot restore class {label} ({err})") from err
            missing = sorted(set(model_samplers(config.model)) - set(augmentor.samplers[label]))
            if missing:
                raise CorruptSaveError(f"{sub}: samplers.pt lacks the state of sampler(s) {missing}")
            augmentor.models[label], augmentor.histories[label] = model, history
        return augmentor


def _check_class_model(prepared: _Prepared, class_model: ClassModel) -> None:
    """Refuse a class model that :meth:`GeometricAugmentor.fit` would not have trained for this data and config."""
    label = class_model.label
    wanted, found = _model_settings(prepared.config), _model_settings(class_model.config)
    differing = sorted(key for key in set(wanted) | set(found) if wanted.get(key) != found.get(key))
    if differing:
        raise ValueError(f"the model of class {label} was trained with other settings than this augmentor's: "
                         f"{', '.join(differing)} differ")
    index = prepared.classes.index(label)
    if class_model.index != index:
        raise ValueError(f"the model of class {label} was trained as class number {class_model.index} (its seed); "
                         f"in these data class {label} is number {index} of {prepared.classes}")
    if class_model.images_digest != images_digest(prepared.class_images(label)):
        raise ValueError(f"the model of class {label} was trained on other images than the class {label} images given")


def _saved_classes(path: Path) -> list[int]:
    """The class ids of ``classes.json``: a non-empty list of distinct integers, never rounded."""
    saved = json.loads(path.read_text())
    if not isinstance(saved, list) or not saved:
        raise ValueError(f"{path.name} must hold a non-empty list of class ids, got {type(saved).__name__}")
    classes = class_labels(saved, name=path.name).tolist()
    if len(set(classes)) != len(classes):
        raise ValueError(f"{path.name} lists a class more than once: {classes}")
    return classes


def _load_model(config: AugmentorConfig, folder: Path) -> tuple[nn.Module, list[dict[str, float]]]:
    """The model (in eval mode) and training history saved in ``folder``."""
    model = build_model(model_config(config.model, config.vae, config.model_options))
    try:
        model.load_state_dict(load_tensors(folder / "model.pt"))
        history = json.loads((folder / "history.json").read_text())
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CorruptSaveError(f"{folder}: cannot restore the VAE ({err})") from err
    return model.eval(), history
