"""Batched Hamiltonian Monte Carlo on the Riemannian-uniform law ``sqrt(det G(z))``.

:class:`HMCSampler` is Algorithm 2 of the paper, written so that the chain
targets that law exactly: momentum ``v ~ N(0, I)`` matching the kinetic energy ``0.5 |v|^2``,
acceptance ``exp(min(0, H0 - H))`` computed in log space, the gradient at the
end of each leapfrog step reused for the next, and every chain advanced in one
batch on the metric's device. Optional dual-averaging step-size adaptation
(Hoffman & Gelman, 2014) during a warm-up.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
from tqdm.auto import tqdm

from augmentor.utils.config import Config
from .chain_location import locate_chains
from .diagnostics import HMCDiagnostics, effective_sample_size, split_rhat
from .metric import CentroidDensity, RiemannianMetric
from .tempered import TemperedDensity

__all__ = ["HMCConfig", "HMCSampler", "leapfrog"]


def _inner_dtype(inner_gradient: str) -> torch.dtype | None:
    """The dtype of the inner leapfrog gradients (None: the metric's own)."""
    return torch.bfloat16 if inner_gradient == "bfloat16" else None


@dataclasses.dataclass
class HMCConfig(Config):
    """Settings of the HMC chains (paper defaults: 100 x 10 steps of 0.01).

    Attributes:
        n_steps: HMC iterations ``N`` kept after warm-up.
        n_leapfrog: leapfrog steps per iteration.
        step_size: leapfrog step size (the initial one when adapting).
        adapt_step_size: tune the step size by dual averaging during ``n_warmup``
            extra iterations, towards ``target_accept``.
        n_warmup: warm-up iterations before the ``n_steps`` kept ones.
        target_accept: mean acceptance rate aimed at by the adaptation.
        inner_gradient: precision of the gradients of the inner leapfrog steps:
            ``"exact"`` (the default: the metric's accurate evaluation, within
            1e-3 of float64) or ``"bfloat16"`` (an opt-in approximation: every
            dense product in bfloat16, faster where the hardware multiplies
            bfloat16 natively, see :func:`~augmentor.hardware.native_bfloat16`,
            but with gradient errors of 1e-2 and more where the posterior
            variances are small, which can collapse acceptance:
            ``benchmarks/hmc_regimes.py``). The chain targets the same law
            either way: the first and last half-steps and the acceptance use
            the exact target, and any deterministic inner gradient keeps the
            leapfrog map reversible and volume-preserving; a less accurate
            gradient can only lower acceptance.
        alpha: exponent of the tempered target ``(sqrt det G)^alpha``
            (:class:`~augmentor.sampling.tempered.TemperedDensity`); 1 is the Riemannian
            uniform law itself. The chain is exact for the tempered target.
        progress: show a progress bar.
    """

    n_steps: int = 100
    n_leapfrog: int = 10
    step_size: float = 0.01
    adapt_step_size: bool = False
    n_warmup: int = 0
    target_accept: float = 0.65
    inner_gradient: Literal["exact", "bfloat16"] = "exact"
    alpha: float = 1.0
    progress: bool = False

    def validate(self) -> None:
        for name in ("n_steps", "n_leapfrog"):
            if getattr(self, name) < 1:
                self._fail(name, f"must be >= 1, got {getattr(self, name)}")
        if not self.step_size > 0:
            self._fail("step_size", f"must be > 0, got {self.step_size}")
        if self.n_warmup < 0:
            self._fail("n_warmup", f"must be >= 0, got {self.n_warmup}")
        if self.adapt_step_size and self.n_warmup == 0:
            self._fail("n_warmup", "must be > 0 when adapt_step_size is true")
        if not 0 < self.target_accept < 1:
            self._fail("target_accept", f"must be in (0, 1), got {self.target_accept}")
        if not self.alpha > 0:
            self._fail("alpha", f"must be > 0, got {self.alpha}")



class _DualAveraging:
    """Step-size adaptation of Hoffman & Gelman (2014), on the batch-mean acceptance."""

    def __init__(self, step_size: float, target: float) -> None:
        self.mu = math.log(10 * step_size)
        self.target = target
        self.h_bar = 0.0
        self.log_eps_bar = 0.0
        self.t = 0

    def update(self, acceptance: float) -> float:
        self.t += 1
        eta = 1.0 / (self.t + 10)
        self.h_bar = (1 - eta) * self.h_bar + eta * (self.target - acceptance)
        log_eps = self.mu - math.sqrt(self.t) / 0.05 * self.h_bar
        weight = self.t**-0.75
        self.log_eps_bar = weight * log_eps + (1 - weight) * self.log_eps_bar
        return math.exp(log_eps)

    @property
    def final(self) -> float:
        return math.exp(self.log_eps_bar)


class HMCSampler:
    """Batched Hamiltonian Monte Carlo on ``p(z) ∝ sqrt(det G(z))`` (paper Alg. 2).

    Args:
        n_steps: HMC iterations.
        n_leapfrog: leapfrog steps per iteration.
        step_size: leapfrog step size.
        config: an :class:`HMCConfig` instead of the three numbers (also enables
            step-size adaptation).

    After :meth:`sample`, ``acceptance_rate`` and ``diagnostics`` describe the run.
    """

    def __init__(
        self,
        n_steps: int = 100,
        n_leapfrog: int = 10,
        step_size: float = 0.01,
        config: HMCConfig | None = None,
    ) -> None:
        self.config = config or HMCConfig(n_steps=n_steps, n_leapfrog=n_leapfrog, step_size=step_size)
        self.diagnostics: HMCDiagnostics | None = None

    @property
    def acceptance_rate(self) -> float | None:
        """Mean acceptance rate of the last run (None before any run)."""
        return None if self.diagnostics is None else self.diagnostics.acceptance_rate

    def _draw_momentum(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # N(0, I): the variance must match the kinetic energy 0.5 |v|^2.
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)

    def _initial_points(self, metric: CentroidDensity, n: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(metric.n_centroids, (n,), generator=generator, device=metric.device)
        return metric.centroids[index].clone()

    def _iteration(
        self,
        metric: CentroidDensity,
        z: torch.Tensor,
        log_p: torch.Tensor,
        grad: torch.Tensor,
        step_size: float,
        generator: torch.Generator,
        inner_dtype: torch.dtype | None,
    ) -> tuple[torch.Tensor, ...]:
        """One HMC iteration on every chain; returns the new state and per-chain acceptance."""
        v = self._draw_momentum(z, generator)
        h0 = -log_p + 0.5 * (v * v).sum(dim=1)
        z_new, v_new, log_p_new, grad_new = leapfrog(
            metric, z, v, grad, step_size, self.config.n_leapfrog, inner_dtype
        )
        h = -log_p_new + 0.5 * (v_new * v_new).sum(dim=1)
        # exp(min(0, H0 - H)) in log space; H = inf outside the domain gives 0.
        log_accept = torch.clamp(h0 - h, max=0.0).nan_to_num(nan=-math.inf)
        uniform = torch.rand(z.shape[0], generator=generator, device=z.device, dtype=z.dtype)
        accept = torch.log(uniform) < log_accept
        keep = accept[:, None]
        z = torch.where(keep, z_new, z)
        grad = torch.where(keep, grad_new, grad)
        log_p = torch.where(accept, log_p_new, log_p)
        outside = ~torch.isfinite(log_p_new)
        return z, log_p, grad, log_accept.exp(), outside

    def _initial_state(
        self, metric: CentroidDensity, n: int, generator: torch.Generator, init: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Starting points (random centroids or ``init``), their log-density and gradient."""
        if init is None:
            z = self._initial_points(metric, n, generator)
        else:
            if init.shape != (n, metric.dim):
                raise ValueError(f"init must have shape ({n}, {metric.dim}), got {tuple(init.shape)}")
            z = init.to(device=metric.device, dtype=metric.dtype).clone()
        log_p, grad = metric.log_density_and_grad(z)
        if not torch.isfinite(log_p).all():
            raise ValueError("some initial points lie outside the metric's domain")
        return z, log_p, grad

    @torch.no_grad()
    def sample(
        self,
        metric: CentroidDensity,
        n: int,
        seed: int = 0,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``n`` chains in one batch and return their final states.

        Args:
            metric: the target (a :class:`RiemannianMetric`, or the RHVAE's density); chains
                run on its device and dtype.
            n: number of chains (= samples).
            seed: seed of the initial points, momenta and accept draws.
            init: ``(n, d)`` starting points; default: random centroids.

        Returns:
            ``(n, d)`` latents.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        cfg = self.config
        base, metric = metric, (metric if cfg.alpha == 1.0 else TemperedDensity(metric, cfg.alpha))
        generator = torch.Generator(device=metric.device).manual_seed(seed)
        z, log_p, grad = self._initial_state(metric, n, generator, init)
        start = z
        inner_dtype = _inner_dtype(cfg.inner_gradient)
        step_size = cfg.step_size
        adapter = _DualAveraging(step_size, cfg.target_accept) if cfg.adapt_step_size else None
        trace, acceptance, outside = [], [], []
        bar = tqdm(total=cfg.n_warmup + cfg.n_steps, desc="HMC", disable=not cfg.progress, leave=False)
        for it in range(cfg.n_warmup + cfg.n_steps):
            z, log_p, grad, accept_prob, out = self._iteration(
                metric, z, log_p, grad, step_size, generator, inner_dtype
            )
            if it < cfg.n_warmup:
                if adapter is not None:
                    step_size = adapter.final if it == cfg.n_warmup - 1 else adapter.update(float(accept_prob.mean()))
            else:
                trace.append(log_p)
                acceptance.append(accept_prob.mean())
                outside.append(out.float().mean())
            bar.update(1)
            bar.set_postfix(accept=f"{float(accept_prob.mean()):.2f}", refresh=False)
        bar.close()
        self.diagnostics = self._diagnose(trace, acceptance, outside, step_size, n)
        if isinstance(base, RiemannianMetric):  # the floor is lambda's; the trace untempered
            self.diagnostics.location = locate_chains(
                base, z, start, torch.stack(trace) / cfg.alpha).to_dict()
        return z

    def _diagnose(self, trace, acceptance, outside, step_size: float, n: int) -> HMCDiagnostics:
        """Diagnostics of the kept iterations: per-iteration log-densities, acceptances, exits."""
        trace_np = torch.stack(trace).cpu().double().numpy()
        return HMCDiagnostics(
            acceptance_rate=float(torch.stack(acceptance).mean()),
            step_size=step_size,
            split_rhat=split_rhat(trace_np),
            ess=effective_sample_size(trace_np),
            n_chains=n,
            n_steps=self.config.n_steps,
            n_leapfrog=self.config.n_leapfrog,
            outside_domain_rate=float(torch.stack(outside).mean()),
            inner_gradient=self.config.inner_gradient,
        )


def leapfrog(
    metric: CentroidDensity,
    z: torch.Tensor,
    v: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    n_steps: int,
    inner_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps`` leapfrog steps of the Hamiltonian ``-log p(z) + 0.5 |v|^2``.

    Args:
        metric: the target's metric.
        z, v: ``(B, d)`` positions and momenta.
        grad: ``(B, d)`` gradient of the log target at ``z`` (reused, not recomputed).
        step_size: leapfrog step size.
        n_steps: number of leapfrog steps.
        inner_dtype: precision of the gradients between the first and the last
            half-step (None: the metric's exact evaluation).

    Returns:
        Final positions, momenta, log target and its gradient, each ``(B, d)`` or ``(B,)``.
    """
    v = v + 0.5 * step_size * grad
    for _ in range(n_steps - 1):
        z = z + step_size * v
        v = v + step_size * metric.grad_log_density(z, dtype=inner_dtype)
    z = z + step_size * v
    log_p, grad = metric.log_density_and_grad(z)  # the target is needed at the end only
    return z, v + 0.5 * step_size * grad, log_p, grad
