"""The OASIS classifier of Table 4, its training loop, metrics, and the classical augmentation.

Network (paper, for 1 x 208 x 176 inputs)::

    Conv 8  (k3 s1) BN LeakyReLU MaxPool2
    Conv 16 (k3 s1) BN LeakyReLU MaxPool2
    Conv 32 (k3 s2) BN LeakyReLU MaxPool2
    Conv 64 (k3 s2) BN LeakyReLU MaxPool2
    Linear(256 -> 100) ReLU
    Linear(100 -> 2)

The convolutions are unpadded (that is what gives 64 x 2 x 2 = 256 features on
208 x 176); the flattened size is computed from the input size, so downsampled
images work (with ``padding: 1`` when they are small). Blocks are MONAI
:class:`~monai.networks.blocks.Convolution` layers (conv -> norm -> act) built
for the images' dimension: volumes ``(1, X, Y, Z)`` get the same network with 3D
convolutions, batch norm and max-pooling (on 44 x 52 x 44 with ``padding: 1``
the last feature map is 1 x 1 x 1, so Linear(channels[-1] -> 100)).

Training: Adam, batch 200, 50 epochs, learning rate halved after 5 epochs without
a better validation balanced accuracy, weights of the best validation epoch kept
(the first one on ties). Deterministic under its seed on CPU. Options
(:class:`~pipelines.common.settings.ClassifierConfig`): early stopping on the validation
score, ties broken by the validation loss, BatchNorm statistics recomputed over
the training images before each validation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from augmentor.utils.batching import index_batches, map_batches

from .settings import AugmentationConfig, ClassifierConfig

__all__ = [
    "OasisClassifier",
    "TrainedClassifier",
    "TorchIOAugmentation",
    "classification_metrics",
    "predict",
    "recalibrate_batchnorm",
    "train_classifier",
]


class OasisClassifier(nn.Sequential):
    """The CNN of Table 4 for ``in_shape`` ``(C, H, W)`` (or ``(C, H, W, D)``) images.

    Args:
        in_shape: image shape without the batch axis.
        config: layer settings (``channels``, ``strides``, ``kernel_size``,
            ``padding``, ``hidden``, ``negative_slope``).
        n_classes: output logits.

    Raises:
        ConfigError: the images are too small for the blocks.
    """

    def __init__(self, in_shape: Sequence[int], config: ClassifierConfig, n_classes: int = 2) -> None:
        from monai.networks.blocks import Convolution
        from monai.networks.layers.factories import Pool

        in_shape = tuple(int(s) for s in in_shape)
        dims = len(in_shape) - 1
        if dims not in (2, 3):
            raise ValueError(f"in_shape must be (C, H, W) or (C, H, W, D), got {in_shape}")
        config.check_image_size(in_shape[1:])
        layers: list[nn.Module] = []
        channels = in_shape[0]
        for out_channels, stride in zip(config.channels, config.strides):
            layers.append(
                Convolution(
                    spatial_dims=dims,
                    in_channels=channels,
                    out_channels=out_channels,
                    strides=stride,
                    kernel_size=config.kernel_size,
                    padding=config.padding,
                    act=("leakyrelu", {"negative_slope": config.negative_slope}),
                    norm="batch",
                    adn_ordering="NA",
                )
            )
            layers.append(Pool["max", dims](kernel_size=2))
            channels = out_channels
        flat = channels * math.prod(config.feature_grid(in_shape[1:]))
        layers += [nn.Flatten(), nn.Linear(flat, config.hidden), nn.ReLU(), nn.Linear(config.hidden, n_classes)]
        super().__init__(*layers)
        self.in_shape = in_shape
        self.flat_features = flat


def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> np.ndarray:
    """Predicted class of each image (eval mode)."""
    model.eval()
    return torch.cat(map_batches(lambda x: model(x).argmax(1).cpu(), images, batch_size, device)).numpy()


def classification_metrics(y_true: Any, y_pred: Any, classes: Sequence[int] = (0, 1)) -> dict[str, Any]:
    """Balanced accuracy, accuracy, confusion matrix and per-class precision / recall / F1 (scikit-learn).

    A class never predicted gets precision 0 (``zero_division=0``).
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(classes), zero_division=0
    )
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(classes)).tolist(),
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
    }


