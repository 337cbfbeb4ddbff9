"""Training throughput of a config's VAE: images per second through :func:`augmentor.training.train_vae`.

Run:  python benchmarks/train_throughput.py [--device cpu|cuda] [--config configs/oasis_quick.yaml]
      [--steps 30] [--warmup 5] [--bf16] [--channels-last] [--compile] [--host-data]

The config is any of the project's study configs (OASIS study, low-data study,
generation benchmark): its VAE architecture and trainer settings (batch size,
learning rate, ...) are used on random images of the config's image size, so no
data set is needed. A warm-up call of ``train_vae`` (``--warmup`` steps; CUDA
kernels chosen, ``torch.compile`` traced) is followed by the timed call of
``--steps`` optimiser steps with one validation pass of a single batch at its
end; the device is synchronised before the clock stops. The trainer's own
settings of the config are kept, including ``num_threads`` threads on the CPU.

The last line is ``images/s: <number>`` (training images per second of the
timed call, validation pass included, so it slightly understates the rate). On
the CPU the line before gives the rate in this process's CPU time, which a
shared machine's other work disturbs far less than the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import torch

from augmentor.utils.config import ConfigError, load_config_file
from augmentor.models import VAEConfig, build_vae
from augmentor.models.training import TrainerConfig, train_vae

# The image size of each benchmark data set (C, H, W) as its loader returns it (augmentor.datasets).
BENCHMARK_SHAPES = {"mnist": (1, 32, 32), "svhn": (3, 32, 32), "cifar10": (3, 32, 32), "celeba": (3, 64, 64),
                    "digits": (1, 8, 8)}


def _study(path: Path) -> tuple[Any, tuple[int, ...]]:
    """The config of ``path`` (whichever pipeline it is for) and its images' ``(C, H, W[, D])``."""
    from pipelines.oasis_study.config import StudyConfig
    from pipelines.benchmark.config import BenchmarkConfig
    from pipelines.lowdata.config import LowDataConfig

    errors = []
    for kind in (StudyConfig, LowDataConfig, BenchmarkConfig):
        try:
            config = load_config_file(path, kind)
        except ConfigError as err:
            errors.append(f"{kind.__name__}: {err}")
            continue
        if isinstance(config, BenchmarkConfig):
            shape = BENCHMARK_SHAPES[config.data.dataset]
            pad = config.data.options.get("pad_to", 32)
            if config.data.dataset == "mnist" and pad is None:
                shape = (1, 28, 28)
            return config, shape
        size = config.data.expected_image_size()
        if size is None:
            raise SystemExit(f"{path}: the image size is known only once the data are loaded")
        return config, (1, *size)
    raise SystemExit(f"{path} is no study, low-data or benchmark config:\n" + "\n".join(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/oasis_quick.yaml"))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5, help="optimiser steps before the clock starts")
    parser.add_argument("--batch-size", type=int, help="instead of the config's trainer.batch_size")
    parser.add_argument("--threads", type=int, help="CPU threads instead of the config's num_threads")
    parser.add_argument("--bf16", action="store_true", help="trainer.mixed_precision = bf16")
    parser.add_argument("--channels-last", action="store_true", help="trainer.channels_last")
    parser.add_argument("--compile", action="store_true", help="trainer.compile (torch.compile of the loss)")
    parser.add_argument("--host-data", action="store_true", help="trainer.data_on_device = false")
    args = parser.parse_args()

    config, shape = _study(args.config)
    torch.set_num_threads(args.threads or config.num_threads)
    vae: VAEConfig = config.vae.build(shape)
    batch = args.batch_size or config.vae.trainer.batch_size
    options: dict[str, Any] = {}  # only the options asked for, so the script also runs on a trainer without them
    if args.bf16:
        options["mixed_precision"] = "bf16"
    if args.channels_last:
        options["channels_last"] = True
    if args.compile:
        options["compile"] = True
    if args.host_data:
        options["data_on_device"] = False
    trainer = dataclasses.replace(
        config.vae.trainer, device=args.device, batch_size=batch, progress=False, max_steps=args.warmup,
        eval_every=args.warmup, image_log_every=0, early_stopping_patience=None, **options,
    )
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    # Enough images that the timed steps draw ever new batches (as in an epoch), and one validation batch.
    n_train = max(2 * batch, min(batch * args.steps, 4096))
    images = torch.rand((n_train, *shape), generator=generator)
    val = torch.rand((batch, *shape), generator=generator)
    model = build_vae(vae)

    def timed(steps: int) -> tuple[float, float]:
        """Wall and CPU seconds (this process) of ``steps`` optimiser steps."""
        settings = dataclasses.replace(trainer, max_steps=steps, eval_every=steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        train_vae(model, images, settings, val_images=val)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - cpu

    timed(args.warmup)
    seconds, cpu_seconds = timed(args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"config {args.config}, images {shape}, batch {batch}, device {args.device} ({name}), "
          f"threads {torch.get_num_threads()}, options {options or 'none'}, torch {torch.__version__}")
    print(f"{args.steps} steps in {seconds:.3f} s ({1000 * seconds / args.steps:.1f} ms/step), "
          f"{cpu_seconds:.3f} s of CPU time")
    if device.type == "cpu":  # on a shared machine the CPU time tells the work from the waiting
        print(f"CPU-time images/s: {args.steps * batch / cpu_seconds:.1f}")
    print(f"images/s: {args.steps * batch / seconds:.1f}")


if __name__ == "__main__":
    main()
