"""The OASIS study pipeline on a tiny simulated cohort: determinism, resumption, Ray, config checks."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from augmentor.utils.config import ConfigError
from pipelines.oasis_study import jobs as jobs_module
from pipelines.common.classifier import OasisClassifier, TorchIOAugmentation, classification_metrics
from pipelines.common.settings import ClassifierConfig
from pipelines.common.study_data import SplitConfig
from pipelines.oasis_study.config import load_study_config
from pipelines.common.study_data import split_subjects
from pipelines.oasis_study.jobs import RunPaths
from pipelines.oasis_study.study import build_parser, config_from_args, main, run_study
from pipelines.oasis_study.report import write_report
from pipelines.common.run_directory import JobFailure, RunDirectoryError, lock_run_directory

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = CONFIGS / "oasis_tiny.yaml"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sim-cache")


@pytest.fixture(scope="module")
def tiny():
    return load_study_config(TINY)


@pytest.fixture(scope="module")
def reference(tiny, cache, tmp_path_factory):
    """An uninterrupted local run of the tiny study."""
    return run_study(tiny, tmp_path_factory.mktemp("runs") / "reference", cache_dir=cache)


def results(out: Path) -> dict[str, dict]:
    """Every result JSON without its wall time (training curves included: bitwise determinism)."""
    loaded = {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted((out / "results").rglob("*.json"))}
    for value in loaded.values():
        value.pop("seconds")
    return loaded


def result_files(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "results").rglob("*.json"))}


# --------------------------------------------------------------------------- full study


def test_full_study_is_deterministic(reference, tiny, cache, tmp_path):
    assert reference.jobs_run == 2 * (2 + 1 + 7) and reference.jobs_skipped == 0  # per seed: 2 class VAEs, generate
    assert list(reference.summary.index) == list(tiny.methods)
    assert (reference.summary["runs"] == 2).all()
    for name in ("summary.csv", "summary.md", "per_run.csv", "balanced_accuracy.png", "paired.csv", "paired.md"):
        assert (reference.out / "report" / name).is_file()
    assert any((reference.out / "tensorboard" / "seed_0" / "real").iterdir())
    assert (reference.out / "generate" / "seed_0" / "diagnostics_riemannian.json").is_file()
    row = json.loads((reference.out / "results" / "seed_0" / "riemannian.json").read_text())
    assert row["n_train"] == 2 * tiny.sampling.n_per_class  # synthetic only
    assert set(row["test"]["per_class"]) == {"0", "1"}

    again = run_study(tiny, tmp_path / "again", cache_dir=cache)
    assert again.table == reference.table
    assert again.per_run.equals(reference.per_run)
    assert results(again.out) == results(reference.out)
    summary = (reference.out / "report" / "summary.csv").read_bytes()
    assert (again.out / "report" / "summary.csv").read_bytes() == summary


def test_rerun_skips_everything(reference, tiny, cache):
    before = result_files(reference.out)
    result = run_study(tiny, reference.out, cache_dir=cache)
    assert result.jobs_run == 0 and result.jobs_skipped == 20
    assert result_files(reference.out) == before
    assert result.table == reference.table


def test_resume_after_interruption(reference, tiny, cache, tmp_path, monkeypatch):
    real = jobs_module.run_classify
    calls = {"n": 0}

    def killed_after_five(root, config, job):
        if calls["n"] == 5:
            raise KeyboardInterrupt  # as if the process were killed here
        calls["n"] += 1
        return real(root, config, job)

    monkeypatch.setattr(jobs_module, "run_classify", killed_after_five)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_study(tiny, out, cache_dir=cache)
    finished = result_files(out)
    assert len(finished) == 5
    monkeypatch.setattr(jobs_module, "run_classify", real)

    resumed = run_study(tiny, out, cache_dir=cache)
    assert resumed.jobs_skipped == 3 + 5 and resumed.jobs_run == 20 - 8  # seed 0's VAEs, generate, 5 classifiers
    after = result_files(out)
    assert {k: after[k] for k in finished} == finished  # finished results untouched
    assert resumed.table == reference.table
    assert resumed.per_run.equals(reference.per_run)
    assert results(out) == results(reference.out)


def test_failed_job_is_reported_and_others_finish(reference, tiny, cache, tmp_path, monkeypatch):
    real = jobs_module.run_classify

    def broken_gmm(root, config, job):
        if job.method == "gmm":
            raise RuntimeError("simulated failure")
        return real(root, config, job)

    monkeypatch.setattr(jobs_module, "run_classify", broken_gmm)
    config = tiny.replace(seeds=1)
    out = tmp_path / "failing"
    with pytest.raises(JobFailure, match=r"classify/seed_0/gmm: RuntimeError: simulated failure"):
        run_study(config, out, cache_dir=cache)
    assert len(result_files(out)) == len(config.methods) - 1
    monkeypatch.setattr(jobs_module, "run_classify", real)
    result = run_study(config, out, cache_dir=cache)
    assert result.jobs_run == 1
    expected = reference.per_run[reference.per_run["seed"] == 0].reset_index(drop=True)
    assert result.per_run.equals(expected)


def test_run_can_be_extended_with_seeds(reference, tiny, cache, tmp_path):
    out = tmp_path / "extended"
    run_study(tiny.replace(seeds=1, methods=("real", "riemannian")), out, cache_dir=cache)
    more = run_study(tiny.replace(seeds=2, methods=("real", "riemannian")), out, cache_dir=cache)
    assert more.jobs_skipped == 5 and more.jobs_run == 5  # 2 class VAEs, generate, 2 classifiers
    subset = reference.per_run[reference.per_run["method"].isin(["real", "riemannian"])].reset_index(drop=True)
    assert more.per_run.equals(subset)


def test_report_covers_every_finished_result(reference, tiny, cache):
    """Rerunning a finished run with one method keeps the full table, not just that method's row."""
    one_method = run_study(tiny.replace(methods=("real",)), reference.out, cache_dir=cache)
    assert one_method.jobs_run == 0 and one_method.jobs_skipped == 2
    assert one_method.table == reference.table
    assert one_method.per_run.equals(reference.per_run)
    assert list(one_method.summary.index) == list(tiny.methods)
    summary = (reference.out / "report" / "summary.md").read_text()
    assert "mean ± std over 2 seed(s)" in summary
    assert all(f"| {label} | 2 |" in summary for label in ("Real", "Synthetic only: VAE - ours"))


