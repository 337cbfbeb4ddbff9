"""The generation benchmark (paper Table 1) and its low-data sweep: ``python -m augmentor.benchmark``.

* :mod:`~pipelines.benchmark.config`: samplers and their variants, peer models, metrics, the whole run.
* :mod:`~pipelines.benchmark.stages`: the rows, the run directory, sampling, the domain network, evaluation.
* :mod:`~pipelines.benchmark.report`: the table (CSV, Markdown), sample grids and plots.
* :mod:`~pipelines.benchmark.study`: :func:`run_benchmark`, :func:`run_sweep` and the command line.

The model's data and training stage are :mod:`pipelines.common.image_model`'s (shared with the latent map).
"""

from .config import BenchmarkConfig, load_benchmark_config
from .study import BenchmarkResult, build_parser, main, run_benchmark, run_sweep

__all__ = ["BenchmarkConfig", "BenchmarkResult", "build_parser", "load_benchmark_config", "main", "run_benchmark",
           "run_sweep"]
