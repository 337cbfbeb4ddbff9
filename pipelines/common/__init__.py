"""What the studies share; no module here imports a study.

* :mod:`~pipelines.common.methods`: the one vocabulary of methods, its parsing and display names.
* :mod:`~pipelines.common.run_directory`: the files every run directory has, its lock, its identity
  (``study.json``) and the errors (:class:`StudyError`, :class:`RunDirectoryError`, :class:`JobFailure`).
* :mod:`~pipelines.common.cli`: the command-line flow (``--set`` overrides, config loading, exit codes).
* :mod:`~pipelines.common.settings`: config sections the studies share (VAE, sampling, classifier,
  augmentation, Ray) and the run settings' checks.
* :mod:`~pipelines.common.jobs`: a job's environment (threads, determinism, seed), its augmentor
  settings and its result file; :mod:`~pipelines.common.ray_backend`: jobs as Ray tasks.
* :mod:`~pipelines.common.classifier`: the Table 4 CNN, its training loop, metrics, TorchIO augmentation.
* :mod:`~pipelines.common.stats`: paired differences with intervals.
* :mod:`~pipelines.common.study_data`: OASIS-1 images (real or simulated), their split and class balancing.
* :mod:`~pipelines.common.image_model`: one model trained on an image data set (the generation
  benchmark and the latent map).
"""

from .run_directory import JobFailure, RunDirectory, RunDirectoryError, StudyError

__all__ = ["JobFailure", "RunDirectory", "RunDirectoryError", "StudyError"]
