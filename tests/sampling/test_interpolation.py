"""Geodesic interpolation: it follows the data where a straight line cuts across empty space."""

import pytest
import torch

from augmentor.sampling.interpolation import conformal_length, geodesic_interpolation, resample_polyline
from augmentor.sampling.metric import RiemannianMetric


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
    # Measured finely: the gaps between neighbouring codes (bumps 0.014 wide, 0.1 apart) still cost, so
    # the ratio is about 0.19; with one sample per segment it looked like 4e-5, an artefact.
    assert conformal_length(metric, curve, 64) < 0.25 * conformal_length(metric, straight, 64)


def test_interpolation_checks_its_arguments():
    metric, mu = _ring_metric()
    with pytest.raises(ValueError, match="n_points"):
        geodesic_interpolation(metric, mu[0], mu[1], n_points=2)
    with pytest.raises(ValueError, match="2 coordinates"):
        geodesic_interpolation(metric, torch.zeros(3), mu[1])


def _straight(start, end, n):
    t = torch.linspace(0, 1, n, dtype=start.dtype)[:, None]
    return (1 - t) * start + t * end


def test_interpolation_is_never_longer_than_the_straight_line_between_narrow_bumps():
    # A 5 x 5 grid of codes with bumps far narrower than the curve's segments: the
    # refinement used to hop from bump to bump across empty space, a curve 26% longer
    # than the straight line through the diagonal codes (measured finely).
    mu = torch.stack(torch.meshgrid(torch.arange(5.0), torch.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    metric = RiemannianMetric.from_codes(mu.double(), torch.full((25, 2), -6.0, dtype=torch.float64), lam=1e-2)
    start, end = metric.centroids[0], metric.centroids[-1]
    curve = geodesic_interpolation(metric, start, end, n_points=15)
    assert curve.shape == (15, 2)
    straight = _straight(start, end, 15)
    assert conformal_length(metric, curve, 64) <= 1.001 * conformal_length(metric, straight, 64)


def test_conformal_length_quadrature_refines_the_segments():
    metric, mu = _ring_metric()
    coarse = torch.stack([mu[0], mu[29]])
    fine_polyline = _straight(mu[0], mu[29], 201)
    assert conformal_length(metric, coarse, 200) == pytest.approx(conformal_length(metric, fine_polyline), rel=1e-9)
    with pytest.raises(ValueError, match="samples_per_segment"):
        conformal_length(metric, coarse, 0)


def test_resample_polyline_spaces_points_evenly_along_the_arc():
    polyline = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
    points = resample_polyline(polyline, 5)
    expected = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(points, expected)
