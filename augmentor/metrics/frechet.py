"""Fréchet distances between Gaussian fits of features: FID and its cached reference statistics.

``FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})``. The last trace is
computed in float64 without ``scipy.linalg.sqrtm`` (which can return complex
values or fail on the rank-deficient covariances of small sample sets):
``(S1 S2)^{1/2}`` is similar to ``(A S2 A)^{1/2}`` with ``A = S1^{1/2}``, and
``A S2 A`` is symmetric positive semi-definite, so
``tr((S1 S2)^{1/2}) = sum_i sqrt(lambda_i(A S2 A))`` with ``A`` and the
``lambda_i`` from symmetric eigen-decompositions.

FID depends on the number of samples (it is biased upwards for small sets), so
every result carries the sample counts and prints them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from augmentor.utils.io import atomic_write
from .features import FeatureExtractor, extract_features, images_digest

__all__ = [
    "FrechetResult",
    "GaussianStats",
    "cached_statistics",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "frechet_distance_between",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(D,)`` and covariance ``(D, D)`` (float64) of ``n`` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    def save(self, path: str | Path, key: str = "") -> None:
        """Write an ``.npz`` atomically (``key`` identifies the data and features it came from)."""
        with atomic_write(path, "wb") as handle:
            np.savez(handle, mean=self.mean, cov=self.cov, n=np.int64(self.n), key=np.str_(key))

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> GaussianStats:
        """Read what :meth:`save` wrote (no pickles).

        Raises:
            ValueError: the file is unreadable, malformed, or was saved under another ``key``.
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                mean, cov, n, saved_key = archive["mean"], archive["cov"], int(archive["n"]), str(archive["key"])
        except Exception as err:  # NumPy raises several types for bad archives
            raise ValueError(f"{path}: not a readable statistics file ({err})") from err
        if key is not None and saved_key != key:
            raise ValueError(f"{path} holds statistics for key {saved_key!r}, expected {key!r}")
        if mean.ndim != 1 or cov.shape != (len(mean), len(mean)):
            raise ValueError(f"{path}: mean {mean.shape} and covariance {cov.shape} do not match")
        if n < 2:
            raise ValueError(f"{path}: statistics of n = {n} feature vectors; a covariance needs at least 2")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError(f"{path}: the mean or covariance holds NaN or infinite values")
        return cls(mean, cov, n)


@dataclass(frozen=True)
class FrechetResult:
    """A Fréchet distance with what it depends on.

    Attributes:
        value: the distance.
        n_real: number of real images (features) of the reference statistics.
        n_fake: number of generated images.
        metric: ``"FID"`` (Inception features) or another label such as ``"FD_domain"``.
        features: name of the feature extractor.
    """

    value: float
    n_real: int
    n_fake: int
    metric: str = "FID"
    features: str = "inception-v3-pool3"

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return (f"{self.metric} = {self.value:.2f} (n_real = {self.n_real}, n_fake = {self.n_fake}, "
                f"features: {self.features})")


