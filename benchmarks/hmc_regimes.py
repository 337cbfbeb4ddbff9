"""Accuracy and acceptance of the sampler in the regimes trained VAEs produce.

Run:  python benchmarks/hmc_regimes.py [--device cpu|cuda]

Codes as the project issue sets them: d = 16, k = 400 codes (every code a
centroid), ``mu = shift + N(0, I)``, ``log_var = lv + 0.3 N(0, I)``; 400 chains
of 100 HMC iterations x 10 leapfrog steps of 0.01 (the paper's settings). Per
regime, measured in this run:

* the errors of the default float32 evaluation against the direct float64
  formula (:func:`augmentor.metric.reference_log_density_and_grad`) at 400
  points inside the centroids' bumps: largest absolute log-density error and
  largest relative gradient error (goal: both <= 1e-3);
* which evaluation the metric chose (local or dense, see RiemannianMetric);
* acceptance of the default chain, of the same chain on a float64 metric (the
  reference) and of the opt-in bfloat16 inner gradients, same seeds
  (goal: the default within 2 % of float64).
"""

from __future__ import annotations

import argparse
import time

import torch

from augmentor import HMCConfig, HMCSampler, RiemannianMetric
from augmentor.sampling.metric import reference_log_density_and_grad

REGIMES = ((0.0, -1.0), (3.0, -6.0), (10.0, -8.0), (20.0, -10.0))
D, K, N_CHAINS = 16, 400, 400


def make_codes(shift: float, log_var: float, k: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes shifted from the origin with small posterior variances, as a small KL weight gives."""
    g = torch.Generator().manual_seed(seed)
    return shift + torch.randn(k, d, generator=g), log_var + 0.3 * torch.randn(k, d, generator=g)


def points_in_bumps(metric: RiemannianMetric, n: int, seed: int = 1) -> torch.Tensor:
    """Points within half a bump width of random centroids: where the chains run."""
    g = torch.Generator(device=metric.device).manual_seed(seed)
    j = torch.randint(metric.n_centroids, (n,), generator=g, device=metric.device)
    width = metric.rho * torch.exp(0.5 * metric.centroid_log_var[j])
    noise = torch.randn(n, metric.dim, generator=g, device=metric.device, dtype=metric.dtype)
    return metric.centroids[j] + 0.5 * width * noise


def errors(metric: RiemannianMetric, n: int) -> tuple[float, float]:
    z = points_in_bumps(metric, n)
    expected_log_p, expected_grad = reference_log_density_and_grad(metric, z)
    log_p, grad = metric.log_density_and_grad(z)
    log_p_error = (log_p.double() - expected_log_p).abs().max()
    grad_error = ((grad.double() - expected_grad).norm(dim=1) / expected_grad.norm(dim=1)).max()
    return float(log_p_error), float(grad_error)


def acceptance(metric: RiemannianMetric, inner_gradient: str = "exact") -> float:
    sampler = HMCSampler(config=HMCConfig(inner_gradient=inner_gradient))
    sampler.sample(metric, N_CHAINS, seed=0)
    return sampler.acceptance_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"d={D}, k={K}, {N_CHAINS} chains x 100 x 10 leapfrog steps of 0.01")
    print("| shift, log_var | evaluation | log-density error | gradient error | default acceptance "
          "| float64 acceptance | default / float64 | bfloat16 (opt-in) acceptance | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for shift, log_var in REGIMES:
        start = time.perf_counter()
        mu, lv = make_codes(shift, log_var, K, D)
        metric = RiemannianMetric.from_codes(mu.to(args.device), lv.to(args.device))
        log_p_error, grad_error = errors(metric, N_CHAINS)
        default = acceptance(metric)
        reference = acceptance(metric.to(dtype=torch.float64))
        low = acceptance(metric, "bfloat16")
        print(f"| {shift:g}, {log_var:g} | {'local' if metric.local else 'dense'} | {log_p_error:.1e} "
              f"| {grad_error:.1e} | {default:.4f} | {reference:.4f} | {default / reference:.4f} "
              f"| {low:.4f} | {time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    main()