def test_study_records_the_fit_and_fidelity_of_each_seed(reference):
    fit = json.loads((reference.out / "generate" / "seed_1" / "fit.json").read_text())
    assert set(fit["models"]) == {"per_class"} and set(fit["fidelity"]) == {"prior", "gmm", "riemannian"}
    for scores in fit["fidelity"].values():
        assert 0 <= scores["balanced_accuracy"] <= 1 and set(scores["recall"]) == {"0", "1"}
    classes = fit["models"]["per_class"]["classes"]
    assert set(classes) == {"0", "1"} and all(c["active_units"] <= c["latent_dim"] for c in classes.values())
    report = (reference.out / "report" / "fit.md").read_text()
    assert "| per-class | CN |" in report and "| VAE - ours |" in report
    assert (reference.out / "report" / "fit_grid_seed_0.png").read_bytes()[:4] == b"\x89PNG"
    judges = [json.loads((reference.out / "generate" / f"seed_{s}" / "fit.json").read_text())["judge_test"]
              for s in (0, 1)]
    flagged = [f"seed {s}: the fidelity check's classifier" in report for s in (0, 1)]
    assert flagged == [judge["balanced_accuracy"] < 0.6 for judge in judges]


def test_report_has_the_class_effect_and_the_heldout_ratio(reference):
    effects = pd.read_csv(reference.out / "report" / "class_effect.csv")
    assert list(effects.columns[:6]) == ["seed", "source", "ventricle_cn", "ventricle_ad", "effect", "effect_ratio"]
    assert sorted(set(zip(effects["seed"], effects["source"]))) == [
        (s, source) for s in (0, 1) for source in ("gmm", "prior", "real", "riemannian")]
    real = effects[effects["source"] == "real"]
    assert (real["effect_ratio"] == 1).all()
    assert np.allclose(real["effect"], real["ventricle_ad"] - real["ventricle_cn"], atol=1e-5)  # CSV: 6 decimals
    for seed, rows in effects.groupby("seed"):
        reference_effect = rows.loc[rows["source"] == "real", "effect"].item()
        assert np.allclose(rows["effect_ratio"], rows["effect"] / reference_effect, rtol=1e-4)
    fit = pd.read_csv(reference.out / "report" / "fit.csv")
    assert (fit["heldout_recon_ratio"] > 0).all() and fit["ssim_heldout"].between(-1, 1).all()
    assert "Effect ratio" in (reference.out / "report" / "fit.md").read_text()


