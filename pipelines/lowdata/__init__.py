"""The low-data study on any labelled image set (OASIS, MNIST, digits, NIfTI data dicts):
``python -m augmentor.study``.

* :mod:`~pipelines.lowdata.sources`: where the images come from (:class:`SourceConfig`).
* :mod:`~pipelines.lowdata.config`: the study's methods and configuration.
* :mod:`~pipelines.lowdata.jobs`: the nested splits, the run directory and the jobs.
* :mod:`~pipelines.lowdata.report`: tables, plot and paired differences.
* :mod:`~pipelines.lowdata.study`: :func:`run_lowdata` and the command line.
"""

from .config import LowDataConfig, load_lowdata_config
from .sources import SourceConfig, load_source
from .study import LowDataResult, build_parser, main, run_lowdata

__all__ = ["LowDataConfig", "LowDataResult", "SourceConfig", "build_parser", "load_lowdata_config", "load_source",
           "main", "run_lowdata"]
