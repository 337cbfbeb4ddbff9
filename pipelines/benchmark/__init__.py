"""The generation benchmark (paper Table 1) and its low-data sweep: ``python -m augmentor.benchmark``.

* :mod:`~pipelines.benchmark.study`: the configuration, the stages (train, sample, evaluate), the report,
  the sweep and the command line. The model's data and training stage are
  :mod:`pipelines.common.image_model`'s.
"""

from .study import BenchmarkConfig, BenchmarkResult, build_parser, load_benchmark_config, main, run_benchmark

__all__ = ["BenchmarkConfig", "BenchmarkResult", "build_parser", "load_benchmark_config", "main", "run_benchmark"]
