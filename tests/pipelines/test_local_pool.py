"""The local backend's worker pool (pipelines/common/local_pool.py): dependency order, concurrency, failures, dead workers,
the ``workers`` setting; and that the studies give the same run directory with 2 workers as with 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from augmentor.utils.config import ConfigError
from pipelines.common import local_pool
from pipelines.oasis_study.config import identity, load_study_config
from pipelines.common.local_pool import execute_local, resolve_workers, task_heights
from pipelines.lowdata import load_lowdata_config, run_lowdata
from pipelines.oasis_study import run_study
from pipelines.common.ray_backend import RayTask

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Seconds a test waits for a worker: a spawned worker took up to a minute to start on a 2-core machine under load 8.
PATIENCE = 300.0


# --- task functions (module level: the spawned workers import them by name) ------------------------------------------

def _write_after(folder: str, key: str, needs: tuple[str, ...], seconds: float = 0.0) -> None:
    """Fail unless the files of ``needs`` exist at the start; then work ``seconds`` and write ``<key>`` (pid inside)."""
    missing = [need for need in needs if not (Path(folder) / need).is_file()]
    if missing:
        raise RuntimeError(f"{key} started before {missing} finished")
    time.sleep(seconds)
    (Path(folder) / key).write_text(str(os.getpid()))


def _meet(folder: str, key: str, other: str) -> None:
    """Write ``<key>``, then wait for ``<other>``: both finish only if they run at the same time."""
    (Path(folder) / key).write_text(str(os.getpid()))
    deadline = time.monotonic() + PATIENCE
    while not (Path(folder) / other).is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never ran while {key} was running")
        time.sleep(0.02)


def _fail(message: str) -> None:
    raise RuntimeError(message)


def _die(code: int) -> None:
    os._exit(code)  # as a worker killed by the system would end: no answer to the parent


def _sleep_then_write(folder: str, key: str) -> None:
    """Record this worker's pid, then work longer than any test waits before writing the result ``<key>.json``."""
    (Path(folder) / f"{key}.pid").write_text(str(os.getpid()))
    time.sleep(2 * PATIENCE)
    (Path(folder) / f"{key}.json").write_text("{}")


def _task(folder: Path, key: str, after: tuple[str, ...] = (), seconds: float = 0.0) -> RayTask:
    return RayTask(key, _write_after, (str(folder), key, after, seconds), after)


