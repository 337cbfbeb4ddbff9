"""Tests of augmentor.training: convergence, best-model selection, early stopping,
exact resumption from checkpoints, TensorBoard logging and input checks."""

from __future__ import annotations

import pytest
import torch

from augmentor.config import ConfigError
from augmentor.io import load_tensors
from augmentor.models import VAEConfig, build_vae, vae_preset
from augmentor.training import CHECKPOINT_NAME, TrainerConfig, _split, train_vae


def _blobs(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` Gaussian blobs at random positions, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) * (size - 6) + 3
    axis = torch.arange(size, dtype=torch.float32)
    dy = (axis[None, :] - centres[:, :1]) ** 2
    dx = (axis[None, :] - centres[:, 1:]) ** 2
    return torch.exp(-(dy[:, :, None] + dx[:, None, :]) / 8.0)[:, None]


def _model(seed: int = 0, name: str = "tiny2d"):
    torch.manual_seed(seed)
    return build_vae(vae_preset(name))


def _config(**kw) -> TrainerConfig:
    defaults = {"epochs": 4, "batch_size": 16, "lr": 3e-3, "progress": False, "device": "cpu"}
    return TrainerConfig(**{**defaults, **kw})


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_loss_decreases_on_a_tiny_dataset():
    result = train_vae(_model(), _blobs(64), _config(epochs=8, grad_clip=100.0))
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == result.epochs_run == 8
    assert losses[-1] < 0.7 * losses[0]
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert {"epoch", "lr", "train_recon", "train_kl", "val_recon", "val_kl"} <= set(result.history[0])


def test_mlp_model_trains():
    torch.manual_seed(0)
    model = build_vae(VAEConfig(in_shape=(1, 16, 16), kind="mlp", hidden=(64, 32), latent_dim=4))
    result = train_vae(model, _blobs(32), _config(epochs=3))
    assert result.epochs_run == 3 and result.best_epoch >= 0


def test_best_model_is_kept_and_early_stopping_triggers(tmp_path):
    # Training on dark images and validating on bright ones makes the validation
    # loss get worse as training proceeds, so the best epoch is an early one.
    train = 0.05 * torch.rand(32, 1, 16, 16)
    val = 1 - 0.05 * torch.rand(8, 1, 16, 16)
    config = _config(epochs=40, lr=1e-2, early_stopping_patience=3, lr_patience=10)
    model = _model()
    result = train_vae(model, train, config, val_images=val, checkpoint_dir=tmp_path)

    val_losses = [h["val_loss"] for h in result.history]
    assert result.stopped_early
    assert result.epochs_run == result.best_epoch + 1 + 3 < 40
    assert result.best_val_loss == min(val_losses) == val_losses[result.best_epoch]
    checkpoint = load_tensors(tmp_path / CHECKPOINT_NAME)
    assert _same_weights(model.state_dict(), checkpoint["progress"]["best_state"])
    assert not _same_weights(model.state_dict(), checkpoint["model"])  # the last epoch's weights
    assert not model.training


def test_learning_rate_is_halved_on_plateau():
    train = 0.05 * torch.rand(32, 1, 16, 16)
    val = 1 - 0.05 * torch.rand(8, 1, 16, 16)
    result = train_vae(_model(), train, _config(epochs=8, lr=1e-2, lr_patience=1, early_stopping_patience=None), val)
    lrs = [h["lr"] for h in result.history]
    assert lrs[0] == 1e-2 and min(lrs) <= 5e-3
    assert all(b in (a, a / 2) for a, b in zip(lrs, lrs[1:]))


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    images = _blobs(40)
    config = _config(epochs=4, lr_patience=1, early_stopping_patience=None)

    straight_model = _model()
    straight = train_vae(straight_model, images, config)

    train_vae(_model(), images, config.replace(epochs=2), checkpoint_dir=tmp_path)
    resumed_model = _model(seed=123)  # different initial weights: all state comes from the checkpoint
    resumed = train_vae(resumed_model, images, config, checkpoint_dir=tmp_path)

    assert resumed == straight
    assert _same_weights(resumed_model.state_dict(), straight_model.state_dict())

    # A finished run is not trained again; asking for fewer epochs than done is refused.
    assert train_vae(_model(seed=7), images, config, checkpoint_dir=tmp_path) == straight
    with pytest.raises(ValueError, match="already run 4 epochs"):
        train_vae(_model(), images, config.replace(epochs=3), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run.*trainer"):
        train_vae(_model(), images, config.replace(lr=1e-4), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different run.*train_sha256"):
        train_vae(_model(), images.flip(-1), config, checkpoint_dir=tmp_path)


def test_tensorboard_events_are_written_for_3d_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    volumes = torch.rand(12, 1, 12, 12, 12)
    result = train_vae(_model(name="tiny3d"), volumes, _config(epochs=2, image_log_every=1), log_dir=tmp_path)
    assert result.epochs_run == 2
    assert list(tmp_path.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert {"train/loss", "val/loss", "train/kl", "val/recon", "lr"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/loss")) == 2
    image = events.Images("val/reconstruction")[-1]
    assert (image.height, image.width) == (2 * 12, 2 * 12)  # originals over reconstructions of 2 volumes


def test_split_is_disjoint_and_complete():
    images = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1) / 50
    train, val = _split(images, None, 0.2, torch.Generator().manual_seed(0))
    train_ids, val_ids = set(train.flatten().tolist()), set(val.flatten().tolist())
    assert len(val_ids) == 10 and len(train_ids) == 40
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(images.flatten().tolist())
    train, val = _split(images[:2], None, 0.01, torch.Generator().manual_seed(0))
    assert len(train) == len(val) == 1


_GOOD = torch.rand(8, 1, 16, 16)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.where(torch.arange(8 * 256).view(8, 1, 16, 16) == 5, float("nan"), _GOOD), "NaN or infinite"),
        (torch.where(torch.arange(8 * 256).view(8, 1, 16, 16) == 5, float("inf"), _GOOD), "NaN or infinite"),
        (_GOOD * 255, r"must lie in \[0, 1\]"),
        (_GOOD - 0.5, r"must lie in \[0, 1\]"),
        (_GOOD[:, 0], "must have 4 dimensions"),
        (torch.rand(8, 1, 16, 15), "per image but the model expects"),
        (torch.rand(8, 3, 16, 16), "per image but the model expects"),
        (_GOOD[:1], "at least 2 images"),
        ((_GOOD * 255).to(torch.uint8), "floating-point"),
    ],
)
def test_bad_images_raise(images, message):
    with pytest.raises(ValueError, match=message):
        train_vae(_model(), images, _config(epochs=1))


def test_bad_validation_images_and_models_raise():
    with pytest.raises(ValueError, match="val_images contain 512 NaN"):
        train_vae(_model(), _GOOD, _config(epochs=1), val_images=torch.tensor(float("nan")).expand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="2 of the 3 val_images also appear in images"):
        train_vae(_model(), _GOOD, _config(epochs=1), val_images=torch.cat([_GOOD[3:5], torch.rand(1, 1, 16, 16)]))
    with pytest.raises(TypeError, match="VAEConfig"):
        train_vae(torch.nn.Linear(2, 2), _GOOD, _config(epochs=1))
    with pytest.raises(TypeError, match="torch.Tensor"):
        train_vae(_model(), _GOOD.numpy(), _config(epochs=1))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0.0}, "lr"),
        ({"lr_patience": -1}, "lr_patience"),
        ({"early_stopping_patience": 0}, "early_stopping_patience"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"seed": -1}, "seed"),
        ({"device": "gpu"}, "device"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"image_log_every": -1}, "image_log_every"),
        ({"epochs": "10"}, "epochs"),
    ],
)
def test_trainer_config_validation_names_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"TrainerConfig\.{field}"):
        TrainerConfig(**changes)


def test_trainer_config_json_round_trip():
    config = TrainerConfig(epochs=3, early_stopping_patience=None, grad_clip=1.0, device="cuda:1")
    assert TrainerConfig.from_json(config.to_json()) == config
