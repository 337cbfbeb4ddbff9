"""Speed and memory of the Riemannian HMC sampler against a dense formulation.

Run:  python benchmarks/hmc_speed.py [--device cpu|cuda] [--skip-memory]

Set-up of the project issue: codes mu ~ N(0, I), log_var = -(1 + 0.5 N(0, I)),
d = 64, k = 1000 centroids (every code), rho by the paper's rule, 1000 chains of
100 HMC iterations x 10 leapfrog steps of 0.01.

* ours: :class:`augmentor.HMCSampler` on :class:`augmentor.RiemannianMetric`
  (diagonal closed form, ``(B, k) x (k, d)`` products), with exact inner
  gradients and with bfloat16 inner gradients (still an exact chain). The
  default, ``inner_gradient="auto"``, is bfloat16 where the device multiplies
  bfloat16 natively (:func:`augmentor.native_bfloat16`) and exact elsewhere.
* dense: the straightforward formulation (as in public implementations): the
  ``(B, k, d, d)`` tensor of weighted inverse covariances summed into ``d x d``
  matrices, ``det``, and autograd for the gradient. It is far too slow and too
  large for 1000 chains, so it runs a few chains for a few iterations and the
  ratio compares the cost of one chain-leapfrog step, measured in this run.
* memory: a separate process builds the metric with k = 50,000 and runs the
  1000 chains for 2 iterations (memory does not grow with iterations); we print
  its peak resident set size, whole process included.
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

D, K, N_CHAINS, N_STEPS, N_LEAPFROG, STEP = 64, 1000, 1000, 100, 10, 0.01


def make_codes(k: int, d: int = D, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(k, d, generator=g), -(1 + 0.5 * torch.randn(k, d, generator=g))


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


def kernel_timings(metric: RiemannianMetric, device: torch.device) -> None:
    """Where the time goes: one gradient evaluation, the products, exp against exp2."""
    z = metric.centroids[:N_CHAINS] + 0.01
    exact = _per_call_ms(lambda: metric.log_density_and_grad(z), device)
    low = _per_call_ms(lambda: metric.grad_log_density(z, dtype=torch.bfloat16), device)
    print(f"one gradient evaluation, {N_CHAINS} points: exact {exact:.2f} ms, bfloat16 {low:.2f} ms")
    weights = torch.rand(N_CHAINS, K, device=device)
    factor = torch.rand(K, D, device=device)
    flop = 2 * N_CHAINS * K * D
    for dtype in (torch.float32, torch.bfloat16):
        w, f = weights.to(dtype), factor.to(dtype)
        ms = _per_call_ms(lambda: w @ f, device)
        print(f"({N_CHAINS} x {K}) @ ({K} x {D}) in {str(dtype)[6:]}: {ms:.3f} ms = {flop / ms / 1e6:.0f} GFLOP/s")
    exponent = -20 * torch.rand(N_CHAINS, K, dtype=torch.float64, device=device)
    x = exponent.float()
    for name, fn in (("exp", torch.exp), ("exp2", torch.exp2)):
        ms = _per_call_ms(lambda: fn(x), device)
        reference = fn(exponent)
        error = ((fn(x).double() - reference) / reference).abs().max()
        print(f"{name} over {N_CHAINS} x {K} float32: {ms:.3f} ms, max relative error {error:.1e}")


def acceptance_by_precision(metric: RiemannianMetric, step_sizes=(0.1, 0.5, 1.0), n_chains: int = 500):
    """Acceptance of short runs with exact and with bfloat16 inner gradients, same seeds.

    The benchmark's step of 0.01 accepts everything, so larger steps show whether
    the cheaper inner gradients cost acceptance.
    """
    rows = []
    for step in step_sizes:
        rates = []
        for inner_gradient in ("exact", "bfloat16"):
            sampler = HMCSampler(config=HMCConfig(n_steps=10, n_leapfrog=N_LEAPFROG, step_size=step,
                                                  inner_gradient=inner_gradient))
            sampler.sample(metric, n_chains, seed=0)
            rates.append(sampler.acceptance_rate)
        rows.append((step, *rates))
    return rows


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


def peak_memory_child(k: int, device: str) -> None:
    """Run in a subprocess: build the metric at size k and run the chains briefly."""
    mu, log_var = make_codes(k)
    metric = RiemannianMetric.from_codes(mu.to(device), log_var.to(device))
    HMCSampler(n_steps=2, n_leapfrog=N_LEAPFROG, step_size=STEP).sample(metric, N_CHAINS, seed=0)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    print(json.dumps({"k": k, "peak_rss_mib": rss_mib, "peak_gpu_mib": gpu_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our sampler")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(args.memory_child, args.device)
        return

    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, {platform.processor() or platform.machine()}")
    mu, log_var = make_codes(K)
    metric = RiemannianMetric.from_codes(mu.to(device), log_var.to(device))
    print(f"d={D} k={K} rho={metric.rho:.3f} lambda={metric.lam}; {N_CHAINS} chains x {N_STEPS} x {N_LEAPFROG} steps of {STEP}")
    native = native_bfloat16(device)
    print(f"native bfloat16 products on {device}: {native} -> the default inner gradient is "
          f"{'bfloat16' if native else 'exact'}")

    kernel_timings(metric, device)
    medians = {}
    for inner_gradient in ("exact", "bfloat16"):
        times, acceptance = time_ours(metric, device, args.repeats, inner_gradient)
        medians[inner_gradient] = statistics.median(times)
        print(f"ours ({inner_gradient} inner gradients): {N_CHAINS} samples in {medians[inner_gradient]:.2f} s "
              f"(median of {len(times)}; min {min(times):.2f} s) = {N_CHAINS / medians[inner_gradient]:.0f} "
              f"samples/s (acceptance {acceptance:.3f})")
    for step, exact, approx in acceptance_by_precision(metric):
        print(f"acceptance at step size {step}: exact inner gradients {exact:.4f}, bfloat16 {approx:.4f}")
    per_step = medians["exact"] / (N_CHAINS * N_STEPS * N_LEAPFROG)
    dense_per_step = time_dense(metric, device)
    print(f"dense: {dense_per_step * 1e3:.2f} ms per chain-leapfrog step -> {N_CHAINS} samples would take "
          f"{dense_per_step * N_CHAINS * N_STEPS * N_LEAPFROG:.0f} s")
    print(f"speed-up over dense (exact inner gradients, median run), same run: {dense_per_step / per_step:.0f}x")

    if not args.skip_memory:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", "50000", "--device", args.device],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        result = json.loads(out)
        gpu = f", GPU peak {result['peak_gpu_mib']:.0f} MiB" if result["peak_gpu_mib"] is not None else ""
        print(f"memory: k=50,000, {N_CHAINS} chains: peak RSS {result['peak_rss_mib']:.0f} MiB (whole process){gpu}")


if __name__ == "__main__":
    main()
