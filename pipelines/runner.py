"""Run directories (identity, refusal, resumption) and the two execution backends.

A run directory is tied to the settings every job's result depends on
(:func:`pipelines.config.identity`: the config minus scheduling fields, the
resolved device type and the fingerprint of the data). ``study.json`` records
them on first use; a later invocation with the same identity resumes (finished
jobs are skipped), one with a different identity is refused with the list of
differing settings. Extending a run with more seeds or methods is allowed: they
only add jobs. ``study.json`` is written only once the data have passed every
check (a split of every seed), so a failed start leaves no identity behind.

One invocation at a time works in a run directory: it holds an exclusive
``flock`` on ``<run>/.lock`` until it ends (the operating system releases it when
the process dies, however it dies); a second invocation is refused at once.

Backends: ``local`` runs the jobs in this process, or ``workers`` of them at once
in worker processes, each once the jobs it reads have finished
(:mod:`pipelines.local_pool`); ``ray``
submits every job as a Ray task (``num_cpus = num_threads``,
``num_gpus = ray.gpus_per_job``), each waiting for the jobs it reads
(:attr:`pipelines.jobs.Job.after`: a seed's generate task for its per-class
model tasks, a synthetic-data classifier for its seed's generate task). Both run
the same function with the same per-job seeds and thread counts, so they give
the same results.

:func:`run_command` is the command-line flow every pipeline's ``main`` shares:
its exit codes and messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch

from augmentor.utils.artifacts import load_intact, read_checked_json, write_checked_json
from augmentor.utils.io import write_json

from augmentor.utils.config import ConfigError
from augmentor.utils.devices import resolve_device

from .common import RunDirectory
from .config import StudyConfig, identity, identity_hash, method_sampler
from .data import StudyData, split_subjects
from .jobs import Job, RunPaths, per_class_generators, read_split, run_job
from .local_pool import execute_local, resolve_workers
from .ray_backend import RayTask, RayUnavailableError, execute_ray

__all__ = [
    "FORMAT_VERSION",
    "JobFailure",
    "RunDirectoryError",
    "StudyError",
    "check_outside_data",
    "check_run_directory",
    "claim_run_directory",
    "execute",
    "lock_run_directory",
    "plan_jobs",
    "prepare_run_directory",
    "run_command",
    "saved_identity",
    "train_classes",
]

FORMAT_VERSION = 1


class StudyError(RuntimeError):
    """The study cannot run or some of its jobs failed."""


class RunDirectoryError(StudyError):
    """The output folder belongs to another study (different settings or data) or to nothing we wrote."""


class JobFailure(StudyError):
    """Some jobs failed; the finished ones are kept and a rerun resumes."""

    def __init__(self, failures: list[tuple[str, str]], out: Path) -> None:
        self.failures = failures
        lines = [f"{len(failures)} job(s) failed (finished jobs are kept; rerun the same command to resume):"]
        lines += [f"  {key}: {message}" for key, message in failures]
        lines.append(f"run directory: {out}")
        super().__init__("\n".join(lines))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    a, b = _flatten(saved), _flatten(wanted)
    return [
        f"  {key}: {a.get(key, '<absent>')!r} in the run directory, {b.get(key, '<absent>')!r} now"
        for key in sorted(set(a) | set(b))
        if a.get(key, object()) != b.get(key, object())
    ]


def _refuse(out: Path, differences: list[str]) -> RunDirectoryError:
    return RunDirectoryError(
        "\n".join(
            [f"{out} holds results of a different study configuration; refusing to mix them:"]
            + differences
            + ["Use a new --out folder, or the run directory's own settings (see its study.json) to resume it."]
        )
    )


def _saved_study(paths: RunDirectory) -> dict[str, Any] | None:
    if paths.study.is_file():
        try:
            return json.loads(paths.study.read_text())
        except ValueError as err:
            raise RunDirectoryError(f"{paths.study} is unreadable ({err}); not resuming") from err
    if paths.root.exists() and (not paths.root.is_dir() or any(p != paths.lock for p in paths.root.iterdir())):
        raise RunDirectoryError(
            f"{paths.root} already exists and is not a study run directory (no study.json); "
            "choose a new --out folder (existing files are never overwritten)"
        )
    return None


@contextlib.contextmanager
def lock_run_directory(paths: RunDirectory) -> Iterator[None]:
    """Hold the run directory (created if needed) for this process until the block ends.

    The lock is an exclusive, non-blocking ``flock`` on ``<run>/.lock``; the
    operating system releases it when the file is closed or the process dies, so a
    crashed run never leaves the directory locked. The lock file itself stays: it
    is only ever locked, never removed, so that two runs cannot lock two different
    files of the same name.

    Raises:
        RunDirectoryError: another run holds the directory.
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirectoryError(
                f"{paths.root} is in use: another run of the study holds it (lock {paths.lock}, process {holder}). "
                "Two runs in one directory would corrupt each other; wait for the other run to end, or "
                "choose another --out folder"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def check_run_directory(paths: RunPaths, config: StudyConfig, device_type: str) -> None:
    """Fail early (before loading data) if the run directory holds another configuration."""
    saved = _saved_study(paths)
    if saved is None:
        return
    wanted = identity(config, device_type, saved["identity"].get("data_fingerprint", ""))
    if identity_hash(wanted) != saved["identity_hash"]:
        raise _refuse(paths.root, _differences(saved["identity"], wanted))


def saved_identity(paths: RunDirectory) -> dict[str, Any] | None:
    """The ``study.json`` of a run directory, or ``None`` for a new (absent or empty) folder.

    Raises:
        RunDirectoryError: the folder holds files but no study, or an unreadable ``study.json``.
    """
    return _saved_study(paths)


def claim_run_directory(paths: RunDirectory, ident: dict[str, Any], record: dict[str, Any]) -> bool:
    """Tie a run directory to ``ident``: write its ``study.json``, or check the one it holds.

    The identity check of every study's run directory (a
    :class:`~pipelines.common.RunDirectory`).

    Args:
        paths: where the run directory and its ``study.json`` are.
        ident: the settings every result depends on (hashed with :func:`identity_hash`).
        record: further facts stored beside the identity in a new ``study.json``.

    Returns:
        whether the directory was new (``study.json`` written now).

    Raises:
        RunDirectoryError: the folder holds another identity, another format, or foreign files.
    """
    saved = _saved_study(paths)
    digest = identity_hash(ident)
    if saved is None:
        paths.root.mkdir(parents=True, exist_ok=True)
        write_json(paths.study, {"format_version": FORMAT_VERSION, "identity_hash": digest, "identity": ident,
                                 **record})
        return True
    if saved.get("format_version") != FORMAT_VERSION:
        raise RunDirectoryError(f"{paths.study} has format {saved.get('format_version')}, expected {FORMAT_VERSION}")
    if saved.get("identity_hash") != digest:
        raise _refuse(paths.root, _differences(saved.get("identity", {}), ident))
    return False


def check_outside_data(out: Path, config: StudyConfig) -> None:
    """Refuse a run directory inside the OASIS data folder (input data are never written to).

    Raises:
        StudyError: naming both folders.
    """
    if config.data.data_dir is None:
        return
    data = Path(config.data.data_dir).expanduser().resolve()
    data = data.parent if data.suffix == ".npz" else data
    out = out.resolve()
    if out == data or data in out.parents:
        raise StudyError(f"the run directory {out} lies inside the data folder {data}; input data are never written to")


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
    check_outside_data(paths.root, config)
    ident = identity(config, device_type, data.fingerprint())
    digest = identity_hash(ident)
    saved = _saved_study(paths)
    if saved is not None:
        if saved.get("format_version") != FORMAT_VERSION:
            raise RunDirectoryError(f"{paths.study} has format {saved.get('format_version')}, expected {FORMAT_VERSION}")
        if saved["identity_hash"] != digest:
            raise _refuse(paths.root, _differences(saved["identity"], ident))
    splits = {seed: split_subjects(data.subject_ids, data.labels, seed, config.split) for seed in config.seed_list}
    if saved is None:
        paths.root.mkdir(parents=True, exist_ok=True)
        write_json(
            paths.study,
            {
                "format_version": FORMAT_VERSION,
                "identity_hash": digest,
                "identity": ident,
                "config": config.to_dict(),
                "data_source": data.source,
                "n_subjects": len(set(data.subject_ids)),
                "image_size": list(data.image_size),
                "versions": {"torch": torch.__version__, "python": platform.python_version()},
            },
        )
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
    workers = resolve_workers(config.workers, config.num_threads, resolve_device(config.device).type, len(jobs))
    # Worker processes share the terminal: only this process draws a progress bar.
    data = config.to_dict() if workers == 1 else {**config.to_dict(), "progress": False}
    tasks = [RayTask(job.key, run_job, (str(paths.root), data, job), job.after) for job in jobs]
    return execute_local(tasks, workers, config.progress), {}


def _execute_ray(paths: RunPaths, config: StudyConfig, jobs: Sequence[Job]) -> Outcome:
    # Inside tasks there is no terminal to draw progress bars on.
    data = {**config.to_dict(), "progress": False}
    root = str(paths.root.resolve())
    todo = {job.key for job in jobs}  # finished jobs are not submitted, so nothing waits for them
    tasks = [RayTask(job.key, run_job, (root, data, job), tuple(k for k in job.after if k in todo)) for job in jobs]
    try:
        outcome = execute_ray(tasks, config.ray, config.num_threads, config.progress)
    except RayUnavailableError as err:
        raise StudyError(str(err)) from err
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


ConfigT = TypeVar("ConfigT")
ResultT = TypeVar("ResultT")


def run_command(
    load_config: Callable[[], ConfigT],
    default_out: str,
    out: Path | None,
    run: Callable[[ConfigT, Path], ResultT],
    report: Callable[[ConfigT, ResultT, Path], None],
) -> int:
    """Load the config, run it in its run directory and print its report: a pipeline's ``main``.

    The library logs its progress (the plan, what was left out of the data), so
    INFO messages are shown.

    Args:
        load_config: reads and validates the config (raising :class:`ConfigError`).
        default_out: the run directory's name under ``runs/`` when ``out`` is None,
            with ``{name}`` standing for the config's ``name``.
        out: the run directory given on the command line.
        run: runs the config in the run directory and returns its result.
        report: prints the result, given the config, the result and the run directory.

    Returns:
        The exit status: 0 done, 1 the run failed (its error printed; finished
        outputs are kept), 2 an invalid configuration, 130 interrupted.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        config = load_config()
    except ConfigError as err:
        print(f"error: invalid configuration: {err}", file=sys.stderr)
        return 2
    out = out or Path("runs") / default_out.format(name=config.name)
    try:
        result = run(config, out)
    except (StudyError, ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a read-only or full output folder: the system's reason, without a traceback
        print(f"error: {err.strerror or err}: {err.filename or out}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished outputs are kept in {out}; rerun the same command to resume", file=sys.stderr)
        return 130
    report(config, result, out)
    return 0
