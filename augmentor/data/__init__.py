"""The data layer: checked image inputs (:mod:`.inputs`), the benchmark data sets
(:mod:`.datasets`), MONAI preprocessing (:mod:`.transforms`) and the rings-and-disks
toy (:mod:`.toy`). Nothing here imports the models, the samplers or the augmentor.

The input checks are importable from here (``from augmentor.data import load_data_dicts``).
"""

from .inputs import check_images, load_data_dicts

__all__ = ["check_images", "load_data_dicts"]
