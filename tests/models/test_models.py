"""Tests of augmentor.models: shapes, ranges, presets, loss and configuration."""

from __future__ import annotations

import math

import pytest
import torch

from augmentor.utils.config import ConfigError
from augmentor.models.vae import (
    MLPVAE,
    VAE,
    VAE_PRESETS,
    VAEConfig,
    VAEOutput,
    build_vae,
    vae_loss,
    vae_preset,
)


def _small(in_shape, **kw) -> VAEConfig:
    return VAEConfig(in_shape=in_shape, latent_dim=3, channels=(4, 8), strides=(2, 2), **kw)


@pytest.mark.parametrize(
    "in_shape, kernel_size",
    [
        ((1, 16, 16), 3),
        ((1, 30, 26), 3),
        ((3, 31, 17), 4),
        ((1, 33, 35), 5),
        ((1, 9, 10, 11), 3),
        ((2, 7, 5, 6), 4),
    ],
)
def test_conv_vae_output_shapes_are_exact(in_shape, kernel_size):
    torch.manual_seed(0)
    model = build_vae(_small(in_shape, kernel_size=kernel_size))
    assert isinstance(model, VAE)
    x = torch.rand(2, *in_shape)
    out = model(x)
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == x.shape
    assert out.mu.shape == out.log_var.shape == out.z.shape == (2, 3)
    out.recon.sum().backward()  # the crop keeps the graph intact
    assert model.mu_head.weight.grad is not None


@pytest.mark.parametrize("in_shape", [(3, 8, 6), (1, 5, 4, 3)])
def test_mlp_vae_output_shapes(in_shape):
    torch.manual_seed(0)
    model = build_vae(VAEConfig(in_shape=in_shape, kind="mlp", hidden=(20, 10), latent_dim=2))
    assert isinstance(model, MLPVAE)
    out = model(torch.rand(3, *in_shape))
    assert out.recon.shape == (3, *in_shape)
    assert out.z.shape == (3, 2)


@pytest.mark.parametrize("config", [_small((1, 12, 10)), _small((1, 6, 5, 4)), VAEConfig((1, 6, 6), kind="mlp")])
def test_decode_is_in_unit_interval(config):
    torch.manual_seed(0)
    model = build_vae(config).eval()
    images = model.decode(50 * torch.randn(16, config.latent_dim))
    assert images.shape == (16, *config.in_shape)
    assert images.min() >= 0 and images.max() <= 1


def test_encode_matches_forward_and_noise_is_seeded():
    torch.manual_seed(0)
    model = build_vae(_small((1, 12, 12))).eval()
    x = torch.rand(4, 1, 12, 12)
    mu, log_var = model.encode(x)
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(1)
    second = model(x)
    assert torch.equal(first.z, second.z)
    assert torch.allclose(first.mu, mu) and torch.allclose(first.log_var, log_var)
    assert not torch.equal(first.z, mu)


def test_log_var_bound_is_respected():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 12, 12)
    bounded = build_vae(_small((1, 12, 12), log_var_bound=0.5)).eval()
    free = build_vae(_small((1, 12, 12))).eval()
    for model in (bounded, free):
        with torch.no_grad():
            model.log_var_head.weight.mul_(1e3)
            model.log_var_head.bias.fill_(5.0)
    assert bounded.encode(x)[1].abs().max() <= 0.5
    assert free.encode(x)[1].abs().max() > 0.5
    raw = free.log_var_head(free._features(x))
    bounded.load_state_dict(free.state_dict())
    assert torch.allclose(bounded.encode(x)[1], 0.5 * torch.tanh(raw / 0.5))


def test_wrong_input_shapes_raise():
    model = build_vae(_small((1, 12, 12)))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        model.encode(torch.rand(2, 1, 12, 13))
    with pytest.raises(ValueError, match="latent codes of shape"):
        model.decode(torch.rand(2, 4))


def _mnist_parameter_count() -> int:
    """Hand count of the documented MNIST network (k4, BatchNorm, 1024 x 2 x 2 bottleneck)."""
    conv = lambda cin, cout: cin * cout * 16 + cout  # noqa: E731
    chans = [1, 128, 256, 512, 1024]
    encoder = sum(conv(a, b) + 2 * b for a, b in zip(chans[:-1], chans[1:]))
    heads = 2 * (1024 * 4 * 16 + 16)
    decoder_input = 16 * 1024 * 4 + 1024 * 4
    upsampling = [1024, 512, 256, 128, 128]
    decoder = sum(conv(a, b) + 2 * b for a, b in zip(upsampling[:-1], upsampling[1:])) + conv(128, 1)
    return encoder + heads + decoder_input + decoder