def test_damaged_fit_record_is_moved_aside_and_left_out_of_the_report(reference, tmp_path, caplog):
    out = tmp_path / "copy"
    shutil.copytree(reference.out, out)
    (out / "generate" / "seed_0" / "fit.json").write_text('{"models": {')
    with caplog.at_level(logging.WARNING):
        write_report(RunPaths(out))
    assert (out / "generate" / "seed_0" / "fit.json.corrupt").is_file()
    assert "over 1 seed(s)" in (out / "report" / "fit.md").read_text()
    assert any("fit.json is not a complete result" in r.getMessage() for r in caplog.records)


def test_shared_decoder_methods_appear_next_to_the_per_class_ones(tiny, cache, tmp_path):
    methods = ("riemannian", "shared-riemannian", "real+shared-riemannian")
    result = run_study(tiny.replace(seeds=1, methods=methods), tmp_path / "shared", cache_dir=cache)
    generate = result.out / "generate" / "seed_0"
    assert (generate / "augmentor").is_dir() and (generate / "augmentor_shared").is_dir()
    assert (generate / "latents_shared-riemannian.pt").is_file() and (generate / "fit_grid_shared.png").is_file()
    assert list(result.summary.index) == list(methods)
    assert "| Synthetic only: Shared VAE - ours | 1 |" in result.table and "| Real + Shared VAE - ours | 1 |" in result.table
    fit = json.loads((generate / "fit.json").read_text())
    assert set(fit["models"]) == {"per_class", "shared"}
    assert set(fit["fidelity"]) == {"riemannian", "shared-riemannian"}
    # real + shared ours trains on the real training images and n_per_class synthetic images per class.
    record = json.loads((result.out / "results" / "seed_0" / "real+shared-riemannian.json").read_text())
    n_real = len(json.loads((result.out / "splits" / "seed_0.json").read_text())["indices"]["train"])
    assert record["n_train"] == n_real + 2 * tiny.sampling.n_per_class


def test_peer_model_methods_are_rows_of_the_study(tiny, cache, tmp_path):
    # Paper Table 2: VAMP (its own sampler) and AE - GMM beside the VAE's rows, each from a per-class
    # peer model fitted on the seed's training subjects.
    methods = ("gmm", "vamp-vamp", "ae-gmm", "real+ae-gmm")
    out = tmp_path / "peers"
    result = run_study(tiny.replace(seeds=1, methods=methods), out, cache_dir=cache)
    generate = result.out / "generate" / "seed_0"
    for generator in ("vae", "vamp", "ae"):
        folder = "augmentor" if generator == "vae" else f"augmentor_{generator}"
        assert (generate / folder).is_dir()
        assert (generate / ("fit_grid.png" if generator == "vae" else f"fit_grid_{generator}.png")).is_file()
    assert list(result.summary.index) == ["gmm", "ae-gmm", "vamp-vamp", "real+ae-gmm"]  # METHODS order
    assert "| Synthetic only: VAMP - VAMP | 1 |" in result.table and "| Synthetic only: AE - GMM | 1 |" in result.table
    assert "| Real + AE - GMM | 1 |" in result.table
    fit = json.loads((generate / "fit.json").read_text())
    assert set(fit["models"]) == {"per_class"}  # the VAE diagnostics; peers get the fidelity check
    assert set(fit["fidelity"]) == {"gmm", "vamp-vamp", "ae-gmm"}
    # The AE's synthetic images are decoded by the AE, not by the VAE.
    from augmentor.augmentor import GeometricAugmentor
    assert GeometricAugmentor.load(generate / "augmentor_ae").config.model == "ae"
    # Resuming finds every job done.
    again = run_study(tiny.replace(seeds=1, methods=methods), out, cache_dir=cache)
    assert again.jobs_run == 0 and again.table == result.table


