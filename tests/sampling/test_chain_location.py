"""Floor shares and code distances on toys where the answer is known."""

import logging
import math

import pytest
import torch

from augmentor.sampling.chain_location import floor_mask, locate_chains, nearest_code_distance_ratio
from augmentor.sampling.hmc import HMCConfig, HMCSampler
from augmentor.sampling.metric import RiemannianMetric

LAM = 0.01


def _two_bumps():
    """Two narrow bumps (width rho * sigma = 0.1) at (0, 0) and (4, 0) in the box [-10, 10]^2."""
    centroids = torch.tensor([[0.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    log_var = torch.full_like(centroids, math.log(0.01))
    box = torch.full((2,), 10.0, dtype=torch.float64)
    return RiemannianMetric(centroids, log_var, lam=LAM, rho=1.0, lower=-box, upper=box)


def _tiny_steps():
    return HMCSampler(config=HMCConfig(n_steps=20, n_leapfrog=5, step_size=1e-3))


def test_chains_started_far_from_every_centroid_sit_on_the_floor(caplog):
    metric = _two_bumps()
    # 40 bump widths or more from both centroids: exp(-100 * 16) underflows, g = lambda exactly.
    start = torch.tensor([[-8.0, 8.0], [8.0, -8.0], [2.0, 6.0], [-6.0, -6.0]], dtype=torch.float64)
    sampler = _tiny_steps()
    with caplog.at_level(logging.WARNING, logger="augmentor.sampling.chain_location"):
        sampler.sample(metric, 4, seed=0, init=start)
    location = sampler.diagnostics.location
    assert location["start_floor_share"] == 1.0
    assert location["final_floor_share"] == 1.0
    assert location["chain_floor_share"] == 1.0
    assert location["warning"] is not None and "floor" in caplog.text


def test_chains_started_at_centroids_with_tiny_steps_are_never_on_the_floor(caplog):
    metric = _two_bumps()
    sampler = _tiny_steps()
    with caplog.at_level(logging.WARNING, logger="augmentor.sampling.chain_location"):
        sampler.sample(metric, 6, seed=0, init=metric.centroids[[0, 1, 0, 1, 0, 1]])
    location = sampler.diagnostics.location
    assert location["start_floor_share"] == 0.0
    assert location["final_floor_share"] == 0.0
    assert location["chain_floor_share"] == 0.0
    assert location["warning"] is None and "floor" not in caplog.text


def test_half_the_chains_on_the_floor_gives_one_half_and_no_warning():
    metric = _two_bumps()
    start = torch.cat([metric.centroids, torch.tensor([[-8.0, 8.0], [8.0, 8.0]], dtype=torch.float64)])
    sampler = _tiny_steps()
    sampler.sample(metric, 4, seed=0, init=start)
    location = sampler.diagnostics.location
    assert location["final_floor_share"] == 0.5 and location["chain_floor_share"] == 0.5
    assert location["warning"] is None  # "most" means more than half


def test_floor_needs_every_dimension_at_lambda():
    # One centroid whose inverse variance is 100 in dimension 0 and 1e-6 in dimension 1: at the
    # centroid g = (lambda + 100, lambda + 1e-6), on the floor in dimension 1 only -> not on the floor.
    centroids = torch.tensor([[0.0, 0.0], [9.0, 9.0]], dtype=torch.float64)
    log_var = torch.tensor([[math.log(0.01), math.log(1e6)], [0.0, 0.0]], dtype=torch.float64)
    box = torch.full((2,), 10.0, dtype=torch.float64)
    metric = RiemannianMetric(centroids, log_var, lam=LAM, rho=1.0, lower=-box, upper=box)
    assert not floor_mask(metric, torch.zeros(1, 2, dtype=torch.float64)).item()
    assert floor_mask(metric, torch.full((1, 2), -9.0, dtype=torch.float64)).item()  # far from both
    with pytest.raises(ValueError, match="tolerance"):
        floor_mask(metric, torch.zeros(1, 2), tolerance=-0.1)


def test_distance_ratio_is_the_known_offset_over_the_grid_spacing():
    # Codes on a 5 x 5 grid of spacing 2: every code's nearest neighbour lies at 2. Samples
    # displaced by (0.6, 0.8) (norm 1) from codes are 1 from their nearest code: ratio 1 / 2.
    axis = torch.arange(5, dtype=torch.float64) * 2.0
    codes = torch.cartesian_prod(axis, axis)
    samples = codes[:10] + torch.tensor([0.6, 0.8], dtype=torch.float64)
    assert nearest_code_distance_ratio(samples, codes) == pytest.approx(0.5, abs=1e-12)
    assert nearest_code_distance_ratio(codes[3:7], codes) == 0.0
    location = locate_chains(_two_bumps(), samples[:2], codes=codes)
    assert location.distance_ratio == pytest.approx(0.5, abs=1e-12) and location.start_floor_share is None


def test_distance_ratio_refuses_duplicated_codes_and_bad_shapes():
    codes = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="duplicated"):
        nearest_code_distance_ratio(torch.ones(2, 2), codes)
    with pytest.raises(ValueError, match=r"\(B, d\)"):
        nearest_code_distance_ratio(torch.ones(2, 3), torch.randn(4, 2))
