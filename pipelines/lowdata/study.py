"""The low-data study: does synthetic data help a classifier trained on few real images, and by how much?

The TPAMI 2022 protocol on any labelled image set (:mod:`pipelines.lowdata.sources`):
for each of R seeds, a per-class random order of the pool gives a fixed test set
and validation set (the first images of every class) and an ordered training
pool; the training set of ``n`` images per class is the first ``n`` images of
each class's pool, so for one seed the 10-per-class set lies inside the
50-per-class set (nested sizes: a larger size only adds images). For every
(seed, size): per-class VAEs and the three latent samplers are fitted on that
training set only; then each method's classifier is trained
``classifier_seeds`` times (different initial weights and batch orders, same
data), chosen on validation balanced accuracy and tested.

Methods (:data:`LOWDATA_METHODS`): ``real``; ``resampled`` (minority classes
oversampled; the same images as ``real`` when the classes have equal sizes);
``torchio`` (real + TorchIO ``RandomAffine`` and ``RandomElasticDeformation``
redrawn every epoch); ``monai`` (real + MONAI ``RandRotate``, ``RandZoom``,
``RandGaussianNoise`` redrawn every epoch); ``real+<sampler>`` (real + the
sampler's synthetic images) and ``<sampler>`` (synthetic only) for the samplers
``prior``, ``gmm`` and ``riemannian`` (ours), ``kde`` (the kernel density on the
codes), any other sampler of :data:`augmentor.sampling.samplers.SAMPLERS`, or a peer source ``<model>-<sampler>``
(e.g. ``ae-gmm``). With ``synthetic_ratios`` each synthetic method runs once per
synthetic-to-real ratio (``real+gmm@x5``); ``<method>+filtered`` keeps only the
synthetic images a classifier of the real images is confident about. The
classifier can stop early on the validation split (``classifier`` settings).

The report gives mean ± std per method and size with both sources of variance
(between splits, between classifier seeds on one split), a plot of balanced
accuracy against the training size, the paired differences of every method to
``real`` and to each classical augmentation split by split with 95 % intervals
(``paired.md``, :mod:`pipelines.common.stats`), and per sampler the mean distance from
its latents to the nearest training code next to the distance between
neighbouring training codes (a sampler that replays the training set has the
first much smaller than the second).

Run directory::

    .lock, study.json                                  lock and identity (see pipelines.common.run_directory)
    splits/seed_<s>.pt                                 that seed's indices and images (val, test, ordered pool)
    generate/seed_<s>/n_<size>/class_models[_<model>]/class_<c>/  class c's trained VAE (or peer model)
    generate/seed_<s>/n_<size>/augmentor/              fitted VAEs + samplers
    generate/seed_<s>/n_<size>/augmentor_<model>/      a peer model's augmentor (<model>-<sampler> methods)
    generate/seed_<s>/n_<size>/latents_<sampler>.pt    synthetic latent codes (decoded on use)
    generate/seed_<s>/n_<size>/latent_distances.json   nearest-training-code distances per sampler and class
    results/seed_<s>/n_<size>/<method>/clf_<k>.json    one finished classifier (never overwritten)
    report/                                            summary.csv/.md, per_run.csv, distances.csv, plot,
                                                       paired.csv/.md (each method against real and classical
                                                       augmentation, split by split; pipelines.common.stats)

Usage::

    python -m augmentor.study --config configs/mnist_lowdata_quick.yaml --out runs/mnist_lowdata_quick
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from augmentor.utils.devices import resolve_device

from ..common.cli import add_override_arguments, command_line_overrides, run_command
from ..common.local_pool import execute_jobs
from ..common.ray_backend import RayTask, execute_ray
from ..common.run_directory import JobFailure, check_outside_data, lock_run_directory, saved_identity
from .sources import load_source
from .config import LowDataConfig, load_lowdata_config
from .jobs import (LowDataJob, LowDataPaths, data_folders, is_done, plan_lowdata_jobs, prepare_lowdata_run,
                   run_class_model, run_classify, run_generate)
from .report import write_lowdata_report

__all__ = [
    "LowDataResult",
    "build_parser",
    "main",
    "run_lowdata",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LowDataResult:
    """What :func:`run_lowdata` returns: the tables and where everything was written."""

    out: Path
    per_run: pd.DataFrame
    summary: pd.DataFrame
    table: str
    jobs_run: int
    jobs_skipped: int
    seconds: float
    job_resources: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


def _run_one(root: str, config_data: dict[str, Any], job: LowDataJob) -> None:
    """Run one job (the entry point of the worker processes)."""
    config = LowDataConfig.from_dict(config_data)
    run = {"vae": run_class_model, "generate": run_generate, "classify": run_classify}[job.kind]
    run(LowDataPaths(root), config, job)


def _run_jobs(paths: LowDataPaths, config: LowDataConfig, jobs: Sequence[LowDataJob]) -> list[tuple[str, str]]:
    """Run ``jobs`` with the local backend (:func:`pipelines.common.local_pool.execute_local`): in this process the
    class models first, then the generate jobs, then the classifiers; with several ``workers``, each job in a worker
    process once the jobs it reads (its ``after``) have finished.

    Every job fixes its own threads and seeds, so the results do not depend on the
    number of workers. A failed job skips the jobs that need it; other failures are
    collected and reported at the end.
    """
    phases = ("vae", "generate", "classify")
    return execute_jobs(sorted(jobs, key=lambda job: phases.index(job.kind)), _run_one, str(paths.root), config)


def _run_jobs_on_ray(paths: LowDataPaths, config: LowDataConfig,
                     jobs: Sequence[LowDataJob]) -> tuple[list[tuple[str, str]], dict[str, dict[str, float]]]:
    """Run ``jobs`` as Ray tasks (see :class:`LowDataConfig`); return the failures and each task's resources."""

    root = str(paths.root.resolve())
    data = {**config.to_dict(), "progress": False}  # no terminal inside a task
    todo = {job.key for job in jobs}  # finished jobs are not submitted, so nothing waits for them
    tasks = [RayTask(job.key, _run_one, (root, data, job), tuple(k for k in job.after if k in todo)) for job in jobs]
    outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    return outcome.failures, outcome.resources


