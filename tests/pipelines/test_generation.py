"""The generation benchmark (pipelines.benchmark) end to end in the tiny configuration."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from augmentor.utils.config import ConfigError
from augmentor.utils.io import load_tensors
from augmentor.metrics import INCEPTION_ENV
from pipelines.benchmark.config import BenchmarkConfig, load_benchmark_config
from pipelines.benchmark.stages import (GenerationPaths, domain_test_accuracy, load_domain_classifier,
                                       sample_specs)
from pipelines.common.image_model import ImageData
from augmentor.metrics import DomainClassifier
from augmentor.utils.artifacts import save_checked_tensors
from pipelines.benchmark.study import main, run_benchmark, run_sweep
from pipelines.common.run_directory import RunDirectoryError, StudyError

TINY = Path(__file__).resolve().parents[2] / "configs" / "mnist_tiny.yaml"


def tiny_config(mnist_file: Path, **overrides) -> BenchmarkConfig:
    settings = {"data.path": str(mnist_file), "progress": False, **overrides}
    return load_benchmark_config(TINY, settings)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_file):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return out, run_benchmark(tiny_config(mnist_file), out)


def test_benchmark_end_to_end_writes_every_metric_and_report(finished_run):
    out, result = finished_run
    assert list(result.table["key"]) == ["prior", "gmm", "riemannian"]
    assert (result.evaluated, result.skipped) == (3, 0)
    table = result.table.set_index("key")
    assert (table["n_fake"] == 100).all() and (table["n_real"] == 100).all()
    assert table["fid"].isna().all()  # disabled in the tiny config
    for column in ("fd_domain", "prd_f8", "prd_f1_8", "precision", "recall", "density", "coverage",
                   "memorisation_median_ratio"):
        assert np.isfinite(table[column].to_numpy(float)).all(), column
    assert table.loc["riemannian", "hmc_acceptance"] > 0
    assert np.isfinite(table["latent_distance_ratio"].to_numpy(float)).all()  # every row, HMC or not
    assert 0 <= table.loc["riemannian", "floor_share"] <= 1 and pd.isna(table.loc["prior", "floor_share"])
    report = GenerationPaths(out).report
    for name in ("summary.csv", "summary.md", "reconstructions.png", "samples_prior.png", "samples_gmm.png",
                 "samples_riemannian.png"):
        assert (report / name).is_file(), name
    markdown = (report / "summary.md").read_text()
    assert "VAE - ours" in markdown and "FID disabled in the configuration" in markdown
    assert "Floor share (samples / chains)" in markdown and "Latent distance ratio" in markdown
    domain = json.loads((report / "domain_classifier.json").read_text())
    assert domain["grid"] == 4 and domain["n_test"] == 100 and 0 <= domain["test_accuracy"] <= 1
    assert f"classifies {100 * domain['test_accuracy']:.1f} % of the 100 test images" in markdown
    result_file = json.loads((out / "results" / "riemannian.json").read_text())
    assert result_file["diagnostics"]["n_steps"] == 10
    assert sum(result_file["class_counts"]) == 100
    assert any((out / "tensorboard" / "vae").iterdir()) and any((out / "tensorboard" / "summary").iterdir())


def test_rerun_skips_finished_work_and_adds_new_rows(finished_run, mnist_file):
    out, first = finished_run
    paths = GenerationPaths(out)
    before = {p: p.stat().st_mtime_ns for p in [paths.vae, paths.result("prior"), paths.samples("riemannian")]}
    variant = {"sampling.riemannian_variants": [{"n_steps": 3}]}
    again = run_benchmark(tiny_config(mnist_file, **variant), out)
    assert (again.evaluated, again.skipped) == (1, 3)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing finished was rewritten
    assert list(again.table["key"]) == ["prior", "gmm", "riemannian", "riemannian[n_steps=3]"]
    assert again.table.set_index("key").loc["prior", "fd_domain"] == pytest.approx(
        first.table.set_index("key").loc["prior", "fd_domain"])
    ablation = json.loads(paths.result("riemannian[n_steps=3]").read_text())
    assert ablation["diagnostics"]["n_steps"] == 3
    assert (paths.report / "chain_ablation.png").is_file()


def test_damaged_result_is_moved_aside_and_recomputed(finished_run, mnist_file):
    out, _ = finished_run
    paths = GenerationPaths(out)
    paths.result("gmm").write_text("{\"key\": ")
    rerun = run_benchmark(tiny_config(mnist_file), out)
    assert rerun.evaluated == 1
    assert (paths.result("gmm").parent / "gmm.json.corrupt").is_file()
    assert json.loads(paths.result("gmm").read_text())["sampler"] == "gmm"


def test_run_directory_of_other_settings_is_refused(finished_run, mnist_file):
    out, _ = finished_run
    with pytest.raises(RunDirectoryError, match="sampling.n_samples"):
        run_benchmark(tiny_config(mnist_file, **{"sampling.n_samples": 50}), out)


def test_foreign_folder_is_refused_untouched(tmp_path, mnist_file):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not a study run directory"):
        run_benchmark(tiny_config(mnist_file), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sampling.samplers": ["prior", "flow"]}, "samplers"),
        ({"sampling.riemannian_variants": [{"n_stepz": 5}]}, "riemannian_variants[0]"),
        ({"sampling.riemannian_variants": [{"step_size": -1.0}]}, "riemannian_variants[0]"),
        ({"data.dataset": "imagenet"}, "dataset"),
        ({"data.n_train": 10, "sampling.metric.n_centroids": 20}, "n_centroids"),
        ({"metrics.fid": False, "metrics.feature_space": "inception"}, "feature_space"),
        ({"vae.architecture": {"latent_dimension": 4}}, "architecture"),
        ({"sampling.n_samplez": 4}, "n_samplez"),
    ],
)
def test_config_errors_name_the_field(overrides, field, mnist_file):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        tiny_config(mnist_file, **overrides)


def test_architecture_that_does_not_fit_the_images_is_refused_before_training(tmp_path, mnist_file):
    config = tiny_config(mnist_file, **{"vae.architecture": {"channels": [8] * 6, "strides": [2] * 6}})
    with pytest.raises(ConfigError, match="vae"):
        run_benchmark(config, tmp_path / "run")
    assert not (tmp_path / "run" / "study.json").exists()


def test_sample_specs_name_the_variants():
    config = BenchmarkConfig().sampling.replace(riemannian_variants=({"step_size": 0.05, "n_steps": 500},))
    keys = [spec.key for spec in sample_specs(config)]
    assert keys == ["prior", "gmm", "riemannian", "riemannian[n_steps=500,step_size=0.05]"]


def test_sample_specs_of_the_samplers_comparison():
    config = BenchmarkConfig().sampling.replace(
        samplers=("gmm", "kde", "riemannian", "published"), kde_bandwidths=(0.5, 1.0),
        riemannian_variants=({"alpha": 2.0}, {"n_centroids": None, "chain_start": "centroids"}))
    specs = {spec.key: spec for spec in sample_specs(config)}
    assert list(specs) == ["gmm", "kde", "riemannian", "published", "riemannian[alpha=2.0]",
                           "riemannian[n_centroids=None,chain_start=centroids]", "kde[bandwidth=1.0]"]
    assert specs["kde"].bandwidth == 0.5 and specs["kde[bandwidth=1.0]"].bandwidth == 1.0
    assert specs["riemannian[alpha=2.0]"].hmc.alpha == 2.0 and specs["riemannian"].hmc.alpha == 1.0
    every_code = specs["riemannian[n_centroids=None,chain_start=centroids]"]
    assert every_code.metric.n_centroids is None and every_code.chain_start == "centroids"
    assert "NOT the Riemannian uniform law" in specs["published"].label
    with pytest.raises(ConfigError, match="chain_start"):
        config.replace(riemannian_variants=({"chain_start": "anywhere"},))
    with pytest.raises(ConfigError, match="kde_bandwidths"):
        config.replace(kde_bandwidths=(0.0,))


def test_cli_without_inception_network_skips_fid_and_prints_the_table(tmp_path, mnist_file, capsys, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "absent.pt"))
    args = ["--config", str(TINY), "--data-path", str(mnist_file), "--no-progress", "--out", str(tmp_path / "r"),
            "--set", "sampling.samplers=[prior]", "--set", "sampling.n_samples=50", "--set", "metrics.fid=true",
            "--set", "metrics.feature_space=auto"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "VAE - N(0, I)" in printed and "1 sample set(s) evaluated" in printed
    assert "FID skipped" in printed  # the reason is printed under the table, whose FID cell is empty
    summary = pd.read_csv(tmp_path / "r" / "report" / "summary.csv")
    assert summary["fid"].isna().all() and summary["feature_space"].tolist() == ["domain"]


def test_cli_reports_config_errors_naming_the_field(capsys):
    assert main(["--config", str(TINY), "--set", "sampling.n_samples=0"]) == 2
    assert "n_samples" in capsys.readouterr().err


def test_low_data_sweep_runs_one_benchmark_per_size_and_plots(tmp_path, mnist_file):
    config = tiny_config(mnist_file, **{"train_sizes": [60, 120], "sampling.samplers": ["prior"],
                                        "sampling.n_samples": 50})
    result = run_sweep(config, tmp_path)
    assert sorted(result.table["n_train"]) == [60, 120]
    for size in (60, 120):
        study = json.loads((tmp_path / f"n_train_{size}" / "study.json").read_text())
        assert study["identity"]["data"]["n_train"] == size and study["identity"]["data"]["n_val"] == size // 5
    assert (tmp_path / "sweep" / "fd_domain_vs_train_size.png").is_file()
    assert "## 60 training images" in (tmp_path / "sweep" / "summary.md").read_text()


def test_train_sizes_smaller_than_the_centroids_are_refused(mnist_file):
    with pytest.raises(ConfigError, match="train_sizes"):
        tiny_config(mnist_file, train_sizes=[10, 100])


def test_peer_models_add_their_rows_trained_like_the_vae(tmp_path, mnist_file):
    out = tmp_path / "peers"
    models = [{"name": "ae"}, {"name": "vamp", "options": {"n_pseudo_inputs": 5}}, {"name": "rae_sn"}]
    config = tiny_config(mnist_file, **{"sampling.samplers": ["gmm"], "models": models})
    result = run_benchmark(config, out)
    assert list(result.table["key"]) == ["gmm", "ae-prior", "ae-gmm", "vamp-vamp", "rae_sn-gmm"]
    assert list(result.table["sampler"]) == ["VAE - GMM", "AE - N(0, I)", "AE - GMM", "VAMP - VAMP", "RAE-SN - GMM"]
    assert np.isfinite(result.table["fd_domain"].to_numpy(float)).all()
    paths = GenerationPaths(out)
    assert load_tensors(paths.codes_file("ae"))["log_var"] is None  # deterministic codes
    assert any((out / "tensorboard" / "vamp").iterdir())
    # Another peer only adds its rows; the finished ones are kept.
    more = tiny_config(mnist_file, **{"sampling.samplers": ["gmm"], "models": models + [{"name": "rhvae"}]})
    again = run_benchmark(more, out)
    assert (again.evaluated, again.skipped) == (1, 5) and again.table["sampler"].iloc[-1] == "RHVAE - RHVAE"
    assert again.table.set_index("key").loc["rhvae-rhvae", "hmc_acceptance"] > 0
    # A peer trained with other settings is not silently reused.
    changed = [{"name": "vamp", "options": {"n_pseudo_inputs": 6}, "samplers": ["prior"]}]
    with pytest.raises(StudyError, match="vamp.pt was trained with other settings.*n_pseudo_inputs"):
        run_benchmark(tiny_config(mnist_file, **{"sampling.samplers": ["gmm"], "models": changed}), out)


def test_a_diverging_peer_costs_only_its_own_rows(tmp_path, mnist_file, monkeypatch):
    # On the H200 the VAMP of the paper configuration diverged and took every later model's rows with it.
    from augmentor.models.peers.autoencoders import RAE
    from pipelines.common.run_directory import JobFailure

    monkeypatch.setattr(RAE, "loss", lambda self, x: {"loss": (self.decode(self.encode(x)[0]) * float("nan")).sum()})
    out = tmp_path / "diverging"
    config = tiny_config(mnist_file, **{"sampling.samplers": ["gmm"], "models": [{"name": "rae"}, {"name": "ae"}]})
    with pytest.raises(JobFailure, match="model rae: the loss became nan"):
        run_benchmark(config, out)
    summary = pd.read_csv(out / "report" / "summary.csv")
    assert list(summary["key"]) == ["gmm", "ae-prior", "ae-gmm"]  # the rows after the failed model too
    monkeypatch.undo()
    again = run_benchmark(config, out)  # resuming trains only the model that failed
    assert (again.evaluated, again.skipped) == (1, 3)
    assert list(again.table["key"]) == ["gmm", "rae-gmm", "ae-prior", "ae-gmm"]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([{"name": "vae"}], "must be a peer model"),
        ([{"name": "ae", "samplers": ["riemannian"]}], r"samplers of model 'ae', i.e. of \['prior', 'gmm', 'kde'\]"),
        ([{"name": "wae", "options": {"n_pseudo_inputs": 3}}], r"unknown key\(s\) \['n_pseudo_inputs'\]"),
        ([{"name": "ae"}, {"name": "ae"}], "more than once"),
    ],
)
def test_peer_model_entries_are_validated(models, message, mnist_file):
    with pytest.raises(ConfigError, match=message):
        tiny_config(mnist_file, models=models)


def test_domain_test_accuracy_numbers_the_classes_as_the_cnn_was_trained(tmp_path):
    classifier = DomainClassifier(1, 2).eval()  # trained on digits 3 and 7: index 0 is 3, index 1 is 7
    with torch.no_grad():
        classifier.head.weight.zero_()
        classifier.head.bias.copy_(torch.tensor([0.0, 1.0]))  # always 7
    images = torch.rand(4, 1, 8, 8)
    data = ImageData(images, torch.tensor([3, 7, 7, 3]), images, images, torch.tensor([7, 3, 5, 7]))
    assert domain_test_accuracy(classifier, data) == pytest.approx(0.5)  # a 5 it never saw counts wrong
    assert domain_test_accuracy(classifier, ImageData(images, data.train_labels, images, images)) is None


def test_a_domain_cnn_saved_before_the_grid_setting_loads_as_global_pooling(tmp_path):
    old = DomainClassifier(1, 2, grid=1).eval()
    save_checked_tensors(tmp_path / "domain_classifier.pt", {"n_classes": 2, "state": old.state_dict()})
    loaded = load_domain_classifier(tmp_path / "domain_classifier.pt")
    images = torch.rand(3, 1, 8, 8)
    assert loaded.grid == 1 and torch.equal(loaded(images), old(images))
