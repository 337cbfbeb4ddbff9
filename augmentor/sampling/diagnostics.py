"""What a run of HMC chains did: acceptance, split R-hat and effective sample size."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["HMCDiagnostics", "effective_sample_size", "split_rhat"]


@dataclasses.dataclass
class HMCDiagnostics:
    """What the last run of the chains did.

    Attributes:
        acceptance_rate: mean acceptance over kept iterations and chains.
        step_size: the step size used for the kept iterations.
        split_rhat: split R-hat of the log-density traces (close to 1 when mixed).
        ess: multi-chain effective sample size of the log-density traces.
        n_chains, n_steps, n_leapfrog: the run's sizes.
        outside_domain_rate: fraction of proposals that ended outside the domain.
        inner_gradient: the precision the inner leapfrog gradients ran in
            (``"exact"`` or ``"bfloat16"``).
        location: where the chains sat on the metric's floor
            (:class:`~augmentor.sampling.chain_location.ChainLocation` as a dict), when known.
    """

    acceptance_rate: float
    step_size: float
    split_rhat: float
    ess: float
    n_chains: int
    n_steps: int
    n_leapfrog: int
    outside_domain_rate: float
    inner_gradient: str
    location: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _autocovariance(x: np.ndarray) -> np.ndarray:
    """Autocovariance along axis 0 of ``(n, m)`` draws, via FFT."""
    n = x.shape[0]
    centred = x - x.mean(axis=0)
    spectrum = np.fft.rfft(centred, n=2 * n, axis=0)
    return np.fft.irfft(spectrum * np.conj(spectrum), axis=0)[:n] / n


def split_rhat(trace: np.ndarray) -> float:
    """Split R-hat (Gelman et al.) of ``(n_draws, n_chains)`` draws."""
    n = trace.shape[0] // 2
    if n < 2:
        return math.nan
    halves = np.concatenate([trace[:n], trace[-n:]], axis=1)
    within = halves.var(axis=0, ddof=1).mean()
    between = n * halves.mean(axis=0).var(ddof=1)
    if within == 0:
        return math.nan
    return float(math.sqrt(((n - 1) / n * within + between / n) / within))


def effective_sample_size(trace: np.ndarray) -> float:
    """Multi-chain effective sample size of ``(n_draws, n_chains)`` draws (Geyer's pairs)."""
    n, m = trace.shape
    if n < 4:
        return math.nan
    within = trace.var(axis=0, ddof=1).mean()
    between = trace.mean(axis=0).var(ddof=1) if m > 1 else 0.0
    var_plus = (n - 1) / n * within + between
    if var_plus == 0:
        return math.nan
    rho = 1.0 - (within - _autocovariance(trace).mean(axis=1)) / var_plus
    rho[0] = 1.0
    # Geyer's initial positive and monotone sequence of autocorrelation pairs.
    tau, previous = -1.0, math.inf
    for t in range(0, n - 1, 2):
        pair = min(rho[t] + rho[t + 1], previous)
        if pair < 0:
            break
        tau += 2.0 * pair
        previous = pair
    return float(n * m / max(tau, 1.0 / math.log10(max(n * m, 10))))
