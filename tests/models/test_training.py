"""Tests of augmentor.training: convergence, best-model selection, early stopping,
exact resumption from checkpoints, TensorBoard logging and input checks."""

from __future__ import annotations

import pytest
import torch

from augmentor.utils.config import ConfigError
from augmentor.models import training
from augmentor.utils.io import load_tensors
from augmentor.models.vae import VAEConfig, build_vae, vae_preset
from augmentor.models.training import CHECKPOINT_NAME, TrainerConfig, _next_batch, _split, train_vae, validation_size


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
    train, val = _split(images, None, _config(val_fraction=0.2), torch.Generator().manual_seed(0))
    train_ids, val_ids = set(train.flatten().tolist()), set(val.flatten().tolist())
    assert len(val_ids) == 10 and len(train_ids) == 40
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(images.flatten().tolist())
    train, val = _split(images[:2], None, _config(val_fraction=0.01), torch.Generator().manual_seed(0))
    assert len(train) == len(val) == 1


@pytest.mark.parametrize(
    "n, fraction, minimum, min_train, expected",
    [(50, 0.2, 1, 1, 10), (20, 0.2, 8, 1, 8), (20, 0.2, 30, 1, 19), (20, 0.2, 30, 2, 18), (2, 0.01, 1, 1, 1)],
)
def test_validation_size_has_a_floor_and_leaves_training_images(n, fraction, minimum, min_train, expected):
    config = _config(val_fraction=fraction, min_val_images=minimum)
    assert validation_size(n, config, min_train) == expected


