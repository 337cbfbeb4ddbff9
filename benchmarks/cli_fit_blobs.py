"""Time ``python -m augmentor fit`` on a data list of NIfTI volumes of two kinds of blobs.

Writes ``--n`` volumes per class of ``--size``^3 voxels into a new folder with a
``datalist.csv`` (class 0: one ellipsoid, class 1: two spheres, at random
positions and sizes, with noise and a random intensity scale), then runs the
command line's ``fit`` with the auto-chosen config on it and prints the wall time
and the fit report. Look at ``<out>/model/fit_grid.png``: the reconstructions
should look like their inputs.

    python benchmarks/cli_fit_blobs.py --out runs/cli_blobs            # 2 classes x 20 volumes of 32^3
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def blob_volume(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size, size)`` float32 volume: kind 0 one ellipsoid, kind 1 two spheres; noise added."""
    grid = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij"), -1).astype(np.float32) / size
    volume = np.zeros((size,) * 3, dtype=np.float32)
    if kind == 0:
        centre = rng.uniform(0.35, 0.65, 3)
        radii = rng.uniform(0.15, 0.3, 3)
        volume[(((grid - centre) / radii) ** 2).sum(-1) <= 1] = 1.0
    else:
        for _ in range(2):
            centre = rng.uniform(0.25, 0.75, 3)
            volume[((grid - centre) ** 2).sum(-1) <= rng.uniform(0.1, 0.16) ** 2] = 1.0
    volume += rng.normal(0, 0.05, volume.shape).astype(np.float32)
    return volume * rng.uniform(50, 150)


def write_blobs(folder: Path, n_per_class: int, size: int, seed: int = 0) -> Path:
    """Write the volumes (1.5 mm voxels) and ``datalist.csv`` into ``folder``; returns the list's path."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=False)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = -0.75 * size
    rows = []
    for label in (0, 1):
        for i in range(n_per_class):
            name = f"blob_{label}_{i:03d}.nii.gz"
            nib.save(nib.Nifti1Image(blob_volume(label, size, rng), affine), folder / name)
            rows.append({"image": name, "label": label})
    with open(folder / "datalist.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / "datalist.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder: data/ and model/ go inside")
    parser.add_argument("--n", type=int, default=20, help="volumes per class")
    parser.add_argument("--size", type=int, default=32, help="side of the cubic volumes")
    parser.add_argument("fit_args", nargs="*", help="more arguments of 'fit' after --, e.g. -- --set ...")
    args = parser.parse_args()
    data_list = write_blobs(args.out / "data", args.n, args.size)
    command = [sys.executable, "-m", "augmentor", "fit", "--data", str(data_list), "--out", str(args.out / "model"),
               "--no-progress", *args.fit_args]
    start = time.perf_counter()
    status = subprocess.run(command).returncode
    print(f"fit: exit {status}, {time.perf_counter() - start:.1f} s wall for 2 classes x {args.n} volumes of "
          f"{args.size}^3")
    sys.exit(status)


if __name__ == "__main__":
    main()
