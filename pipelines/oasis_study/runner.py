"""The OASIS study's run directory (identity, data, splits) and the two execution backends.

The run directory (:mod:`pipelines.common.run_directory`) is tied to
:func:`pipelines.oasis_study.config.identity`. Extending a run with more seeds or methods is
allowed: they only add jobs. ``study.json`` is written only once the data have passed every
check (a split of every seed), so a failed start leaves no identity behind.

Backends: ``local`` runs the jobs in this process, or ``workers`` of them at once
in worker processes, each once the jobs it reads have finished
(:mod:`pipelines.common.local_pool`); ``ray``
submits every job as a Ray task (``num_cpus = num_threads``,
``num_gpus = ray.gpus_per_job``), each waiting for the jobs it reads
(:attr:`pipelines.oasis_study.jobs.Job.after`: a seed's generate task for its per-class
model tasks, a synthetic-data classifier for its seed's generate task). Both run the same function with the same per-job seeds
and thread counts, so they give the same results.
"""

from __future__ import annotations

import platform
from typing import Any, Mapping, Sequence

import torch

from augmentor.utils.artifacts import load_intact, read_checked_json, write_checked_json

from ..common.local_pool import execute_jobs
from ..common.ray_backend import RayTask, execute_ray
from ..common.run_directory import (JobFailure, RunDirectoryError, check_identity, check_outside_data,
                                    claim_run_directory, saved_identity)
from ..common.study_data import StudyData, split_subjects
from ..common.methods import method_sampler
from .config import StudyConfig, identity
from ..common.jobs import per_class_generators
from .jobs import Job, RunPaths, read_split, run_job

__all__ = [
    "check_run_directory",
    "execute",
    "plan_jobs",
    "prepare_run_directory",
    "train_classes",
]


def check_run_directory(paths: RunPaths, config: StudyConfig, device_type: str) -> None:
    """Fail early (before loading data) if the run directory holds another configuration."""
    saved = saved_identity(paths)
    if saved is None:
        return
    # The data are not loaded yet: their fingerprint is taken as the saved one (prepare_run_directory checks it).
    check_identity(paths, saved, identity(config, device_type, saved.get("identity", {}).get("data_fingerprint", "")))


def prepare_run_directory(
    paths: RunPaths, config: StudyConfig, data: StudyData, device_type: str
) -> dict[str, Any]:
    """Create or verify ``study.json``, ``data.pt`` and the split of every seed.

    Every check comes first (the splits are computed, which checks that each
    class can be split); ``study.json`` is written only then, so data that fail a
    check leave no identity that would refuse the corrected study afterwards.

    Returns:
        the run's identity.

    Raises:
        RunDirectoryError: the folder holds another study, other data, or foreign files.
        ValueError: the data cannot be split (a single class, a class too small).
    """
    check_outside_data(paths.root, config.data.data_folders())
    ident = identity(config, device_type, data.fingerprint())
    saved = saved_identity(paths)
    if saved is not None:
        check_identity(paths, saved, ident)
    splits = {seed: split_subjects(data.subject_ids, data.labels, seed, config.split) for seed in config.seed_list}
    claim_run_directory(paths, ident, {
        "config": config.to_dict(),
        "data_source": data.source,
        "n_subjects": len(set(data.subject_ids)),
        "image_size": list(data.image_size),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    })
    if not paths.data.is_file():
        data.save(paths.data)
    for seed, split in splits.items():
        record = {
            "seed": seed,
            "indices": split,
            "subjects": {k: sorted({data.subject_ids[i] for i in v}) for k, v in split.items()},
            "labels": {k: [int(data.labels[i]) for i in v] for k, v in split.items()},
        }
        target = paths.split(seed)
        stored = load_intact(target, read_checked_json)  # a damaged split is moved aside and written again
        if stored is None:
            write_checked_json(target, record)
        elif stored.get("indices") != split:
            raise RunDirectoryError(f"{target} differs from the split computed now; not resuming")
    return ident


def plan_jobs(config: StudyConfig, classes: Mapping[int, Sequence[int]]) -> list[Job]:
    """All jobs of the study, seed by seed: if a method needs synthetic images, a ``vae`` job per class and
    per-class generator and the seed's generate job after them; then its classifiers.

    Args:
        config: the study.
        classes: per seed, the classes of its training subjects.
    """
    jobs = []
    samplers = tuple(config.samplers)
    generators = per_class_generators(samplers)
    for seed in config.seed_list:
        models = [Job("vae", seed, label=label, generator=g) for g in generators for label in classes[seed]]
        generate = Job("generate", seed, samplers=samplers, after=tuple(job.key for job in models))
        if samplers:
            jobs += [*models, generate]
        jobs.extend(Job("classify", seed, method, after=(generate.key,) if method_sampler(method) else ())
                    for method in config.methods)
    return jobs


def train_classes(paths: RunPaths, data: StudyData, seeds: Sequence[int]) -> dict[int, list[int]]:
    """Per seed, the classes of its training subjects (the labels of its split's training images)."""
    return {seed: sorted(set(data.labels[read_split(paths, seed)["train"]].tolist())) for seed in seeds}


Outcome = tuple[list[tuple[str, str]], dict[str, dict[str, float]]]


def _execute_local(paths: RunPaths, config: StudyConfig, jobs: Sequence[Job]) -> Outcome:
    return execute_jobs(jobs, run_job, str(paths.root), config), {}


def _execute_ray(paths: RunPaths, config: StudyConfig, jobs: Sequence[Job]) -> Outcome:
    # Inside tasks there is no terminal to draw progress bars on.
    data = {**config.to_dict(), "progress": False}
    root = str(paths.root.resolve())
    todo = {job.key for job in jobs}  # finished jobs are not submitted, so nothing waits for them
    tasks = [RayTask(job.key, run_job, (root, data, job), tuple(k for k in job.after if k in todo)) for job in jobs]
    outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    return outcome.failures, outcome.resources


def execute(paths: RunPaths, config: StudyConfig, jobs: Sequence[Job]) -> dict[str, dict[str, float]]:
    """Run the unfinished ``jobs`` with the configured backend.

    Returns:
        per job run as a Ray task, the resources Ray assigned to it (e.g.
        ``{"CPU": 1.0, "GPU": 0.5}``); empty with the local backend.

    Raises:
        JobFailure: some jobs failed (the others ran and their results are kept).
    """
    if not jobs:
        return {}
    run = _execute_ray if config.backend == "ray" else _execute_local
    failures, resources = run(paths, config, jobs)
    if failures:
        raise JobFailure(failures, paths.root)
    return resources


