"""The OASIS-1 augmentation study (paper Table 2, in 2D and 3D): ``python -m augmentor.oasis``.

* :mod:`~pipelines.oasis_study.config`: the study configuration, its methods and its identity.
* :mod:`~pipelines.oasis_study.jobs`: the generate / classify jobs and the run-directory layout.
* :mod:`~pipelines.oasis_study.runner`: the run directory's data and splits, local and Ray execution.
* :mod:`~pipelines.oasis_study.report`: tables (CSV, Markdown), box plot, fit report, TensorBoard summary.
* :mod:`~pipelines.oasis_study.study`: :func:`run_study` and the command line.
"""

from .config import METHODS, StudyConfig, identity, load_study_config
from .study import StudyResult, build_parser, main, run_study

__all__ = ["METHODS", "StudyConfig", "StudyResult", "build_parser", "identity", "load_study_config", "main",
           "run_study"]