class TorchIOAugmentation:
    """Random affine + elastic deformation of 2D images or 3D volumes with TorchIO, reproducible per (seed, epoch).

    2D images are deformed in their plane (TorchIO sees them as one-slice volumes):
    in-plane rotation, scaling and translation, and in-plane elastic displacements.
    Volumes get the same transforms in all three axes: rotations of up to
    ``degrees`` about each axis, per-axis scaling, translation and elastic
    displacement (each a fraction of that axis's size).

    Each call transforms every image of the batch with freshly drawn parameters;
    the draws come from torch's global generator, seeded with ``seed`` and
    ``epoch``, so a given epoch always sees the same augmented set.

    Args:
        config: ranges and probabilities of the two transforms.
        image_size: ``(H, W)`` or ``(X, Y, Z)`` of the images.
        seed: seeds every epoch's draws.
    """

    def __init__(self, config: AugmentationConfig, image_size: Sequence[int], seed: int) -> None:
        import torchio as tio

        sizes = tuple(int(s) for s in image_size)
        if len(sizes) not in (2, 3):
            raise ValueError(f"image_size must be (H, W) or (X, Y, Z), got {sizes}")
        self.planar = len(sizes) == 2
        scale = (1 - config.scales, 1 + config.scales)
        translation = (-config.translation * min(sizes), config.translation * min(sizes))
        rotation = (-config.degrees, config.degrees)
        displacement = tuple(config.elastic_max_displacement * n for n in sizes)
        points = config.elastic_control_points
        if self.planar:  # the third axis is the image's single slice: leave it alone
            scales, degrees, shifts = (*scale, *scale, 1, 1), (0, 0, 0, 0, *rotation), (*translation, *translation, 0, 0)
            displacement, control_points = (*displacement, 0.0), (points, points, 5)
        else:
            scales, degrees, shifts, control_points = scale * 3, rotation * 3, translation * 3, (points,) * 3
        self.transform = tio.Compose(
            [
                tio.RandomAffine(
                    scales=scales, degrees=degrees, translation=shifts, image_interpolation="linear", p=config.p_affine
                ),
                tio.RandomElasticDeformation(
                    num_control_points=control_points,
                    max_displacement=displacement,
                    locked_borders=2,
                    image_interpolation="linear",
                    p=config.p_elastic,
                ),
            ]
        )
        self.seed = seed

    def _augment(self, image: torch.Tensor) -> torch.Tensor:
        """One ``(C, H, W)`` image or ``(C, X, Y, Z)`` volume through the transforms."""
        if self.planar:
            return self.transform(image.unsqueeze(-1)).squeeze(-1)
        return self.transform(image)

    def __call__(self, images: torch.Tensor, epoch: int) -> torch.Tensor:
        """Augmented copy of ``(N, C, H, W)`` or ``(N, C, X, Y, Z)`` images in [0, 1] (the input is not modified)."""
        state = torch.random.get_rng_state()
        torch.manual_seed((self.seed * 100_003 + epoch) % 2**63)
        try:
            out = torch.stack([self._augment(image) for image in images.cpu()])
        finally:
            torch.random.set_rng_state(state)
        return out.clamp_(0, 1)


@dataclasses.dataclass
class TrainedClassifier:
    """Outcome of :func:`train_classifier`: the model (best epoch's weights) and its history."""

    model: nn.Module
    best_epoch: int
    best_val_balanced_accuracy: float
    history: list[dict[str, float]]


@dataclasses.dataclass
class _Best:
    """The epoch with the best validation score so far (the first one on ties).

    The score is ``(balanced accuracy,)`` or ``(balanced accuracy, -loss)``,
    compared lexicographically.
    """

    epoch: int = -1
    score: tuple[float, ...] = (-math.inf,)
    state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, score: tuple[float, ...], model: nn.Module) -> bool:
        """Keep ``model``'s weights if ``score`` beats the best so far; whether it did."""
        if score > self.score:
            self.epoch, self.score, self.state = epoch, score, copy.deepcopy(model.state_dict())
            return True
        return False


