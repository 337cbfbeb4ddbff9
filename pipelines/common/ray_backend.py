"""Run a pipeline's jobs as Ray tasks: CPUs and GPUs requested per task, dependencies, failures collected.

Every pipeline with a ``ray`` backend (the OASIS study, the low-data study, the
generation benchmark's model training) hands its jobs to :func:`execute_ray` as
:class:`RayTask` s: a key, a picklable function with its arguments, and the keys
of the tasks it must wait for. Each task reserves ``num_cpus`` CPUs and
``RayConfig.gpus_per_job`` GPUs (a fraction shares a GPU between tasks; Ray
sets ``CUDA_VISIBLE_DEVICES`` for it), so a cluster of several GPUs runs as
many jobs at once as its GPUs hold. Jobs are idempotent (a finished job skips
itself), so a rerun after a failure or an interruption resumes.

The resources Ray actually assigned to every task are returned (read inside the
task with ``ray.get_runtime_context().get_assigned_resources()``), so a caller
or a test can check the scheduling.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from .run_directory import StudyError
from .settings import RayConfig

__all__ = ["RayOutcome", "RayTask", "RayUnavailableError", "error_line", "execute_ray"]

logger = logging.getLogger(__name__)


class RayUnavailableError(StudyError):
    """Ray is not installed (a :class:`~pipelines.common.run_directory.StudyError`: the study cannot run)."""


@dataclasses.dataclass(frozen=True)
class RayTask:
    """One job for :func:`execute_ray`.

    Attributes:
        key: unique name of the job (shown in failures).
        function: what the task runs, ``function(*args)``; must be importable by the workers.
        args: its arguments (picklable).
        after: keys of earlier tasks that must succeed before this one runs.
    """

    key: str
    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    after: tuple[str, ...] = ()


@dataclasses.dataclass
class RayOutcome:
    """What :func:`execute_ray` returns.

    Attributes:
        failures: ``(key, message)`` of every failed task (one not run because a
            task it waits for failed says so).
        resources: per finished task, the resources Ray assigned to it
            (e.g. ``{"CPU": 1.0, "GPU": 0.5}``).
    """

    failures: list[tuple[str, str]]
    resources: dict[str, dict[str, float]]


def _run_and_record(function: Callable[..., Any], args: tuple[Any, ...], *dependencies: Any) -> dict[str, float]:
    """The body of every task: run the job, return the resources Ray gave it (``dependencies`` only order tasks)."""
    import ray

    function(*args)
    return dict(ray.get_runtime_context().get_assigned_resources())


def error_line(err: BaseException) -> str:
    """The error in one line (its type and first line; at most 2000 characters)."""
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if len(text) < 2000 else text[:2000]


def execute_ray(tasks: Sequence[RayTask], config: RayConfig, num_cpus: int, progress: bool = True) -> RayOutcome:
    """Submit ``tasks`` to Ray and wait for all of them.

    Joins the running Ray instance if this process has one, else the cluster of
    ``config.address`` (or ``RAY_ADDRESS``), else starts a local one (shut down
    again at the end). On an interruption the pending tasks are cancelled.

    Args:
        tasks: the jobs, each after the tasks named in its ``after``.
        config: cluster address and GPUs per task.
        num_cpus: CPUs per task (the job's thread count).
        progress: show a progress bar.

    Returns:
        The failures and the resources assigned to each finished task.

    Raises:
        RayUnavailableError: Ray is not installed.
        ValueError: a task waits for a key that is not an earlier task.
    """
    try:
        import ray
    except ImportError as err:
        raise RayUnavailableError("the ray backend needs Ray: pip install 'geometric-augmentor[ray]'") from err

    started = False
    if not ray.is_initialized():
        if config.address is None and not os.environ.get("RAY_ADDRESS"):
            ray.init(include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=config.address)
        started = True
    remote = ray.remote(_run_and_record).options(num_cpus=num_cpus, num_gpus=config.gpus_per_job, max_retries=0)
    refs: dict[str, Any] = {}
    keys: dict[Any, str] = {}
    failed: set[str] = set()
    outcome = RayOutcome([], {})
    pending: list[Any] = []
    try:
        for task in tasks:
            missing = [key for key in task.after if key not in refs]
            if missing:
                raise ValueError(f"task {task.key} waits for {missing}, which are not earlier tasks")
            ref = remote.remote(task.function, task.args, *(refs[key] for key in task.after))
            refs[task.key] = ref
            keys[ref] = task.key
        after = {task.key: task.after for task in tasks}
        pending = list(keys)
        with tqdm(total=len(pending), desc="jobs (ray)", unit="job", disable=not progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    key = keys[ref]
                    try:
                        outcome.resources[key] = ray.get(ref)
                    except ray.exceptions.RayError as err:
                        failed.add(key)
                        blocked = [k for k in after[key] if k in failed]
                        cause = getattr(err, "cause", None) or err
                        outcome.failures.append((key, f"not run: {blocked[0]} failed" if blocked else error_line(cause)))
                    bar.update(1)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()
    for key, resources in outcome.resources.items():
        logger.debug("%s ran with %s", key, resources)
    return outcome
