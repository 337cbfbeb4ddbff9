"""Where the quick OASIS study's time goes: its components timed in isolation, on this CPU.

Run:  python benchmarks/study_components.py [--config configs/oasis_quick.yaml] [--vae-steps 600]
      [--classifier-epochs 30] [--profile]

With the config's settings and thread count (``num_threads``), on random images
of its image size (the cost of these networks does not depend on the pixels):

* ``vae_fit``: one per-class VAE, ``--vae-steps`` optimiser steps (the config's
  ``max_steps`` by default) on the CN class's training images (70 % of the
  simulated CN subjects), through :func:`augmentor.training.train_vae`;
* ``classifier_real`` / ``classifier_synthetic``: one classifier job's training
  (:func:`pipelines.common.classifier.train_classifier`, ``--classifier-epochs``) on the
  real training set (70 % of all subjects) and on a synthetic set
  (``n_per_class`` images per class);
* ``hmc_draw``: the Riemannian sampler of one class fitted on that many codes
  (latent size of the config) and ``n_per_class`` latents drawn with the config's
  chains.

The study runs 3 generate jobs (3 VAEs each: CN, AD, shared; 4 HMC draws) and 30
classifier jobs plus 3 fidelity classifiers; the last lines weigh the
components by those counts. Times from fewer steps or epochs than the config's
are scaled up and marked ``(scaled)``. ``--profile`` adds the top operators of
a few VAE steps and classifier epochs (``torch.profiler``).

Run it with and without ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` to see what AVX-512 brings on a CPU that has it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from augmentor.utils.config import load_config_file
from augmentor.models import build_vae
from augmentor.sampling.samplers import RiemannianSampler
from augmentor.models.training import train_vae
from pipelines.common.classifier import train_classifier
from pipelines.oasis_study.config import StudyConfig

TRAIN_SHARE = 0.7  # of the subjects (split: 10 % validation, 20 % test)
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``run()`` (this process's CPU time: on a shared machine it tells the work
    from the waiting; with one thread it is the time the job would take on an idle core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _profile(label: str, run: Callable[[], object], rows: int = 8) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    print(f"\n--- {label}: top operators by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/oasis_quick.yaml"))
    parser.add_argument("--vae-steps", type=int, help="VAE optimiser steps (default: the config's max_steps)")
    parser.add_argument("--classifier-epochs", type=int, help="classifier epochs (default: the config's)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of each component")
    args = parser.parse_args()

    config = load_config_file(args.config, StudyConfig)
    torch.set_num_threads(config.num_threads)
    size = config.data.expected_image_size()
    shape = (1, *size)
    simulation = config.data.simulation
    n_cn, n_all = round(TRAIN_SHARE * simulation.n_cn), round(TRAIN_SHARE * (simulation.n_cn + simulation.n_ad))
    n_val = round(config.split.val_fraction * (simulation.n_cn + simulation.n_ad))
    n_synthetic = 2 * config.sampling.n_per_class
    generator = torch.Generator().manual_seed(0)
    images = lambda n: torch.rand((n, *shape), generator=generator)  # noqa: E731
    labels = lambda n: torch.arange(n) % 2  # noqa: E731

    trainer = config.vae.trainer.replace(device="cpu", progress=False)
    full_steps = trainer.max_steps or trainer.epochs * max(1, n_cn // trainer.batch_size)
    steps = args.vae_steps or full_steps
    if trainer.max_steps is not None:
        trainer = trainer.replace(max_steps=steps, eval_every=min(trainer.eval_every, steps))
    vae = config.vae.build(shape)
    cn_images = images(n_cn)
    torch.manual_seed(0)

    def vae_fit() -> None:
        train_vae(build_vae(vae), cn_images, trainer)

    classifier = config.classifier
    epochs = args.classifier_epochs or classifier.epochs
    short = dataclasses.replace(classifier, epochs=epochs)
    val_x, val_y = images(n_val), labels(n_val)
    real_x, real_y = images(n_all), labels(n_all)
    synth_x, synth_y = images(n_synthetic), labels(n_synthetic)

    codes = torch.randn((n_cn, vae.latent_dim), generator=generator)
    log_var = -2 + 0.5 * torch.randn((n_cn, vae.latent_dim), generator=generator)

    def hmc_draw() -> None:
        RiemannianSampler(config.sampling.metric, config.sampling.hmc).fit(codes, log_var).sample(
            config.sampling.n_per_class, seed=0)

    components = {
        "vae_fit": (vae_fit, full_steps / steps),
        "classifier_real": (lambda: train_classifier(real_x, real_y, val_x, val_y, short, seed=0),
                            classifier.epochs / epochs),
        "classifier_synthetic": (lambda: train_classifier(synth_x, synth_y, val_x, val_y, short, seed=0),
                                 classifier.epochs / epochs),
        "hmc_draw": (hmc_draw, 1.0),
    }
    isa = {name: os.environ.get(name, "-") for name in ISA_VARIABLES}
    print(f"CPU: {_cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}; {isa}")
    print(f"config {args.config}: images {shape}, VAE {steps}/{full_steps} steps on {n_cn} images, classifier "
          f"{epochs}/{classifier.epochs} epochs on {n_all} real / {n_synthetic} synthetic images, HMC "
          f"{config.sampling.n_per_class} latents x {config.sampling.hmc.n_steps} x {config.sampling.hmc.n_leapfrog}")
    seconds, cpu_seconds = {}, {}
    for name, (run, scale) in components.items():
        wall, cpu = _timed(run)
        seconds[name], cpu_seconds[name] = wall * scale, cpu * scale
        print(f"{name}: {seconds[name]:.2f} s wall, {cpu_seconds[name]:.2f} s CPU"
              + (" (scaled)" if scale != 1 else ""))
        if args.profile:
            _profile(name, run)
    # Per study: 3 seeds x (3 VAEs, 4 HMC draws, 1 fidelity classifier on real images, 10 classifier jobs of
    # which 3 train on real images only and 7 on synthetic sets).
    seeds = config.seeds if isinstance(config.seeds, int) else len(config.seeds)
    study = {"vae_fit": 3 * seeds, "hmc_draw": 4 * seeds, "classifier_real": 4 * seeds,
             "classifier_synthetic": 7 * seeds}
    total = sum(cpu_seconds[name] * count for name, count in study.items())
    for name, count in study.items():
        print(f"study share {name}: {count} x {cpu_seconds[name]:.2f} s CPU = {count * cpu_seconds[name]:.0f} s "
              f"({100 * count * cpu_seconds[name] / total:.0f} %)")
    print(f"study estimate (components only, CPU seconds, one job at a time): {total:.0f} s")


if __name__ == "__main__":
    main()
