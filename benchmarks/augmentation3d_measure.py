"""What does each part of the classical 3D augmentation do to atlas-registered volumes? One draw per transform.

    PYTHONPATH=. python benchmarks/augmentation3d_measure.py [--config oasis_3d_quick] [--volumes 6]

Applies the config's TorchIO augmentation (``augmentation`` section) once to the first
volumes of the cohort, whole and one part at a time (shifts, rotations, elastic
deformation, each at the config's range or, where the config turns it off, at the
classical 2D ranges: 10 degrees, 5 % shifts, elastic 2 %), and prints per variant the
ventricle measure of ``oasis.anatomy`` (which reads fixed template regions) and each
volume's correlation with its original.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from oasis.anatomy import anatomy_measures
from pipelines.common.classifier import TorchIOAugmentation
from pipelines.oasis_study.config import load_study_config
from pipelines.common.study_data import load_study_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/oasis_3d_quick.yaml")
    parser.add_argument("--volumes", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_study_config(args.config)
    data = load_study_data(config.data, progress=False)
    x = data.images[: args.volumes]
    base = config.augmentation
    off = dict(degrees=0.0, scales=0.0, translation=0.0, p_affine=1.0, p_elastic=0.0)
    variants = {
        "config": base,
        "shifts only": base.replace(**{**off, "translation": base.translation or 0.05}),
        "rotations only": base.replace(**{**off, "degrees": base.degrees or 10.0}),
        "elastic only": base.replace(**{**off, "p_affine": 0.0, "p_elastic": 1.0,
                                        "elastic_max_displacement": base.elastic_max_displacement or 0.02}),
    }
    print("originals: ventricle (mL)", np.round(anatomy_measures(x)["ventricle"], 1))
    for name, settings in variants.items():
        y = TorchIOAugmentation(settings, data.image_size, 1)(x, 0)
        corr = [float(np.corrcoef(a.flatten(), b.flatten())[0, 1]) for a, b in zip(x, y)]
        print(f"{name}: ventricle (mL)", np.round(anatomy_measures(y)["ventricle"], 1),
              "correlation with the original", np.round(corr, 3))


if __name__ == "__main__":
    main()