def test_presets_build_with_documented_sizes():
    expected = {
        "mnist": ((1, 32, 32), 16, "conv"),
        "cifar": ((3, 32, 32), 32, "conv"),
        "celeba": ((3, 64, 64), 64, "conv"),
        "oasis": ((1, 208, 176), 16, "conv"),
        "svhn_mlp": ((3, 32, 32), 16, "mlp"),
    }
    assert set(expected) <= set(VAE_PRESETS)
    for name, (in_shape, latent, kind) in expected.items():
        config = vae_preset(name)
        assert (config.in_shape, config.latent_dim, config.kind) == (in_shape, latent, kind)
    oasis = vae_preset("oasis")
    assert oasis.norm == "none" and oasis.kernel_size == 5 and oasis.log_var_bound == 1.0 and oasis.beta == 1.0
    assert vae_preset("celeba").kernel_size == 5 and vae_preset("mnist").kernel_size == 4
    assert sum(p.numel() for p in build_vae(vae_preset("mnist")).parameters()) == _mnist_parameter_count()
    svhn = build_vae(vae_preset("svhn_mlp"))
    mlp_count = (3072 * 1000 + 1000) + (1000 * 500 + 500) + 2 * (500 * 16 + 16)
    mlp_count += (16 * 500 + 500) + (500 * 1000 + 1000) + (1000 * 3072 + 3072)
    assert sum(p.numel() for p in svhn.parameters()) == mlp_count


@pytest.mark.parametrize("name", ["oasis", "tiny2d", "tiny3d", "svhn_mlp"])
def test_preset_forward(name):
    torch.manual_seed(0)
    config = vae_preset(name)
    model = build_vae(config).eval()
    with torch.no_grad():
        out = model(torch.rand(1, *config.in_shape))
    assert out.recon.shape == (1, *config.in_shape)


def test_preset_overrides_and_unknown_names():
    assert vae_preset("mnist", beta=0.01, latent_dim=8).latent_dim == 8
    with pytest.raises(ValueError, match="valid names are .*mnist.*oasis"):
        vae_preset("imagenet")
    with pytest.raises(ConfigError, match="unknown key"):
        vae_preset("mnist", latentdim=8)
    with pytest.raises(ConfigError, match="beta"):
        vae_preset("mnist", beta=-1)


def test_vae_loss_against_hand_computation():
    x = torch.tensor([[[[0.0, 1.0]]], [[[0.5, 0.5]]]])  # (2, 1, 1, 2)
    recon = torch.tensor([[[[0.5, 0.5]]], [[[0.5, 1.0]]]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    output = VAEOutput(recon, mu, log_var, mu)
    # per-sample summed squared errors: 0.5 and 0.25 -> mean 0.375
    # KL = 0.5 * sum(mu^2 + var - 1 - log var): sample 1: 0.5 * (1 + (2 - 1 - ln 2)), sample 2: 0.5 * 4
    kl = (0.5 * (1 + 1 - math.log(2.0)) + 2.0) / 2
    losses = vae_loss(output, x, beta=0.5, reconstruction="mse")
    assert losses["recon"].item() == pytest.approx(0.375)
    assert losses["kl"].item() == pytest.approx(kl)
    assert losses["loss"].item() == pytest.approx(0.375 + 0.5 * kl)

    # BCE with recon clamped to 0.9: sample 1 costs 2 ln 2, sample 2 costs ln 2 - (ln 0.9 + ln 0.1) / 2
    losses = vae_loss(VAEOutput(recon.clamp(max=0.9), mu, log_var, mu), x, beta=1.0, reconstruction="bce")
    expected = (2 * math.log(2) + math.log(2) - 0.5 * (math.log(0.9) + math.log(0.1))) / 2
    assert losses["recon"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["loss"].item() == pytest.approx(expected + kl, rel=1e-6)
    with pytest.raises(ValueError, match="reconstruction"):
        vae_loss(output, x, reconstruction="l1")


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"in_shape": (16, 16)}, "in_shape"),
        ({"in_shape": (1, 2, 3, 4, 5)}, "in_shape"),
        ({"in_shape": (1, 0, 16)}, "in_shape"),
        ({"in_shape": (1, 1, 1), "kernel_size": 4}, "in_shape"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"channels": (4, 8, 16)}, "strides"),
        ({"channels": ()}, "channels"),
        ({"strides": (2, 0)}, "strides"),
        ({"hidden": (10, -1)}, "hidden"),
        ({"kernel_size": 0}, "kernel_size"),
        ({"beta": -0.1}, "beta"),
        ({"log_var_bound": 0.0}, "log_var_bound"),
        ({"norm": "group"}, "norm"),
        ({"act": "sigmoidish"}, "act"),
        ({"kind": "transformer"}, "kind"),
        ({"in_shape": (1, 8.5, 8)}, "in_shape"),
    ],
)
def test_config_validation_names_the_field(changes, field):
    base = {"in_shape": (1, 16, 16), "channels": (4, 8), "strides": (2, 2)}
    with pytest.raises(ConfigError, match=rf"VAEConfig\.{field}"):
        VAEConfig(**{**base, **changes})


