"""Geodesic interpolation: it follows the data where a straight line cuts across empty space."""

import pytest
import torch

from augmentor.interpolation import conformal_length, geodesic_interpolation
from augmentor.metric import RiemannianMetric


def _ring_metric():
    """Codes on the unit circle: the chord between opposite codes crosses the empty centre."""
    angle = torch.linspace(0, 2 * torch.pi, 60, dtype=torch.float64)[:-1]
    mu = torch.stack([angle.cos(), angle.sin()], dim=1)
    return RiemannianMetric.from_codes(mu, torch.full_like(mu, -4.0), lam=1e-3), mu


def test_interpolation_follows_the_ring():
    metric, mu = _ring_metric()
    start, end = mu[0], mu[29]
    curve = geodesic_interpolation(metric, start, end, n_points=30)
    assert curve.shape == (30, 2)
    assert torch.equal(curve[0], start) and torch.equal(curve[-1], end)
    radius = curve.norm(dim=1)
    assert radius.min() > 0.9 and radius.max() < 1.1  # stays on the data, never crosses the centre
    t = torch.linspace(0, 1, 30, dtype=torch.float64)[:, None]
    straight = (1 - t) * start + t * end
    assert conformal_length(metric, curve) < 1e-2 * conformal_length(metric, straight)


def test_interpolation_checks_its_arguments():
    metric, mu = _ring_metric()
    with pytest.raises(ValueError, match="n_points"):
        geodesic_interpolation(metric, mu[0], mu[1], n_points=2)
    with pytest.raises(ValueError, match="2 coordinates"):
        geodesic_interpolation(metric, torch.zeros(3), mu[1])