def run_lowdata(config: LowDataConfig, out: str | Path, cache_dir: str | Path | None = None) -> LowDataResult:
    """Run (or resume) the low-data study into the run directory ``out``.

    Raises:
        RunDirectoryError: ``out`` holds a different study or foreign files, or another run is using it.
        JobFailure: some jobs failed; the finished ones are kept.
        ValueError, FileNotFoundError, ConfigError: the data cannot be used (named).
    """
    start = time.perf_counter()
    paths = LowDataPaths(out)
    device_type = resolve_device(config.device).type
    check_outside_data(paths.root, data_folders(config.data))  # before the lock file could be created in the data folder
    saved_identity(paths)  # refuse a foreign folder before the lock file is created in it
    with lock_run_directory(paths):
        data = load_source(config.data, cache_dir, progress=config.progress)
        config.check_image_size(tuple(data.images.shape[2:]))
        config.vae.build(tuple(data.images.shape[1:]))
        prepare_lowdata_run(paths, config, data, device_type)
        classes = sorted(int(c) for c in data.labels.unique())
        del data
        jobs = plan_lowdata_jobs(config, classes)
        todo = [job for job in jobs if not is_done(paths, config, job)]
        logger.info("Low-data study %r: %d seed(s) x %d size(s) x %d method(s) x %d classifier seed(s), "
                    "%d jobs (%d already finished), device %s, run directory %s", config.name,
                    len(config.seed_list), len(config.train_sizes), len(config.methods), config.classifier_seeds,
                    len(jobs), len(jobs) - len(todo), device_type, paths.root)
        resources: dict[str, dict[str, float]] = {}
        if config.backend == "ray" and todo:
            failures, resources = _run_jobs_on_ray(paths, config, todo)
        else:
            failures = _run_jobs(paths, config, todo)
        per_run, summary, table = write_lowdata_report(paths, f"Low-data study {config.name!r} ({config.data.source})")
        if failures:
            raise JobFailure(failures, paths.root)
        return LowDataResult(paths.root, per_run, summary, table, len(todo), len(jobs) - len(todo),
                             time.perf_counter() - start, resources)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m augmentor.study",
        description="Low-data augmentation study on any labelled image set (OASIS-1, MNIST, digits, or your "
        "NIfTI data dicts): real / classical / synthetic training sets at several training sizes; resumable.",
    )
    parser.add_argument("--config", type=Path, required=True,
                        help="study YAML/JSON file, or a shipped config's name such as lowdata_tiny")
    parser.add_argument("--out", type=Path, help="run directory (default: runs/lowdata_<config name>)")
    parser.add_argument("--seeds", type=int, help="number of repetitions (seeds 0..R-1)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--cache-dir", type=Path, help="cache root of simulated OASIS cohorts")
    add_override_arguments(parser, "'train_sizes=[10,50]'")
    return parser


def _print_result(config: LowDataConfig, result: LowDataResult, out: Path) -> None:
    """The study's table and where the report lies, for the terminal."""
    print()
    print(result.table)
    print(f"\nReport: {LowDataPaths(out).report} (summary.md, summary.csv, per_run.csv, distances.csv, "
          f"balanced_accuracy_vs_size.png, paired.md, paired.csv)")
    print(f"{result.jobs_run} job(s) run, {result.jobs_skipped} skipped, {result.seconds:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {"seeds": args.seeds, "device": args.device}
    return run_command(
        lambda: load_lowdata_config(args.config, command_line_overrides(args, overrides)), "lowdata_{name}",
        args.out, lambda config, out: run_lowdata(config, out, cache_dir=args.cache_dir), _print_result,
    )