class _CountingVAE(torch.nn.Module):
    """Wraps a VAE and counts its losses computed in training mode (one per optimiser step)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config, self.train_calls = model, model.config, 0

    def forward(self, x):
        return self.inner(x)

    def loss(self, x):
        self.train_calls += self.training
        return self.inner.loss(x)

    def encode(self, x):
        return self.inner.encode(x)

    def decode(self, z):
        return self.inner.decode(z)


@pytest.mark.parametrize("n_images", [12, 40, 150])
def test_step_budget_trains_the_same_number_of_steps_whatever_the_data_size(n_images):
    model = _CountingVAE(_model())
    config = _config(max_steps=7, eval_every=3, batch_size=16, lr=1e-3, grad_clip=10.0, early_stopping_patience=None)
    result = train_vae(model, _blobs(n_images), config)
    assert model.train_calls == result.steps_run == 7
    assert [h["step"] for h in result.history] == [3, 6, 7]  # evaluations every 3 steps, the last one short
    assert result.epochs_run == 3


def test_epoch_budget_steps_grow_with_the_data_size():
    # The old behaviour the step budget replaces: one epoch of 40 images is 3 steps, of 12 images 1.
    steps = [train_vae(_model(), _blobs(n), _config(epochs=2, val_fraction=0.1)).steps_run for n in (12, 40)]
    assert steps == [2, 6]


def test_step_stream_never_repeats_an_image_within_a_batch():
    stream, generator = {"order": torch.zeros(0, dtype=torch.int64), "cursor": 0}, torch.Generator().manual_seed(0)
    seen = [_next_batch(stream, 10, 4, generator) for _ in range(6)]
    assert all(len(set(batch.tolist())) == 4 for batch in seen)
    # Two batches per pass of 10 (the remainder of 2 is skipped), then a reshuffle.
    assert set(torch.cat(seen[:2]).tolist()) | set(torch.cat(seen[2:4]).tolist()) <= set(range(10))


def test_resumed_step_budget_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    images = _blobs(24)
    config = _config(max_steps=9, eval_every=3, batch_size=8, early_stopping_patience=None, checkpoint_every_s=0)
    straight_model = _model()
    straight = train_vae(straight_model, images, config)

    # Interrupt the run in its third round (after 6 steps were checkpointed, mid-way through a pass).
    real_run_steps, calls = training._run_steps, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_run_steps(*args, **kwargs)

    monkeypatch.setattr(training, "_run_steps", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_vae(_model(), images, config, checkpoint_dir=tmp_path)
    monkeypatch.setattr(training, "_run_steps", real_run_steps)
    resumed_model = _model(seed=123)
    resumed = train_vae(resumed_model, images, config, checkpoint_dir=tmp_path)
    assert resumed == straight and resumed.steps_run == 9
    assert _same_weights(resumed_model.state_dict(), straight_model.state_dict())


@pytest.mark.parametrize("every_s, expected_writes", [(0, 4), (3600, 1)])
def test_checkpoints_are_written_at_most_every_checkpoint_every_s_and_after_the_last_epoch(
        tmp_path, monkeypatch, every_s, expected_writes):
    # A large model spends most of a short epoch writing a checkpoint (0.6 GB for the OASIS paper VAE),
    # so checkpoints follow a clock; the last epoch always writes one, so a finished run can be extended.
    written = []
    real_save = training._save_checkpoint
    monkeypatch.setattr(training, "_save_checkpoint",
                        lambda path, run, progress: written.append(progress["epoch"]) or real_save(path, run, progress))
    images = _blobs(24)
    train_vae(_model(), images, _config(epochs=4, checkpoint_every_s=every_s), checkpoint_dir=tmp_path)
    assert written == ([1, 2, 3, 4] if every_s == 0 else [4])
    assert len(written) == expected_writes
    extended = train_vae(_model(seed=5), images, _config(epochs=6, checkpoint_every_s=every_s), checkpoint_dir=tmp_path)
    straight = train_vae(_model(), images, _config(epochs=6))
    assert extended == straight


def test_checkpoint_interval_is_validated():
    with pytest.raises(ConfigError, match="checkpoint_every_s"):
        _config(checkpoint_every_s=-1)


def test_random_flips_mirror_about_half_the_images_along_the_named_axis_only():
    x = torch.rand(400, 1, 3, 4, 5)
    flipped = training.random_flips(x, (2,), torch.Generator().manual_seed(0))
    mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(flipped, x)])
    unchanged = torch.tensor([torch.equal(a, b) for a, b in zip(flipped, x)])
    assert bool((mirrored ^ unchanged).all())  # each image is either itself or its mirror along the last axis
    # Binomial(400, 1/2): the share lies within 0.5 +- 0.1 with probability above 1 - 1e-4.
    assert 0.4 < mirrored.float().mean().item() < 0.6
    assert not torch.equal(flipped, x) and x.shape == flipped.shape
    assert training.random_flips(x, (), None) is x


def test_random_flips_refuse_an_axis_the_images_do_not_have():
    with pytest.raises(ValueError, match="flip_axes"):
        training.random_flips(torch.rand(2, 1, 4, 4), (2,), torch.Generator())


@pytest.mark.parametrize("field, value", [("flip_axes", (0, 0)), ("flip_axes", (-1,)), ("weight_decay", -1.0)])
def test_regularisation_settings_are_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        _config(**{field: value})


def test_regularisation_settings_change_the_weights_only_when_set():
    images = _blobs(24)
    plain_model, flipped_model, decayed_model = _model(), _model(), _model()
    plain = train_vae(plain_model, images, _config(epochs=2))
    train_vae(flipped_model, images, _config(epochs=2, flip_axes=(1,)))
    train_vae(decayed_model, images, _config(epochs=2, weight_decay=0.1))
    assert not _same_weights(plain_model.state_dict(), flipped_model.state_dict())
    assert not _same_weights(plain_model.state_dict(), decayed_model.state_dict())
    # At their defaults they are left out of run identities, which therefore match older runs.
    assert {"flip_axes", "weight_decay"}.isdisjoint(training.result_settings(_config().to_dict()))
    again_model = _model()
    assert train_vae(again_model, images, _config(epochs=2, flip_axes=(), weight_decay=0.0)) == plain
    assert _same_weights(again_model.state_dict(), plain_model.state_dict())