def _validation_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                       device: torch.device) -> tuple[float, float]:
    """``(balanced accuracy, mean cross-entropy)`` of ``model`` in eval mode on ``(N, C, H, W[, D])`` images."""
    from sklearn.metrics import balanced_accuracy_score

    model.eval()
    logits = torch.cat(map_batches(lambda x: model(x).cpu(), images, batch_size, device))
    loss = float(nn.functional.cross_entropy(logits, labels.long().cpu()))
    score = float(balanced_accuracy_score(labels.cpu().numpy(), logits.argmax(1).numpy()))
    return score, loss


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Set every BatchNorm layer's running statistics to the exact average over ``images``.

    ``images`` ``(N, C, H, W[, D])`` lie on the model's device. The running
    averages of training (momentum 0.1) weigh the last batches most, and the last
    batch of an epoch can be small; in eval mode that can shift every feature
    enough to make the classifier predict a single class. The trainable weights
    are untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    try:
        for batch in index_batches(torch.arange(len(images)), batch_size):
            model(images[batch.to(images.device)])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def _train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over ``x`` ``(N, C, H, W[, D])`` (on the model's device) in shuffled batches; the mean loss."""
    device = x.device
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for batch in index_batches(torch.randperm(len(x), generator=generator), batch_size):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[batch.to(device)]), y[batch].to(device))
        loss.backward()
        optimizer.step()
        total += loss.detach().item() * len(batch)
        count += len(batch)
    return total / count


def _log_epoch(writer: Any, record: dict[str, float]) -> None:
    epoch = int(record["epoch"])
    writer.add_scalar("train/loss", record["train_loss"], epoch)
    writer.add_scalar("val/balanced_accuracy", record["val_balanced_accuracy"], epoch)
    writer.add_scalar("val/loss", record["val_loss"], epoch)
    writer.add_scalar("lr", record["lr"], epoch)


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    config: ClassifierConfig,
    seed: int,
    device: torch.device | str = "cpu",
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
    log_dir: str | Path | None = None,
    progress: bool = False,
    desc: str = "classifier",
) -> TrainedClassifier:
    """Train an :class:`OasisClassifier`, keeping the epoch with the best validation score.

    The score is the validation balanced accuracy, ties broken as
    ``config.selection`` says; training stops early after
    ``config.early_stopping_patience`` epochs without a better score, if set.

    Args:
        train_images, train_labels: ``(N, C, H, W)`` or ``(N, C, X, Y, Z)`` in [0, 1] and ``(N,)`` labels 0..K-1.
        val_images, val_labels: the validation set (drives the learning rate and the choice of epoch).
        config: network and optimisation settings.
        seed: seeds the initial weights and the batch order.
        device: where to train.
        augment: ``augment(images, epoch)`` returns the epoch's training images
            (e.g. :class:`TorchIOAugmentation`); None trains on the images as given.
        log_dir: TensorBoard folder for the per-epoch curves.
        progress: show a progress bar over the epochs.
    """
    if len(train_images) < 2:
        raise ValueError(f"the classifier needs at least 2 training images, got {len(train_images)}")
    device = torch.device(device)
    n_classes = int(max(train_labels.max(), val_labels.max())) + 1
    torch.manual_seed(seed)
    model = OasisClassifier(train_images.shape[1:], config, n_classes).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience
    )
    generator = torch.Generator().manual_seed(seed)
    x_fixed = None if augment is not None else train_images.to(device)
    best = _Best()
    stale = 0  # epochs since the best score
    history: list[dict[str, float]] = []
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(log_dir))
    try:
        bar = tqdm(range(config.epochs), desc=desc, leave=False, disable=not progress)
        for epoch in bar:
            x = x_fixed if augment is None else augment(train_images, epoch).to(device)
            lr = optimizer.param_groups[0]["lr"]
            train_loss = _train_epoch(model, x, train_labels.long(), optimizer, config.batch_size, generator)
            if config.recalibrate_batchnorm:
                recalibrate_batchnorm(model, x, config.eval_batch_size)
            score, val_loss = _validation_scores(model, val_images, val_labels, config.eval_batch_size, device)
            scheduler.step(score)
            record = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "val_balanced_accuracy": score,
                      "val_loss": val_loss}
            history.append(record)
            key = (score, -val_loss) if config.selection == "balanced_accuracy_then_loss" else (score,)
            stale = 0 if best.update(epoch, key, model) else stale + 1
            if writer is not None:
                _log_epoch(writer, record)
            bar.set_postfix(loss=f"{train_loss:.3g}", val_ba=f"{score:.3f}")
            if config.early_stopping_patience is not None and stale >= config.early_stopping_patience:
                break
        bar.close()
    finally:
        if writer is not None:
            writer.close()
    model.load_state_dict(best.state)
    model.eval()
    return TrainedClassifier(model, best.epoch, best.score[0], history)
