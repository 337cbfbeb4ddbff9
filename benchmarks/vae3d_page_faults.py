"""Page faults and system time of the quick 3D VAE on CPU, with and without keep_large_buffers.

Run each variant in its own process under ``/usr/bin/time -v`` and compare
"System time", "User time" and "Minor (reclaiming a frame) page faults"::

    /usr/bin/time -v python benchmarks/vae3d_page_faults.py --steps 30
    /usr/bin/time -v python benchmarks/vae3d_page_faults.py --steps 30 --keep-buffers

It trains the VAE of configs/oasis_3d_quick.yaml (its architecture and batch
size) on random 44 x 52 x 44 volumes for ``--steps`` steps, then decodes
``--decode`` codes in batches of the config's ``encode_batch_size``, on one
thread; it prints its own wall time and the process's page faults (resource).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from augmentor.utils.allocator import keep_large_buffers
from augmentor.models import build_vae
from pipelines.oasis_study.config import load_study_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "oasis_3d_quick.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--decode", type=int, default=100)
    parser.add_argument("--keep-buffers", action="store_true", help="apply augmentor.utils.allocator.keep_large_buffers")
    args = parser.parse_args()
    if args.keep_buffers:
        print("keep_large_buffers:", keep_large_buffers())
    torch.set_num_threads(1)
    config = load_study_config(args.config)
    shape = tuple(config.data.image_size)
    vae_config = config.vae.build((1, *shape))
    model = build_vae(vae_config)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(64, 1, *shape, generator=g)
    start = time.perf_counter()
    for step in range(args.steps):
        batch = data[torch.randint(0, 64, (config.vae.trainer.batch_size,), generator=g)]
        loss = model.loss(batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    train = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        for first in range(0, args.decode, config.vae.encode_batch_size):
            model.decode(torch.randn(min(config.vae.encode_batch_size, args.decode - first), vae_config.latent_dim))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"train {args.steps} steps {train:.1f} s, total {time.perf_counter() - start:.1f} s; "
          f"user {usage.ru_utime:.1f} s, system {usage.ru_stime:.1f} s "
          f"({100 * usage.ru_stime / (usage.ru_utime + usage.ru_stime):.0f} %), minor faults {usage.ru_minflt}")


if __name__ == "__main__":
    main()
