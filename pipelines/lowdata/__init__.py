"""The low-data study on any labelled image set (OASIS, MNIST, digits, NIfTI data dicts):
``python -m augmentor.study``.

* :mod:`~pipelines.lowdata.sources`: where the images come from (:class:`SourceConfig`).
* :mod:`~pipelines.lowdata.study`: the configuration, the nested splits, the jobs, the report and the
  command line.
"""

from .sources import SourceConfig, load_source
from .study import LowDataConfig, LowDataResult, build_parser, load_lowdata_config, main, run_lowdata

__all__ = ["LowDataConfig", "LowDataResult", "SourceConfig", "build_parser", "load_lowdata_config", "load_source",
           "main", "run_lowdata"]
