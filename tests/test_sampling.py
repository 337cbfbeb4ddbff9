"""Samplers: HMC against an exactly computed density, GMM on the means, reproducibility."""

import numpy as np
import pytest
import torch

from augmentor.metric import MetricConfig, RiemannianMetric
from augmentor.sampling import (
    SAMPLERS,
    GaussianMixtureSampler,
    HMCConfig,
    HMCSampler,
    NormalSampler,
    RiemannianSampler,
    effective_sample_size,
    split_rhat,
)

N_CHAINS = 4000
N_BINS = 20


def _toy_metric():
    """A 2-D metric with four anisotropic centroids; its density is known on a grid."""
    centroids = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0], [0.3, 1.2]], dtype=torch.float64)
    variances = torch.tensor([[0.05, 0.2], [0.3, 0.05], [0.1, 0.1], [0.02, 0.4]], dtype=torch.float64)
    return RiemannianMetric.from_codes(centroids, variances.log(), lam=1e-1, domain_widths=1.0)


def _exact_bin_probabilities(metric, sub=10):
    """Bin masses of sqrt(det G) on the domain, by the midpoint rule on a 10x finer grid."""
    lo, hi = metric.lower.numpy(), metric.upper.numpy()
    n = N_BINS * sub
    axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = metric.log_density(torch.as_tensor(grid)).numpy().reshape(n, n)
    p = np.exp(log_p - log_p.max())
    return (p / p.sum()).reshape(N_BINS, sub, N_BINS, sub).sum(axis=(1, 3)).ravel()


def _histogram(z, metric):
    lo, hi = metric.lower.numpy(), metric.upper.numpy()
    index = np.floor((z.numpy() - lo) / (hi - lo) * N_BINS).astype(int).clip(0, N_BINS - 1)
    counts = np.bincount(index[:, 0] * N_BINS + index[:, 1], minlength=N_BINS**2)
    return counts / counts.sum()


def _noise_floor(p, quantile=0.99, replicates=300):
    """TV distance that N_CHAINS exact independent draws reach at this quantile."""
    rng = np.random.default_rng(0)
    tv = [0.5 * np.abs(rng.multinomial(N_CHAINS, p) / N_CHAINS - p).sum() for _ in range(replicates)]
    return float(np.quantile(tv, quantile))


class _WrongMomentumHMC(HMCSampler):
    """Momentum drawn from N(0, 4 I) while the kinetic energy assumes N(0, I)."""

    def _draw_momentum(self, like, generator):
        return 2.0 * super()._draw_momentum(like, generator)


def _tv_to_exact(sampler_cls, inner_gradient="exact"):
    metric = _toy_metric()
    exact = _exact_bin_probabilities(metric)
    config = HMCConfig(n_steps=200, n_leapfrog=10, step_size=0.05, inner_gradient=inner_gradient)
    sampler = sampler_cls(config=config)
    z = sampler.sample(metric, N_CHAINS, seed=1)
    return 0.5 * np.abs(_histogram(z, metric) - exact).sum(), _noise_floor(exact), sampler


@pytest.mark.parametrize("inner_gradient", ["exact", "bfloat16"])
def test_hmc_matches_exact_density_at_noise_floor(inner_gradient):
    # The final states of 4000 chains of 200 iterations are close to independent
    # draws, so their TV distance to the exact bin masses should sit at the
    # Monte-Carlo noise floor of 4000 i.i.d. draws (mean ~0.10 here); 15% slack
    # over that floor's 99th percentile allows the chains' small residual memory.
    # With bfloat16 inner gradients the chain must stay exact too.
    tv, floor, sampler = _tv_to_exact(HMCSampler, inner_gradient)
    assert tv <= 1.15 * floor, (tv, floor)
    assert 0.5 < sampler.acceptance_rate <= 1.0
    assert sampler.diagnostics.split_rhat < 1.1


def test_wrong_momentum_variance_fails_the_same_check():
    tv, floor, _ = _tv_to_exact(_WrongMomentumHMC)
    assert tv > 2 * floor, (tv, floor)


def test_long_chains_stay_in_the_bounded_domain():
    metric = _toy_metric()
    sampler = HMCSampler(n_steps=1000, n_leapfrog=5, step_size=0.3)
    z = sampler.sample(metric, 200, seed=0)
    assert metric.in_domain(z).all()
    assert sampler.diagnostics.outside_domain_rate > 0  # the boundary was met and held


def test_hmc_is_reproducible_and_seed_dependent():
    metric = _toy_metric()
    a = HMCSampler(n_steps=20).sample(metric, 50, seed=3)
    b = HMCSampler(n_steps=20).sample(metric, 50, seed=3)
    c = HMCSampler(n_steps=20).sample(metric, 50, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_step_size_adaptation_reaches_target_acceptance():
    metric = _toy_metric()
    config = HMCConfig(n_steps=100, step_size=1.0, adapt_step_size=True, n_warmup=100, target_accept=0.7)
    sampler = HMCSampler(config=config)
    sampler.sample(metric, 500, seed=0)
    assert abs(sampler.acceptance_rate - 0.7) < 0.1
    assert sampler.diagnostics.step_size < 1.0


def test_hmc_rejects_bad_init_and_sizes():
    metric = _toy_metric()
    with pytest.raises(ValueError, match="shape"):
        HMCSampler().sample(metric, 4, init=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="outside"):
        HMCSampler().sample(metric, 1, init=torch.full((1, 2), 50.0))
    with pytest.raises(ValueError, match="n must be"):
        HMCSampler().sample(metric, 0)


def test_convergence_diagnostics_on_known_chains():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(500, 8))
    assert split_rhat(iid) == pytest.approx(1.0, abs=0.02)
    assert effective_sample_size(iid) == pytest.approx(4000, rel=0.2)
    stuck = iid + np.arange(8) * 5.0  # chains that never met
    assert split_rhat(stuck) > 2
    ar = np.zeros((2000, 4))  # AR(1) with phi = 0.9: ESS ~ n m (1 - phi) / (1 + phi)
    for t in range(1, 2000):
        ar[t] = 0.9 * ar[t - 1] + rng.normal(size=4)
    assert effective_sample_size(ar) == pytest.approx(8000 * 0.1 / 1.9, rel=0.35)


