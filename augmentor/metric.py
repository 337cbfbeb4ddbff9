"""The Riemannian metric of a trained VAE's latent space (SPEC section 1, paper Eq. 7).

With centroids ``c_j`` (a subset of the training codes), their inverse posterior
variances ``s_j = exp(-log_var_j)`` and the weights
``omega_j(z) = exp(-sum_m s_jm (z_m - c_jm)^2 / rho^2)``, the metric is

    G(z) = sum_j diag(s_j) omega_j(z) + lambda I,

which is *diagonal* because every posterior covariance is. So ``G`` is never
built as a ``d x d`` matrix: with ``W`` the ``(B, k)`` matrix of weights and
``S`` the ``(k, d)`` matrix of inverse variances, its diagonal is
``g(z) = W S + lambda`` and ``log det G(z) = sum_m log g_m(z)``.

Target (paper Sec. 4.4): the Riemannian uniform law on a bounded set ``A``,
``p(z) ∝ sqrt(det G(z)) 1_A(z)``. Far from the codes ``g -> lambda``, so the
density tends to a constant and would not be normalisable on all of ``R^d``.
**Our choice of A:** the smallest axis-aligned box that holds every training
code and every centroid's bump of the metric out to ``domain_widths`` (default
3) bump widths: in dimension ``m`` the bump of centroid ``j`` has width
``rho * sigma_jm`` (``sigma_jm = exp(log_var_jm / 2)``), and at 3 widths its
weight is below ``exp(-9)``. So ``A`` holds all of the metric's structure and
little of the flat floor. ``log_density`` is ``-inf`` outside the box; the
gradient is the smooth one, and HMC simply rejects a trajectory that ends
outside, which keeps the chain exact for the restricted target.

Everything is a handful of ``(B, k) x (k, d)`` matrix products, evaluated in
chunks over centroids so memory stays bounded for large ``k``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from .config import Config

__all__ = ["MetricConfig", "RiemannianMetric", "select_centroids", "max_nearest_neighbour_distance"]

# Largest (B x chunk) working matrix, in elements: 2**24 float32 = 64 MiB.
DEFAULT_CHUNK_ELEMENTS = 2**24
# FasterPAM needs the full N x N dissimilarity matrix; beyond this many codes it
# runs on a random subset of this size (the medoids are still training codes).
MAX_KMEDOIDS_POINTS = 10_000


@dataclasses.dataclass
class MetricConfig(Config):
    """How the metric is built from a trained model's codes.

    Attributes:
        n_centroids: number of centroids chosen by k-medoids; None uses every code.
        lam: the floor ``lambda`` added to the metric (paper: 1e-2 typical).
        rho: bandwidth; None applies the paper's rule (max nearest-centroid distance).
        domain_widths: the bounded domain holds every code and every centroid's
            bump out to this many bump widths ``rho * sigma`` per dimension.
        seed: seed of the k-medoids initialisation.
    """

    n_centroids: int | None = None
    lam: float = 1e-2
    rho: float | None = None
    domain_widths: float = 3.0
    seed: int = 0

    def validate(self) -> None:
        if self.n_centroids is not None and self.n_centroids < 2:
            self._fail("n_centroids", f"must be None or >= 2, got {self.n_centroids}")
        if not self.lam > 0:
            self._fail("lam", f"must be > 0, got {self.lam}")
        if self.rho is not None and not self.rho > 0:
            self._fail("rho", f"must be None or > 0, got {self.rho}")
        if not self.domain_widths >= 0:
            self._fail("domain_widths", f"must be >= 0, got {self.domain_widths}")


def _check_codes(mu: torch.Tensor, log_var: torch.Tensor) -> None:
    if not isinstance(mu, torch.Tensor) or not isinstance(log_var, torch.Tensor):
        raise TypeError("mu and log_var must be torch tensors of shape (N, d)")
    if mu.ndim != 2 or mu.shape != log_var.shape:
        raise ValueError(
            f"mu and log_var must both have shape (N, d); got {tuple(mu.shape)} and {tuple(log_var.shape)}"
        )
    if mu.shape[0] < 2:
        raise ValueError(f"the metric needs at least 2 codes, got {mu.shape[0]}")
    if not (torch.isfinite(mu).all() and torch.isfinite(log_var).all()):
        raise ValueError("mu and log_var must be finite (found NaN or Inf)")


def select_centroids(mu: torch.Tensor, n_centroids: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of the centroids among the codes: all of them, or k-medoids (FasterPAM).

    Args:
        mu: ``(N, d)`` codes.
        n_centroids: k, or None for every code.
        seed: seed of FasterPAM's random initialisation and of the subset drawn
            when ``N > MAX_KMEDOIDS_POINTS``.

    Returns:
        ``(k,)`` int64 indices into ``mu``.
    """
    n = mu.shape[0]
    if n_centroids is None or n_centroids == n:
        return torch.arange(n)
    if n_centroids > n:
        raise ValueError(f"n_centroids={n_centroids} is larger than the number of codes ({n})")
    import kmedoids

    rng = np.random.default_rng(seed)
    pool = np.arange(n) if n <= MAX_KMEDOIDS_POINTS else np.sort(rng.choice(n, MAX_KMEDOIDS_POINTS, replace=False))
    points = mu[torch.as_tensor(pool, device=mu.device)].detach().cpu().double()  # MPS has no float64
    dissimilarity = torch.cdist(points, points).numpy()
    result = kmedoids.fasterpam(dissimilarity, n_centroids, random_state=seed, n_cpu=1)
    return torch.as_tensor(pool[np.sort(np.asarray(result.medoids))], dtype=torch.int64)


