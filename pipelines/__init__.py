"""Experiment pipelines built on :mod:`augmentor`: the OASIS-1 augmentation study (paper Table 2, in 2D
and 3D), the generation benchmark (Table 1), the low-data studies and the latent map (Fig. 1).

* :mod:`pipelines.config`: the study configuration (YAML sections, validation, identity hash).
* :mod:`pipelines.data`: data loading (real or simulated OASIS-1), fingerprint, subject-level split.
* :mod:`pipelines.classifier`: the Table 4 CNN, its training loop, metrics, TorchIO augmentation.
* :mod:`pipelines.jobs`: the generate / classify jobs and the run-directory layout.
* :mod:`pipelines.runner`: run-directory checks, resumption, local and Ray backends.
* :mod:`pipelines.report`: tables (CSV, Markdown), box plot, TensorBoard summary.
* :mod:`pipelines.oasis_study`: :func:`run_study` and the command line (``python -m augmentor.oasis``).
* :mod:`pipelines.generation`: the generation benchmark and its low-data sweep (``python -m augmentor.benchmark``).
* :mod:`pipelines.sources` and :mod:`pipelines.lowdata`: the low-data study on any labelled image set
  (OASIS, MNIST, digits, NIfTI data dicts; ``python -m augmentor.study``).
* :mod:`pipelines.latent_map`: the 2-D latent map with metric curves (``python -m augmentor.latent_map``).
"""

from .classifier import OasisClassifier, classification_metrics, train_classifier
from .config import METHODS, StudyConfig, load_study_config
from .oasis_study import StudyResult, main, run_study
from .runner import JobFailure, RunDirectoryError, StudyError

__all__ = [
    "METHODS",
    "JobFailure",
    "OasisClassifier",
    "RunDirectoryError",
    "StudyConfig",
    "StudyError",
    "StudyResult",
    "classification_metrics",
    "load_study_config",
    "main",
    "run_study",
    "train_classifier",
]
