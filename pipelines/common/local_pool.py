"""The local backend: a study's jobs in this process, or several at once in worker processes.

Both studies (and anything else that plans a job list) hand their jobs over as
:class:`~pipelines.ray_backend.RayTask` objects, the description the Ray backend
takes: a key, a module-level function, its arguments and the keys of the jobs it
waits for. :func:`execute_local` runs them

* with one worker, one after the other in this process, in the given order (a job
  whose input failed is skipped: "not run: <key> failed");
* with more, in that many worker processes (``spawn``: a forked child would
  inherit the parent's OpenMP thread pools in an unknown state). A job starts once
  every job it waits for has finished; among the jobs ready to start, the ones
  with the longest chain of jobs waiting on them go first (the class models before
  the generate jobs before the classifiers), so the short classifier jobs fill the
  end of the run.

Every job fixes its own thread count and seeds, so the results do not depend on
the number of workers (``workers`` is left out of a run's identity). A worker that
fails a job reports its error line (its traceback goes to the terminal) and takes
the next job; a worker that dies (killed, out of memory) fails its job and is
replaced. On an interruption the workers are stopped; a killed job leaves no
result behind, since every result is written atomically.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from augmentor.utils.devices import resolve_device

from .ray_backend import RayTask, error_line

__all__ = ["AUTO", "available_cpus", "execute_jobs", "execute_local", "resolve_workers", "task_heights"]

logger = logging.getLogger(__name__)

AUTO = "auto"  # the ``workers`` setting that sizes the pool to the machine (:func:`resolve_workers`)
Failures = list[tuple[str, str]]
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity mask on this platform (macOS)
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | str, num_threads: int, device_type: str, n_jobs: int) -> int:
    """How many jobs run at once.

    Args:
        workers: a count, or ``auto``: as many jobs as the CPUs hold at
            ``num_threads`` threads each on the CPU device, one on an accelerator
            (its jobs share one device; the Ray backend spreads them over several).
        num_threads: threads of every job.
        device_type: the resolved device (``cpu``, ``cuda``, ``mps``).
        n_jobs: the jobs to run (more workers than jobs would only start idle processes).

    Returns:
        A count between 1 and ``max(1, n_jobs)``.
    """
    if workers == AUTO:
        wanted = available_cpus() // num_threads if device_type == "cpu" else 1
    elif isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
        wanted = workers
    else:
        raise ValueError(f"workers must be an integer >= 1 or {AUTO!r}, got {workers!r}")
    return max(1, min(wanted, n_jobs))


def task_heights(tasks: Sequence[RayTask]) -> dict[str, int]:
    """Per task, the length of the longest chain of tasks that wait on it (0: nothing waits on it).

    Raises:
        ValueError: the tasks wait for each other in a cycle.
    """
    waiting_on = {task.key: [] for task in tasks}
    for task in tasks:
        for key in task.after:
            if key in waiting_on:
                waiting_on[key].append(task.key)
    heights: dict[str, int] = {}
    visiting: set[str] = set()

    def height(key: str) -> int:
        if key not in heights:
            if key in visiting:
                raise ValueError(f"the tasks wait for each other in a cycle through {key}")
            visiting.add(key)
            heights[key] = 1 + max((height(k) for k in waiting_on[key]), default=-1)
            visiting.discard(key)
        return heights[key]

    for task in tasks:
        height(task.key)
    return heights


def execute_local(tasks: Sequence[RayTask], workers: int = 1, progress: bool = True) -> Failures:
    """Run ``tasks``, each after the tasks named in its ``after`` (keys of other tasks; keys of jobs not in
    ``tasks`` count as finished).

    Args:
        tasks: the jobs, in the order one worker runs them.
        workers: how many run at once (1: in this process).
        progress: show a progress bar (of the jobs, in this process).

    Returns:
        ``(key, message)`` of every failed task, in the order of ``tasks``; one not
        run because a task it waits for failed says so.

    Raises:
        ValueError: two tasks share a key, or the tasks wait for each other in a cycle.
    """
    keys = [task.key for task in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError(f"task keys must be unique; repeated: {sorted({k for k in keys if keys.count(k) > 1})}")
    heights = task_heights(tasks)
    with tqdm(total=len(tasks), desc="jobs", unit="job", disable=not progress) as bar:
        if workers <= 1 or len(tasks) < 2:
            failures = _run_in_process(tasks, bar)
        else:
            logger.info("%d jobs, %d at a time in worker processes", len(tasks), workers)
            failures = _WorkerPool(workers).run(sorted(tasks, key=lambda t: -heights[t.key]), bar)
    position = {key: i for i, key in enumerate(keys)}
    return sorted(failures, key=lambda failure: position[failure[0]])


def execute_jobs(jobs: Sequence[Any], run: Callable[..., Any], root: str, config: Any) -> Failures:
    """Run a study's ``jobs`` (each with ``key`` and ``after``) with the local backend: ``run(root, config_data,
    job)`` for each, ``config.workers`` at a time (:func:`resolve_workers`), in the order given when one at a time.

    Worker processes share the terminal, so only this process draws a progress bar.
    """
    workers = resolve_workers(config.workers, config.num_threads, resolve_device(config.device).type, len(jobs))
    data = config.to_dict() if workers == 1 else {**config.to_dict(), "progress": False}
    tasks = [RayTask(job.key, run, (root, data, job), job.after) for job in jobs]
    return execute_local(tasks, workers, config.progress)


def _blocker(task: RayTask, failed: set[str]) -> str | None:
    """The first task ``task`` waits for that failed or was not run, if any."""
    return next((key for key in task.after if key in failed), None)


def _run_in_process(tasks: Sequence[RayTask], bar: tqdm) -> Failures:
    failures: Failures = []
    failed: set[str] = set()  # keys of the tasks that failed or were not run
    for task in tasks:
        bar.set_postfix_str(task.key)
        blocked = _blocker(task, failed)
        if blocked is not None:
            failures.append((task.key, f"not run: {blocked} failed"))
            failed.add(task.key)
        else:
            try:
                task.function(*task.args)
            except Exception as err:  # keep going with independent tasks; report all at the end
                traceback.print_exc()
                failures.append((task.key, error_line(err)))
                failed.add(task.key)
        bar.update(1)
    return failures


def _stop_on_terminate(signum: int, frame: Any) -> None:
    """SIGTERM as ``SystemExit``, so a stopped worker's ``finally`` blocks remove its temporary files."""
    raise SystemExit(128 + signum)