def test_a_run_extended_with_a_peer_method_adds_its_fidelity_to_the_fit_record(tiny, cache, tmp_path):
    out = tmp_path / "extended"
    run_study(tiny.replace(seeds=1, methods=("gmm",)), out, cache_dir=cache)
    fit_path = out / "generate" / "seed_0" / "fit.json"
    before = json.loads(fit_path.read_text())
    run_study(tiny.replace(seeds=1, methods=("gmm", "ae-gmm")), out, cache_dir=cache)
    after = json.loads(fit_path.read_text())
    assert set(after["fidelity"]) == {"gmm", "ae-gmm"}
    assert after["fidelity"]["gmm"] == before["fidelity"]["gmm"] and after["models"] == before["models"]


def test_an_unknown_peer_source_is_refused_with_the_valid_methods():
    with pytest.raises(ConfigError, match="unknown method.*'ae-riemannian'.*'ae-gmm'"):
        load_study_config(TINY, {"methods": ["ae-riemannian"]})


def test_damaged_result_is_moved_aside_and_recomputed(reference, tiny, cache, tmp_path, caplog):
    out = tmp_path / "damaged"
    shutil.copytree(reference.out, out)
    truncated = out / "results" / "seed_1" / "real.json"
    truncated.write_bytes(truncated.read_bytes()[:100])
    emptied = out / "results" / "seed_0" / "gmm.json"
    emptied.write_text("{}")
    untouched = {k: v for k, v in result_files(out).items() if k not in ("results/seed_1/real.json",
                                                                           "results/seed_0/gmm.json")}
    with caplog.at_level(logging.WARNING, logger="pipelines.common.jobs"):
        again = run_study(tiny, out, cache_dir=cache)
    assert again.jobs_run == 2 and again.table == reference.table
    assert results(out) == results(reference.out)
    after = result_files(out)
    assert {k: after[k] for k in untouched} == untouched  # finished good results never rewritten
    assert (out / "results" / "seed_1" / "real.json.corrupt").read_bytes() == (
        reference.out / "results" / "seed_1" / "real.json").read_bytes()[:100]
    assert (out / "results" / "seed_0" / "gmm.json.corrupt").read_text() == "{}"
    for damaged in (truncated, emptied):
        assert f"{damaged} is not a complete result" in caplog.text
        assert f"moved aside to {damaged.name}.corrupt" in caplog.text


def test_results_under_the_old_method_names_are_resumed_not_recomputed(reference, tiny, cache, tmp_path):
    out = tmp_path / "earlier-release"
    shutil.copytree(reference.out, out)
    for seed in (0, 1):  # the file names an earlier release wrote
        folder = out / "results" / f"seed_{seed}"
        for new, old in (("real", "original"), ("torchio", "classical"), ("real+riemannian", "original+riemannian")):
            (folder / f"{new}.json").rename(folder / f"{old}.json")
    again = run_study(tiny, out, cache_dir=cache)
    assert again.jobs_run == 0 and again.table == reference.table
    assert again.per_run.equals(reference.per_run)
    assert not (out / "results" / "seed_0" / "real.json").exists()  # nothing trained, nothing written


