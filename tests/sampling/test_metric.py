"""The metric's closed forms against autograd and dense formulas, in float64."""

import math

import pytest
import torch

import augmentor.sampling.metric as metric_module
from augmentor.sampling.metric import (
    RiemannianMetric,
    max_nearest_neighbour_distance,
    reference_log_density_and_grad,
    select_centroids,
)


def _codes(n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    log_var = -(1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64))
    return mu, log_var


def _reference_log_density(z, centroids, log_var, lam, rho):
    """The paper's Eq. 7 written literally: dense d x d matrices and a determinant."""
    inv_cov = torch.diag_embed(torch.exp(-log_var))  # (k, d, d)
    diff = z[:, None, :] - centroids[None]  # (B, k, d)
    dist = torch.einsum("bki,kij,bkj->bk", diff, inv_cov, diff)
    weights = torch.exp(-dist / rho**2)
    g = (weights[:, :, None, None] * inv_cov[None]).sum(1) + lam * torch.eye(z.shape[1], dtype=z.dtype)
    return 0.5 * torch.logdet(g)


def test_log_density_matches_dense_determinant():
    mu, log_var = _codes()
    metric = RiemannianMetric.from_codes(mu, log_var, lam=1e-2, domain_widths=10.0)
    z = mu[:7] + 0.3 * torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = _reference_log_density(z, metric.centroids, metric.centroid_log_var, metric.lam, metric.rho)
    torch.testing.assert_close(metric.log_density(z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_elements", [2**24, 7])  # one chunk, and many chunks of 1 centroid
def test_gradient_matches_autograd_float64(chunk_elements):
    mu, log_var = _codes()
    metric = RiemannianMetric.from_codes(mu, log_var, lam=1e-2, domain_widths=10.0)
    metric.chunk_elements = chunk_elements
    z = (mu[:6] + 0.5 * torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    z = z.requires_grad_()
    log_p = _reference_log_density(z, metric.centroids, metric.centroid_log_var, metric.lam, metric.rho)
    (expected,) = torch.autograd.grad(log_p.sum(), z)
    log_p_fast, grad = metric.log_density_and_grad(z.detach())
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(log_p_fast, log_p.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(metric.grad_log_density(z.detach()), expected, rtol=1e-10, atol=1e-12)


def test_rho_rule_and_all_codes_as_centroids():
    mu, log_var = _codes(n=30, d=3)
    metric = RiemannianMetric.from_codes(mu, log_var)
    distances = torch.cdist(mu, mu) + torch.diag(torch.full((30,), math.inf, dtype=torch.float64))
    assert metric.n_centroids == 30
    assert metric.rho == pytest.approx(float(distances.min(1).values.max()))
    assert max_nearest_neighbour_distance(mu, chunk_rows=4) == pytest.approx(metric.rho)


def test_kmedoids_centroids_are_codes():
    mu, log_var = _codes(n=60, d=3)
    index = select_centroids(mu, 5, seed=0)
    assert index.shape == (5,) and len(set(index.tolist())) == 5
    metric = RiemannianMetric.from_codes(mu, log_var, n_centroids=5)
    torch.testing.assert_close(metric.centroids, mu[index])
    torch.testing.assert_close(metric.centroid_log_var, log_var[index])


def test_domain_holds_codes_and_metric_bumps_and_density_is_minus_inf_outside():
    mu, log_var = _codes(n=20, d=2)
    metric = RiemannianMetric.from_codes(mu, log_var, n_centroids=4, domain_widths=3.0)
    reach = 3.0 * metric.rho * torch.exp(0.5 * metric.centroid_log_var)
    expected = torch.minimum(mu.min(0).values, (metric.centroids - reach).min(0).values)
    torch.testing.assert_close(metric.lower, expected)
    assert metric.in_domain(mu).all()  # also the codes that are not centroids
    outside = (metric.upper + 1e-3)[None]
    assert metric.log_density(outside).item() == -math.inf
    assert torch.isfinite(metric.log_density(mu)).all()


def test_far_from_codes_metric_tends_to_lambda():
    mu, log_var = _codes(n=20, d=3)
    metric = RiemannianMetric.from_codes(mu, log_var, lam=0.5)
    g = metric.metric_diagonal(torch.full((1, 3), 1e3, dtype=torch.float64))
    torch.testing.assert_close(g, torch.full((1, 3), 0.5, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_centroids": 100}, "larger than the number of codes"),
        ({"lam": 0.0}, "lam"),
        ({"rho": -1.0}, "rho"),
        ({"n_centroids": 1}, "n_centroids"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    mu, log_var = _codes(n=20, d=2)
    with pytest.raises(ValueError, match=message):
        RiemannianMetric.from_codes(mu, log_var, **kwargs)


def test_bad_codes_are_named():
    mu, log_var = _codes(n=20, d=2)
    with pytest.raises(ValueError, match="shape"):
        RiemannianMetric.from_codes(mu, log_var[:, :1])
    with pytest.raises(ValueError, match="at least 2"):
        RiemannianMetric.from_codes(mu[:1], log_var[:1])
    bad = mu.clone()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="finite"):
        RiemannianMetric.from_codes(bad, log_var)
    metric = RiemannianMetric.from_codes(mu, log_var)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        metric.log_density(torch.zeros(3, 4, dtype=torch.float64))


def test_state_dict_round_trip():
    mu, log_var = _codes(n=20, d=3)
    metric = RiemannianMetric.from_codes(mu, log_var)
    again = RiemannianMetric.from_state_dict(metric.state_dict())
    z = mu[:5] + 0.1
    torch.testing.assert_close(again.log_density_and_grad(z), metric.log_density_and_grad(z))


def _shifted_codes(shift, log_var, n=400, d=16, seed=0, dtype=torch.float32):
    """Codes as a VAE with a small KL weight gives them: away from the origin, small variances."""
    g = torch.Generator().manual_seed(seed)
    mu = shift + torch.randn(n, d, generator=g, dtype=dtype)
    return mu, log_var + 0.3 * torch.randn(n, d, generator=g, dtype=dtype)


def _points_in_bumps(metric, n=200, seed=1):
    """Points within the centroids' bumps, where the chains run and the gradient is not zero."""
    g = torch.Generator().manual_seed(seed)
    j = torch.randint(metric.n_centroids, (n,), generator=g)
    width = metric.rho * torch.exp(0.5 * metric.centroid_log_var[j])
    return metric.centroids[j] + 0.5 * width * torch.randn(n, metric.dim, generator=g, dtype=metric.dtype)


@pytest.mark.parametrize("shift, log_var", [(0.0, -1.0), (3.0, -6.0), (10.0, -8.0), (20.0, -10.0)])
def test_float32_log_density_and_gradient_within_1e3_of_float64(shift, log_var):
    # The expanded distance of the first implementation was off by 0.58 at (10, -8) in float32.
    metric = RiemannianMetric.from_codes(*_shifted_codes(shift, log_var))
    z = _points_in_bumps(metric)
    expected_log_p, expected_grad = reference_log_density_and_grad(metric, z)
    log_p, grad = metric.log_density_and_grad(z)
    assert (log_p.double() - expected_log_p).abs().max() <= 1e-3
    relative = (grad.double() - expected_grad).norm(dim=1) / expected_grad.norm(dim=1)
    assert relative.max() <= 1e-3


def test_small_variances_take_the_local_evaluation_and_large_ones_the_dense():
    assert RiemannianMetric.from_codes(*_shifted_codes(3.0, -6.0)).local
    assert not RiemannianMetric.from_codes(*_shifted_codes(0.0, -1.0)).local


@pytest.mark.parametrize("chunk_elements", [2**24, 1000])  # one chunk, and chunks of 5 centroids
def test_local_evaluation_equals_the_dense_one_in_float64(chunk_elements):
    mu, log_var = _shifted_codes(2.0, -8.0, n=60, d=4, dtype=torch.float64)
    metric = RiemannianMetric.from_codes(mu, log_var)
    metric.chunk_elements = chunk_elements
    assert metric.local
    z = _points_in_bumps(metric)
    g_local, grad_local = metric._diagonal_and_grad(z)
    g_dense, grad_dense = metric._dense_diagonal_and_grad(z - metric.origin, None)
    torch.testing.assert_close(g_local, g_dense, rtol=1e-9, atol=0)
    torch.testing.assert_close(grad_local, grad_dense, rtol=1e-7, atol=1e-9)


def test_kmedoids_beyond_the_subset_size_draws_medoids_from_a_seeded_subset(monkeypatch):
    monkeypatch.setattr(metric_module, "MAX_KMEDOIDS_POINTS", 50)
    mu, _ = _codes(n=200, d=3)
    index = select_centroids(mu, 8, seed=3)
    assert index.shape == (8,) and len(set(index.tolist())) == 8 and index.max() < 200
    torch.testing.assert_close(index, select_centroids(mu, 8, seed=3))
    assert not torch.equal(index, select_centroids(mu, 8, seed=4))
