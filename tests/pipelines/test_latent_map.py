"""The latent-geometry figure (pipelines.latent_map, paper Fig. 1) end to end on scikit-learn's digits."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from augmentor.utils.config import ConfigError
from augmentor.sampling.interpolation import conformal_length
from augmentor.utils.io import load_tensors
from augmentor.sampling.metric import RiemannianMetric
from pipelines.latent_map.study import (
    LatentMapConfig,
    LatentMapPaths,
    choose_pairs,
    load_latent_map_config,
    main,
    run_latent_map,
)
from pipelines.common.run_directory import RunDirectoryError

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mnist_latent2d.yaml"

# The embedded 8 x 8 digits, a small MLP VAE with a 2-D latent space, short curves and a coarse map.
TINY = {
    "name": "digits_latent2d",
    "data": {"dataset": "digits"},
    "vae": {
        "preset": None,
        "architecture": {"latent_dim": 2, "kind": "mlp", "hidden": [64, 32], "beta": 0.1},
        "trainer": {"epochs": 30, "batch_size": 64, "lr": 2e-3, "early_stopping_patience": None,
                    "image_log_every": 0},
    },
    "metric": {"n_centroids": 30, "lam": 0.01},
    "interpolation": {"n_pairs": 3, "n_points": 20, "n_iterations": 100, "n_decoded": 6},
    "map": {"resolution": 40},
    "device": "cpu",
    "num_threads": 1,
    "progress": False,
}


def tiny_config(**sections) -> LatentMapConfig:
    return LatentMapConfig.from_dict({**TINY, **sections})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "latent"
    return out, run_latent_map(tiny_config(), out)


def test_latent_map_writes_the_figures_and_the_lengths(finished_run):
    out, result = finished_run
    paths = LatentMapPaths(out)
    for path in (paths.vae, paths.codes, paths.curves, paths.map_figure, paths.decoded_figure, paths.lengths_csv,
                 paths.lengths_md):
        assert path.is_file() and path.stat().st_size > 0, path
    assert paths.map_figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(paths.lengths_csv)
    assert list(table["pair"]) == [1, 2, 3]
    classes = table[["start_class", "end_class"]].to_numpy().flatten()
    assert len(set(classes)) == 6  # six distinct digits
    assert "| 1 |" in paths.lengths_md.read_text() and "Eq. 8" in result.markdown
    assert any((out / "tensorboard" / "vae").iterdir())


def test_metric_curves_are_shorter_than_the_straight_lines(finished_run):
    out, _ = finished_run
    record = load_tensors(LatentMapPaths(out).curves)
    metric = RiemannianMetric.from_state_dict(record["metric"])
    codes = load_tensors(LatentMapPaths(out).codes)["mu"]
    for (i, j), line, curve, row in zip(record["pairs"].tolist(), record["straight"], record["curves"],
                                        record["lengths"]):
        assert torch.equal(curve[0], codes[i].to(curve)) and torch.equal(curve[-1], codes[j].to(curve))
        assert torch.allclose(line[len(line) // 2], (codes[i] + codes[j]).to(line) / 2, atol=0.1)
        # Eq. 8 length measured independently of the table, finer than the optimiser's rule.
        assert conformal_length(metric, curve, 64) < conformal_length(metric, line, 64)
        assert row["curve_eq8_length"] < row["straight_eq8_length"]


def test_rerun_resumes_without_rewriting_finished_outputs(finished_run):
    out, first = finished_run
    paths = LatentMapPaths(out)
    stamps = {path: path.stat().st_mtime_ns for path in (paths.vae, paths.curves, paths.map_figure,
                                                         paths.decoded_figure, paths.lengths_csv)}
    paths.lengths_md.unlink()  # an output lost since: written again
    again = run_latent_map(tiny_config(), out)
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert paths.lengths_md.is_file()
    assert again.markdown == first.markdown


def test_run_directory_of_other_settings_is_refused(finished_run):
    out, _ = finished_run
    with pytest.raises(RunDirectoryError, match="interpolation.n_pairs"):
        run_latent_map(tiny_config(interpolation={**TINY["interpolation"], "n_pairs": 2}), out)


def test_latent_space_that_is_not_two_dimensional_is_refused_before_training(tmp_path):
    vae = {**TINY["vae"], "architecture": {**TINY["vae"]["architecture"], "latent_dim": 3}}
    with pytest.raises(ConfigError, match="latent_dim"):
        run_latent_map(tiny_config(vae=vae), tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def test_more_pairs_than_the_classes_allow_are_refused_before_training(tmp_path):
    # rings and disks: two classes, so one pair at most
    config = tiny_config(data={"dataset": "rings", "options": {"n_train_per_class": 50, "n_val_per_class": 10,
                                                               "n_test_per_class": 10}},
                         interpolation={**TINY["interpolation"], "n_pairs": 2})
    with pytest.raises(ConfigError, match="interpolation.n_pairs: 2 pairs of distinct classes need 4 classes"):
        run_latent_map(config, tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.parametrize("section, key, value, field", [
    ("interpolation", "n_points", 2, "n_points"),
    ("interpolation", "n_pairs", 9, "n_pairs"),
    ("map", "resolution", 1, "resolution"),
    ("metric", "lam", 0.0, "lam"),
])
def test_config_errors_name_the_field(section, key, value, field):
    with pytest.raises(ConfigError, match=field):
        tiny_config(**{section: {**TINY.get(section, {}), key: value}})


def test_pairs_are_seeded_and_of_distinct_classes():
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    assert choose_pairs(labels, 2, seed=0).shape == (2, 2)
    with pytest.raises(ValueError, match="3 pairs of distinct classes need 6 classes, got 4"):
        choose_pairs(labels, 3, seed=0)
    pairs = choose_pairs(labels, 2, seed=0)
    assert len(set(labels[pairs.flatten()].tolist())) == 4
    assert torch.equal(pairs, choose_pairs(labels, 2, seed=0))  # seeded


def test_repository_config_is_a_valid_two_dimensional_set_up():
    config = load_latent_map_config(CONFIG)
    assert config.vae.build((1, 32, 32)).latent_dim == 2
    assert (config.metric.n_centroids, config.metric.lam) == (100, 0.01)


def test_cli_reports_config_errors_naming_the_field(capsys):
    assert main(["--config", str(CONFIG), "--set", "interpolation.n_points=2"]) == 2
    assert "n_points" in capsys.readouterr().err