def test_ray_backend_gives_the_same_table(reference, tiny, cache, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_study(tiny.replace(backend="ray"), tmp_path / "ray", cache_dir=cache)
    finally:
        ray.shutdown()
    assert result.jobs_run == 20
    assert result.table == reference.table
    assert result.per_run.equals(reference.per_run)
    assert results(result.out) == results(reference.out)


# --------------------------------------------------------------------------- run directories


def test_run_directory_of_another_config_is_refused(reference, tiny, cache):
    before = result_files(reference.out)
    changed = tiny.replace(classifier=tiny.classifier.replace(epochs=3))
    with pytest.raises(RunDirectoryError, match=r"different study configuration[\s\S]*classifier\.epochs: 4 .* 3 now"):
        run_study(changed, reference.out, cache_dir=cache)
    other_data = tiny.replace(data=tiny.data.replace(simulation=tiny.data.simulation.replace(seed=1)))
    with pytest.raises(RunDirectoryError, match=r"data\.simulation\.seed"):
        run_study(other_data, reference.out, cache_dir=cache)
    assert result_files(reference.out) == before


def test_failed_data_check_leaves_no_identity(tiny, cache, tmp_path):
    """Data that cannot be split write no study.json, so the corrected study may use the same folder."""
    out = tmp_path / "small-class"
    few_ad = tiny.data.replace(simulation=tiny.data.simulation.replace(n_ad=3))
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have fewer than 4 subjects"):
        run_study(tiny.replace(data=few_ad, seeds=1, methods=("real",)), out, cache_dir=cache)
    assert [p.name for p in out.iterdir()] == [".lock"]
    assert run_study(tiny.replace(seeds=1, methods=("real",)), out, cache_dir=cache).jobs_run == 1


def test_second_run_on_a_locked_directory_is_refused(tiny, cache, tmp_path, capsys):
    out = tmp_path / "busy"
    paths = RunPaths(out)
    with lock_run_directory(paths):
        message = rf"{re.escape(str(out))} is in use: another run of the study holds it .*process \d+"
        with pytest.raises(RunDirectoryError, match=message):
            run_study(tiny, out, cache_dir=cache)
        assert main(["--config", str(TINY), "--out", str(out), "--cache-dir", str(cache), "--no-progress"]) == 1
        assert f"{out} is in use: another run" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == [".lock"]  # the refused runs wrote nothing
    with pytest.raises(KeyError):  # released when the block ends, also by an exception
        with lock_run_directory(paths):
            raise KeyError
    with lock_run_directory(paths):
        pass


def test_lock_of_a_killed_run_is_released(tmp_path):
    """Another process holds the lock, then dies without cleaning up: the OS releases the lock."""
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    # The other run, reduced to what lock_run_directory does (importing torch would take seconds).
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "lock = open(sys.argv[1], 'a+'); fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
         "lock.write(f'{os.getpid()}\\n'); lock.flush(); print('locked', flush=True); time.sleep(60)",
         str(paths.lock)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=rf"in use: .*process {holder.pid}\)"):
            with lock_run_directory(paths):
                pass
    finally:
        holder.kill()
        holder.wait()
    with lock_run_directory(paths):
        assert paths.lock.read_text() == f"{os.getpid()}\n"


