"""Nearest-neighbour metrics: improved precision/recall, density/coverage, and a memorisation check.

* Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019, ``k = 3``):
  each real vector ``r_i`` gets a ball of radius ``d_k(r_i)``, the distance to its
  k-th nearest real neighbour; precision is the share of generated vectors inside
  at least one real ball; recall swaps the roles.
* Density and coverage (Naeem et al., ICML 2020, ``k = 5``): density is the mean
  number of real balls holding a generated vector, divided by ``k`` (1 on average
  for identical distributions, above 1 when samples crowd dense real regions);
  coverage is the share of real balls holding at least one generated vector
  (``1 - 2^-k ~ 0.97`` on average for identical distributions of equal size).
* Memorisation: each generated image's nearest training image, and the same
  distances for held-out real images; a generator that copies its training set
  sits much closer to it than held-out data does.

Distances are Euclidean, in float64, computed in row chunks so that no ``N x M``
matrix is ever held whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from scipy.stats import mannwhitneyu

__all__ = [
    "MemorisationReport",
    "density_coverage",
    "kth_neighbour_radii",
    "memorisation_check",
    "memorisation_summary",
    "nearest_neighbours",
    "precision_recall",
]

# query rows per distance block: against 50,000 reference vectors a float64 block is 100 MB
_CHUNK = 256


def _as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """``(N, D)`` float64 CPU tensor; images ``(N, ...)`` are flattened."""
    tensor = torch.as_tensor(x).detach().cpu().to(torch.float64)
    if tensor.ndim < 2 or len(tensor) == 0:
        raise ValueError(f"{name} must have shape (N, D) or (N, C, H, W) with N >= 1, got {tuple(tensor.shape)}")
    tensor = tensor.reshape(len(tensor), -1)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return tensor


def _as_pair(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as ``(N, D)`` matrices, refusing items of different shapes (flattening would hide them)."""
    real_shape, fake_shape = tuple(np.shape(real)[1:]), tuple(np.shape(fake)[1:])
    if real_shape != fake_shape:
        raise ValueError(f"real and generated items differ in shape: {real_shape} vs {fake_shape}; "
                         "compare features (or images) of one shape")
    return _as_matrix(real, "real_features"), _as_matrix(fake, "fake_features")


def _distance_chunks(queries: torch.Tensor, reference: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """``(rows, distances)`` with ``distances`` the ``(len(rows), R)`` block of query-to-reference distances."""
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"feature dimensions differ: {queries.shape[1]} vs {reference.shape[1]}")
    for start in range(0, len(queries), _CHUNK):
        rows = slice(start, start + _CHUNK)
        # |a|^2 + |b|^2 - 2 a.b by a matrix product: 10x faster than the direct formula; in float64
        # its round-off (about 1e-8 |a| for duplicates) is far below any distance that matters here
        yield rows, torch.cdist(queries[rows], reference, compute_mode="use_mm_for_euclid_dist")


