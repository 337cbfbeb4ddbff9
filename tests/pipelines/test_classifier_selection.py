"""Classifier options (pipelines.common.classifier): early stopping, ties broken by the validation loss, BatchNorm
recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from augmentor.utils.config import ConfigError
from pipelines.common.classifier import _Best, recalibrate_batchnorm, train_classifier
from pipelines.common.settings import ClassifierConfig

SMALL = ClassifierConfig(channels=(4,), strides=(1,), padding=1, hidden=8, epochs=12, batch_size=8, lr=1e-3)


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, 8, 8)`` images whose class is a bright or dark top half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.5 + 0.1 * torch.randn(n, 1, 8, 8, generator=g)
    x[:, :, :4] += (0.3 * (2 * y - 1)).view(-1, 1, 1, 1)
    return x.clamp(0, 1), y


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    x, y = _images(32, 0)
    vx, vy = _images(16, 1)
    full = train_classifier(x, y, vx, vy, SMALL, seed=0)
    stopped = train_classifier(x, y, vx, vy, SMALL.replace(early_stopping_patience=2), seed=0)
    scores = [r["val_balanced_accuracy"] for r in full.history]
    # The first epoch after which 2 epochs bring no strictly better score is where the run stops.
    best, stale, stop = -1.0, 0, len(scores)
    for epoch, score in enumerate(scores):
        best, stale = (score, 0) if score > best else (best, stale + 1)
        if stale >= 2:
            stop = epoch + 1
            break
    assert stop < len(scores), "the fixture must plateau within 12 epochs for this test to mean anything"
    assert len(stopped.history) == stop
    assert stopped.history == full.history[:stop]  # same seed: identical epochs until the stop
    assert stopped.best_epoch == full.history.index(max(full.history[:stop], key=lambda r: r["val_balanced_accuracy"]))


def test_ties_of_balanced_accuracy_are_broken_by_the_validation_loss() -> None:
    model = nn.Linear(1, 1)
    first = _Best()
    assert first.update(0, (0.5,), model) and not first.update(1, (0.5,), model)
    by_loss = _Best()
    assert by_loss.update(0, (0.5, -0.9), model)
    assert by_loss.update(1, (0.5, -0.7), model) and by_loss.epoch == 1  # same accuracy, lower loss
    assert not by_loss.update(2, (0.4, -0.1), model)  # accuracy first


def test_selection_by_loss_keeps_the_lowest_loss_epoch_among_the_best_accuracy() -> None:
    x, y = _images(32, 0)
    vx, vy = _images(16, 1)
    trained = train_classifier(x, y, vx, vy, SMALL.replace(selection="balanced_accuracy_then_loss"), seed=0)
    best = max(r["val_balanced_accuracy"] for r in trained.history)
    tied = [r for r in trained.history if r["val_balanced_accuracy"] == best]
    assert trained.best_epoch == min(tied, key=lambda r: r["val_loss"])["epoch"]


def test_recalibrated_batchnorm_holds_the_exact_mean_and_variance_of_the_images() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    images = torch.randn(10, 1, 6, 6) * 2 + 1
    recalibrate_batchnorm(model, images, batch_size=10)
    with torch.no_grad():
        features = model[0](images)
    norm = model[1]
    assert norm.momentum == 0.1  # restored
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    # BatchNorm's running variance is the unbiased one
    torch.testing.assert_close(norm.running_var, features.var(dim=(0, 2, 3), unbiased=True), rtol=1e-5, atol=1e-6)
    recalibrate_batchnorm(model, images, batch_size=5)  # two equal batches: the average of their statistics
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("early_stopping_patience", 0, "must be >= 1 or null"),
    ("selection", "loss", "must be one of"),
])
def test_bad_selection_settings_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"ClassifierConfig.{field}: {message}"):
        ClassifierConfig.from_dict({field: value})