# --- the pool ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """One run of a job graph on two workers (each spawned worker takes seconds to import the library).

    The slow ``a`` makes a pool that ignored ``after`` start ``b`` and ``c`` while it
    runs (they would fail); ``x`` and ``y`` finish only if they run at the same time;
    ``bad`` fails and ``dies`` kills its worker, each with jobs waiting on it.
    """
    folder = tmp_path_factory.mktemp("pool")
    (folder / "finished-earlier").write_text("")
    tasks = [
        _task(folder, "a", seconds=1.0), _task(folder, "b", ("a",)), _task(folder, "c", ("a", "b")),
        _task(folder, "d", ("finished-earlier",)),  # a key of no task: finished before
        RayTask("bad", _fail, ("simulated failure",)), _task(folder, "child", ("bad",)),
        _task(folder, "grandchild", ("child",)),
        RayTask("dies", _die, (7,)), _task(folder, "needs-dead", ("dies",)),
        RayTask("x", _meet, (str(folder), "x", "y")), RayTask("y", _meet, (str(folder), "y", "x")),
        *(_task(folder, f"t{i}") for i in range(3)),
    ]
    return execute_local(tasks, workers=2, progress=False), folder


def test_a_job_starts_only_after_the_jobs_it_reads(pooled) -> None:
    failures, folder = pooled
    assert not {"a", "b", "c", "d"} & {key for key, _ in failures}
    assert os.getpid() not in {int((folder / key).read_text()) for key in "abcd"}  # all in workers


def test_two_workers_run_two_jobs_at_once(pooled) -> None:
    failures, folder = pooled
    assert not {"x", "y"} & {key for key, _ in failures}
    assert (folder / "x").read_text() != (folder / "y").read_text()  # two processes


def test_a_failed_or_dead_job_skips_what_needs_it_and_the_rest_runs(pooled) -> None:
    failures, folder = pooled
    assert failures == [("bad", "RuntimeError: simulated failure"), ("child", "not run: bad failed"),
                        ("grandchild", "not run: child failed"), ("dies", "worker process died (exit code 7)"),
                        ("needs-dead", "not run: dies failed")]  # in the order of the tasks
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b", "c", "d", "finished-earlier", "t0", "t1", "t2",
                                                        "x", "y"]


def test_one_worker_runs_in_this_process_in_the_given_order(tmp_path) -> None:
    tasks = [_task(tmp_path, "a"), _task(tmp_path, "b", ("a",)), RayTask("c", _fail, ("boom",)),
             _task(tmp_path, "d", ("c",)), _task(tmp_path, "e", ("d",)), _task(tmp_path, "f")]
    failures = execute_local(tasks, workers=1, progress=False)
    assert failures == [("c", "RuntimeError: boom"), ("d", "not run: c failed"), ("e", "not run: d failed")]
    assert {int((tmp_path / key).read_text()) for key in "abf"} == {os.getpid()}


# Ctrl-C's default handling, also where the test runs as a background job (which inherits SIGINT ignored,
# and Python then installs no KeyboardInterrupt handler).
_STOPPED_RUN = """
import signal
import sys
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
from pipelines.common.local_pool import execute_local
from pipelines.common.ray_backend import RayTask
from test_local_pool import _sleep_then_write
execute_local([RayTask(key, _sleep_then_write, ({folder!r}, key)) for key in ("p", "q")], workers=2, progress=False)
"""


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (an orphan's zombie waits for a reaper that may not come)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_run_leaves_no_worker_running(tmp_path, stop) -> None:
    script = _STOPPED_RUN.format(tests=str(Path(__file__).parent), folder=str(tmp_path))
    run = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + PATIENCE
        while not all((tmp_path / f"{key}.pid").is_file() for key in "pq"):
            assert run.poll() is None and time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        workers = [int((tmp_path / f"{key}.pid").read_text()) for key in "pq"]
        assert all(_running(pid) for pid in workers)
        run.send_signal(stop)  # the parent only (Ctrl-C in a terminal also reaches the workers)
        assert run.wait(timeout=PATIENCE) != 0
    finally:
        run.kill()  # ends the workers too (no-op when the run has ended)
    deadline = time.monotonic() + PATIENCE
    while any(_running(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the stopped run"
        time.sleep(0.1)
    assert not list(tmp_path.glob("*.json"))


def test_tasks_that_cannot_be_ordered_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="cycle"):
        execute_local([_task(tmp_path, "a", ("b",)), _task(tmp_path, "b", ("a",))], workers=2, progress=False)
    with pytest.raises(ValueError, match="unique"):
        execute_local([_task(tmp_path, "a"), _task(tmp_path, "a")], workers=2, progress=False)
    assert not any(tmp_path.iterdir())


def test_the_longest_chains_start_first(tmp_path) -> None:
    tasks = [_task(tmp_path, "classify-real"), _task(tmp_path, "vae-0"), _task(tmp_path, "vae-1"),
             _task(tmp_path, "generate", ("vae-0", "vae-1")), _task(tmp_path, "classify-synthetic", ("generate",))]
    assert task_heights(tasks) == {"classify-real": 0, "vae-0": 2, "vae-1": 2, "generate": 1,
                                   "classify-synthetic": 0}


def test_resolve_workers(monkeypatch) -> None:
    monkeypatch.setattr(local_pool, "available_cpus", lambda: 8)
    assert resolve_workers("auto", 1, "cpu", 100) == 8
    assert resolve_workers("auto", 3, "cpu", 100) == 2  # whole jobs only
    assert resolve_workers("auto", 16, "cpu", 100) == 1
    assert resolve_workers("auto", 1, "cpu", 3) == 3  # no idle workers
    assert resolve_workers("auto", 1, "cuda", 100) == 1  # the jobs share one device
    assert resolve_workers(4, 1, "cuda", 100) == 4 and resolve_workers(4, 1, "cpu", 0) == 1
    for bad in (0, -2, "two", True):
        with pytest.raises(ValueError, match="workers"):
            resolve_workers(bad, 1, "cpu", 10)


def test_the_workers_setting_is_checked_and_no_identity(tmp_path) -> None:
    tiny = load_study_config(CONFIGS / "oasis_tiny.yaml")
    assert tiny.replace(workers="auto").workers == "auto"
    for bad in (0, "many"):
        with pytest.raises(ConfigError, match="workers"):
            tiny.replace(workers=bad)
    assert identity(tiny, "cpu", "x") == identity(tiny.replace(workers=2), "cpu", "x")
    with pytest.raises(ConfigError, match="workers"):
        load_lowdata_config(CONFIGS / "lowdata_tiny.yaml", {"workers": 0})


# --- the studies -------------------------------------------------------------------------------------------------


def _run_files(out: Path) -> dict[str, bytes]:
    """The report's tables, fit records and results (without wall time) of a run directory."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "report").glob("*.csv"))}
    files.update({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("generate/**/*.json"))})
    for path in sorted((out / "results").rglob("*.json")):
        result = json.loads(path.read_text())
        result.pop("seconds", None)
        files[str(path.relative_to(out))] = json.dumps(result, sort_keys=True).encode()
    return files