def _end_with_parent(parent: int) -> None:
    """Have the kernel stop this worker (SIGTERM) when its parent dies (Linux), so that a killed run leaves no job
    running in a run directory whose lock has gone with it; elsewhere a worker ends after its job."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # it died before the request
        raise SystemExit(128 + signal.SIGTERM)


def _serve(connection: Connection, parent: int, log_level: int, log_format: str | None) -> None:
    """A worker process: run the tasks received on ``connection`` until told to stop (``None``).

    Sends back ``(key, None)`` for a finished task, ``(key, error line)`` for a failed one.
    """
    signal.signal(signal.SIGTERM, _stop_on_terminate)
    _end_with_parent(parent)
    if log_format is not None:  # the jobs' log lines go to the terminal as in the parent
        logging.basicConfig(level=log_level, format=log_format)
    try:
        while True:
            try:
                message = connection.recv()
            except EOFError:  # the parent is gone
                return
            if message is None:
                return
            key, function, args = message
            try:
                function(*args)
            except Exception as err:
                traceback.print_exc()
                connection.send((key, error_line(err)))
            else:
                connection.send((key, None))
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal; the parent reports it
        return


class _Worker:
    """One worker process and this side of its pipe."""

    def __init__(self, context: Any, log_level: int, log_format: str | None) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, os.getpid(), log_level, log_format), daemon=True)
        self.process.start()
        child.close()

    def stop(self, interrupted: bool) -> None:
        """End the process: ask it to (after the last task), else terminate it (SIGTERM, then SIGKILL)."""
        if not interrupted and self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:  # it died meanwhile
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def _log_settings() -> tuple[int, str | None]:
    """The root logger's level and the format of its first handler (None: logging is not set up here)."""
    root = logging.getLogger()
    if not root.handlers:
        return root.level, None
    formatter = root.handlers[0].formatter
    return root.level, formatter._fmt if formatter is not None else logging.BASIC_FORMAT


class _WorkerPool:
    """Up to ``size`` worker processes that run tasks as their inputs finish (see the module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.context = multiprocessing.get_context("spawn")
        self.log_level, self.log_format = _log_settings()
        self.idle: list[_Worker] = []
        self.busy: dict[_Worker, RayTask] = {}

    def run(self, tasks: Sequence[RayTask], bar: tqdm) -> Failures:
        """Run ``tasks`` (ready ones in this order); return the failures."""
        present = {task.key for task in tasks}
        waiting = list(tasks)
        finished: set[str] = set()
        failed: set[str] = set()
        failures: Failures = []
        interrupted = True
        try:
            while waiting or self.busy:
                for task in list(waiting):  # in order of height: a job is seen after the jobs it waits for
                    blocked = _blocker(task, failed)
                    if blocked is not None:
                        failures.append((task.key, f"not run: {blocked} failed"))
                        failed.add(task.key)
                        waiting.remove(task)
                        bar.update(1)
                for task in [t for t in waiting if all(k in finished or k not in present for k in t.after)]:
                    if len(self.busy) == self.size:
                        break
                    waiting.remove(task)
                    self._start(task)
                if not self.busy:
                    if waiting:
                        raise ValueError(f"tasks {[t.key for t in waiting]} wait for tasks that never run")
                    break
                bar.set_postfix_str(", ".join(task.key for task in self.busy.values()))
                for task, error in self._wait():
                    (failed if error is not None else finished).add(task.key)
                    if error is not None:
                        logger.error("%s failed: %s", task.key, error)
                        failures.append((task.key, error))
                    bar.update(1)
            interrupted = False
        finally:
            for worker in [*self.idle, *self.busy]:
                worker.stop(interrupted)
            self.idle, self.busy = [], {}
        return failures

    def _start(self, task: RayTask) -> None:
        while self.idle and not self.idle[-1].process.is_alive():  # died after its last answer
            self.idle.pop().stop(interrupted=True)
        worker = self.idle.pop() if self.idle else _Worker(self.context, self.log_level, self.log_format)
        worker.connection.send((task.key, task.function, task.args))
        self.busy[worker] = task

    def _wait(self) -> list[tuple[RayTask, str | None]]:
        """Wait until some worker reports or dies; return each finished task and its error (None: success)."""
        ready = set(wait([w.connection for w in self.busy] + [w.process.sentinel for w in self.busy]))
        done = []
        for worker, task in list(self.busy.items()):
            if worker.connection not in ready and worker.process.sentinel not in ready:
                continue
            del self.busy[worker]
            try:
                key, error = worker.connection.recv()
            except (EOFError, OSError):  # it died before answering: its task fails, a new worker takes over
                worker.stop(interrupted=True)
                done.append((task, f"worker process died (exit code {worker.process.exitcode})"))
                continue
            if key != task.key:
                raise RuntimeError(f"worker answered for {key} while running {task.key}")
            self.idle.append(worker)
            done.append((task, error))
        return done
