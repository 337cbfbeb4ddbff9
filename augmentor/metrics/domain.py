"""A domain Fréchet distance: the Fréchet distance in the features of a small classifier trained on the data.

**This is not FID.** The Inception network of FID is slow on a CPU and was
trained on natural photographs; for fast runs (and for data far from ImageNet,
such as digits or medical slices) the toolkit trains a small CNN classifier on
the real training set and measures the Fréchet distance between the
penultimate-layer features of real and generated images. Its values are
labelled ``FD_domain`` and are comparable only between runs that use the same
classifier (same data, seed and settings), never with published FIDs.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import trange

from augmentor.utils.batching import map_batches
from augmentor.utils.devices import resolve_device
from .features import check_image_batch, extract_features
from .frechet import FrechetResult, GaussianStats, frechet_distance_between

__all__ = [
    "DomainClassifier",
    "DomainFeatures",
    "domain_accuracy",
    "domain_features",
    "domain_frechet_distance",
    "train_domain_classifier",
]

logger = logging.getLogger(__name__)


class DomainClassifier(nn.Module):
    """Small CNN: three 3 x 3 convolutions (strides 1, 2, 2), average pooling to a ``grid x grid`` map, a
    feature layer, a head.

    Works for any image size (the pooling is adaptive). Keep ``grid`` above 1: the three
    convolutions see only 11 x 11 pixels each, and a global average (``grid = 1``) throws away
    where the strokes are. On 2,400 MNIST digits, 10 epochs, ``grid = 4`` classifies 93.0 % of 600
    held-out digits, ``grid = 2`` 87.0 % and ``grid = 1`` 42.0 % (the toolkit's CNN before 0.9; still
    available for reproducing results measured with it): ``benchmarks/domain_cnn_grid.py``.

    Args:
        in_channels: image channels.
        n_classes: number of classes.
        feature_dim: width of the feature (penultimate) layer.
        width: channels of the first convolution (doubled twice).
        grid: side of the pooled map that feeds the feature layer.
    """

    def __init__(self, in_channels: int, n_classes: int, feature_dim: int = 128, width: int = 32,
                 grid: int = 4) -> None:
        super().__init__()
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = grid
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
            nn.Linear(4 * width * grid * grid, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features ``(B, feature_dim)`` of images ``(B, C, H, W)`` in [0, 1]."""
        return self.body(2 * images - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)``."""
        return self.head(self.features(images))


class DomainFeatures:
    """A trained :class:`DomainClassifier` as a feature extractor (see :mod:`augmentor.metrics.features`)."""

    name = "domain-cnn"

    def __init__(self, classifier: DomainClassifier) -> None:
        self.classifier = classifier.eval()
        self.device = next(classifier.parameters()).device
        digest = hashlib.sha256()
        for key, value in classifier.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        self._cache_key = f"{self.name}|weights={digest.hexdigest()}"

    @property
    def cache_key(self) -> str:
        return self._cache_key

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier.features(images.to(self.device, torch.float32))


def _class_indices(labels: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous class indices ``0 .. K-1`` and the original classes ``(K,)``."""
    labels = torch.as_tensor(labels)
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"labels must be {n} integers, got shape {tuple(labels.shape)} and dtype {labels.dtype}")
    classes, indices = torch.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"the domain classifier needs at least 2 classes, got {classes.tolist()}")
    return indices, classes


def train_domain_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    seed: int = 0,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    feature_dim: int = 128,
    grid: int = 4,
    device: str = "cpu",
    progress: bool = False,
) -> DomainClassifier:
    """Train the domain classifier on real training images; the same seed gives the same weights.

    Args:
        images: ``(N, C, H, W)`` in [0, 1], the real training set.
        labels: ``(N,)`` integer classes (at least 2).
        seed: seeds the initialisation and the batch order (the global RNG is left untouched).
        epochs: passes over the data.
        batch_size: images per step.
        lr: Adam learning rate.
        feature_dim: width of the feature layer.
        grid: side of the pooled map (see :class:`DomainClassifier`).
        device: where to train.
        progress: show a progress bar over epochs.

    Returns:
        the trained classifier, in eval mode.
    """
    check_image_batch(images)
    targets, classes = _class_indices(labels, len(images))
    torch_device = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DomainClassifier(images.shape[1], len(classes), feature_dim, grid=grid).to(torch_device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    classifier.train()
    for epoch in trange(epochs, desc="domain classifier", disable=not progress):
        total, correct = 0.0, 0
        for batch in torch.randperm(len(images), generator=generator).split(batch_size):
            x, y = images[batch].to(torch_device, torch.float32), targets[batch].to(torch_device)
            optimizer.zero_grad()
            logits = classifier(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == y).sum())
        logger.info("domain classifier epoch %d: loss %.4f, train accuracy %.3f",
                    epoch + 1, total / len(images), correct / len(images))
    return classifier.eval()


def domain_accuracy(classifier: DomainClassifier, images: torch.Tensor, labels: torch.Tensor,
                    batch_size: int = 256) -> float:
    """Share of images ``(N, C, H, W)`` the classifier assigns to their class ``labels`` ``(N,)``.

    The labels are the classes the classifier was trained on, numbered ``0 .. K-1`` in sorted order
    (as :func:`train_domain_classifier` numbers them; MNIST's digits are their own numbers).
    """
    check_image_batch(images)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    device = next(classifier.parameters()).device
    predicted = map_batches(lambda x: classifier(x).argmax(1).cpu(), images, batch_size, device)
    return float((torch.cat(predicted) == labels.cpu()).float().mean())


def domain_features(images: torch.Tensor, classifier: DomainClassifier, batch_size: int = 256,
                    progress: bool = False) -> torch.Tensor:
    """Feature-layer activations ``(N, feature_dim)`` of images ``(N, C, H, W)`` in [0, 1], batched."""
    return extract_features(images, DomainFeatures(classifier), batch_size, progress)


def domain_frechet_distance(
    real: torch.Tensor | GaussianStats,
    fake: torch.Tensor,
    classifier: DomainClassifier,
    cache_dir: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> FrechetResult:
    """``FD_domain``: the Fréchet distance in the classifier's features (not FID; see the module notes).

    Args:
        real: ``(N, C, H, W)`` reference images in [0, 1] (e.g. the test set), or their statistics.
        fake: ``(M, C, H, W)`` generated images in [0, 1].
        classifier: from :func:`train_domain_classifier`.
        cache_dir: where the reference statistics are cached (keyed by data and weights).
        batch_size: images per forward pass.
        progress: show progress bars.
    """
    return frechet_distance_between(real, fake, DomainFeatures(classifier), "FD_domain", cache_dir,
                                    batch_size, progress)
