"""The kernel density on the codes samples exactly its Gaussian mixture."""

import io

import numpy as np
import pytest
import torch
from scipy import stats

from augmentor.sampling.kde import KernelDensitySampler
from augmentor.sampling.samplers import SAMPLERS

CODES = torch.tensor([[-2.0, 0.0], [0.5, 1.0], [3.0, -1.5], [0.0, 4.0]])
N = 20_000


def _mixture_cdf(x: np.ndarray, centres: np.ndarray, bandwidth: float) -> np.ndarray:
    """CDF of the equal-weight mixture of N(centre, bandwidth^2) at ``x``."""
    return stats.norm.cdf((x[:, None] - centres[None, :]) / bandwidth).mean(axis=1)


@pytest.mark.parametrize("bandwidth", [0.3, 1.5])
def test_samples_follow_the_mixture_in_every_dimension(bandwidth):
    z = KernelDensitySampler(bandwidth).fit(CODES).sample(N, seed=0).double().numpy()
    for dim in range(2):
        centres = CODES[:, dim].double().numpy()
        # Fixed seed, so deterministic; p > 0.01 under the exact law, and the wrong bandwidth below fails.
        assert stats.kstest(z[:, dim], lambda x: _mixture_cdf(x, centres, bandwidth)).pvalue > 0.01
        assert stats.kstest(z[:, dim], lambda x: _mixture_cdf(x, centres, 1.5 * bandwidth)).pvalue < 1e-6


def test_mean_and_covariance_are_the_mixtures():
    bandwidth = 0.7
    z = KernelDensitySampler(bandwidth).fit(CODES).sample(N, seed=1).double()
    codes = CODES.double()
    mean = codes.mean(dim=0)
    cov = torch.cov(codes.T, correction=0) + bandwidth**2 * torch.eye(2, dtype=torch.float64)
    # Standard errors with N = 20,000: about sqrt(var / N) <= 0.02 for the mean, 0.05 for the
    # covariance entries (var up to ~5); 4 standard errors.
    torch.testing.assert_close(z.mean(dim=0), mean, atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), cov, atol=0.2, rtol=0)


def test_state_round_trips_without_pickles_and_is_reproducible():
    sampler = KernelDensitySampler(0.5).fit(CODES, torch.zeros_like(CODES))
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    loaded = KernelDensitySampler.from_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(loaded.sample(50, seed=3), sampler.sample(50, seed=3))
    assert not torch.equal(sampler.sample(50, seed=3), sampler.sample(50, seed=4))
    assert SAMPLERS["kde"] is KernelDensitySampler


def test_bad_settings_and_unfitted_use_are_refused():
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensitySampler(0.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        KernelDensitySampler().sample(3)
    with pytest.raises(ValueError, match="finite"):
        KernelDensitySampler().fit(torch.tensor([[float("nan"), 0.0]]))