def test_config_json_round_trip_and_spatial_dims():
    config = VAEConfig(in_shape=(1, 9, 10, 11), channels=(4, 8), strides=(2, 1), log_var_bound=2.0, beta=0.05)
    assert config.spatial_dims == 3
    again = VAEConfig.from_json(config.to_json())
    assert again == config
    assert again.in_shape == (1, 9, 10, 11) and isinstance(again.channels, tuple)
    assert vae_preset("oasis").spatial_dims == 2


def test_one_voxel_feature_map_needs_batches_of_two_or_no_instance_norm():
    one_voxel = {"in_shape": (1, 16, 16), "channels": (4, 8, 8, 8), "strides": (2, 2, 2, 2)}
    assert VAEConfig(**one_voxel).encoder_grid() == (1, 1)
    assert VAEConfig(**one_voxel).min_train_batch == 2
    assert VAEConfig(**one_voxel, norm="none").min_train_batch == 1
    assert _small((1, 16, 16)).min_train_batch == 1  # 4 x 4 map: one image per batch is fine
    with pytest.raises(ConfigError, match=r"VAEConfig.norm: 'instance' cannot normalise .* \(1, 1\)"):
        VAEConfig(**one_voxel, norm="instance")
    # What min_train_batch reports: batch norm cannot train on one image of a 1 x 1 map, but on two.
    model = build_vae(VAEConfig(**one_voxel)).train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model(torch.rand(1, 1, 16, 16))
    assert model(torch.rand(2, 1, 16, 16)).recon.shape == (2, 1, 16, 16)


def test_kl_weight_is_rescaled_by_the_image_size_against_its_reference():
    # 1 x 52 x 44 = 2288 values against the paper's 1 x 208 x 176 = 36608: 16 times fewer.
    small = VAEConfig(in_shape=(1, 52, 44), beta=1.0, kl_reference_size=208 * 176)
    assert small.kl_weight == pytest.approx(1 / 16)
    assert VAEConfig(in_shape=(1, 208, 176), beta=0.5, kl_reference_size=208 * 176).kl_weight == pytest.approx(0.5)
    # Without a reference (every config written before the setting existed) beta applies as given.
    old = VAEConfig.from_dict({"in_shape": [1, 52, 44], "beta": 0.3})
    assert old.kl_reference_size is None and old.kl_weight == 0.3
    with pytest.raises(ConfigError, match="kl_reference_size"):
        VAEConfig(in_shape=(1, 8, 8), kl_reference_size=0)


def test_training_loss_uses_the_rescaled_kl_weight():
    # Hand computation: recon = sum of squared errors per image, KL of N(mu, e^lv) to N(0, 1) per image.
    config = VAEConfig(in_shape=(1, 2, 2), kind="mlp", hidden=(4,), latent_dim=1, beta=2.0, kl_reference_size=16)
    x = torch.zeros(1, 1, 2, 2)
    output = VAEOutput(recon=torch.full((1, 1, 2, 2), 0.5), mu=torch.tensor([[1.0]]), log_var=torch.tensor([[0.0]]),
                       z=torch.zeros(1, 1))
    losses = vae_loss(output, x, config.kl_weight)
    assert losses["recon"].item() == pytest.approx(4 * 0.25)
    assert losses["kl"].item() == pytest.approx(0.5)  # -0.5 * (1 + 0 - 1 - 1)
    assert losses["loss"].item() == pytest.approx(1.0 + 2.0 * 4 / 16 * 0.5)
