"""HMC against an exactly computed density, leapfrog reversibility, adaptation, precision."""

import numpy as np
import pytest
import torch

from augmentor.utils.config import ConfigError
from augmentor.sampling.hmc import HMCConfig, HMCSampler, leapfrog
from augmentor.sampling.metric import RiemannianMetric

N_CHAINS = 4000
N_BINS = 20


def _toy_metric():
    """A 2-D metric with four anisotropic centroids; its density is known on a grid."""
    centroids = torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0], [0.3, 1.2]], dtype=torch.float64)
    variances = torch.tensor([[0.05, 0.2], [0.3, 0.05], [0.1, 0.1], [0.02, 0.4]], dtype=torch.float64)
    return RiemannianMetric.from_codes(centroids, variances.log(), lam=1e-1, domain_widths=1.0)


def _exact_bin_probabilities(metric, sub=10, alpha=1.0):
    """Bin masses of sqrt(det G)^alpha on the domain, by the midpoint rule on a 10x finer grid."""
    lo, hi = metric.lower.numpy(), metric.upper.numpy()
    n = N_BINS * sub
    axes = [lo[i] + (np.arange(n) + 0.5) * (hi[i] - lo[i]) / n for i in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    log_p = alpha * metric.log_density(torch.as_tensor(grid)).numpy().reshape(n, n)
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


def _tv_to_exact(sampler_cls, inner_gradient="exact", alpha=1.0, n_steps=200):
    metric = _toy_metric()
    exact = _exact_bin_probabilities(metric, alpha=alpha)
    config = HMCConfig(n_steps=n_steps, n_leapfrog=10, step_size=0.05, inner_gradient=inner_gradient, alpha=alpha)
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


@pytest.mark.parametrize("alpha, n_steps", [(0.5, 200), (2.0, 600)])
def test_tempered_hmc_matches_its_exact_tempered_density(alpha, n_steps):
    # The same check for the target sqrt(det G)^alpha, against its own grid masses. alpha = 2
    # sharpens the bumps, so the chains move between them more slowly: after 200 iterations
    # they still remember their starts (TV 0.103 against a floor of 0.088), after 600 not (0.073).
    tv, floor, sampler = _tv_to_exact(HMCSampler, alpha=alpha, n_steps=n_steps)
    assert tv <= 1.15 * floor, (tv, floor)
    assert sampler.diagnostics.split_rhat < 1.1


def test_tempering_changes_the_law():
    # Power check: alpha = 2 chains are far from the untempered masses (and alpha = 1 is the default).
    metric = _toy_metric()
    untempered = _exact_bin_probabilities(metric)
    z = HMCSampler(config=HMCConfig(n_steps=200, n_leapfrog=10, step_size=0.05, alpha=2.0)).sample(
        metric, N_CHAINS, seed=1)
    assert 0.5 * np.abs(_histogram(z, metric) - untempered).sum() > 2 * _noise_floor(untempered)
    assert HMCConfig().alpha == 1.0
    with pytest.raises(ConfigError, match="alpha"):
        HMCConfig(alpha=0.0)


def test_wrong_momentum_variance_fails_the_same_check():
    tv, floor, _ = _tv_to_exact(_WrongMomentumHMC)
    assert tv > 2 * floor, (tv, floor)


def test_long_chains_stay_in_the_bounded_domain():
    metric = _toy_metric()
    sampler = HMCSampler(n_steps=1000, n_leapfrog=5, step_size=0.3)
    sampler.sample(metric, 200, seed=0)
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


def test_bfloat16_inner_gradient_is_close_to_exact():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(300, 16, generator=g), -(1 + 0.5 * torch.randn(300, 16, generator=g))
    metric = RiemannianMetric.from_codes(mu, log_var)
    z = mu[:50] + 0.1 * torch.randn(50, 16, generator=g)
    exact, approx = metric.grad_log_density(z), metric.grad_log_density(z, dtype=torch.bfloat16)
    relative = (approx - exact).norm(dim=1) / exact.norm(dim=1)
    assert relative.max() < 2e-2 and approx.dtype == torch.float32


def test_default_inner_gradient_is_exact_and_auto_is_refused_by_name():
    sampler = HMCSampler(config=HMCConfig(n_steps=3, n_leapfrog=2))
    sampler.sample(_toy_metric(), 8, seed=0)
    assert sampler.diagnostics.inner_gradient == "exact"
    with pytest.raises(ConfigError, match="inner_gradient: 'auto' is not one of"):
        HMCConfig(inner_gradient="auto")


@pytest.mark.parametrize("shift, log_var", [(0.0, -1.0), (3.0, -6.0), (10.0, -8.0)])
def test_leapfrog_with_the_default_gradient_is_reversible(shift, log_var):
    g = torch.Generator().manual_seed(0)
    mu, lv = shift + torch.randn(200, 8, generator=g), log_var + 0.3 * torch.randn(200, 8, generator=g)
    metric = RiemannianMetric.from_codes(mu, lv)
    z0 = metric.centroids[:50] + 0.01 * torch.randn(50, 8, generator=g)
    v0 = torch.randn(50, 8, generator=g)
    step = 0.2 * metric.rho * float(torch.exp(0.5 * lv).min())  # a fifth of the narrowest bump
    grad0 = metric.log_density_and_grad(z0)[1]
    z1, v1, _, grad1 = leapfrog(metric, z0, v0, grad0, step, 10)
    assert (z1 - z0).norm(dim=1).median() > 10 * step * 0.1  # the chains moved
    z2, v2, _, _ = leapfrog(metric, z1, -v1, grad1, step, 10)
    torch.testing.assert_close(z2, z0, atol=1e-4 * step * 10, rtol=0)
    torch.testing.assert_close(-v2, v0, atol=1e-3, rtol=0)
