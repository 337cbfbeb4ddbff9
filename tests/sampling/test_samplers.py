"""Samplers: GMM on the means, state round trips, the Riemannian sampler's settings."""

import pytest
import torch

from augmentor.sampling.hmc import HMCConfig
from augmentor.sampling.metric import MetricConfig
from augmentor.sampling.samplers import SAMPLERS, GaussianMixtureSampler, NormalSampler, RiemannianSampler


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
