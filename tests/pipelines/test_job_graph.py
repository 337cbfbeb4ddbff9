"""The OASIS study's job graph: a job per (seed, class) model, the seed's generate job after them, the classifiers
after that; what each backend does with the dependencies (the Ray runs themselves: tests/pipelines/test_ray_backend.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.common.ray_backend import RayOutcome
from pipelines.common.run_directory import JobFailure
from pipelines.oasis_study import jobs as jobs_module
from pipelines.oasis_study import run_study, runner
from pipelines.oasis_study.config import load_study_config
from pipelines.oasis_study.runner import plan_jobs

TINY = Path(__file__).resolve().parents[2] / "configs" / "oasis_tiny.yaml"


@pytest.fixture(scope="module")
def tiny():
    return load_study_config(TINY)


def test_each_class_model_is_a_job_that_the_generate_job_waits_for(tiny) -> None:
    config = tiny.replace(seeds=[3], methods=("real", "riemannian", "shared-gmm", "ae-gmm"))
    jobs = plan_jobs(config, {3: [0, 1]})
    models = ["vae/seed_3/class_0", "vae/seed_3/class_1", "vae/seed_3/ae/class_0", "vae/seed_3/ae/class_1"]
    assert [job.key for job in jobs] == [*models, "generate/seed_3", "classify/seed_3/real",
                                         "classify/seed_3/riemannian", "classify/seed_3/shared-gmm",
                                         "classify/seed_3/ae-gmm"]
    after = {job.key: job.after for job in jobs}
    assert after["generate/seed_3"] == tuple(models)  # the shared VAE trains inside the generate job
    assert after["classify/seed_3/real"] == () and after["classify/seed_3/ae-gmm"] == ("generate/seed_3",)
    assert [job.key for job in plan_jobs(config.replace(methods=("real",)), {3: [0, 1]})] == [
        "classify/seed_3/real"]  # no synthetic images: no model is trained


def test_ray_tasks_wait_only_for_the_jobs_that_still_run(tiny, tmp_path, monkeypatch) -> None:
    submitted = []

    def record(tasks, config, num_cpus, progress=True):
        submitted.extend(tasks)
        return RayOutcome([], {task.key: {"GPU": config.gpus_per_job} for task in tasks})

    monkeypatch.setattr(runner, "execute_ray", record)
    config = tiny.replace(seeds=1, methods=("real", "riemannian"), backend="ray")
    todo = [job for job in plan_jobs(config, {0: [0, 1]}) if job.key != "vae/seed_0/class_0"]  # class 0 finished
    resources = runner.execute(runner.RunPaths(tmp_path), config, todo)
    assert {task.key: task.after for task in submitted} == {
        "vae/seed_0/class_1": (), "generate/seed_0": ("vae/seed_0/class_1",),
        "classify/seed_0/real": (), "classify/seed_0/riemannian": ("generate/seed_0",)}
    assert set(resources) == {task.key for task in submitted}


def test_a_failed_class_model_stops_only_what_needs_it_and_a_rerun_resumes(tiny, tmp_path, monkeypatch) -> None:
    real = jobs_module.run_class_model

    def broken_class_1(root, config, job):
        if job.label == 1:
            raise RuntimeError("simulated failure")
        return real(root, config, job)

    monkeypatch.setattr(jobs_module, "run_class_model", broken_class_1)
    config = tiny.replace(seeds=1, methods=("real", "riemannian"))
    out, cache = tmp_path / "run", tmp_path / "cache"
    with pytest.raises(JobFailure) as failure:
        run_study(config, out, cache_dir=cache)
    assert dict(failure.value.failures) == {
        "vae/seed_0/class_1": "RuntimeError: simulated failure",
        "generate/seed_0": "not run: vae/seed_0/class_1 failed",
        "classify/seed_0/riemannian": "not run: generate/seed_0 failed",
    }
    assert (out / "generate" / "seed_0" / "class_models" / "class_0" / "model.pt").is_file()
    assert (out / "results" / "seed_0" / "real.json").is_file()
    monkeypatch.setattr(jobs_module, "run_class_model", real)
    resumed = run_study(config, out, cache_dir=cache)
    assert resumed.jobs_run == 3 and resumed.jobs_skipped == 2  # class 1, generate, riemannian
    assert list(resumed.summary.index) == ["real", "riemannian"]
