"""Precision and recall for distributions (PRD; Sajjadi et al., NeurIPS 2018), the paper's "PRD" score.

Both feature sets are clustered together by k-means (20 clusters); the
histograms ``P`` (real, the reference) and ``Q`` (generated) over the clusters
give the curve, for slopes ``lambda = tan(angle)`` with 1001 angles in
``(0, pi/2)``::

    precision(lambda) = sum_w min(lambda P(w), Q(w)),   recall(lambda) = precision(lambda) / lambda

averaged over 10 clusterings. The summary is ``(F_8, F_1/8)``, the largest
``F_beta`` along the curve for ``beta = 8`` (weighs recall: how much of the real
distribution is covered) and ``beta = 1/8`` (weighs precision: how much of the
generated distribution is realistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans

__all__ = ["PRDResult", "prd_curve", "prd_f_beta", "prd_score"]

_EPSILON = 1e-10


@dataclass(frozen=True)
class PRDResult:
    """A PRD curve and its summary.

    Attributes:
        precision: ``(num_angles,)`` precision along the curve (mean over clusterings).
        recall: ``(num_angles,)`` recall along the curve.
        f_8: ``max F_8``, the recall-like number.
        f_1_8: ``max F_1/8``, the precision-like number.
        n_real: number of real feature vectors.
        n_fake: number of generated feature vectors.
    """

    precision: np.ndarray
    recall: np.ndarray
    f_8: float
    f_1_8: float
    n_real: int
    n_fake: int

    def __str__(self) -> str:
        return (f"PRD (F_8, F_1/8) = ({self.f_8:.3f}, {self.f_1_8:.3f}) "
                f"(n_real = {self.n_real}, n_fake = {self.n_fake})")


def prd_curve(reference_hist: np.ndarray, generated_hist: np.ndarray,
              num_angles: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """PRD curve of two histograms over the same bins.

    Args:
        reference_hist: ``(K,)`` probabilities of the real data (sum 1).
        generated_hist: ``(K,)`` probabilities of the generated data (sum 1).
        num_angles: points on the curve; odd, so that ``lambda = 1`` is one of them.

    Returns:
        precision and recall, each ``(num_angles,)`` in [0, 1].
    """
    reference_hist, generated_hist = np.asarray(reference_hist, np.float64), np.asarray(generated_hist, np.float64)
    if reference_hist.shape != generated_hist.shape or reference_hist.ndim != 1:
        raise ValueError(f"histograms must be 1-D of one length, got {reference_hist.shape} and {generated_hist.shape}")
    for name, hist in (("reference_hist", reference_hist), ("generated_hist", generated_hist)):
        if (hist < 0).any() or not np.isclose(hist.sum(), 1):
            raise ValueError(f"{name} must be non-negative and sum to 1, got sum {hist.sum():.6g}")
    if num_angles < 3:
        raise ValueError(f"num_angles must be >= 3, got {num_angles}")
    slopes = np.tan(np.linspace(_EPSILON, np.pi / 2 - _EPSILON, num_angles))[:, None]
    precision = np.minimum(reference_hist[None] * slopes, generated_hist[None]).sum(axis=1)
    recall = precision / slopes[:, 0]
    # sums of minima can exceed 1 by round-off
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def prd_f_beta(precision: np.ndarray, recall: np.ndarray, beta: float = 8.0) -> tuple[float, float]:
    """``(max F_beta, max F_1/beta)`` along a PRD curve (0 where precision and recall are both 0)."""
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)

    def max_f(b: float) -> float:
        return float(np.max((1 + b**2) * precision * recall / (b**2 * precision + recall + _EPSILON)))

    return max_f(beta), max_f(1 / beta)


def _as_numpy(features: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, np.float64)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must have shape (N, D), got {array.shape}")
    return array


def prd_score(
    real_features: torch.Tensor | np.ndarray,
    fake_features: torch.Tensor | np.ndarray,
    num_clusters: int = 20,
    num_angles: int = 1001,
    num_runs: int = 10,
    seed: int = 0,
    enforce_balance: bool = True,
) -> PRDResult:
    """PRD of generated against real features (Sajjadi et al. 2018).

    Args:
        real_features: ``(N, D)`` reference features.
        fake_features: ``(M, D)`` generated features.
        num_clusters: k-means clusters on the union of both sets.
        num_angles: points on the curve.
        num_runs: clusterings (seeds ``seed .. seed + num_runs - 1``) whose curves are averaged.
        seed: first k-means seed.
        enforce_balance: require ``N == M``, as the authors do (unequal sizes bias the histograms' noise).

    Returns:
        the averaged curve and ``(F_8, F_1/8)``.
    """
    for name, value, least in (("num_runs", num_runs, 1), ("num_clusters", num_clusters, 1),
                               ("num_angles", num_angles, 3)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    real, fake = _as_numpy(real_features, "real_features"), _as_numpy(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {fake.shape[1]}")
    if enforce_balance and len(real) != len(fake):
        raise ValueError(f"PRD compares sets of equal size ({len(real)} real vs {len(fake)} generated); "
                         "subsample one or pass enforce_balance=False")
    if len(real) + len(fake) < num_clusters:
        raise ValueError(f"{len(real) + len(fake)} feature vectors cannot fill {num_clusters} clusters")
    union = np.concatenate([real, fake])
    precisions, recalls = [], []
    for run in range(num_runs):
        kmeans = MiniBatchKMeans(n_clusters=num_clusters, n_init=10, random_state=seed + run)
        assignment = kmeans.fit_predict(union)
        real_hist = np.bincount(assignment[:len(real)], minlength=num_clusters) / len(real)
        fake_hist = np.bincount(assignment[len(real):], minlength=num_clusters) / len(fake)
        precision, recall = prd_curve(real_hist, fake_hist, num_angles)
        precisions.append(precision)
        recalls.append(recall)
    precision, recall = np.mean(precisions, axis=0), np.mean(recalls, axis=0)
    f_8, f_1_8 = prd_f_beta(precision, recall, 8.0)
    return PRDResult(precision, recall, f_8, f_1_8, len(real), len(fake))
