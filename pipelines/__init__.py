"""Experiment pipelines built on :mod:`augmentor`: the OASIS-1 augmentation study (paper Table 2, in 2D
and 3D), the generation benchmark (Table 1), the low-data studies and the latent map (Fig. 1).

One subpackage per study, and what they share in :mod:`pipelines.common`; a study never imports
another study:

* :mod:`pipelines.common`: the method vocabulary, run directories, the command-line flow, shared config
  sections, job execution (local and Ray), the classifier, paired statistics, study data.
* :mod:`pipelines.oasis_study`: :func:`run_study` (``python -m augmentor.oasis``).
* :mod:`pipelines.lowdata`: the low-data study on any labelled image set (``python -m augmentor.study``).
* :mod:`pipelines.benchmark`: the generation benchmark and its sweep (``python -m augmentor.benchmark``).
* :mod:`pipelines.latent_map`: the 2-D latent map with metric curves (``python -m augmentor.latent_map``).
"""

from .common.classifier import OasisClassifier, classification_metrics, train_classifier
from .common.run_directory import JobFailure, RunDirectoryError, StudyError
from .oasis_study import METHODS, StudyConfig, StudyResult, load_study_config, main, run_study

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
