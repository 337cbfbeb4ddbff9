"""The Ray backend (pipelines.common.ray_backend) on a local cluster that declares two fake GPUs.

One cluster for the module (Ray starts in seconds, not milliseconds). CPU-only
PyTorch never sees the GPUs: what is checked is Ray's scheduling (the GPU
fraction every task was given), dependencies, failures and resumption.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import ray
import torch

from pipelines.common.settings import RayConfig
from pipelines.lowdata.config import load_lowdata_config
from pipelines.lowdata.study import run_lowdata
from pipelines.common.ray_backend import RayTask, execute_ray



TINY = Path(__file__).resolve().parents[2] / "configs" / "lowdata_tiny.yaml"
BENCHMARK_TINY = TINY.parent / "mnist_tiny.yaml"
OASIS_TINY = TINY.parent / "oasis_tiny.yaml"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_tasks_get_their_gpu_fraction_and_wait_for_what_they_need() -> None:
    tasks = [
        RayTask("a", math.sqrt, (4.0,)),
        RayTask("b", math.sqrt, (-1.0,)),  # fails: ValueError
        RayTask("c", math.sqrt, (9.0,), after=("a",)),
        RayTask("d", math.sqrt, (9.0,), after=("b",)),
    ]
    outcome = execute_ray(tasks, RayConfig(gpus_per_job=0.5), num_cpus=1, progress=False)
    assert set(outcome.resources) == {"a", "c"}
    for resources in outcome.resources.values():
        assert resources["GPU"] == pytest.approx(0.5) and resources["CPU"] == pytest.approx(1.0)
    failures = dict(outcome.failures)
    assert set(failures) == {"b", "d"}
    assert "ValueError" in failures["b"] and failures["d"] == "not run: b failed"
    with pytest.raises(ValueError, match="waits for"):
        execute_ray([RayTask("x", math.sqrt, (1.0,), after=("y",))], RayConfig(), num_cpus=1, progress=False)


def test_the_low_data_study_runs_on_gpu_tasks_like_locally_and_resumes(tmp_path: Path) -> None:
    fast = {"seeds": 1, "train_sizes": [3], "methods": ["real", "real+riemannian"], "classifier_seeds": 1}
    local = run_lowdata(load_lowdata_config(TINY, fast), tmp_path / "local")
    config = load_lowdata_config(TINY, {**fast, "backend": "ray", "ray.gpus_per_job": 0.5})
    first = run_lowdata(config, tmp_path / "ray")
    assert first.jobs_run == 10 + 1 + 2  # a VAE per digit class, the (seed, size) generate job, two classifiers
    assert set(first.job_resources) == {"generate/seed_0/n_3", "classify/seed_0/n_3/real/clf_0",
                                        "classify/seed_0/n_3/real+riemannian/clf_0",
                                        *(f"vae/seed_0/n_3/class_{c}" for c in range(10))}
    assert all(r["GPU"] == pytest.approx(0.5) for r in first.job_resources.values())
    assert first.per_run.equals(local.per_run)  # same numbers whichever backend ran the jobs
    again = run_lowdata(config, tmp_path / "ray")
    assert again.jobs_run == 0 and again.jobs_skipped == 13 and again.job_resources == {}
    # Resumed with one classifier seed more: only its two jobs run, the VAE fit is kept.
    more = run_lowdata(config.replace(classifier_seeds=2), tmp_path / "ray")
    assert more.jobs_run == 2 and set(more.job_resources) == {"classify/seed_0/n_3/real/clf_1",
                                                              "classify/seed_0/n_3/real+riemannian/clf_1"}


def test_the_benchmark_trains_its_models_as_gpu_tasks_like_locally(tmp_path: Path, caplog) -> None:
    import logging

    from augmentor.utils.io import load_tensors
    from pipelines.benchmark.stages import GenerationPaths
    from pipelines.benchmark.config import load_benchmark_config
    from pipelines.benchmark.study import run_benchmark

    settings = {"data.dataset": "digits", "data.n_train": 100, "data.n_val": 30, "data.n_test": 50,
                "sampling.samplers": ["gmm"], "sampling.n_samples": 50, "models": [{"name": "ae"}],
                "metrics.memorisation_samples": 20, "progress": False}
    config = load_benchmark_config(BENCHMARK_TINY, settings)
    local = run_benchmark(config, tmp_path / "local")
    with caplog.at_level(logging.INFO, logger="pipelines.benchmark.stages"):
        on_ray = run_benchmark(config.replace(backend="ray", ray=RayConfig(gpus_per_job=0.5)), tmp_path / "ray")
    trained = [r.getMessage() for r in caplog.records if "trained on Ray" in r.getMessage()]
    assert len(trained) == 2 and all("'GPU': 0.5" in line for line in trained)
    for name in ("vae", "ae"):  # the same weights whichever backend trained them
        a = load_tensors(GenerationPaths(tmp_path / "local").model_file(name))["state"]
        b = load_tensors(GenerationPaths(tmp_path / "ray").model_file(name))["state"]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert on_ray.table.equals(local.table)


def _manifests(folder: Path) -> dict[str, dict[str, str]]:
    """The file checksums of every saved folder (class models, augmentors) under ``folder``."""
    return {str(m.parent.relative_to(folder)): json.loads(m.read_text())["files"]
            for m in sorted(folder.rglob("manifest.json"))}


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*.json"))}


def test_the_oasis_study_trains_each_class_vae_as_a_gpu_task_like_locally_and_resumes(tmp_path: Path) -> None:
    from pipelines.oasis_study.config import load_study_config
    from pipelines.oasis_study import run_study

    config = load_study_config(OASIS_TINY).replace(seeds=1, methods=("real", "riemannian"))
    cache = tmp_path / "cache"
    local = run_study(config, tmp_path / "local", cache_dir=cache)
    on_ray = config.replace(backend="ray", ray=RayConfig(gpus_per_job=0.5))
    out = tmp_path / "ray"
    first = run_study(on_ray, out, cache_dir=cache)
    models = {"vae/seed_0/class_0", "vae/seed_0/class_1"}
    assert set(first.job_resources) == models | {"generate/seed_0", "classify/seed_0/real",
                                                 "classify/seed_0/riemannian"}
    assert all(r["GPU"] == pytest.approx(0.5) and r["CPU"] == pytest.approx(1) for r in first.job_resources.values())
    assert first.table == local.table and first.per_run.equals(local.per_run)
    generate = out / "generate" / "seed_0"
    saved = _manifests(generate)
    assert saved == _manifests(tmp_path / "local" / "generate" / "seed_0")  # the same weights and samplers
    assert set(saved) == {"class_models/class_0", "class_models/class_1", "augmentor"}

    again = run_study(on_ray, out, cache_dir=cache)
    assert again.jobs_run == 0 and again.jobs_skipped == 5 and again.job_resources == {}

    # A deleted class-VAE file: that VAE trains again (the same weights); the jobs after it are finished.
    results = _mtimes(out / "results")
    (generate / "class_models" / "class_1" / "model.pt").unlink()
    refit = run_study(on_ray, out, cache_dir=cache)
    assert set(refit.job_resources) == {"vae/seed_0/class_1"} and refit.jobs_skipped == 4
    assert (generate / "class_models" / "class_1.corrupt").is_dir()  # moved aside, never deleted
    assert _manifests(generate) == {**saved, "class_models/class_1.corrupt": saved["class_models/class_1"]}

    # Deleted with what was made from it (the seed's augmentor): the generate task waits for the VAE task
    # and assembles the same augmentor; the classifiers' results are intact, so they do not run.
    shutil.rmtree(generate / "class_models" / "class_1")
    shutil.rmtree(generate / "augmentor")
    rebuilt = run_study(on_ray, out, cache_dir=cache)
    assert set(rebuilt.job_resources) == {"vae/seed_0/class_1", "generate/seed_0"}
    assert {k: v for k, v in _manifests(generate).items() if "corrupt" not in k} == saved
    assert _mtimes(out / "results") == results and rebuilt.table == local.table
