"""Tests of augmentor.peers: each model's loss against a hand computation, the
Hamiltonian integrators and tempering, the RHVAE's NaN guard, a training step
that lowers each loss, 2D/3D shapes, the samplers, and bit-for-bit save/load
through the GeometricAugmentor."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from augmentor import AugmentorConfig, ConfigError, GeometricAugmentor, HMCConfig, TrainerConfig, VAEConfig
from augmentor.models.vae import vae_preset
from augmentor.models.peers import MODELS, build_model, model_config, model_samplers
from augmentor.models.peers.autoencoders import decoder_gradient_penalty, imq_kernel, unbiased_mmd
from augmentor.models.peers.hamiltonian import riemannian_leapfrog, tempered_leapfrog, tempering_factors
from augmentor.models.peers.learned_metric import RHVAEDensity, inverse_metric, kinetic_gradient
from augmentor.models.peers.samplers import MixtureSampler
from augmentor.models.peers.vamp import vamp_log_prior
from augmentor.models.training import train_vae

from conftest import blobs

PEERS = [name for name in MODELS if name != "vae"]
MLP = VAEConfig(in_shape=(1, 6, 6), kind="mlp", hidden=(16,), latent_dim=3)


def _model(name: str, architecture: VAEConfig = MLP, seed: int = 0, **options):
    torch.manual_seed(seed)
    return build_model(model_config(name, architecture, options))


def _batch(n: int = 8, shape: tuple[int, ...] = (1, 6, 6), seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def _recon(model, z, x) -> torch.Tensor:
    """Summed squared error per image, written out."""
    return ((model.decode(z) - x) ** 2).flatten(1).sum(1)


def _log_normal(z: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)


# --- WAE: the MMD ---------------------------------------------------------------------------------


def _imq_direct(a: list[float], b: list[float], scales, bandwidth: float) -> float:
    d = len(a)
    squared = sum((u - v) ** 2 for u, v in zip(a, b))
    return sum(s * 2 * d * bandwidth**2 / (s * 2 * d * bandwidth**2 + squared) for s in scales)


def _mmd_direct(x, y, scales=(0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0), bandwidth=1.0) -> float:
    x, y = x.tolist(), y.tolist()
    n, m = len(x), len(y)
    xx = sum(_imq_direct(x[i], x[j], scales, bandwidth) for i in range(n) for j in range(n) if i != j)
    yy = sum(_imq_direct(y[i], y[j], scales, bandwidth) for i in range(m) for j in range(m) if i != j)
    xy = sum(_imq_direct(x[i], y[j], scales, bandwidth) for i in range(n) for j in range(m))
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2 * xy / (n * m)


def test_unbiased_mmd_with_the_imq_kernel_matches_a_direct_double_sum():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-0.5, 2.0]], dtype=torch.float64)
    y = torch.tensor([[0.2, -0.1], [0.0, 1.0], [3.0, 0.0], [-1.0, -1.0]], dtype=torch.float64)
    scales = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    kernel = lambda a, b: imq_kernel(a, b, scales, 0.7)  # noqa: E731
    assert unbiased_mmd(x, y, kernel).item() == pytest.approx(_mmd_direct(x, y, scales, 0.7), rel=1e-12)
    # Unbiased: identical samples give a negative value (the diagonal is left out), not zero.
    assert unbiased_mmd(x, x, kernel).item() == pytest.approx(_mmd_direct(x, x, scales, 0.7), rel=1e-12)
    assert unbiased_mmd(x, x, kernel).item() < 0


def test_unbiased_mmd_needs_two_points_per_sample():
    with pytest.raises(ValueError, match="at least 2 points"):
        unbiased_mmd(torch.zeros(1, 2), torch.zeros(3, 2), imq_kernel)


def test_wae_loss_is_reconstruction_plus_weighted_mmd_to_normal_draws():
    model, x = _model("wae", mmd_weight=2.5), _batch()
    torch.manual_seed(5)
    losses = model.loss(x)
    torch.manual_seed(5)
    z = model.encode(x)[0]
    prior = torch.randn_like(z)
    recon = _recon(model, z, x).mean()
    mmd = _mmd_direct(z.double(), prior.double())
    assert losses["mmd"].item() == pytest.approx(mmd, rel=1e-4, abs=1e-6)
    assert losses["loss"].item() == pytest.approx(recon.item() + 2.5 * mmd, rel=1e-5)


# --- VAMP: the VampPrior --------------------------------------------------------------------------


def test_vamp_log_prior_matches_a_direct_mixture_density():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 3, generator=g, dtype=torch.float64)
    log_var = torch.randn(5, 3, generator=g, dtype=torch.float64)
    z = 3 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    direct = []
    for point in z:
        densities = [
            torch.distributions.MultivariateNormal(m, torch.diag(lv.exp())).log_prob(point).exp()
            for m, lv in zip(mu, log_var)
        ]
        direct.append(math.log(sum(densities) / len(densities)))
    assert torch.allclose(vamp_log_prior(z, mu, log_var), torch.tensor(direct, dtype=torch.float64), rtol=1e-10)
    # Far from every component the logsumexp stays finite where the direct sum underflows.
    assert torch.isfinite(vamp_log_prior(torch.full((1, 3), 60.0, dtype=torch.float64), mu, log_var)).all()


def test_vamp_loss_is_reconstruction_plus_beta_times_the_sampled_kl():
    model, x = _model("vamp", MLP.replace(beta=0.5), n_pseudo_inputs=4), _batch()
    torch.manual_seed(3)
    losses = model.loss(x)
    torch.manual_seed(3)
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(1)
    pseudo_mu, pseudo_log_var = model.encode(model.pseudo_inputs.clamp(0, 1))
    components = torch.distributions.Normal(pseudo_mu[None], torch.exp(0.5 * pseudo_log_var)[None])
    log_p = torch.logsumexp(components.log_prob(z[:, None]).sum(-1), dim=1) - math.log(4)
    kl = (log_q - log_p).mean()
    assert losses["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert losses["loss"].item() == pytest.approx(_recon(model, z, x).mean().item() + 0.5 * kl.item(), rel=1e-5)


def test_vamp_encodes_images_and_pseudo_inputs_as_one_batchnorm_batch():
    # Encoded apart, the pseudo-inputs' own training-mode pass overwrote BatchNorm's running
    # statistics, so the eval-mode encoder (codes, sampler) disagreed with what the loss saw.
    model, x = _model("vamp", vae_preset("tiny2d"), n_pseudo_inputs=4), _batch(16, (1, 16, 16))
    batch_norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert batch_norms
    for layer in batch_norms:
        layer.momentum = 1.0  # running statistics := those of the last training-mode batch
    model.train()
    with torch.no_grad():
        model.loss(x)
        assert all(layer.num_batches_tracked.item() == 1 for layer in batch_norms)  # one pass per step
        both = torch.cat([x, model.pseudo_images()])
        what_the_loss_saw = copy.deepcopy(model).encode(both)[0]  # training mode: the batch's statistics
        eval_mode = model.eval().encode(both)[0]
    # Equal up to BatchNorm's unbiased running variance (n / (n - 1) with n >= 20 x 4 x 4 values).
    assert torch.allclose(eval_mode, what_the_loss_saw, rtol=0.02, atol=0.02)


def test_vamp_clips_the_log_variances_so_unused_components_cannot_overflow_the_loss():
    # On the paper's MNIST network the log-variances of unused pseudo-inputs drifted past 70 and the
    # loss became NaN; Tomczak & Welling clip them with a hard tanh to [-6, 2].
    def with_log_variance_bias(**options):
        model = _model("vamp", n_pseudo_inputs=4, **options)
        with torch.no_grad():
            model.net.log_var_head.bias.fill_(200.0)  # exp(-200) underflows, exp(200) overflows in float32
        return model

    clipped, free = with_log_variance_bias(), with_log_variance_bias(log_var_range=None)
    x = _batch()
    assert torch.equal(clipped.encode(x)[1], torch.full((8, 3), 2.0))
    assert torch.equal(clipped.pseudo_posteriors()[1], torch.full((4, 3), 2.0))
    loss = clipped.loss(x)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in clipped.parameters() if p.grad is not None)
    assert not torch.isfinite(free.loss(x)["loss"])
    with pytest.raises(ConfigError, match="log_var_range"):
        model_config("vamp", MLP, {"log_var_range": [2, -6]})


def test_vamp_sampler_draws_from_the_pseudo_inputs_posteriors():
    mu = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
    sampler = MixtureSampler().fit(mu, torch.full((2, 2), math.log(0.01)))
    z = sampler.sample(2000, seed=0)
    near = (z[:, None, :] - mu[None]).norm(dim=-1).min(1).values
    assert (near < 0.6).all()  # every draw is within 6 sd of a component
    assert 0.45 < (z[:, 0] > 0).float().mean() < 0.55  # equal weights
    restored = MixtureSampler.from_state_dict(sampler.state_dict())
    assert torch.equal(restored.sample(5, seed=1), sampler.sample(5, seed=1))


# --- RAE: the penalties ---------------------------------------------------------------------------


def test_rae_l2_loss_adds_the_code_penalty_and_the_decoder_weight_decay():
    model, x = _model("rae_l2", embedding_weight=0.1, decoder_weight=0.01), _batch()
    losses = model.loss(x)
    z = model.encode(x)[0]
    embedding = 0.5 * (z**2).sum(1).mean()
    decay = 0.5 * sum((p**2).sum() for name, p in model.named_parameters() if name.startswith("net.decoder"))
    assert losses["embedding"].item() == pytest.approx(embedding.item(), rel=1e-6)
    assert losses["decoder"].item() == pytest.approx(decay.item(), rel=1e-6)
    expected = _recon(model, z, x).mean() + 0.1 * embedding + 0.01 * decay
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(_model("rae").loss(x)) == {"loss", "recon", "embedding"}  # plain RAE: no decoder term


def test_gradient_penalty_of_a_linear_decoder_is_its_jacobian_norm():
    weight = torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    decode = lambda z: (z @ weight.T).view(-1, 1, 3, 4)  # noqa: E731
    z = torch.zeros(2, 3, dtype=torch.float64)
    probe = torch.randn(2, 1, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = ((probe.flatten(1) @ weight) ** 2).sum(1)  # |J^T u|^2 with J = W
    assert torch.allclose(decoder_gradient_penalty(decode, z, probe), expected)
    # In expectation over the probe: the squared Frobenius norm.
    probes = torch.randn(20000, 1, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    estimate = decoder_gradient_penalty(decode, torch.zeros(20000, 3, dtype=torch.float64), probes).mean()
    assert estimate.item() == pytest.approx((weight**2).sum().item(), rel=0.03)


def test_rae_gp_loss_uses_the_gradient_penalty_on_the_batch_codes():
    model, x = _model("rae_gp", decoder_weight=0.5), _batch()
    torch.manual_seed(4)
    losses = model.loss(x)
    torch.manual_seed(4)
    z = model.encode(x)[0]
    probe = torch.randn(len(z), *MLP.in_shape)
    penalty = decoder_gradient_penalty(model.decode, z, probe).mean()
    assert losses["decoder"].item() == pytest.approx(penalty.item(), rel=1e-5)
    expected = _recon(model, z, x).mean() + 1e-4 * 0.5 * (z**2).sum(1).mean() + 0.5 * penalty
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_rae_sn_decoder_layers_have_unit_spectral_norm():
    model, x = _model("rae_sn"), _batch()
    model.train()
    for _ in range(30):  # one power iteration per training forward pass
        model.loss(x)
    model.eval()
    layers = [m for m in model.net.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    for layer in layers:
        assert torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item() == pytest.approx(1.0, rel=1e-3)
    assert not hasattr(_model("rae").net.decoder[-2], "parametrizations")


# --- HVAE / RHVAE: the flows and their ELBOs ------------------------------------------------------


def test_tempering_schedule_goes_from_beta_zero_to_one():
    factors = tempering_factors(0.3, 3)
    inv = [(1 - 1 / math.sqrt(0.3)) * (k / 3) ** 2 + 1 / math.sqrt(0.3) for k in range(4)]  # 1 / sqrt(beta_k)
    assert factors == pytest.approx([inv[k] / inv[k - 1] for k in (1, 2, 3)], rel=1e-12)
    assert math.prod(factors) == pytest.approx(math.sqrt(0.3), rel=1e-12)
    assert tempering_factors(1.0, 4) == pytest.approx([1.0] * 4)


def test_tempered_leapfrog_on_a_quadratic_potential_by_hand():
    # U(z) = 1.5 z^2 in one dimension: dU/dz = 3 z.
    z, rho, step = 0.8, -0.4, 0.1
    for factor in tempering_factors(0.5, 2):
        rho = rho - 0.5 * step * 3 * z
        z = z + step * rho
        rho = factor * (rho - 0.5 * step * 3 * z)
    got_z, got_rho = tempered_leapfrog(
        torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([[-0.4]], dtype=torch.float64),
        lambda q: 3 * q, step, 0.5, 2,
    )
    assert got_z.item() == pytest.approx(z, rel=1e-12) and got_rho.item() == pytest.approx(rho, rel=1e-12)


def test_generalised_leapfrog_with_a_constant_metric_is_the_explicit_one():
    # G^{-1} = lam I (no centroid term) and U(z) = 0.5 |z|^2: the implicit equations are explicit.
    lam, step = 2.0, 0.05
    z = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    rho = torch.tensor([[0.5, 0.2]], dtype=torch.float64)
    centroids, matrices = torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, 2, dtype=torch.float64)
    got_z, got_rho = riemannian_leapfrog(
        z, rho, lambda q: q, lambda q, r: kinetic_gradient(q, r, centroids, matrices, 1.0, lam),
        lambda q: inverse_metric(q, centroids, matrices, 1.0, lam), step, 3,
    )
    rho_half = rho - 0.5 * step * z
    z_new = z + step * lam * rho_half
    assert torch.allclose(got_z, z_new) and torch.allclose(got_rho, rho_half - 0.5 * step * z_new)


def _random_metric(n: int = 4, d: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(n, d, d, generator=g, dtype=torch.float64).tril()
    return torch.randn(n, d, generator=g, dtype=torch.float64), factors @ factors.transpose(1, 2)


def test_kinetic_gradient_matches_autograd_at_fixed_momentum():
    centroids, matrices = _random_metric()
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    rho = torch.randn(5, 3, dtype=torch.float64)
    inverse = inverse_metric(z, centroids, matrices, 1.5, 0.01)
    kinetic = -0.5 * torch.logdet(inverse) + 0.5 * (rho[:, None] @ inverse @ rho[:, :, None])[:, 0, 0]
    (expected,) = torch.autograd.grad(kinetic.sum(), z)
    assert torch.allclose(kinetic_gradient(z.detach(), rho, centroids, matrices, 1.5, 0.01), expected, rtol=1e-8)


def test_rhvae_density_gradient_matches_autograd():
    centroids, matrices = _random_metric(seed=1)
    density = RHVAEDensity(centroids, matrices, 1.5, 0.01)
    z = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(density.log_density(z).sum(), z)
    log_p, grad = density.log_density_and_grad(z.detach())
    assert torch.allclose(grad, expected, rtol=1e-8)
    assert torch.allclose(log_p, 0.5 * torch.logdet(inverse_metric(z, centroids, matrices, 1.5, 0.01)))


def test_rhvae_leapfrog_guard_bounds_an_exploding_gradient():
    # pythae issue #162: |dH/dz| explodes and z becomes infinite. With the guard a
    # step moves rho by at most eps/2 * max_grad_norm per half-step.
    centroids, matrices = _random_metric(n=2, d=2)
    z, rho = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    args = (
        z, rho, lambda q: torch.full_like(q, 1e30),
        lambda q, r: kinetic_gradient(q, r, centroids, matrices, 1.5, 0.01),
        lambda q: inverse_metric(q, centroids, matrices, 1.5, 0.01), 1e-3, 3,
    )
    z_new, rho_new = riemannian_leapfrog(*args, max_grad_norm=100.0)
    assert torch.isfinite(z_new).all() and torch.isfinite(rho_new).all()
    assert (rho_new.norm(dim=1) <= 1e-3 * 100.0 + 1e-9).all()
    assert riemannian_leapfrog(*args, max_grad_norm=None)[1].norm() > 1e25  # unguarded, it explodes


@pytest.mark.parametrize("name", ["hvae", "rhvae"])
def test_hamiltonian_elbo_with_a_vanishing_step_is_the_single_sample_vae_loss(name):
    # With eps -> 0 the flow stays put and the momentum terms cancel exactly
    # (tempering's sqrt(beta_0) against rho_0's density, G(z_0) against G(z_K)).
    model, x = _model(name, leapfrog_step=1e-12), _batch()
    torch.manual_seed(6)
    loss = model.loss(x)["loss"]
    torch.manual_seed(6)
    mu, log_var = model.encode(x)
    eps = torch.randn_like(mu)
    z = mu + torch.exp(0.5 * log_var) * eps
    log_q = _log_normal(eps) - 0.5 * log_var.sum(1)
    expected = (_recon(model, z, x) - _log_normal(z) + log_q).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hvae_loss_with_a_real_step_moves_the_codes():
    model, x = _model("hvae", leapfrog_step=0.05), _batch()
    torch.manual_seed(6)
    moved = model.loss(x)["loss"]
    model.config = model.config.replace(leapfrog_step=1e-12)
    torch.manual_seed(6)
    assert moved.item() != pytest.approx(model.loss(x)["loss"].item(), rel=1e-6)


# --- every model: training, shapes, configs -------------------------------------------------------


@pytest.mark.parametrize("name", PEERS)
def test_adam_steps_lower_each_models_loss(name):
    model, x = _model(name), _batch(16)
    model.train()

    def seeded_loss() -> torch.Tensor:
        torch.manual_seed(11)  # the same noise before and after the steps
        return model.loss(x)["loss"]

    before = seeded_loss().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        seeded_loss().backward()
        optimizer.step()
    after = seeded_loss().item()
    assert math.isfinite(after) and after < before


@pytest.mark.parametrize("preset", ["tiny2d", "tiny3d"])
@pytest.mark.parametrize("name", PEERS)
def test_conv_models_in_2d_and_3d(name, preset):
    architecture = vae_preset(preset)
    model = _model(name, architecture)
    x = torch.rand(4, *architecture.in_shape, generator=torch.Generator().manual_seed(0))
    model.train()
    losses = model.loss(x)
    losses["loss"].backward()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    mu, log_var = model.encode(x)
    assert mu.shape == (4, architecture.latent_dim)
    assert (log_var is None) == (name in ("ae", "wae", "rae", "rae_l2", "rae_gp", "rae_sn"))
    assert model.decode(mu).shape == x.shape


def test_trainer_fits_a_peer_and_logs_its_terms(tmp_path):
    torch.manual_seed(0)
    model = build_model(model_config("wae", MLP))
    images = blobs(16, (1, 6, 6))[0]
    config = TrainerConfig(epochs=3, batch_size=8, lr=1e-2, progress=False, device="cpu")
    result = train_vae(model, images, config, checkpoint_dir=tmp_path)
    assert {"train_loss", "train_recon", "train_mmd", "val_mmd"} <= set(result.history[0])
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # A checkpoint of the WAE is not resumed by an AE run on the same data.
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="different run"):
        train_vae(build_model(model_config("ae", MLP)), images, config, checkpoint_dir=tmp_path)


def test_each_model_lists_the_samplers_that_apply():
    assert model_samplers("vae") == ("prior", "gmm", "riemannian", "kde")
    assert model_samplers("vamp") == ("vamp", "prior", "gmm", "riemannian", "kde")
    assert model_samplers("rhvae") == ("rhvae", "prior", "gmm", "riemannian", "kde")
    for name in ("ae", "wae", "rae", "rae_l2", "rae_gp", "rae_sn"):
        assert model_samplers(name) == ("prior", "gmm", "kde"), name


def test_model_configs_are_validated_and_named():
    with pytest.raises(ConfigError, match="unknown model 'vampire'"):
        AugmentorConfig(model="vampire")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['n_pseudo_inputs'\] for model 'wae'"):
        AugmentorConfig(model="wae", model_options={"n_pseudo_inputs": 3})
    with pytest.raises(ConfigError, match="beta_zero"):
        AugmentorConfig(vae=MLP, model="hvae", model_options={"beta_zero": 1.5})
    with pytest.raises(ConfigError, match="VAMPConfig.n_pseudo_inputs"):
        AugmentorConfig(vae=MLP, model="vamp", model_options={"n_pseudo_inputs": 0})
    assert model_config("rae_sn", MLP).model == "rae_sn"
    assert model_config("vae", MLP) == MLP


# --- the augmentor: samplers, refusals, bit-for-bit save/load -------------------------------------


def _augmentor_config(name: str, architecture: VAEConfig = MLP, **options) -> AugmentorConfig:
    return AugmentorConfig(
        vae=architecture,
        model=name,
        model_options=options,
        trainer=TrainerConfig(epochs=2, batch_size=8, progress=False, image_log_every=0),
        hmc=HMCConfig(n_steps=4, n_leapfrog=3),
        gmm_components=2,
        device="cpu",
    )


@pytest.mark.parametrize("name", PEERS)
def test_augmentor_round_trip_reproduces_every_sampler_bit_for_bit(name, tmp_path):
    images, labels = blobs(8, (1, 6, 6))
    options = {"n_pseudo_inputs": 5} if name == "vamp" else {}
    augmentor = GeometricAugmentor(_augmentor_config(name, **options)).fit(images, labels)
    samplers = model_samplers(name)
    assert set(augmentor.samplers[0]) == set(samplers)
    again = GeometricAugmentor.load(augmentor.save(tmp_path / "model"))
    for sampler in samplers:
        fake, fake_labels = augmentor.generate(3, sampler=sampler, seed=7)
        assert fake.shape == (6, 1, 6, 6) and fake_labels.tolist() == [0] * 3 + [1] * 3
        assert torch.equal(again.generate(3, sampler=sampler, seed=7)[0], fake)
    if "riemannian" not in samplers:
        with pytest.raises(ValueError, match="no posterior variance.*'gmm'"):
            again.generate(2, sampler="riemannian")


@pytest.mark.parametrize("name", ["vamp", "rae_sn"])
def test_augmentor_round_trip_in_3d(name, tmp_path):
    architecture = vae_preset("tiny3d")
    images, labels = blobs(6, architecture.in_shape)
    options = {"n_pseudo_inputs": 3} if name == "vamp" else {}
    augmentor = GeometricAugmentor(_augmentor_config(name, architecture, **options)).fit(images, labels)
    again = GeometricAugmentor.load(augmentor.save(tmp_path / "model"))
    sampler = "vamp" if name == "vamp" else "gmm"
    fake = augmentor.generate(2, sampler=sampler, seed=3)[0]
    assert fake.shape == (4, *architecture.in_shape)
    assert torch.equal(again.generate(2, sampler=sampler, seed=3)[0], fake)


def test_rhvae_sampler_runs_hmc_on_the_learned_metric(tmp_path):
    images, labels = blobs(8, (1, 6, 6))
    augmentor = GeometricAugmentor(_augmentor_config("rhvae")).fit(images, labels)
    sampler = augmentor.samplers[0]["rhvae"]
    assert sampler.density.centroids.shape == (8, 3)  # one centroid per image of the class
    augmentor.generate(5, sampler="rhvae", seed=0)
    assert augmentor.diagnostics[0].n_chains == 5 and 0 < augmentor.diagnostics[0].acceptance_rate <= 1
