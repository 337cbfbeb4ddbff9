"""Latent samplers: N(0, I) prior, Gaussian mixture on the codes, and Riemannian HMC.

All samplers share pythae's ``fit`` / ``sample`` interface: ``fit(mu, log_var)``
on a trained model's training codes, ``sample(n, seed)`` returning ``(n, d)``
latents, and ``state_dict`` / ``from_state_dict`` holding tensors and plain
values only, so a fitted sampler saves and loads without pickles.

:class:`HMCSampler` is Algorithm 2 of the paper with the corrections of SPEC
section 1: momentum ``v ~ N(0, I)`` matching the kinetic energy ``0.5 |v|^2``,
acceptance ``exp(min(0, H0 - H))`` computed in log space, the gradient at the
end of each leapfrog step reused for the next, and every chain advanced in one
batch on the metric's device.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config
from .metric import MetricConfig, RiemannianMetric

__all__ = [
    "HMCConfig",
    "HMCDiagnostics",
    "HMCSampler",
    "LatentSampler",
    "NormalSampler",
    "GaussianMixtureSampler",
    "RiemannianSampler",
    "SAMPLERS",
    "effective_sample_size",
    "native_bfloat16",
    "split_rhat",
]


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware.

    CPUs with AVX-512 BF16 or AMX tiles, CUDA GPUs of compute capability 8.0
    (Ampere) or newer. Elsewhere bfloat16 products are emulated and slower than
    float32, so ``inner_gradient="auto"`` keeps exact gradients there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so probe defensively
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def _inner_dtype(inner_gradient: str, device: torch.device) -> torch.dtype | None:
    """The dtype of the inner leapfrog gradients (None: the metric's own)."""
    if inner_gradient == "bfloat16" or (inner_gradient == "auto" and native_bfloat16(device)):
        return torch.bfloat16
    return None


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
            ``"exact"`` (the metric's dtype), ``"bfloat16"`` (every product in
            bfloat16 with float32 accumulation, about 1.6x faster where the
            hardware multiplies bfloat16 natively, much slower where it does
            not), or ``"auto"``: bfloat16 on such hardware (see
            :func:`native_bfloat16`), exact elsewhere. The chain stays exact
            either way: the first and last half-steps and the acceptance use the
            exact target, and any deterministic inner gradient keeps the
            leapfrog map reversible and volume-preserving; a less accurate
            gradient can only lower acceptance.
        progress: show a progress bar.
    """

    n_steps: int = 100
    n_leapfrog: int = 10
    step_size: float = 0.01
    adapt_step_size: bool = False
    n_warmup: int = 0
    target_accept: float = 0.65
    inner_gradient: Literal["auto", "exact", "bfloat16"] = "auto"
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
            (``"exact"`` or ``"bfloat16"``, ``"auto"`` resolved).
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

    def _initial_points(self, metric: RiemannianMetric, n: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(metric.n_centroids, (n,), generator=generator, device=metric.device)
        return metric.centroids[index].clone()

    def _iteration(
        self,
        metric: RiemannianMetric,
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
        z_new, v_new, grad_new = z, v + 0.5 * step_size * grad, grad
        for _ in range(self.config.n_leapfrog - 1):
            z_new = z_new + step_size * v_new
            v_new = v_new + step_size * metric.grad_log_density(z_new, dtype=inner_dtype)
        z_new = z_new + step_size * v_new
        log_p_new, grad_new = metric.log_density_and_grad(z_new)  # the target is needed at the end only
        v_new = v_new + 0.5 * step_size * grad_new
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

    @torch.no_grad()
    def sample(
        self,
        metric: RiemannianMetric,
        n: int,
        seed: int = 0,
        init: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``n`` chains in one batch and return their final states.

        Args:
            metric: the target's metric; chains run on its device and dtype.
            n: number of chains (= samples).
            seed: seed of the initial points, momenta and accept draws.
            init: ``(n, d)`` starting points; default: random centroids.

        Returns:
            ``(n, d)`` latents.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        cfg = self.config
        generator = torch.Generator(device=metric.device).manual_seed(seed)
        if init is None:
            z = self._initial_points(metric, n, generator)
        else:
            if init.shape != (n, metric.dim):
                raise ValueError(f"init must have shape ({n}, {metric.dim}), got {tuple(init.shape)}")
            z = init.to(device=metric.device, dtype=metric.dtype).clone()
        log_p, grad = metric.log_density_and_grad(z)
        if not torch.isfinite(log_p).all():
            raise ValueError("some initial points lie outside the metric's domain")

        inner_dtype = _inner_dtype(cfg.inner_gradient, metric.device)
        step_size = cfg.step_size
        adapter = _DualAveraging(step_size, cfg.target_accept) if cfg.adapt_step_size else None
        n_warmup = cfg.n_warmup
        trace, acceptance, outside = [], [], []
        bar = tqdm(total=n_warmup + cfg.n_steps, desc="HMC", disable=not cfg.progress, leave=False)
        for it in range(n_warmup + cfg.n_steps):
            warm = it < n_warmup
            z, log_p, grad, accept_prob, out = self._iteration(
                metric, z, log_p, grad, step_size, generator, inner_dtype
            )
            if warm and adapter is not None:
                step_size = adapter.update(float(accept_prob.mean()))
                if it == n_warmup - 1:
                    step_size = adapter.final
            elif not warm:
                trace.append(log_p)
                acceptance.append(accept_prob.mean())
                outside.append(out.float().mean())
            bar.update(1)
            bar.set_postfix(accept=f"{float(accept_prob.mean()):.2f}", refresh=False)
        bar.close()

        trace_np = torch.stack(trace).cpu().double().numpy()
        self.diagnostics = HMCDiagnostics(
            acceptance_rate=float(torch.stack(acceptance).mean()),
            step_size=step_size,
            split_rhat=split_rhat(trace_np),
            ess=effective_sample_size(trace_np),
            n_chains=n,
            n_steps=cfg.n_steps,
            n_leapfrog=cfg.n_leapfrog,
            outside_domain_rate=float(torch.stack(outside).mean()),
            inner_gradient="exact" if inner_dtype is None else "bfloat16",
        )
        return z


class LatentSampler(ABC):
    """Draws latents for a trained VAE: ``fit`` on its codes, then ``sample``."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "LatentSampler":
        """Fit on the ``(N, d)`` posterior means and log-variances of the training data."""

    @abstractmethod
    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``(n, d)`` latents, reproducible for a given seed."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Fitted state: tensors and plain values only."""

    @classmethod
    @abstractmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "LatentSampler":
        """Rebuild a fitted sampler from :meth:`state_dict`."""

    def _require_fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(mu, log_var) first")


class NormalSampler(LatentSampler):
    """The prior N(0, I)."""

    name = "prior"

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "NormalSampler":
        self.dim = mu.shape[1]
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        self._require_fitted("dim")
        return torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed))

    def state_dict(self) -> dict[str, Any]:
        return {"dim": self.dim}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "NormalSampler":
        return cls(dim=int(state["dim"]))


