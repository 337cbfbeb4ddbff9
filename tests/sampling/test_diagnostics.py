"""Convergence diagnostics on chains with known properties."""

import numpy as np
import pytest

from augmentor.sampling.diagnostics import effective_sample_size, split_rhat


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