def kth_neighbour_radii(features: torch.Tensor | np.ndarray, k: int) -> torch.Tensor:
    """Distance of each vector to its k-th nearest neighbour in the same set (itself excluded).

    Args:
        features: ``(N, D)`` with ``N > k``.
        k: neighbour rank.

    Returns:
        ``(N,)`` float64 radii.
    """
    features = _as_matrix(features, "features")
    if not 1 <= k < len(features):
        raise ValueError(f"k must be in [1, N - 1] = [1, {len(features) - 1}], got {k}")
    radii = torch.empty(len(features), dtype=torch.float64)
    for rows, distances in _distance_chunks(features, features):
        # the smallest distance of each row is the vector itself (0)
        radii[rows] = distances.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def _share_inside_balls(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of ``queries`` inside at least one ball ``B(centres_i, radii_i)`` (closed balls)."""
    inside = torch.zeros(len(queries), dtype=torch.bool)
    for rows, distances in _distance_chunks(queries, centres):
        inside[rows] = (distances <= radii[None]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real_features: torch.Tensor | np.ndarray, fake_features: torch.Tensor | np.ndarray,
                     k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Args:
        real_features: ``(N, D)``.
        fake_features: ``(M, D)``.
        k: neighbour rank defining the balls (the authors' default 3).

    Returns:
        ``(precision, recall)`` in [0, 1].
    """
    real, fake = _as_pair(real_features, fake_features)
    precision = _share_inside_balls(fake, real, kth_neighbour_radii(real, k))
    recall = _share_inside_balls(real, fake, kth_neighbour_radii(fake, k))
    return precision, recall


def density_coverage(real_features: torch.Tensor | np.ndarray, fake_features: torch.Tensor | np.ndarray,
                     k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020).

    Args:
        real_features: ``(N, D)``.
        fake_features: ``(M, D)``.
        k: neighbour rank of the real balls (the authors' default 5).

    Returns:
        ``(density, coverage)``; density is unbounded above, coverage in [0, 1].
    """
    real, fake = _as_pair(real_features, fake_features)
    radii = kth_neighbour_radii(real, k)
    balls_per_fake = torch.zeros(len(fake), dtype=torch.float64)
    for rows, distances in _distance_chunks(fake, real):
        balls_per_fake[rows] = (distances < radii[None]).sum(dim=1).double()
    covered = torch.zeros(len(real), dtype=torch.bool)
    for rows, distances in _distance_chunks(real, fake):
        covered[rows] = distances.min(dim=1).values < radii[rows]
    return float(balls_per_fake.sum() / (k * len(fake))), float(covered.double().mean())


def nearest_neighbours(queries: torch.Tensor | np.ndarray,
                       reference: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's nearest reference vector (images are compared flattened, i.e. in pixel space).

    Args:
        queries: ``(M, D)`` or ``(M, C, H, W)``.
        reference: ``(N, D)`` or ``(N, C, H, W)``, the same size per item.

    Returns:
        distances ``(M,)`` float64 and indices ``(M,)`` int64 into ``reference``.
    """
    queries, reference = _as_matrix(queries, "queries"), _as_matrix(reference, "reference")
    distances = torch.empty(len(queries), dtype=torch.float64)
    indices = torch.empty(len(queries), dtype=torch.int64)
    for rows, block in _distance_chunks(queries, reference):
        distances[rows], indices[rows] = block.min(dim=1)
    return distances, indices


@dataclass(frozen=True)
class MemorisationReport:
    """Nearest-training-image distances of generated and held-out real images.

    Attributes:
        generated_distances: ``(M,)`` distance of each generated image to its nearest training image.
        generated_indices: ``(M,)`` index of that training image (to show the pairs).
        heldout_distances: ``(H,)`` the same for held-out real images (the baseline).
        heldout_indices: ``(H,)``.
        summary: see :func:`memorisation_summary`.
    """

    generated_distances: torch.Tensor
    generated_indices: torch.Tensor
    heldout_distances: torch.Tensor
    heldout_indices: torch.Tensor
    summary: dict[str, float]


def memorisation_summary(generated_distances: torch.Tensor | np.ndarray,
                         heldout_distances: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Compare nearest-training-image distances of generated and held-out real images.

    Args:
        generated_distances: ``(M,)``.
        heldout_distances: ``(H,)``.

    Returns:
        ``n_generated``, ``n_heldout``; the 1%, 5% and 50% quantiles of both (keys
        ``generated_q01`` ... ``heldout_q50``); ``median_ratio`` (generated / held-out median:
        well below 1 means generated images sit closer to the training set than new real data);
        ``share_below_heldout_q01`` (share of generated images closer than the held-out 1%
        quantile: about 0.01 without memorisation, near 1 for copies); ``mannwhitney_p_closer``
        (one-sided p-value that generated distances are stochastically smaller than held-out ones).
    """
    generated = np.asarray(torch.as_tensor(generated_distances).cpu(), np.float64)
    heldout = np.asarray(torch.as_tensor(heldout_distances).cpu(), np.float64)
    if generated.ndim != 1 or heldout.ndim != 1 or not len(generated) or not len(heldout):
        raise ValueError(f"distances must be non-empty 1-D arrays, got {generated.shape} and {heldout.shape}")
    summary: dict[str, float] = {"n_generated": float(len(generated)), "n_heldout": float(len(heldout))}
    for name, values in (("generated", generated), ("heldout", heldout)):
        for q in (1, 5, 50):
            summary[f"{name}_q{q:02d}"] = float(np.quantile(values, q / 100))
    heldout_median = summary["heldout_q50"]
    summary["median_ratio"] = summary["generated_q50"] / heldout_median if heldout_median > 0 else float("nan")
    summary["share_below_heldout_q01"] = float(np.mean(generated < summary["heldout_q01"]))
    summary["mannwhitney_p_closer"] = float(mannwhitneyu(generated, heldout, alternative="less").pvalue)
    return summary


def memorisation_check(generated: torch.Tensor | np.ndarray, train: torch.Tensor | np.ndarray,
                       heldout: torch.Tensor | np.ndarray) -> MemorisationReport:
    """Nearest training image of every generated and every held-out image, and their comparison.

    Pass images (compared in pixel space) or features of the three sets alike.

    Args:
        generated: ``(M, ...)`` generated images or features.
        train: ``(N, ...)`` the generator's training images or features.
        heldout: ``(H, ...)`` real images the generator never saw (validation or test set).
    """
    generated_distances, generated_indices = nearest_neighbours(generated, train)
    heldout_distances, heldout_indices = nearest_neighbours(heldout, train)
    return MemorisationReport(generated_distances, generated_indices, heldout_distances, heldout_indices,
                              memorisation_summary(generated_distances, heldout_distances))
