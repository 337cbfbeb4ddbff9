"""Speed and memory of the Riemannian HMC sampler against a dense formulation.

Run:  python benchmarks/hmc_speed.py [--device cpu|cuda] [--skip-large]

Set-up of the project issue: d = 64, k = 1000 centroids (every code), rho by
the paper's rule, 1000 chains of 100 HMC iterations x 10 leapfrog steps of
0.01, default settings, in two regimes:

* easy: codes ``mu ~ N(0, I)``, ``log_var = -(1 + 0.5 N(0, I))`` (wide bumps:
  every centroid counts, the metric takes its dense evaluation);
* hard: ``mu = 3 + N(0, I)``, ``log_var = -6 + 0.3 N(0, I)`` (what a small KL
  weight gives: narrow bumps, the local evaluation).

* ours: :class:`augmentor.HMCSampler` on :class:`augmentor.RiemannianMetric`
  with the default (exact) inner gradients; the opt-in bfloat16 inner
  gradients are timed too, with their acceptance.
* dense: the straightforward formulation (as in public implementations): the
  ``(B, k, d, d)`` tensor of weighted inverse covariances summed into ``d x d``
  matrices, ``det``, and autograd for the gradient. It is far too slow and too
  large for 1000 chains, so it runs a few chains for a few iterations and the
  ratio compares the cost of one chain-leapfrog step, measured in this run.
* k = 50,000 (every code of an MNIST-sized training set as a centroid): a
  separate process builds the metric and runs the 1000 chains for the full 100
  x 10 steps in the hard regime (in the easy regime, where every centroid
  counts, for 5 iterations, extrapolated to 100 and labelled so); we print its
  time and peak resident set size, whole process included.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from augmentor import HMCConfig, HMCSampler, RiemannianMetric, native_bfloat16
from augmentor.sampling.hardware import linear

D, K, N_CHAINS, N_STEPS, N_LEAPFROG, STEP = 64, 1000, 1000, 100, 10, 0.01
LARGE_K, EASY_LARGE_STEPS = 50_000, 5


def make_codes(k: int, regime: str, d: int = D, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of the easy or the hard regime (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    noise_mu, noise_lv = torch.randn(k, d, generator=g), torch.randn(k, d, generator=g)
    if regime == "easy":
        return noise_mu, -(1 + 0.5 * noise_lv)
    return 3.0 + noise_mu, -6.0 + 0.3 * noise_lv


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(
    metric: RiemannianMetric, device: torch.device, repeats: int, inner_gradient: str
) -> tuple[list[float], float]:
    """Wall times of ``repeats`` full runs (shared machines are noisy: we report min and median)."""
    config = HMCConfig(n_steps=N_STEPS, n_leapfrog=N_LEAPFROG, step_size=STEP, inner_gradient=inner_gradient)
    sampler = HMCSampler(config=config)
    HMCSampler(n_steps=2, n_leapfrog=2).sample(metric, N_CHAINS, seed=1)  # warm-up (kernels, caches)
    times = []
    for repeat in range(repeats):
        _sync(device)
        start = time.perf_counter()
        sampler.sample(metric, N_CHAINS, seed=repeat)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times, sampler.acceptance_rate


def _per_call_ms(fn, device: torch.device, calls: int = 30) -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / calls * 1e3


def kernel_timings(metrics: dict[str, RiemannianMetric], device: torch.device) -> None:
    """Where the time goes: one evaluation per regime, and the products it is made of."""
    for regime, metric in metrics.items():
        z = metric.centroids[:N_CHAINS] + 0.01
        exact = _per_call_ms(lambda: metric.log_density_and_grad(z), device)
        low = _per_call_ms(lambda: metric.grad_log_density(z, dtype=torch.bfloat16), device)
        evaluation = "local" if metric.local else "dense"
        print(f"{regime}: one evaluation of {N_CHAINS} points ({evaluation}): {exact:.2f} ms; "
              f"opt-in bfloat16 gradient (dense) {low:.2f} ms")
    x = torch.rand(N_CHAINS, 2 * D + 1, device=device)
    w = torch.rand(K, 2 * D + 1, device=device)
    flop = 2 * N_CHAINS * K * (2 * D + 1)
    products = {"float32 x @ w.T": lambda: x @ w.T, "float32 hardware.linear": lambda: linear(x, w)}
    xb, wb = x.bfloat16(), w.bfloat16()
    products["bfloat16 x @ w.T"] = lambda: xb @ wb.T
    for name, fn in products.items():
        ms = _per_call_ms(fn, device)
        print(f"({N_CHAINS} x {2 * D + 1}) @ ({2 * D + 1} x {K}), {name}: {ms:.3f} ms = {flop / ms / 1e6:.0f} GFLOP/s")


def dense_log_density(z: torch.Tensor, centroids: torch.Tensor, inv_cov: torch.Tensor, lam: float, rho: float):
    """0.5 log det G(z) with explicit d x d matrices and a determinant."""
    diff = z[:, None, :] - centroids[None]
    dist = torch.einsum("bki,kij,bkj->bk", diff, inv_cov, diff)
    weights = torch.exp(-dist / rho**2)
    g = (weights[:, :, None, None] * inv_cov[None]).sum(dim=1) + lam * torch.eye(z.shape[1], device=z.device)
    return 0.5 * torch.log(torch.det(g))


def time_dense(metric: RiemannianMetric, device: torch.device, n_chains: int = 8, n_steps: int = 2):
    """Seconds per chain-leapfrog step of plain HMC on the dense formulation."""
    inv_cov = torch.diag_embed(torch.exp(-metric.centroid_log_var))
    centroids = metric.centroids

    def grad(z):
        z = z.detach().requires_grad_()
        log_p = dense_log_density(z, centroids, inv_cov, metric.lam, metric.rho)
        return log_p.detach(), torch.autograd.grad(log_p.sum(), z)[0]

    z = centroids[:n_chains].clone()
    _sync(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        log_p, g = grad(z)
        v = torch.randn_like(z)
        h0 = -log_p + 0.5 * (v * v).sum(1)
        z_new, v_new = z.clone(), v + 0.5 * STEP * g
        for step in range(N_LEAPFROG):
            z_new = z_new + STEP * v_new
            log_p_new, g_new = grad(z_new)  # the straightforward code recomputes, never reuses
            v_new = v_new + (0.5 if step == N_LEAPFROG - 1 else 1.0) * STEP * g_new
        h = -log_p_new + 0.5 * (v_new * v_new).sum(1)
        accept = torch.rand(n_chains, device=device) < torch.exp(h0 - h)
        z = torch.where(accept[:, None], z_new, z)
    _sync(device)
    return (time.perf_counter() - start) / (n_chains * n_steps * N_LEAPFROG)


def large_child(regime: str, device: str) -> None:
    """Run in a subprocess: build the metric with k = 50,000 and time the chains; print JSON."""
    mu, log_var = make_codes(LARGE_K, regime)
    start = time.perf_counter()
    metric = RiemannianMetric.from_codes(mu.to(device), log_var.to(device))
    build = time.perf_counter() - start
    n_steps = N_STEPS if regime == "hard" else EASY_LARGE_STEPS
    sampler = HMCSampler(n_steps=n_steps, n_leapfrog=N_LEAPFROG, step_size=STEP)
    _sync(torch.device(device))
    start = time.perf_counter()
    sampler.sample(metric, N_CHAINS, seed=0)
    _sync(torch.device(device))
    run = time.perf_counter() - start
    print(json.dumps({
        "regime": regime, "k": LARGE_K, "build_s": build, "steps": n_steps, "run_s": run,
        "run_100_s": run * N_STEPS / n_steps, "acceptance": sampler.acceptance_rate,
        "evaluation": "local" if metric.local else "dense",
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-large", action="store_true", help="skip the k = 50,000 runs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our sampler per regime")
    parser.add_argument("--large-child", choices=("easy", "hard"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large_child:
        large_child(args.large_child, args.device)
        return

    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"{platform.processor() or platform.machine()}; native bfloat16: {native_bfloat16(device)}")
    metrics = {}
    for regime in ("easy", "hard"):
        mu, log_var = make_codes(K, regime)
        metrics[regime] = RiemannianMetric.from_codes(mu.to(device), log_var.to(device))
    print(f"d={D} k={K} lambda={metrics['easy'].lam}; {N_CHAINS} chains x {N_STEPS} x {N_LEAPFROG} steps of {STEP}")
    kernel_timings(metrics, device)
    for regime, metric in metrics.items():
        medians = {}
        for inner_gradient in ("exact", "bfloat16"):
            times, acceptance = time_ours(metric, device, args.repeats, inner_gradient)
            medians[inner_gradient] = statistics.median(times)
            label = "default settings" if inner_gradient == "exact" else "opt-in bfloat16 inner gradients"
            print(f"{regime} (rho={metric.rho:.2f}), {label}: {N_CHAINS} samples in {medians[inner_gradient]:.2f} s "
                  f"(median of {len(times)}; min {min(times):.2f} s), acceptance {acceptance:.4f}")
        per_step = medians["exact"] / (N_CHAINS * N_STEPS * N_LEAPFROG)
        dense_per_step = time_dense(metric, device)
        print(f"{regime}: dense formulation {dense_per_step * 1e3:.2f} ms per chain-leapfrog step -> "
              f"{N_CHAINS} samples would take {dense_per_step * N_CHAINS * N_STEPS * N_LEAPFROG:.0f} s; "
              f"speed-up of the default over dense, same run: {dense_per_step / per_step:.0f}x")

    if not args.skip_large:
        for regime in ("hard", "easy"):
            out = subprocess.run(
                [sys.executable, __file__, "--large-child", regime, "--device", args.device],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            gpu = f", GPU peak {r['peak_gpu_mib']:.0f} MiB" if r["peak_gpu_mib"] is not None else ""
            run = (f"{r['run_s']:.1f} s" if r["steps"] == N_STEPS else
                   f"{r['run_s']:.1f} s for {r['steps']} iterations -> {r['run_100_s']:.0f} s for {N_STEPS} (extrapolated)")
            print(f"k={r['k']:,}, {regime} ({r['evaluation']}): metric built in {r['build_s']:.1f} s; {N_CHAINS} "
                  f"chains x {N_LEAPFROG} leapfrog steps: {run}, acceptance {r['acceptance']:.4f}; "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB (whole process){gpu}")


if __name__ == "__main__":
    main()