def test_foreign_folder_is_refused(tiny, cache, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not a study run directory"):
        run_study(tiny, tmp_path, cache_dir=cache)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- configuration and CLI


def test_config_files_are_valid():
    for name in ("tiny", "quick", "paper"):
        config = load_study_config(CONFIGS / f"oasis_{name}.yaml")
        assert config.name == name
    paper = load_study_config(CONFIGS / "oasis_paper.yaml")
    assert paper.seed_list == list(range(20)) and paper.sampling.n_per_class == 2000
    assert paper.data.expected_image_size() == (208, 176)
    assert paper.vae.trainer.epochs == 1000 and paper.vae.trainer.lr == 1e-4 and paper.vae.trainer.batch_size == 100
    paired = load_study_config(CONFIGS / "oasis_quick_paired.yaml")
    quick = load_study_config(CONFIGS / "oasis_quick.yaml")
    assert len(paired.seed_list) >= 10 and {"real", "torchio"} <= set(paired.methods)
    assert paired.classifier.selection == "balanced_accuracy_then_loss" and paired.classifier.recalibrate_batchnorm
    assert paired.data == quick.data and paired.vae == quick.vae and paired.sampling == quick.sampling


@pytest.mark.parametrize(
    "text, message",
    [
        ("classifer: {}\n", r"unknown key\(s\) \['classifer'\]"),
        ("classifier: {epochs: 0}\n", r"ClassifierConfig\.epochs: must be >= 1"),
        ("classifier: {batch_size: many}\n", r"ClassifierConfig\.batch_size: expected an integer"),
        ("methods: [real, magic]\n", r"unknown method\(s\) \['magic'\]"),
        ("seeds: 0\n", r"StudyConfig\.seeds"),
        ("backend: spark\n", r"StudyConfig\.backend: 'spark' is not one of"),
        ("vae: {architecture: {latent_dims: 3}}\n", r"VAESection\.architecture: unknown key\(s\) \['latent_dims'\]"),
        ("sampling: {hmc: {n_steps: -1}}\n", r"HMCConfig\.n_steps"),
        ("data: {downsample: 16}\nclassifier: {padding: 0}\n", r"images of size \(13, 11\) vanish"),
        # Out of range: beyond what torch / NumPy / the split take, or non-finite.
        ("seeds: [0, 18446744073709551616]\n", r"StudyConfig\.seeds.*18446744073709551616 does not fit in a 64-bit"),
        ("seeds: [4294967296]\n", r"StudyConfig\.seeds: .* each seed must lie in 0\.\.2\*\*32-1"),
        ("seeds: 100000000000000000000\n", r"StudyConfig\.seeds: 100000000000000000000 does not fit in a 64-bit"),
        ("classifier: {epochs: 100000000000000000000}\n", r"ClassifierConfig\.epochs: 10+ does not fit in a 64-bit"),
        ("ray: {gpus_per_job: .inf}\n", r"RayConfig\.gpus_per_job: must be a finite number"),
        ("classifier: {lr: .inf}\n", r"ClassifierConfig\.lr: must be a finite number, got inf"),
        ("num_threads: 4096\n", r"StudyConfig\.num_threads: must lie in 1\.\.1024"),
        ("data: {simulation: {seed: -1}}\n", r"SimulationConfig\.seed: must lie in \[0, 2\*\*32\)"),
        ("data: {slice_index: 22, simulation: {shape: [22, 26, 22]}}\n", r"DataConfig\.slice_index: 22 lies outside"),
    ],
)
def test_config_errors_name_the_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_study_config(path)
    assert str(path) in str(info.value)


def test_cli_flags_override_the_config(tmp_path):
    args = build_parser().parse_args(
        [
            "--config", str(TINY),
            "--seeds", "0,3",
            "--device", "cpu",
            "--data-dir", str(tmp_path),
            "--csv", str(tmp_path / "table.csv"),
            "--backend", "ray",
            "--methods", "original,riemannian",  # a deprecated name, read as its current one
            "--set", "classifier.epochs=7",
            "--set", "sampling.hmc.step_size=0.05",
        ]
    )
    with pytest.warns(DeprecationWarning, match="'original' is now called 'real'"):
        config = config_from_args(args)
    assert config.seed_list == [0, 3]
    assert config.data.data_dir == str(tmp_path) and config.data.csv == str(tmp_path / "table.csv")
    assert config.backend == "ray" and config.methods == ("real", "riemannian")
    assert config.classifier.epochs == 7 and config.sampling.hmc.step_size == 0.05
    assert config.vae.trainer.epochs == 2  # untouched values come from the file
    assert config_from_args(build_parser().parse_args(["--config", str(TINY), "--seeds", "5"])).seed_list == [0, 1, 2, 3, 4]
    with pytest.raises(ConfigError, match="ClassifierConfig.epochs"):
        config_from_args(build_parser().parse_args(["--config", str(TINY), "--set", "classifier.epochs=-1"]))
    with pytest.raises(ConfigError, match=r"StudyConfig\.seeds.*99999999999999999999 does not fit in a 64-bit"):
        config_from_args(build_parser().parse_args(["--config", str(TINY), "--seeds", "0,99999999999999999999"]))


def test_cli_end_to_end(cache, tmp_path, capsys):
    out = tmp_path / "cli"
    common = ["--config", str(TINY), "--out", str(out), "--cache-dir", str(cache), "--no-progress"]
    assert main(common + ["--seeds", "1", "--methods", "real,resampled"]) == 0
    printed = capsys.readouterr().out
    assert "| Real | 1 |" in printed and "| Real resampled | 1 |" in printed
    assert main(common + ["--seeds", "1", "--methods", "real", "--set", "classifier.lr=0.01"]) == 1
    assert "different study configuration" in capsys.readouterr().err
    assert main(common + ["--set", "classifier.epochs=0"]) == 2
    assert "ClassifierConfig.epochs" in capsys.readouterr().err


# --------------------------------------------------------------------------- building blocks


def test_classifier_matches_table_4():
    model = OasisClassifier((1, 208, 176), ClassifierConfig())
    assert model.flat_features == 256  # Linear(256 -> 100) of Table 4
    assert model(torch.rand(2, 1, 208, 176)).shape == (2, 2)
    small = ClassifierConfig(padding=1)
    assert OasisClassifier((1, 52, 44), small)(torch.rand(3, 1, 52, 44)).shape == (3, 2)
    with pytest.raises(ConfigError, match="vanish"):
        OasisClassifier((1, 52, 44), ClassifierConfig())


def test_split_is_stratified_disjoint_and_seeded():
    ids = [f"S{i:03d}" for i in range(60)]
    labels = torch.tensor([0] * 45 + [1] * 15)
    split = split_subjects(ids, labels, seed=3, config=SplitConfig())
    sizes = {k: len(v) for k, v in split.items()}
    assert sizes == {"train": 42, "val": 6, "test": 12}
    assert sorted(sum(split.values(), [])) == list(range(60))
    for part in split.values():
        assert 0 < int(labels[part].sum()) < len(part)  # both classes everywhere
    assert split == split_subjects(ids, labels, seed=3, config=SplitConfig())
    assert split != split_subjects(ids, labels, seed=4, config=SplitConfig())
    # Several images of one subject stay together.
    ids2 = [f"S{i // 2:03d}" for i in range(120)]
    split2 = split_subjects(ids2, labels.repeat_interleave(2), seed=0, config=SplitConfig())
    subjects = {k: {ids2[i] for i in v} for k, v in split2.items()}
    assert not (subjects["train"] & subjects["test"]) and not (subjects["train"] & subjects["val"])


def test_classical_augmentation_is_reproducible_per_epoch():
    from pipelines.common.settings import AugmentationConfig

    images = torch.rand(4, 1, 26, 22)
    augment = TorchIOAugmentation(AugmentationConfig(elastic_control_points=5), (26, 22), seed=1)
    a, b, c = augment(images, 0), augment(images, 0), augment(images, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == images.shape and 0 <= a.min() and a.max() <= 1
    assert not torch.equal(a, images)


def test_metrics():
    metrics = classification_metrics([0, 0, 0, 1], [0, 0, 1, 1])
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["per_class"]["1"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}


def test_study_reads_the_authors_npz_layout(tmp_path, capsys):
    """``--data-dir OASIS.npz``: x_train (N, 208, 176, 1) in [0, 255] and y_train, downsampled by the config."""
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.array([0] * 14 + [1] * 8)
    images = rng.uniform(0, 80, size=(22, 208, 176, 1))
    images[labels == 1, 80:130, 60:120] += 150  # a class effect the classifier can see
    (tmp_path / "data").mkdir()
    npz = tmp_path / "data" / "OASIS.npz"
    np.savez(npz, x_train=images.astype(np.float32), y_train=labels)
    out = tmp_path / "npz-run"
    args = ["--config", str(TINY), "--data-dir", str(npz), "--out", str(out), "--seeds", "1",
            "--methods", "real,riemannian", "--set", "data.downsample=8", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| Real | 1 |" in printed and "| Synthetic only: VAE - ours | 1 |" in printed
    assert (out / "report" / "summary.csv").is_file()


@pytest.mark.parametrize(("skipped", "level"), [([], logging.INFO), (["OAS1_0002_MR1"], logging.WARNING)])
def test_data_report_is_logged_not_printed(monkeypatch, capsys, caplog, skipped, level):
    """The library logs who was loaded and left out (a warning when someone was skipped); the CLI prints."""
    from oasis import OasisData, SkippedSubject
    from pipelines.common import study_data as data_module
    from pipelines.common.study_data import DataConfig

    loaded = OasisData(torch.rand(4, 1, 8, 8), torch.tensor([0, 0, 1, 1]), [f"S{i}" for i in range(4)],
                       skipped=[SkippedSubject(s, "image unusable") for s in skipped], source="test")
    monkeypatch.setattr(data_module, "load_simulated", lambda *args, **kwargs: loaded)
    with caplog.at_level(logging.INFO, logger="pipelines.common.study_data"):
        data_module.load_study_data(DataConfig(), cache_dir="unused")
    assert capsys.readouterr().out == ""
    (record,) = caplog.records
    assert record.levelno == level and record.getMessage() == loaded.report()


def test_run_identity_leaves_out_the_trainer_settings_that_do_not_change_the_weights():
    # Where and how often a VAE is checkpointed changes no result: a run directory made before
    # checkpoint_every_s existed (or with another interval) must still be resumed.
    from pipelines.oasis_study.config import identity

    config = load_study_config(Path("configs/oasis_tiny.yaml"))
    other = load_study_config(Path("configs/oasis_tiny.yaml"), {"vae.trainer.checkpoint_every_s": 0})
    wanted = identity(config, "cpu", "fingerprint")
    assert wanted == identity(other, "cpu", "fingerprint")
    assert not {"checkpoint_every_s", "progress", "device"} & set(wanted["vae"]["trainer"])
    assert wanted != identity(load_study_config(Path("configs/oasis_tiny.yaml"), {"vae.trainer.lr": 0.5}),
                              "cpu", "fingerprint")