def test_the_oasis_study_gives_the_same_run_with_two_workers(tmp_path) -> None:
    config = load_study_config(CONFIGS / "oasis_tiny.yaml").replace(
        seeds=1, methods=("real", "gmm", "riemannian", "torchio"))
    cache = tmp_path / "cache"
    one = run_study(config, tmp_path / "one", cache_dir=cache)
    two = run_study(config.replace(workers=2), tmp_path / "two", cache_dir=cache)
    assert one.jobs_run == two.jobs_run == 2 + 1 + 4  # two class VAEs, generate, four classifiers
    assert _run_files(two.out) == _run_files(one.out) and len(_run_files(one.out)) > 6
    assert two.table == one.table
    rerun = run_study(config.replace(workers=2), two.out, cache_dir=cache)
    assert rerun.jobs_run == 0 and rerun.table == one.table


def test_the_low_data_study_gives_the_same_run_with_two_workers(tmp_path) -> None:
    overrides = {"seeds": 1, "train_sizes": [6], "classifier_seeds": 1, "methods": ["real", "real+riemannian", "gmm"]}
    config = load_lowdata_config(CONFIGS / "lowdata_tiny.yaml", overrides)
    cache = tmp_path / "cache"
    one = run_lowdata(config, tmp_path / "one", cache_dir=cache)
    two = run_lowdata(config.replace(workers=2), tmp_path / "two", cache_dir=cache)
    assert one.jobs_run == two.jobs_run
    assert _run_files(two.out) == _run_files(one.out) and len(_run_files(one.out)) > 3
    rerun = run_lowdata(config.replace(workers=2), two.out, cache_dir=cache)
    assert rerun.jobs_run == 0 and rerun.table == one.table


def test_the_benchmark_trains_its_models_in_two_workers_like_in_one(tmp_path, monkeypatch) -> None:
    from augmentor.utils.io import load_tensors
    from pipelines.benchmark import load_benchmark_config, run_benchmark
    from pipelines.benchmark.stages import GenerationPaths
    from pipelines.common import image_model

    settings = {"data.dataset": "digits", "data.n_train": 100, "data.n_val": 30, "data.n_test": 50,
                "sampling.samplers": ["gmm"], "sampling.n_samples": 50, "models": [{"name": "ae"}],
                "metrics.memorisation_samples": 20, "progress": False}
    config = load_benchmark_config(CONFIGS / "mnist_tiny.yaml", settings)
    one = run_benchmark(config, tmp_path / "one")

    def not_here(*args, **kwargs):
        raise AssertionError("a model was trained in the main process")

    monkeypatch.setattr(image_model, "train_vae", not_here)  # the spawned workers import the real one
    two = run_benchmark(config.replace(workers=2), tmp_path / "two")
    for name in ("vae", "ae"):
        a = load_tensors(GenerationPaths(tmp_path / "one").model_file(name))["state"]
        b = load_tensors(GenerationPaths(tmp_path / "two").model_file(name))["state"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert two.table.equals(one.table)