def test_gmm_is_fitted_on_the_means():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(300, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + 4.0
    log_var = torch.full_like(mu, 3.0)  # large posterior variances: must play no role
    sampler = GaussianMixtureSampler(n_components=1).fit(mu, log_var)
    torch.testing.assert_close(sampler.means[0], mu.double().mean(0))
    cov = sampler.cholesky[0] @ sampler.cholesky[0].T
    torch.testing.assert_close(cov, torch.cov(mu.double().T, correction=0), atol=1e-5, rtol=1e-5)
    z = sampler.sample(20000, seed=1)
    torch.testing.assert_close(z.mean(0), mu.mean(0), atol=0.05, rtol=0)


def test_gmm_with_fewer_codes_than_components():
    mu = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    sampler = GaussianMixtureSampler(n_components=10).fit(mu, torch.zeros_like(mu))
    assert sampler.means.shape == (4, 2)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_round_trips_its_state(name):
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(50, 3, generator=g), -torch.rand(50, 3, generator=g)
    kwargs = {"hmc_config": HMCConfig(n_steps=5)} if name == "riemannian" else {}
    sampler = SAMPLERS[name](**kwargs).fit(mu, log_var)
    again = SAMPLERS[name].from_state_dict(sampler.state_dict())
    assert torch.equal(sampler.sample(30, seed=2), again.sample(30, seed=2))
    assert sampler.sample(30, seed=2).shape == (30, 3)


def test_unfitted_samplers_say_so():
    for sampler in (NormalSampler(), GaussianMixtureSampler(), RiemannianSampler()):
        with pytest.raises(RuntimeError, match="not fitted"):
            sampler.sample(3)


def test_riemannian_sampler_uses_metric_config():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(40, 2, generator=g), -torch.rand(40, 2, generator=g)
    sampler = RiemannianSampler(MetricConfig(n_centroids=6, lam=0.5), HMCConfig(n_steps=3)).fit(mu, log_var)
    assert sampler.metric.n_centroids == 6 and sampler.metric.lam == 0.5
    sampler.sample(10)
    assert sampler.diagnostics.n_chains == 10


def test_bfloat16_inner_gradient_is_close_to_exact():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(300, 16, generator=g), -(1 + 0.5 * torch.randn(300, 16, generator=g))
    metric = RiemannianMetric.from_codes(mu, log_var)
    z = mu[:50] + 0.1 * torch.randn(50, 16, generator=g)
    exact, approx = metric.grad_log_density(z), metric.grad_log_density(z, dtype=torch.bfloat16)
    relative = (approx - exact).norm(dim=1) / exact.norm(dim=1)
    assert relative.max() < 2e-2 and approx.dtype == torch.float32


@pytest.mark.parametrize("native", [True, False])
def test_auto_inner_gradient_follows_the_hardware(monkeypatch, native):
    import augmentor.sampling as sampling

    monkeypatch.setattr(sampling, "native_bfloat16", lambda device: native)
    sampler = HMCSampler(config=HMCConfig(n_steps=3, n_leapfrog=2))
    sampler.sample(_toy_metric(), 8, seed=0)
    assert sampler.diagnostics.inner_gradient == ("bfloat16" if native else "exact")
    explicit = HMCSampler(config=HMCConfig(n_steps=3, n_leapfrog=2, inner_gradient="exact"))
    explicit.sample(_toy_metric(), 8, seed=0)
    assert explicit.diagnostics.inner_gradient == "exact"


def test_native_bfloat16_is_false_on_devices_without_a_probe():
    from augmentor.sampling import native_bfloat16

    assert native_bfloat16("meta") is False
    assert isinstance(native_bfloat16("cpu"), bool)


def test_riemannian_sample_overrides_apply_to_that_call_only():
    import copy

    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(30, 2, generator=g), -torch.rand(30, 2, generator=g)
    sampler = RiemannianSampler(hmc_config=HMCConfig(n_steps=6, n_leapfrog=3)).fit(mu, log_var)
    fresh = RiemannianSampler.from_state_dict(sampler.state_dict())
    override = HMCConfig(n_steps=2, n_leapfrog=2, step_size=0.05)
    snapshot = copy.deepcopy(override)
    sampler.sample(8, seed=1, hmc_config=override, device="cpu")
    assert sampler.diagnostics.n_steps == 2  # the diagnostics describe the last call
    assert torch.equal(sampler.sample(8, seed=1), fresh.sample(8, seed=1))
    assert sampler.diagnostics.n_steps == 6
    assert sampler.state_dict()["hmc_config"] == fresh.state_dict()["hmc_config"] and sampler.device is None
    assert override == snapshot