def feature_statistics(features: torch.Tensor | np.ndarray) -> GaussianStats:
    """Mean and unbiased covariance of ``(N, D)`` features, in float64.

    Raises:
        ValueError: fewer than 2 vectors, wrong rank or non-finite values.
    """
    features = np.asarray(features.cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must have shape (N >= 2, D), got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if len(features) <= features.shape[1]:
        logger.warning("%d samples for %d-d features: the covariance is singular and the distance is biased "
                       "upwards; compare only distances computed with the same sample counts",
                       len(features), features.shape[1])
    return GaussianStats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix; round-off negatives clipped to 0."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(stats1: GaussianStats, stats2: GaussianStats) -> float:
    """Fréchet distance between two Gaussians, computed stably in float64.

    Args:
        stats1: ``N(mu1, S1)``.
        stats2: ``N(mu2, S2)``, same dimension.

    Returns:
        ``|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2})``, clipped at 0 against round-off.
    """
    if stats1.mean.shape != stats2.mean.shape:
        raise ValueError(f"statistics of different dimensions: {stats1.mean.shape} vs {stats2.mean.shape}")
    cov1, cov2 = np.asarray(stats1.cov, np.float64), np.asarray(stats2.cov, np.float64)
    sqrt_cov1 = _psd_sqrt((cov1 + cov1.T) / 2)
    inner = sqrt_cov1 @ cov2 @ sqrt_cov1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    mean_term = float(np.sum((np.asarray(stats1.mean, np.float64) - stats2.mean) ** 2))
    return max(mean_term + float(np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt), 0.0)


def _cache_file(cache_dir: Path, extractor: FeatureExtractor, key: str) -> Path:
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", extractor.name)
    return cache_dir / f"{safe_name}-{key[:32]}.npz"


def cached_statistics(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    cache_dir: str | Path | None = None,
    batch_size: int = 50,
    progress: bool = False,
) -> GaussianStats:
    """Feature statistics of a (reference) image set, reused from ``cache_dir`` when present.

    The cache file is keyed by a SHA-256 of the images and of ``extractor.cache_key``, so
    other data, weights or preprocessing never hit a stale entry; it is written atomically.
    An unreadable cache file is reported and recomputed.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        extractor: the feature network.
        cache_dir: folder of ``.npz`` statistics; ``None`` computes without caching.
        batch_size: images per forward pass.
        progress: show a progress bar.
    """
    if cache_dir is None:
        return feature_statistics(extract_features(images, extractor, batch_size, progress))
    key = hashlib.sha256(f"{images_digest(images)}|{extractor.cache_key}".encode()).hexdigest()
    path = _cache_file(Path(cache_dir), extractor, key)
    if path.is_file():
        try:
            stats = GaussianStats.load(path, key)
            logger.info("reference statistics of %d images read from %s", stats.n, path)
            return stats
        except ValueError as err:
            logger.warning("recomputing unusable cached statistics: %s", err)
    stats = feature_statistics(extract_features(images, extractor, batch_size, progress))
    stats.save(path, key)
    logger.info("reference statistics of %d images written to %s", stats.n, path)
    return stats


def frechet_distance_between(
    real: torch.Tensor | GaussianStats,
    fake: torch.Tensor,
    extractor: FeatureExtractor,
    metric: str,
    cache_dir: str | Path | None = None,
    batch_size: int = 50,
    progress: bool = False,
) -> FrechetResult:
    """Fréchet distance between two image sets in the features of ``extractor``.

    Args:
        real: ``(N, C, H, W)`` reference images in [0, 1], or their precomputed statistics.
        fake: ``(M, C, H, W)`` generated images in [0, 1].
        extractor: the feature network.
        metric: label of the result (``"FID"``, ``"FD_domain"``, ...).
        cache_dir: where the reference statistics are cached (see :func:`cached_statistics`).
        batch_size: images per forward pass.
        progress: show progress bars.
    """
    if not isinstance(real, GaussianStats) and tuple(real.shape[1:]) != tuple(fake.shape[1:]):
        raise ValueError(f"{metric}: real images {tuple(real.shape[1:])} and generated images "
                         f"{tuple(fake.shape[1:])} differ in shape; resample one set to the other's size first")
    real_stats = real if isinstance(real, GaussianStats) else cached_statistics(
        real, extractor, cache_dir, batch_size, progress)
    fake_stats = feature_statistics(extract_features(fake, extractor, batch_size, progress))
    result = FrechetResult(frechet_distance(real_stats, fake_stats), real_stats.n, fake_stats.n,
                           metric, extractor.name)
    logger.info("%s", result)
    return result


def fid(
    real: torch.Tensor | GaussianStats,
    fake: torch.Tensor,
    extractor: FeatureExtractor | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 50,
    progress: bool = False,
) -> FrechetResult:
    """Fréchet Inception Distance between real and generated images.

    Args:
        real: ``(N, C, H, W)`` reference images in [0, 1] (grey or RGB, any size), or their statistics.
        fake: ``(M, C, H, W)`` generated images in [0, 1].
        extractor: default: :class:`~augmentor.metrics.inception.InceptionV3Features` on the CPU.
        cache_dir: where the reference statistics are cached.
        batch_size: images per forward pass.
        progress: show progress bars.

    Returns:
        the FID with ``n_real`` and ``n_fake`` (FID depends on them: report them with it).
    """
    if extractor is None:
        from .inception import InceptionV3Features

        extractor = InceptionV3Features()
    return frechet_distance_between(real, fake, extractor, "FID", cache_dir, batch_size, progress)
