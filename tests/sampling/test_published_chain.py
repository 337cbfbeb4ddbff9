"""The published chain: one iteration on a tiny case against numbers computed by hand."""

import io
import math

import pytest
import torch

from augmentor.sampling.published_chain import (
    LABEL,
    PublishedChainConfig,
    PublishedChainSampler,
    published_iteration,
    published_log_target,
)
from augmentor.sampling.metric import RiemannianMetric
from augmentor.sampling.samplers import SAMPLERS

# Two centroids in 2-D with inverse variances s, rho = 1, lambda = 0.1.
C = [(0.0, 0.0), (1.0, 0.5)]
S = [(1.0, 4.0), (2.0, 1.0)]
LAM, RHO = 0.1, 1.0


def _metric():
    centroids = torch.tensor(C, dtype=torch.float64)
    log_var = -torch.tensor(S, dtype=torch.float64).log()
    box = torch.full((2,), 0.5, dtype=torch.float64)  # a small domain: the published chain ignores it
    return RiemannianMetric(centroids, log_var, lam=LAM, rho=RHO, lower=-box, upper=box)


def _by_hand_weights(z):
    return [math.exp(-sum(S[j][m] * (z[m] - C[j][m]) ** 2 for m in range(2)) / RHO**2) for j in range(2)]


def _by_hand_force(z):
    """grad log det G with lambda counted once per centroid (k = 2) in the denominator."""
    w = _by_hand_weights(z)
    denominator = [w[0] * S[0][m] + w[1] * S[1][m] + 2 * LAM for m in range(2)]
    return [-2.0 / RHO**2 * sum(w[j] * S[j][l] * (z[l] - C[j][l]) * sum(S[j][m] / denominator[m] for m in range(2))
                                for j in range(2)) for l in range(2)]


def _by_hand_log_target(z):
    w = _by_hand_weights(z)
    det = math.prod(w[0] * S[0][m] + w[1] * S[1][m] + LAM for m in range(2))
    return 0.5 * math.log(min(max(det, 0.0), 1e10))


def test_one_iteration_gives_the_published_update():
    z, p, eps = [0.3, 0.2], [0.1, -0.2], 0.1
    # One leapfrog step by hand: half kick, drift, half kick.
    f0 = _by_hand_force(z)
    p_half = [p[m] + 0.5 * eps * f0[m] for m in range(2)]
    z1 = [z[m] + eps * p_half[m] for m in range(2)]
    f1 = _by_hand_force(z1)
    p1 = [p_half[m] + 0.5 * eps * f1[m] for m in range(2)]
    h0 = -_by_hand_log_target(z) + 0.5 * sum(v * v for v in p)
    h1 = -_by_hand_log_target(z1) + 0.5 * sum(v * v for v in p1)
    accept_prob = min(1.0, math.exp(h0 - h1))

    metric = _metric()
    as_tensor = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    for uniform, moves in ((accept_prob * 0.5, True), (min(accept_prob * 1.5, 0.999999), accept_prob >= 0.999999)):
        new, prob, accepted = published_iteration(metric, as_tensor(z), as_tensor(p),
                                                  torch.tensor([uniform], dtype=torch.float64), eps, 1)
        assert prob.item() == pytest.approx(accept_prob, abs=1e-12)
        assert bool(accepted) is moves
        torch.testing.assert_close(new[0], torch.tensor(z1 if moves else z, dtype=torch.float64),
                                   atol=1e-12, rtol=0)
    assert accept_prob < 1.0  # the case exercises the accept test (h1 > h0)


def test_acceptance_clamps_det_at_1e10_and_has_no_domain():
    metric = _metric()
    # Far outside the domain: still finite (no domain), equal to the floor's 0.5 log(lambda^2).
    far = torch.tensor([[30.0, -30.0]], dtype=torch.float64)
    assert published_log_target(metric, far).item() == pytest.approx(math.log(LAM), abs=1e-12)
    # A huge det G is clamped at 1e10.
    sharp = RiemannianMetric(metric.centroids, torch.full((2, 2), -20.0, dtype=torch.float64), lam=LAM, rho=RHO,
                             lower=metric.lower, upper=metric.upper)
    at_centroid = sharp.centroids[:1]
    assert published_log_target(sharp, at_centroid).item() == pytest.approx(0.5 * math.log(1e10), abs=1e-12)


def test_momentum_has_the_published_variance_and_the_sampler_is_labelled():
    sampler = PublishedChainSampler()
    p = sampler._draw_momentum(torch.zeros(200_000, 2), torch.Generator().manual_seed(0))
    assert p.std().item() == pytest.approx(0.5, abs=0.005)  # N(0, 0.25 I), not N(0, I)
    assert "NOT the Riemannian uniform law" in LABEL and sampler.label == LABEL
    assert SAMPLERS["published"] is PublishedChainSampler
    assert PublishedChainConfig() == PublishedChainConfig(n_steps=100, n_leapfrog=10, step_size=0.01,
                                                          n_centroids=100, lam=0.01)


def test_sampler_runs_from_training_codes_and_round_trips():
    g = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(60, 3, generator=g), -1.0 + 0.1 * torch.randn(60, 3, generator=g)
    sampler = PublishedChainSampler(PublishedChainConfig(n_steps=5, n_leapfrog=3, n_centroids=10)).fit(mu, log_var)
    z = sampler.sample(40, seed=0)
    assert z.shape == (40, 3) and torch.isfinite(z).all()
    assert 0 < sampler.diagnostics.acceptance_rate <= 1 and sampler.diagnostics.location is not None
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    loaded = PublishedChainSampler.from_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(loaded.sample(40, seed=0), z)