class GaussianMixtureSampler(LatentSampler):
    """A full-covariance Gaussian mixture fitted on the means ``mu_i`` (Ghosh et al., 2020).

    Args:
        n_components: mixture size (paper: 10); reduced to the number of codes
            when a class has fewer.
        seed: seed of the EM initialisation.
    """

    name = "gmm"

    def __init__(self, n_components: int = 10, seed: int = 0) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.seed = seed
        self.weights: torch.Tensor | None = None
        self.means: torch.Tensor | None = None
        self.cholesky: torch.Tensor | None = None

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "GaussianMixtureSampler":
        from sklearn.mixture import GaussianMixture

        codes = mu.detach().cpu().double().numpy()
        k = min(self.n_components, codes.shape[0])
        gmm = GaussianMixture(k, covariance_type="full", random_state=self.seed, reg_covar=1e-6).fit(codes)
        self.weights = torch.as_tensor(gmm.weights_, dtype=torch.float64)
        self.means = torch.as_tensor(gmm.means_, dtype=torch.float64)
        self.cholesky = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, dtype=torch.float64))
        return self

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        self._require_fitted("means")
        generator = torch.Generator().manual_seed(seed)
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        z = self.means[component] + (self.cholesky[component] @ noise[:, :, None])[:, :, 0]
        return z.float()

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("means")
        return {
            "n_components": self.n_components,
            "seed": self.seed,
            "weights": self.weights,
            "means": self.means,
            "cholesky": self.cholesky,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "GaussianMixtureSampler":
        sampler = cls(int(state["n_components"]), int(state["seed"]))
        sampler.weights, sampler.means, sampler.cholesky = state["weights"], state["means"], state["cholesky"]
        return sampler


class RiemannianSampler(LatentSampler):
    """The Riemannian uniform law ``sqrt(det G(z))`` on the domain, drawn by batched HMC.

    Args:
        metric_config: how to build the metric from the codes.
        hmc_config: the chains' settings.
        device: where the chains run (``None``: where the codes are).
    """

    name = "riemannian"

    def __init__(
        self,
        metric_config: MetricConfig | None = None,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.metric_config = metric_config or MetricConfig()
        self.hmc = HMCSampler(config=hmc_config or HMCConfig())
        self.device = device
        self.metric: RiemannianMetric | None = None

    @property
    def diagnostics(self) -> HMCDiagnostics | None:
        return self.hmc.diagnostics

    def fit(self, mu: torch.Tensor, log_var: torch.Tensor) -> "RiemannianSampler":
        cfg = self.metric_config
        self.metric = RiemannianMetric.from_codes(
            mu.detach().float(), log_var.detach().float(),
            n_centroids=cfg.n_centroids, lam=cfg.lam, rho=cfg.rho, seed=cfg.seed,
            domain_widths=cfg.domain_widths,
        )
        return self

    def sample(
        self,
        n: int,
        seed: int = 0,
        hmc_config: HMCConfig | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``(n, d)`` latents on the CPU.

        ``hmc_config`` and ``device`` override the chains' settings and device for
        this call only: the sampler's own settings are unchanged, and
        ``diagnostics`` describes this call's run.
        """
        self._require_fitted("metric")
        hmc = self.hmc if hmc_config is None else HMCSampler(config=hmc_config)
        device = self.device if device is None else device
        metric = self.metric if device is None else self.metric.to(device=device)
        z = hmc.sample(metric, n, seed=seed).cpu()
        self.hmc.diagnostics = hmc.diagnostics  # reported by ``diagnostics``, whatever settings ran
        return z

    def state_dict(self) -> dict[str, Any]:
        self._require_fitted("metric")
        return {
            "metric_config": self.metric_config.to_dict(),
            "hmc_config": self.hmc.config.to_dict(),
            "metric": self.metric.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "RiemannianSampler":
        sampler = cls(MetricConfig.from_dict(state["metric_config"]), HMCConfig.from_dict(state["hmc_config"]))
        sampler.metric = RiemannianMetric.from_state_dict(state["metric"])
        return sampler


SAMPLERS: dict[str, type[LatentSampler]] = {
    cls.name: cls for cls in (NormalSampler, GaussianMixtureSampler, RiemannianSampler)
}