def max_nearest_neighbour_distance(points: torch.Tensor, chunk_rows: int = 1024) -> float:
    """``max_j min_{l != j} ||c_j - c_l||`` (the paper's rho rule), in row chunks."""
    k = points.shape[0]
    nearest = torch.empty(k, dtype=points.dtype, device=points.device)
    for start in range(0, k, chunk_rows):
        block = torch.cdist(points[start : start + chunk_rows], points)
        rows = torch.arange(block.shape[0], device=points.device)
        block[rows, rows + start] = math.inf  # exclude each point itself
        nearest[start : start + chunk_rows] = block.min(dim=1).values
    return float(nearest.max())


def _add_product(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``out += a @ b``, in place when the dtypes agree (no temporary)."""
    if a.dtype == out.dtype:
        out.addmm_(a, b)
    else:
        out += a @ b


class RiemannianMetric:
    """Diagonal Riemannian metric of Eq. 7 and the log of the Riemannian-uniform density.

    Args:
        centroids: ``(k, d)`` centroid codes ``c_j``.
        centroid_log_var: ``(k, d)`` posterior log-variances at the centroids.
        lam: floor ``lambda``.
        rho: bandwidth.
        lower, upper: ``(d,)`` corners of the bounded domain ``A``.
        chunk_elements: largest ``(B, chunk)`` working matrix, in elements.
    """

    def __init__(
        self,
        centroids: torch.Tensor,
        centroid_log_var: torch.Tensor,
        lam: float,
        rho: float,
        lower: torch.Tensor,
        upper: torch.Tensor,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> None:
        _check_codes(centroids, centroid_log_var)
        if not lam > 0 or not rho > 0:
            raise ValueError(f"lam and rho must be > 0, got lam={lam}, rho={rho}")
        self.centroids = centroids
        self.centroid_log_var = centroid_log_var
        self.lam = float(lam)
        self.rho = float(rho)
        self.lower = lower.to(centroids)
        self.upper = upper.to(centroids)
        self.chunk_elements = int(chunk_elements)
        self._precompute()

    def _precompute(self) -> None:
        # Fold every constant of the formulas into (k, .) matrices so each
        # evaluation is four matrix products plus one exp2:
        #   -log2(e) dist / rho^2 = [z^2, z, 1] @ Q^T,
        #   Q = -log2(e) [S, -2 S*C, rowsum(S*C*C)] / rho^2
        #   (base 2 because exp2 is about three times faster than exp on CPUs, and
        #   as accurate; the constant column avoids broadcasting a bias into the
        #   (B, k) output), and R = [S, S*C] / rho^2 for the gradient.
        s = torch.exp(-self.centroid_log_var)
        sc = s * self.centroids
        inv_rho2 = 1.0 / self.rho**2
        offset = (sc * self.centroids).sum(dim=1, keepdim=True)
        q = torch.cat([s, -2.0 * sc, offset], dim=1) * (-math.log2(math.e) * inv_rho2)
        r = torch.cat([s, sc], dim=1) * inv_rho2
        self._factors_by_dtype = {self.dtype: (q.contiguous(), s.contiguous(), r.contiguous())}

    @classmethod
    def from_codes(
        cls,
        mu: torch.Tensor,
        log_var: torch.Tensor,
        n_centroids: int | None = None,
        lam: float = 1e-2,
        rho: float | None = None,
        seed: int = 0,
        domain_widths: float = 3.0,
    ) -> "RiemannianMetric":
        """Build the metric from a trained model's codes (paper Alg. 1).

        Args:
            mu: ``(N, d)`` posterior means of the training data.
            log_var: ``(N, d)`` posterior log-variances.
            n_centroids: k centroids chosen by k-medoids; None uses every code.
            lam: floor ``lambda``.
            rho: bandwidth; None uses ``max_j min_{l != j} ||c_j - c_l||``.
            seed: k-medoids seed.
            domain_widths: extent of the domain ``A`` in bump widths (see module doc).
        """
        _check_codes(mu, log_var)
        MetricConfig(n_centroids=n_centroids, lam=lam, rho=rho, domain_widths=domain_widths, seed=seed)
        mu, log_var = mu.detach(), log_var.detach()
        index = select_centroids(mu, n_centroids, seed).to(mu.device)
        centroids, centroid_log_var = mu[index], log_var[index]
        if rho is None:
            rho = max_nearest_neighbour_distance(centroids)
            if rho == 0.0:
                raise ValueError("all centroids coincide: rho would be 0; pass rho explicitly")
        reach = domain_widths * rho * torch.exp(0.5 * centroid_log_var)
        lower = torch.minimum(mu.min(dim=0).values, (centroids - reach).min(dim=0).values)
        upper = torch.maximum(mu.max(dim=0).values, (centroids + reach).max(dim=0).values)
        return cls(centroids, centroid_log_var, lam, rho, lower, upper)

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @property
    def n_centroids(self) -> int:
        return self.centroids.shape[0]

    @property
    def device(self) -> torch.device:
        return self.centroids.device

    @property
    def dtype(self) -> torch.dtype:
        return self.centroids.dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "RiemannianMetric":
        """A copy on another device and/or dtype."""
        move = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return RiemannianMetric(
            move(self.centroids), move(self.centroid_log_var), self.lam, self.rho,
            move(self.lower), move(self.upper), self.chunk_elements,
        )

    def _check_points(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (B, {self.dim}), got {tuple(z.shape)}")
        return z.to(device=self.device, dtype=self.dtype)

    def _chunks(self, batch: int) -> list[slice]:
        size = max(1, self.chunk_elements // max(batch, 1))
        return [slice(a, min(a + size, self.n_centroids)) for a in range(0, self.n_centroids, size)]

    @staticmethod
    def _weights(zz: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``(B, chunk)`` weights ``omega_j(z)`` for the centroids in ``q``; ``zz = [z^2, z, 1]``."""
        exponent = zz @ q.T
        # Mathematically <= 0; rounding can push it just above, which would give weights > 1.
        return exponent.clamp_(max=0.0).exp2_()

    def in_domain(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: whether each point lies in the bounded domain ``A``."""
        z = self._check_points(z)
        return ((z >= self.lower) & (z <= self.upper)).all(dim=1)

    def metric_diagonal(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` diagonal ``g(z)`` of ``G(z)``."""
        z = self._check_points(z)
        q, s, _ = self._factors(None)
        zz = self._augmented(z)
        g = torch.full_like(z, self.lam)
        for part in self._chunks(z.shape[0]):
            g.addmm_(self._weights(zz, q[part]), s[part])
        return g

    def _restrict(self, log_p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.where(self.in_domain(z), log_p, torch.full_like(log_p, -math.inf))

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` unnormalised log target ``0.5 log det G(z)``, ``-inf`` outside ``A``."""
        z = self._check_points(z)
        return self._restrict(0.5 * self.metric_diagonal(z).log().sum(dim=1), z)

    def log_density_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log target ``(B,)`` and its gradient ``(B, d)`` in one pass.

        The gradient is the closed form of SPEC section 1,
        ``-(1/rho^2) (z * (A S) - A (S*C))`` with ``A = W * ((1/g) S^T)``; it is
        the smooth gradient, also outside the domain.
        """
        z = self._check_points(z)
        g, grad = self._diagonal_and_grad(z)
        return self._restrict(0.5 * g.log().sum(dim=1), z), grad

    def _factors(self, dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``Q``, ``S`` and ``R`` in ``dtype`` (default: the metric's), cast once and cached."""
        dtype = dtype or self.dtype
        if dtype not in self._factors_by_dtype:
            self._factors_by_dtype[dtype] = tuple(t.to(dtype) for t in self._factors_by_dtype[self.dtype])
        return self._factors_by_dtype[dtype]

    @staticmethod
    def _augmented(z: torch.Tensor) -> torch.Tensor:
        """``(B, 2d + 1)`` rows ``[z^2, z, 1]``, the left factor of the exponent product."""
        return torch.cat([z * z, z, torch.ones_like(z[:, :1])], dim=1)

    def _diagonal_and_grad(
        self, z: torch.Tensor, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Diagonal ``g(z)`` and the gradient of ``0.5 log det G(z)``, for checked ``z``.

        ``g`` rather than the log-volume, so that the inner HMC steps, which need
        the gradient only, skip the log.

        With ``dtype`` (e.g. bfloat16) every product runs in that precision with
        float32 accumulation; ``g`` and the gradient are accumulated in the
        metric's dtype.
        """
        q, s, r = self._factors(dtype)
        zz = self._augmented(z).to(q.dtype)
        parts = self._chunks(z.shape[0])
        # With one chunk the weights are kept between the two passes; with several
        # they are recomputed, which bounds memory at the price of a second exp2.
        kept = self._weights(zz, q[parts[0]]) if len(parts) == 1 else None
        g = torch.full_like(z, self.lam)
        for part in parts:
            _add_product(g, kept if kept is not None else self._weights(zz, q[part]), s[part])
        inv_g = g.reciprocal().to(s.dtype)
        p = torch.zeros(z.shape[0], 2 * self.dim, dtype=z.dtype, device=z.device)
        for part in parts:
            w = kept if kept is not None else self._weights(zz, q[part])
            _add_product(p, w.mul_(inv_g @ s[part].T), r[part])
        d = self.dim
        return g, p[:, d:] - z * p[:, :d]

    def grad_log_density(self, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, d)`` gradient of ``0.5 log det G(z)`` (closed form, also outside the domain).

        Args:
            z: ``(B, d)`` points.
            dtype: optional lower precision (``torch.bfloat16``) for every matrix
                product (float32 accumulation): about twice as fast where the
                hardware multiplies bfloat16 natively (CPUs with AVX-512 BF16 or
                AMX, recent GPUs), relative error ~1e-2 at most. HMC may use it
                for the inner leapfrog steps and stays exact (see
                :class:`~augmentor.sampling.HMCConfig`).
        """
        return self._diagonal_and_grad(self._check_points(z), dtype)[1]

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (loadable with ``weights_only=True``)."""
        return {
            "centroids": self.centroids.cpu(),
            "centroid_log_var": self.centroid_log_var.cpu(),
            "lam": self.lam,
            "rho": self.rho,
            "lower": self.lower.cpu(),
            "upper": self.upper.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "RiemannianMetric":
        keys = {"centroids", "centroid_log_var", "lam", "rho", "lower", "upper"}
        missing = keys - set(state)
        if missing:
            raise ValueError(f"metric state is missing {sorted(missing)}")
        return cls(**{k: state[k] for k in keys})
