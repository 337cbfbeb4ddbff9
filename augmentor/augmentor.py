"""The :class:`GeometricAugmentor`: one VAE and one latent geometry per class.

``fit`` trains a vanilla VAE per class, encodes that class's images and fits the
three latent samplers on the codes (N(0, I) prior, 10-component GMM on the
means, Riemannian uniform by HMC). ``generate`` draws latents with the chosen
sampler and decodes them into synthetic subjects of each class. The whole
fitted state saves to a folder (JSON configs, weights and sampler state as
tensors) that loads without unpickling arbitrary code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn

from .config import Config, ConfigError
from .io import CorruptSaveError, load_tensors, read_saved_folder, save_tensors, saved_folder, write_json
from .metric import MetricConfig
from .models import VAEConfig, build_vae
from .diagnostics import HMCDiagnostics
from .hmc import HMCConfig
from .samplers import SAMPLERS, GaussianMixtureSampler, LatentSampler, NormalSampler, RiemannianSampler
from .training import (
    DEVICE_PATTERN,
    TrainerConfig,
    TrainingResult,
    check_images,
    resolve_device,
    seed_everything,
    train_vae,
)

__all__ = ["AugmentorConfig", "GeometricAugmentor", "default_vae_config", "load_data_dicts"]

SamplerName = Literal["riemannian", "gmm", "prior"]
SAVE_KIND = "geometric-augmentor"


def default_vae_config(in_shape: Sequence[int], latent_dim: int = 16) -> VAEConfig:
    """A small convolutional VAE for images of ``in_shape`` ``(C, H, W[, D])``.

    Three stride-2 convolutions (fewer when the image is too small for them).
    """
    in_shape = tuple(int(s) for s in in_shape)
    n_layers = 3
    while n_layers > 1 and min(in_shape[1:]) < 2**n_layers:
        n_layers -= 1
    channels = (16, 32, 64)[:n_layers] if len(in_shape) == 4 else (32, 64, 128)[:n_layers]
    return VAEConfig(in_shape=in_shape, latent_dim=latent_dim, channels=channels, strides=(2,) * n_layers)


@dataclasses.dataclass
class AugmentorConfig(Config):
    """Everything a :class:`GeometricAugmentor` needs, JSON/YAML round-trippable.

    Attributes:
        vae: architecture; None picks :func:`default_vae_config` for the data's shape.
        trainer: optimisation settings (its ``seed`` is offset by the class index).
        metric: how each class's metric is built.
        hmc: default HMC settings of the Riemannian sampler.
        gmm_components: components of the GMM baseline (paper: 10).
        device: where training and sampling run (``auto``, ``cpu``, ``cuda[:N]``, ``mps``);
            it replaces ``trainer.device``.
        encode_batch_size: images per batch when encoding and decoding.
    """

    vae: VAEConfig | None = None
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    metric: MetricConfig = dataclasses.field(default_factory=MetricConfig)
    hmc: HMCConfig = dataclasses.field(default_factory=HMCConfig)
    gmm_components: int = 10
    device: str = "auto"
    encode_batch_size: int = 256

    def validate(self) -> None:
        if self.gmm_components < 1:
            self._fail("gmm_components", f"must be >= 1, got {self.gmm_components}")
        if self.encode_batch_size < 1:
            self._fail("encode_batch_size", f"must be >= 1, got {self.encode_batch_size}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            self._fail("device", f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")


def load_data_dicts(data: Sequence[dict[str, Any]], transform: Callable | None, image_key: str = "image",
                    label_key: str = "label") -> tuple[torch.Tensor, torch.Tensor]:
    """Read MONAI data dicts (``{"image": path, "label": int}``) into tensors.

    Args:
        data: the data dicts; images are loaded by ``transform`` (e.g. a MONAI
            ``Compose`` of ``LoadImaged``, ``EnsureChannelFirstd``,
            ``ScaleIntensityd``, ``Resized``), which must yield equal-shaped
            channel-first images in [0, 1].
        transform: called on a shallow copy of each dict (the inputs are not modified).

    Returns:
        images ``(N, C, H, W[, D])`` float32 and labels ``(N,)`` int64.
    """
    images, labels = [], []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or image_key not in item or label_key not in item:
            raise ValueError(f"data item {i} must be a dict with keys {image_key!r} and {label_key!r}, got {item!r}")
        out = transform(dict(item)) if transform is not None else item
        image = torch.as_tensor(out[image_key]).float()
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"data item {i} ({item.get(image_key)!r}) has shape {tuple(image.shape)} after the transform, "
                f"the first had {tuple(images[0].shape)}; add a Resized/SpatialPadd step"
            )
        images.append(image.as_subclass(torch.Tensor))  # drop MONAI metadata
        labels.append(int(out[label_key]))
    if not images:
        raise ValueError("no data items given")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _check_labels(labels: Any, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"labels must have shape ({n},) to match the images, got {tuple(labels.shape)}")
    if labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ValueError("labels must be integers")
    labels = labels.long()
    classes, counts = labels.unique(return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"found a single class ({classes.tolist()}); class-conditional augmentation needs at least two classes"
        )
    small = [int(c) for c, k in zip(classes, counts) if k < 2]
    if small:
        raise ValueError(f"class(es) {small} have fewer than 2 subjects; each class needs at least 2")
    return labels


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
        images: torch.Tensor | Sequence[dict[str, Any]],
        labels: torch.Tensor | Sequence[int] | None = None,
        transform: Callable | None = None,
        log_dir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> "GeometricAugmentor":
        """Train one VAE per class and fit the latent samplers on its codes.

        Args:
            images: ``(N, C, H, W)`` or ``(N, C, H, W, D)`` in [0, 1]; or a list of
                MONAI data dicts ``{"image": path, "label": int}`` read through
                ``transform`` (then ``labels`` is taken from the dicts).
            labels: ``(N,)`` integer class labels (tensor input only).
            transform: MONAI preprocessing applied to each data dict.
            log_dir: TensorBoard folder; each class logs under ``class_{label}``.
            checkpoint_dir: per-class training checkpoints (resume after interruption).

        Returns:
            self, fitted.
        """
        if not isinstance(images, torch.Tensor):
            if labels is not None:
                raise ValueError("with data dicts the labels come from the dicts; do not pass labels")
            images, labels = load_data_dicts(images, transform)
        if labels is None:
            raise ValueError("labels are required with tensor images")
        if images.ndim not in (4, 5):
            raise ValueError(f"images must have shape (N, C, H, W) or (N, C, H, W, D), got {tuple(images.shape)}")
        vae_config = self.config.vae or default_vae_config(images.shape[1:])
        images = check_images(images, tuple(vae_config.in_shape), "images", min_count=2)
        labels = _check_labels(labels, len(images))
        classes, counts = labels.unique(return_counts=True)
        k = self.config.metric.n_centroids
        if k is not None and k > int(counts.min()):
            raise ValueError(
                f"metric.n_centroids={k} is larger than the number of codes of class "
                f"{int(classes[counts.argmin()])} ({int(counts.min())} subjects)"
            )
        self.config = self.config.replace(vae=vae_config)
        self.classes = [int(c) for c in classes]
        self.models, self.samplers, self.histories = {}, {}, {}
        for index, label in enumerate(self.classes):
            class_images = images[labels == label]
            self._fit_class(index, label, class_images, log_dir, checkpoint_dir)
        return self

    def _fit_class(self, index: int, label: int, images: torch.Tensor, log_dir, checkpoint_dir) -> None:
        trainer = self.config.trainer.replace(seed=self.config.trainer.seed + index, device=self.config.device)
        seed_everything(trainer.seed)
        model = build_vae(self.config.vae)
        sub = lambda root: None if root is None else Path(root) / f"class_{label}"  # noqa: E731
        result: TrainingResult = train_vae(
            model, images, trainer, log_dir=sub(log_dir), checkpoint_dir=sub(checkpoint_dir)
        )
        mu, log_var = self._encode(model, images)
        self.models[label] = model.cpu().eval()
        self.histories[label] = result.history
        self.samplers[label] = {
            "prior": NormalSampler().fit(mu, log_var),
            "gmm": GaussianMixtureSampler(self.config.gmm_components, seed=trainer.seed).fit(mu, log_var),
            "riemannian": RiemannianSampler(self.config.metric, self.config.hmc).fit(mu, log_var),
        }

    @torch.no_grad()
    def _encode(self, model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = model.to(self.device).eval()
        size = self.config.encode_batch_size
        parts = [model.encode(images[i : i + size].to(self.device)) for i in range(0, len(images), size)]
        return torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()

    @torch.no_grad()
    def _decode(self, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
        model = model.to(self.device).eval()
        size = self.config.encode_batch_size
        out = [model.decode(z[i : i + size].to(self.device)).cpu() for i in range(0, len(z), size)]
        model.cpu()
        return torch.cat(out)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("the augmentor is not fitted: call fit(images, labels) or GeometricAugmentor.load(path)")

    def sample_latents(
        self, label: int, n: int, sampler: SamplerName = "riemannian", seed: int = 0, hmc: HMCConfig | None = None
    ) -> torch.Tensor:
        """``(n, d)`` latents of class ``label`` drawn by ``sampler``."""
        self._require_fitted()
        if label not in self.samplers:
            raise ValueError(f"unknown class {label}; fitted classes are {self.classes}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
        chosen = self.samplers[label][sampler]
        if isinstance(chosen, RiemannianSampler):
            chosen.device = self.device
            z = chosen.sample(n, seed=seed, hmc_config=hmc or self.config.hmc)
            self.diagnostics[label] = chosen.diagnostics
            return z
        return chosen.sample(n, seed=seed)

    def generate(
        self,
        n_per_class: int,
        sampler: SamplerName = "riemannian",
        seed: int = 0,
        hmc: HMCConfig | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic subjects of every class.

        Args:
            n_per_class: images per class.
            sampler: ``"riemannian"`` (ours), ``"gmm"`` or ``"prior"``.
            seed: the same seed gives the same images (each class draws from its own stream).
            hmc: HMC settings overriding the configured ones for this call.

        Returns:
            images ``(n_classes * n_per_class, C, H, W[, D])`` float32 in [0, 1] and
            labels ``(n_classes * n_per_class,)`` int64, grouped by class.
        """
        self._require_fitted()
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        images, labels = [], []
        for index, label in enumerate(self.classes):
            z = self.sample_latents(label, n_per_class, sampler, seed=seed * 1009 + index, hmc=hmc)
            images.append(self._decode(self.models[label], z))
            labels.append(torch.full((n_per_class,), label, dtype=torch.int64))
        return torch.cat(images), torch.cat(labels)

    def save(self, path: str | Path) -> Path:
        """Save the fitted state to a new folder (atomic; refuses a non-empty folder).

        Layout: ``config.json``, ``classes.json``, and per class ``class_{label}/``
        with ``model.pt`` (weights), ``samplers.pt`` (metric, GMM and prior state)
        and ``history.json``, plus a ``manifest.json`` of checksums.
        """
        self._require_fitted()
        with saved_folder(path, SAVE_KIND) as tmp:
            (tmp / "config.json").write_text(self.config.to_json())
            write_json(tmp / "classes.json", self.classes)
            for label in self.classes:
                folder = tmp / f"class_{label}"
                save_tensors(folder / "model.pt", self.models[label].state_dict())
                save_tensors(folder / "samplers.pt", {n: s.state_dict() for n, s in self.samplers[label].items()})
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
            classes = [int(c) for c in json.loads((folder / "classes.json").read_text())]
        except (ValueError, ConfigError, TypeError) as err:
            raise CorruptSaveError(f"{folder}: invalid config or class list ({err})") from err
        if device is not None:
            config = config.replace(device=device)
        augmentor = cls(config)
        augmentor.classes = classes
        for label in classes:
            sub = folder / f"class_{label}"
            model = build_vae(config.vae)
            try:
                model.load_state_dict(load_tensors(sub / "model.pt"))
                states = load_tensors(sub / "samplers.pt")
                augmentor.samplers[label] = {n: SAMPLERS[n].from_state_dict(states[n]) for n in SAMPLERS}
                augmentor.histories[label] = json.loads((sub / "history.json").read_text())
            except (RuntimeError, KeyError, ValueError, TypeError) as err:
                raise CorruptSaveError(f"{sub}: cannot restore class {label} ({err})") from err
            augmentor.models[label] = model.eval()
        return augmentor
