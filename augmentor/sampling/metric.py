"""The Riemannian metric of a trained VAE's latent space (paper Eq. 7).

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

from augmentor.utils.config import Config
from .hardware import linear, native_bfloat16

__all__ = [
    "CentroidDensity",
    "MetricConfig",
    "RiemannianMetric",
    "max_nearest_neighbour_distance",
    "reference_log_density_and_grad",
    "select_centroids",
]

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


class CentroidDensity:
    """A log-density on the latent space built around centroids ``(K, d)``: what
    :class:`~augmentor.hmc.HMCSampler` samples (this metric's Riemannian uniform,
    the RHVAE's learned-metric density). Subclasses set ``centroids`` (chains may
    start at them) and define ``log_density_and_grad`` and ``grad_log_density``;
    the shape, device and dtype follow from the centroids."""

    centroids: torch.Tensor

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

    def reset_adaptation(self) -> None:
        """Forget whatever earlier evaluations tuned, so that a run's numbers do not
        depend on the runs before it (nothing to forget here)."""


class RiemannianMetric(CentroidDensity):
    """Diagonal Riemannian metric of Eq. 7 and the log of the Riemannian-uniform density.

    **Accuracy.** Expanding ``s (z - c)^2`` into matrix products cancels badly when
    the posterior variances are small (large ``s``) and the codes lie far from the
    origin: the three expanded terms are huge and nearly equal. Two measures keep
    the log-density and the gradient within 1e-3 of float64 wherever the codes
    lie (``benchmarks/hmc_regimes.py``):

    * every computation runs in coordinates centred on the centroids' mean, which
      removes any common shift of the codes;
    * where the bumps are narrow (small variances), each point's weights come from
      a few nearby centroids. The *local* evaluation then picks, with one cheap
      exponent product, every centroid whose weight can exceed ``2**-60`` times
      the largest one (a guaranteed margin covers the product's rounding) and
      computes those weights and the gradient exactly, from the differences
      ``z - c_j``. The centroids left out change ``g`` by less than ``2**-60``
      relative per centroid, far below float32 rounding, so the target is the
      same ``sqrt(det G)``. Where the bumps are wide (large variances), every
      centroid counts and the expanded products are accurate: the *dense*
      evaluation runs.

    Args:
        centroids: ``(k, d)`` centroid codes ``c_j``.
        centroid_log_var: ``(k, d)`` posterior log-variances at the centroids.
        lam: floor ``lambda``.
        rho: bandwidth.
        lower: ``(d,)`` lower corner of the bounded domain ``A``.
        upper: ``(d,)`` upper corner of the bounded domain ``A``.
        chunk_elements: largest ``(B, chunk)`` working matrix, in elements.
    """

    # A centroid is evaluated exactly when its exponent (log2 of its weight) can lie
    # within this many units of the largest one, or its weight times its largest
    # inverse variance can exceed lambda * 2**-NEGLIGIBLE_LOG2.
    NEGLIGIBLE_LOG2 = 60.0
    # Beyond this many such centroids per point the dense evaluation is cheaper.
    MAX_LOCAL_CENTROIDS = 48

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
        self.local = self._prefers_local()
        self._probed_width = self._width

    def _precompute(self) -> None:
        # Centred coordinates: a common shift of the codes costs no accuracy.
        self.origin = self.centroids.mean(dim=0)
        c = self.centroids - self.origin
        s = torch.exp(-self.centroid_log_var)
        sc = s * c
        inv_rho2 = 1.0 / self.rho**2
        # Fold every constant into (k, .) matrices so a dense evaluation is four
        # matrix products plus one exp2:
        #   -log2(e) dist / rho^2 = [z^2, z, 1] @ Q^T,
        #   Q = -log2(e) [S, -2 S*C, rowsum(S*C*C)] / rho^2
        #   (base 2 because exp2 is about twice as fast as exp on CPUs, and as
        #   accurate; the constant column avoids broadcasting a bias into the
        #   (B, k) output), and R = [S, S*C] / rho^2 for the gradient.
        offset = (sc * c).sum(dim=1, keepdim=True)
        q = torch.cat([s, -2.0 * sc, offset], dim=1) * (-math.log2(math.e) * inv_rho2)
        r = torch.cat([s, sc], dim=1) * inv_rho2
        self._centred = c.contiguous()
        self._inv_var = s.contiguous()
        # Stored as the (N, K) right-hand factors of `linear` (x @ w.T): Q, S^T, S, R^T.
        self._factors_by_dtype = {self.dtype: (q.contiguous(), s.T.contiguous(), s.contiguous(), r.T.contiguous())}
        # Per-dimension bounds of |Q|'s three blocks over the centroids: they bound the
        # rounding error of the exponent product (see _candidates).
        d = self.dim
        self._q_abs_max = (q[:, :d].abs().max(dim=0).values, q[:, d : 2 * d].abs().max(dim=0).values,
                           q[:, 2 * d].abs().max())
        # Exponent below which a centroid's weight times its largest s is < lambda 2^-60.
        self._floor_log2 = math.log2(self.lam) - s.max(dim=1).values.log2() - self.NEGLIGIBLE_LOG2
        self._floor_min = float(self._floor_log2.min())
        self._dense_is_accurate = True  # until _prefers_local measures it
        # Candidates searched per point; grows when a search finds more (see _candidates).
        self._width = 1

    def _prefers_local(self) -> bool:
        """Whether to take the local evaluation: few centroids count near the codes, or dense is inexact."""
        points = self._probe_points()
        probe = points - self.origin
        exact = reference_log_density_and_grad(self, points)[0]
        dense = 0.5 * self._dense_diagonal_and_grad(probe, None)[0].log().sum(dim=1)
        error = (dense.double() - exact).abs().max()
        # A tenth of the accuracy goal (1e-3), as a margin for points the probe missed.
        self._dense_is_accurate = bool(error <= 1e-4)
        index = self._candidates(probe, self._selection_dtype())
        few = index is not None and index.shape[1] <= self.MAX_LOCAL_CENTROIDS // 2
        return few or not self._dense_is_accurate

    def reset_adaptation(self) -> None:
        """Return the candidate search to the width the probe found: a wider one leaves the
        selected centroids unchanged but pads the products, which can change their last bits."""
        self._width = self._probed_width

    def _probe_points(self) -> torch.Tensor:
        """Up to 64 fixed points within half a bump width of centroids, where the chains run.

        As many as keep the float64 reference's ``(n, k, d)`` tensors within ``chunk_elements``.
        """
        # The reference makes about eight float64 (n, k, d) temporaries.
        n = max(1, min(64, self.chunk_elements // (8 * self.n_centroids * self.dim)))
        g = torch.Generator(device=self.device).manual_seed(0)
        j = torch.randint(self.n_centroids, (n,), generator=g, device=self.device)
        width = self.rho * torch.exp(0.5 * self.centroid_log_var[j])
        noise = torch.randn(n, self.dim, generator=g, device=self.device, dtype=self.dtype)
        return self.centroids[j] + 0.5 * width * noise

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
    def _exponents(zz: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``(B, chunk)`` exponents ``log2 omega_j(z)`` for the centroids in ``q``; ``zz = [z^2, z, 1]``."""
        return linear(zz, q)

    @classmethod
    def _weights(cls, zz: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``(B, chunk)`` weights ``omega_j(z)`` for the centroids in ``q``."""
        # Mathematically <= 0; rounding can push it just above, which would give weights > 1.
        return cls._exponents(zz, q).clamp_(max=0.0).exp2_()

    def in_domain(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: whether each point lies in the bounded domain ``A``."""
        z = self._check_points(z)
        return ((z >= self.lower) & (z <= self.upper)).all(dim=1)

    def metric_diagonal(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` diagonal ``g(z)`` of ``G(z)``."""
        return self._diagonal_and_grad(self._check_points(z), with_grad=False)[0]

    def _restrict(self, log_p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.where(self.in_domain(z), log_p, torch.full_like(log_p, -math.inf))

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``(B,)`` unnormalised log target ``0.5 log det G(z)``, ``-inf`` outside ``A``."""
        z = self._check_points(z)
        return self._restrict(0.5 * self.metric_diagonal(z).log().sum(dim=1), z)

    def log_density_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log target ``(B,)`` and its gradient ``(B, d)`` in one pass.

        The gradient is the closed form of ``0.5 log det G(z)``,
        ``-(1/rho^2) sum_j A_j s_j (z - c_j)`` with ``A = W * ((1/g) S^T)``; it is
        the smooth gradient, also outside the domain.
        """
        z = self._check_points(z)
        g, grad = self._diagonal_and_grad(z)
        return self._restrict(0.5 * g.log().sum(dim=1), z), grad

    def _factors(self, dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
        """``Q``, ``S^T``, ``S`` and ``R^T`` in ``dtype`` (default: the metric's), cast once and cached."""
        dtype = dtype or self.dtype
        if dtype not in self._factors_by_dtype:
            self._factors_by_dtype[dtype] = tuple(t.to(dtype) for t in self._factors_by_dtype[self.dtype])
        return self._factors_by_dtype[dtype]

    @staticmethod
    def _augmented(z: torch.Tensor) -> torch.Tensor:
        """``(B, 2d + 1)`` rows ``[z^2, z, 1]``, the left factor of the exponent product."""
        return torch.cat([z * z, z, torch.ones_like(z[:, :1])], dim=1)

    def _selection_dtype(self) -> torch.dtype:
        # The candidate search only needs a bound, so it runs in bfloat16 where the
        # hardware multiplies it natively; the margin below covers its rounding.
        return torch.bfloat16 if native_bfloat16(self.device) else self.dtype

    def _candidates(self, zc: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
        """``(B, m)`` indices of every centroid whose weight can matter at centred ``zc``.

        A centroid is left out only when its exponent is provably more than
        ``NEGLIGIBLE_LOG2`` below the largest one, or below the floor where its
        term is ``< lambda 2^-60``. The exponent product runs in ``dtype``; its
        rounding error is at most ``u * sum |terms|`` with ``u = 2^-8`` for
        bfloat16 (inputs and output rounded) and ``2^-20`` for float32, and
        ``sum |terms|`` is bounded per point by the per-dimension maxima of
        ``|Q|``. The ``m + 1`` largest exponents of each point are found; if the
        ``(m + 1)``-th can still matter, ``m`` doubles. Entries of ``-1`` pad rows
        with fewer candidates. Returns None when some point has more than
        :meth:`_local_limit` candidates (the dense evaluation is then cheaper).
        """
        q = self._factors(dtype)[0]
        unit = 2.0**-6 if dtype == torch.bfloat16 else 2.0**-18  # 4x the bounds above, for safety
        qs, qz, qo = self._q_abs_max
        margin = unit * ((zc * zc) @ qs + zc.abs() @ qz + qo)  # (B,)
        zz = self._augmented(zc).to(dtype)
        parts = self._chunks(zc.shape[0])
        kept = self._exponents(zz, q) if len(parts) == 1 else None
        width, limit = self._width, self._local_limit(zc.shape[0])
        while width <= limit:
            values, index = self._largest_exponents(zz, q, parts, kept, width + 1)
            # Every centroid below `threshold` is negligible (see the docstring).
            threshold = torch.maximum(values[:, 0] - self.NEGLIGIBLE_LOG2 - 2 * margin, self._floor_min - margin)
            if values.shape[1] <= width or not (values[:, width] >= threshold).any():
                self._width = width
                values, index = values[:, :width], index[:, :width]
                negligible = (values < threshold[:, None]) | (values < self._floor_log2[index] - margin[:, None])
                return index.masked_fill(negligible, -1)
            width = min(2 * width, limit) if width < limit else limit + 1
        return None

    def _local_limit(self, batch: int) -> int:
        """Most candidates per point for the local evaluation.

        ``MAX_LOCAL_CENTROIDS`` where the dense evaluation is accurate; where it is
        not (small variances and crowded centroids), as many as fit in one working
        matrix of ``chunk_elements``, so that dense runs only when memory demands it.
        """
        if self._dense_is_accurate:
            return self.MAX_LOCAL_CENTROIDS
        return max(self.MAX_LOCAL_CENTROIDS, self.chunk_elements // max(1, batch * self.dim))

    def _largest_exponents(
        self, zz: torch.Tensor, q: torch.Tensor, parts: list[slice], kept: torch.Tensor | None, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``m`` largest exponents of each row and their centroid indices, over all chunks."""
        # topk in the product's dtype: converting the (B, k) matrix would cost more.
        if kept is not None:
            top = kept.topk(min(m, kept.shape[1]), dim=1)
            return top.values.float(), top.indices
        values, index = [], []
        for part in parts:
            top = self._exponents(zz, q[part]).topk(min(m, part.stop - part.start), dim=1)
            values.append(top.values.float())
            index.append(top.indices + part.start)
        values, index = torch.cat(values, dim=1), torch.cat(index, dim=1)
        best = values.topk(min(m, values.shape[1]), dim=1)
        return best.values, index.gather(1, best.indices)

    def _local_diagonal_and_grad(self, zc: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``g`` and the gradient from the centroids in ``index`` only, exactly, from differences."""
        valid = index >= 0
        safe = index.clamp(min=0)
        diff = zc.unsqueeze(1) - self._centred[safe]  # (B, m, d)
        s = self._inv_var[safe]
        exponent = -(s * diff * diff).sum(dim=2) / self.rho**2
        w = exponent.masked_fill(~valid, -math.inf).exp()  # (B, m)
        g = torch.baddbmm(torch.full_like(zc, self.lam).unsqueeze(1), w.unsqueeze(1), s).squeeze(1)
        a = w * torch.bmm(s, g.reciprocal().unsqueeze(2)).squeeze(2)
        grad = torch.bmm(a.unsqueeze(1), s * diff).squeeze(1) * (-1.0 / self.rho**2)
        return g, grad

    def _dense_diagonal_and_grad(
        self, zc: torch.Tensor, dtype: torch.dtype | None, with_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``g`` and the gradient (None unless ``with_grad``) from every centroid, by the expanded products."""
        q, s_t, s, r_t = self._factors(dtype)
        zz = self._augmented(zc).to(q.dtype)
        parts = self._chunks(zc.shape[0])
        # With one chunk the weights are kept between the two passes; with several
        # they are recomputed, which bounds memory at the price of a second exp2.
        kept = self._weights(zz, q) if len(parts) == 1 else None
        g = torch.full_like(zc, self.lam)
        for part in parts:
            g += linear(kept if kept is not None else self._weights(zz, q[part]), s_t[:, part])
        if not with_grad:
            return g, None
        inv_g = g.reciprocal().to(s.dtype)
        p = torch.zeros(zc.shape[0], 2 * self.dim, dtype=zc.dtype, device=zc.device)
        for part in parts:
            w = kept if kept is not None else self._weights(zz, q[part])
            a = linear(inv_g, s[part])
            # In place saves a (B, k) matrix, but autograd (the interpolation) needs w kept.
            p += linear(w * a if torch.is_grad_enabled() else w.mul_(a), r_t[:, part])
        d = self.dim
        return g, p[:, d:] - zc * p[:, :d]

    def _diagonal_and_grad(
        self, z: torch.Tensor, dtype: torch.dtype | None = None, with_grad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Diagonal ``g(z)`` and the gradient of ``0.5 log det G(z)``, for checked ``z``.

        ``g`` rather than the log-volume, so that the inner HMC steps, which need
        the gradient only, skip the log. Without ``with_grad`` the dense
        evaluation stops after ``g`` (the local one computes both at little cost).

        With ``dtype`` (e.g. bfloat16) the dense products run in that precision
        (an opt-in approximation, see :meth:`grad_log_density`).
        """
        zc = z - self.origin
        if self.local and dtype is None:
            index = self._candidates(zc, self._selection_dtype())
            if index is not None:
                return self._local_diagonal_and_grad(zc, index)
        return self._dense_diagonal_and_grad(zc, dtype, with_grad)

    def grad_log_density(self, z: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B, d)`` gradient of ``0.5 log det G(z)`` (closed form, also outside the domain).

        Args:
            z: ``(B, d)`` points.
            dtype: optional lower precision (``torch.bfloat16``) for every matrix
                product of the dense evaluation: faster where the hardware
                multiplies bfloat16 natively, but with relative errors of 1e-2
                and more where the posterior variances are small. Never the
                default; HMC may use it for its inner leapfrog steps when asked
                (see :class:`~augmentor.hmc.HMCConfig`).
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


def reference_log_density_and_grad(metric: RiemannianMetric, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The smooth log target ``0.5 log det G(z)`` and its gradient, directly in float64.

    The formula as written, from the differences ``z - c_j`` and autograd, with
    ``(B, k, d)`` memory: slow, but free of the expansions and the locality of
    :class:`RiemannianMetric`, so tests and benchmarks measure it against this.

    Returns:
        ``(B,)`` log-densities (not restricted to the domain) and ``(B, d)`` gradients, float64.
    """
    c = metric.centroids.double()
    s = torch.exp(-metric.centroid_log_var.double())
    z = z.detach().to(c).requires_grad_(True)
    with torch.enable_grad():
        weights = torch.exp(-(s * (z[:, None, :] - c) ** 2).sum(dim=2) / metric.rho**2)
        log_p = 0.5 * (metric.lam + weights @ s).log().sum(dim=1)
        (grad,) = torch.autograd.grad(log_p.sum(), z)
    return log_p.detach(), grad
