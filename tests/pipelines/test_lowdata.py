"""The low-data study (pipelines.lowdata): subsampling, data sources, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from augmentor.utils.config import ConfigError
from augmentor.sampling.samplers import SAMPLERS
from pipelines.lowdata.config import (
    PAIRED_BASELINES,
    LowDataConfig,
    LowDataSplitConfig,
    MonaiAugmentationConfig,
    load_lowdata_config,
)
from pipelines.lowdata.jobs import MonaiAugmentation, latent_distances, low_data_split, training_indices
from pipelines.lowdata.study import main, run_lowdata
from pipelines.common.run_directory import RunDirectoryError
from pipelines.lowdata.sources import SourceConfig, load_source
from pipelines.common.stats import paired_differences

TINY = Path(__file__).resolve().parents[2] / "configs" / "lowdata_tiny.yaml"
QUICK = Path(__file__).resolve().parents[2] / "configs" / "mnist_lowdata_quick.yaml"
FAST = {"seeds": 1, "train_sizes": [3], "methods": ["real", "monai", "real+riemannian", "gmm"]}


def _labels(counts: list[int]) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def test_low_data_split_is_stratified_nested_and_deterministic() -> None:
    labels = _labels([40, 30, 35])
    config = LowDataSplitConfig(val_per_class=4, test_per_class=6)
    split = low_data_split(labels, seed=3, config=config, sizes=(5, 10, 20))
    assert split == low_data_split(labels, seed=3, config=config, sizes=(5, 10, 20))
    assert split != low_data_split(labels, seed=4, config=config, sizes=(5, 10, 20))
    for part, per_class in (("val", 4), ("test", 6)):
        assert torch.bincount(labels[split[part]]).tolist() == [per_class] * 3
    previous: set[int] = set()
    for size in (5, 10, 20):
        train = training_indices(split, size)
        assert torch.bincount(labels[train]).tolist() == [size] * 3  # stratified
        assert previous <= set(train)  # nested: the smaller set lies inside the larger one
        assert not set(train) & (set(split["val"]) | set(split["test"]))
        previous = set(train)
    # The fixed sets and the order do not depend on which sizes are asked for.
    assert low_data_split(labels, seed=3, config=config, sizes=(7,)) == split
    everything = training_indices(split, "all")
    assert sorted(everything + split["val"] + split["test"]) == list(range(len(labels)))


def test_low_data_split_names_a_class_too_small() -> None:
    with pytest.raises(ValueError, match="class 1 has 30 images, too few for 6 test \\+ 4 validation \\+ 25 training"):
        low_data_split(_labels([40, 30]), 0, LowDataSplitConfig(val_per_class=4, test_per_class=6), sizes=(10, 25))


def test_latent_distances_show_replay() -> None:
    codes = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    replay = latent_distances(codes, codes[[0, 1, 2, 0]])
    assert replay["to_nearest_code"] == 0 and replay["ratio"] == 0
    assert replay["between_codes"] == pytest.approx((3 + 3 + 4) / 3)
    spread = latent_distances(codes, torch.tensor([[1.5, 0.0]]))
    assert spread["to_nearest_code"] == pytest.approx(1.5)


def test_monai_augmentation_is_reproducible_per_epoch() -> None:
    images = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    before = images.clone()
    augment = MonaiAugmentation(MonaiAugmentationConfig(p_rotate=1, p_zoom=1, p_noise=1), spatial_dims=2, seed=5)
    first = augment(images, epoch=0)
    assert torch.equal(images, before)
    assert torch.equal(first, augment(images, epoch=0))
    assert not torch.equal(first, augment(images, epoch=1))
    assert first.shape == images.shape and 0 <= first.min() and first.max() <= 1


def _write_nifti_cohort(folder: Path, shapes: dict[int, tuple[int, int]] | None = None) -> list[dict]:
    """16 small 2D NIfTI images per class: class 1 has a bright square in its centre."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i in range(32):
        label = i % 2
        shape = (shapes or {}).get(i, (12, 10))
        image = rng.uniform(0, 50, size=shape).astype(np.float32)
        if label:
            image[3:8, 3:7] += 200
        name = f"sub-{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / name)
        items.append({"image": name, "label": label})
    return items


def _datadict_overrides(list_file: Path) -> dict:
    return {
        **FAST, "data.source": "datadicts", "data.path": str(list_file), "data.preprocessing.spatial_size": [8, 8],
        "split.val_per_class": 3, "split.test_per_class": 4, "train_sizes": [3, 6],
    }


@pytest.fixture
def nifti_list(tmp_path: Path) -> Path:
    """A JSON list of 32 NIfTI data dicts (two classes) in ``tmp_path / "data"``."""
    items = _write_nifti_cohort(tmp_path / "data")
    list_file = tmp_path / "data" / "dataset.json"
    list_file.write_text(json.dumps(items))
    return list_file


def test_study_is_deterministic_and_resumes_without_recomputing(tmp_path: Path, nifti_list: Path) -> None:
    config = load_lowdata_config(TINY, {**_datadict_overrides(nifti_list), "train_sizes": [3]})
    first = run_lowdata(config, tmp_path / "a")
    assert first.jobs_run == 2 + 1 + 4 * 2  # 2 class VAEs, one generate job, 4 methods x 2 classifier seeds
    report = (tmp_path / "a" / "report" / "summary.md").read_bytes()
    again = run_lowdata(config, tmp_path / "a")
    assert again.jobs_run == 0 and again.jobs_skipped == first.jobs_run
    assert (tmp_path / "a" / "report" / "summary.md").read_bytes() == report
    other = run_lowdata(config, tmp_path / "b")
    assert other.per_run.equals(first.per_run)
    assert set(first.summary["method"]) == set(FAST["methods"])
    assert {"split_std", "classifier_std"} <= set(first.summary.columns)
    assert (tmp_path / "a" / "report" / "balanced_accuracy_vs_size.png").stat().st_size > 1000
    paired = pd.read_csv(tmp_path / "a" / "report" / "paired.csv")
    expected = paired_differences(first.per_run, PAIRED_BASELINES, ["size"])
    assert len(paired) == len(expected) > 0
    assert np.allclose(paired["mean_difference"], expected["mean_difference"], atol=1e-6)
    assert set(paired["baseline"]) <= set(PAIRED_BASELINES)
    assert (paired["units"] == first.per_run["seed"].nunique()).all()
    distances = json.loads((tmp_path / "a" / "generate" / "seed_0" / "n_3" / "latent_distances.json").read_text())
    assert set(distances) == {"gmm", "riemannian"} and set(distances["gmm"]) == {"0", "1"}


def test_synthetic_ratios_run_each_synthetic_method_per_ratio(tmp_path: Path, nifti_list: Path) -> None:
    config = load_lowdata_config(TINY, {**_datadict_overrides(nifti_list), "train_sizes": [3], "classifier_seeds": 1,
                                        "methods": ["real", "real+gmm", "ae-gmm"], "synthetic_ratios": [1, 2],
                                        "classifier.early_stopping_patience": 1})
    result = run_lowdata(config, tmp_path / "run")
    n_train = dict(zip(result.per_run["method"], result.per_run["n_train"]))
    # 2 classes x 3 real images; the peer's synthetic-only sets hold ratio x 3 images per class
    assert n_train == {"real": 6, "real+gmm@x1": 6 + 6, "real+gmm@x2": 6 + 12, "ae-gmm@x1": 6, "ae-gmm@x2": 12}
    generated = tmp_path / "run" / "generate" / "seed_0" / "n_3"
    for source in ("gmm", "ae-gmm"):
        latents = torch.load(generated / f"latents_{source}.pt", weights_only=True)
        assert len(latents["z"]) == 2 * 3 * 2  # the largest ratio, per class
    assert (generated / "augmentor_ae").is_dir()
    assert set(json.loads((generated / "latent_distances.json").read_text())) == {"gmm", "ae-gmm"}
    paired = pd.read_csv(tmp_path / "run" / "report" / "paired.csv")
    assert set(paired["method"]) == set(n_train) - {"real"} and set(paired["baseline"]) == {"real"}
    text = (tmp_path / "run" / "report" / "paired.md").read_text()
    assert "Real + VAE - GMM (x2)" in text and "Synthetic only: AE - GMM (x1)" in text


def test_confidence_filter_keeps_the_synthetic_images_a_real_image_classifier_is_sure_of(
        tmp_path: Path, nifti_list: Path) -> None:
    overrides = {**_datadict_overrides(nifti_list), "train_sizes": [3], "classifier_seeds": 1,
                 "methods": ["real+gmm", "real+gmm+filtered"]}
    kept_all = run_lowdata(load_lowdata_config(TINY, {**overrides, "filter_confidence": 1e-9}), tmp_path / "all")
    kept_none = run_lowdata(load_lowdata_config(TINY, {**overrides, "filter_confidence": 1 - 1e-9}), tmp_path / "none")
    n_train = {name: dict(zip(r.per_run["method"], r.per_run["n_train"])) for name, r in
               (("all", kept_all), ("none", kept_none))}
    # 6 real + 12 synthetic images; every synthetic image passes a threshold near 0, none one near 1
    assert n_train["all"] == {"real+gmm": 18, "real+gmm+filtered": 18}
    assert n_train["none"] == {"real+gmm": 18, "real+gmm+filtered": 6}
    assert "Real + VAE - GMM, confidence-filtered" in (tmp_path / "all" / "report" / "summary.md").read_text()


def test_more_classifier_seeds_extend_a_run_and_other_settings_are_refused(tmp_path: Path) -> None:
    run_lowdata(load_lowdata_config(TINY, {**FAST, "methods": ["real"], "classifier_seeds": 1}), tmp_path / "run")
    extended = run_lowdata(load_lowdata_config(TINY, {**FAST, "methods": ["real"]}), tmp_path / "run")
    assert extended.jobs_run == 1 and extended.jobs_skipped == 1
    with pytest.raises(RunDirectoryError, match="train_sizes"):
        run_lowdata(load_lowdata_config(TINY, {**FAST, "train_sizes": [3, 5]}), tmp_path / "run")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(RunDirectoryError, match="not a study run directory"):
        run_lowdata(load_lowdata_config(TINY, FAST), tmp_path / "notes")
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["mine.txt"]  # no lock file left behind


def test_nifti_data_dicts_run_through_the_study(tmp_path: Path, nifti_list: Path) -> None:
    list_file = nifti_list
    before = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}
    result = run_lowdata(load_lowdata_config(TINY, _datadict_overrides(list_file)), tmp_path / "run")
    assert result.jobs_run == 2 * (2 + 1 + 4 * 2)
    assert len(result.per_run) == 2 * 4 * 2 and result.per_run["balanced_accuracy"].between(0, 1).all()
    study = json.loads((tmp_path / "run" / "study.json").read_text())
    assert study["image_shape"] == [1, 8, 8] and study["class_counts"] == [16, 16]
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == before  # inputs never written
    with pytest.raises(Exception, match="inside the data folder"):
        run_lowdata(load_lowdata_config(TINY, _datadict_overrides(list_file)), tmp_path / "data" / "run")


def test_a_csv_list_reads_the_same_images(tmp_path: Path) -> None:
    items = _write_nifti_cohort(tmp_path)
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("image,label\n" + "".join(f"{i['image']},{i['label']}\n" for i in items))
    json_file = tmp_path / "list.json"
    json_file.write_text(json.dumps({"training": items}))
    preprocessing = {"spatial_size": [8, 8], "intensity": "percentile"}
    from_csv = load_source(SourceConfig(source="datadicts", path=str(csv_file), preprocessing=preprocessing))
    from_json = load_source(SourceConfig(source="datadicts", path=str(json_file), preprocessing=preprocessing))
    assert from_csv.fingerprint() == from_json.fingerprint()
    assert tuple(from_csv.images.shape) == (32, 1, 8, 8) and 0 <= from_csv.images.min() and from_csv.images.max() <= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda items: items[5].update(image="missing.nii.gz"),
         "item 5: image file .*missing.nii.gz does not exist"),
        (lambda items: items[2].update(label="cat"), "label"),
        (lambda items: items[2].update(label=0.5), "0.5"),
        (lambda items: [item.update(label=2 * item["label"]) for item in items],
         r"classes 0..K-1 .*found \[0, 2\]"),
        (lambda items: [item.update(label=1) for item in items], "single class"),
        (lambda items: items[3].pop("label"), "item 3 must have keys 'image' and 'label'"),
    ],
)
def test_bad_data_dicts_are_named(tmp_path: Path, change, message: str) -> None:
    items = _write_nifti_cohort(tmp_path)
    change(items)
    (tmp_path / "list.json").write_text(json.dumps(items))
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=message):
        load_source(SourceConfig(source="datadicts", path=str(tmp_path / "list.json"),
                                 preprocessing={"spatial_size": [8, 8]}))


def test_mixed_image_shapes_without_resizing_are_named(tmp_path: Path) -> None:
    items = _write_nifti_cohort(tmp_path, shapes={7: (14, 10)})
    (tmp_path / "list.json").write_text(json.dumps(items))
    with pytest.raises(ValueError, match=r"data item 7 .*sub-07.nii.gz.* has shape \(1, 14, 10\)"):
        load_source(SourceConfig(source="datadicts", path=str(tmp_path / "list.json")))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"methods": ["real", "mixup"]}, "methods"),
        ({"train_sizes": [50, 10]}, "ascending"),
        ({"train_sizes": ["all", 10]}, "final 'all'"),
        ({"train_sizes": [10, "most"]}, "final 'all'"),
        ({"data.source": "datadicts"}, "needs the JSON or CSV list"),
        ({"data.source": "imagenet"}, "imagenet"),
        ({"data.path": "digits.npz"}, "takes no path"),
        ({"classifier_seeds": 0}, "classifier_seeds"),
        ({"methods": ["real", "real+nosuchsampler"]}, r"unknown: \['real\+nosuchsampler'\]"),
        ({"synthetic_ratios": [5, 1]}, "synthetic_ratios: must be distinct ascending"),
        ({"filter_confidence": 1.0}, "filter_confidence: must lie strictly between 0 and 1"),
        ({"synthetic_ratios": [1], "train_sizes": [3, "all"]}, "synthetic_ratios: need integer training sizes"),
        ({"classifier.early_stopping_patience": 0}, "early_stopping_patience"),
        ({"data.preprocessing.spatial_size": [8]}, "spatial_size"),
        ({"classifier.channels": [4, 4, 4, 4], "classifier.strides": [1, 1, 1, 1]}, r"of size \(8, 8\) vanish"),
    ],
)
def test_bad_configs_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_lowdata_config(TINY, overrides)


def test_the_quick_config_is_valid() -> None:
    config = load_lowdata_config(QUICK)
    assert config.data.source == "mnist" and config.train_sizes == (10, 50, 100) and len(config.seed_list) >= 5


def test_the_full_config_runs_the_protocol_and_names_a_missing_sampler() -> None:
    full = Path(__file__).resolve().parents[2] / "configs" / "mnist_lowdata_full.yaml"
    data = yaml.safe_load(full.read_text())
    if "kde" not in SAMPLERS:
        with pytest.raises(ConfigError, match=r"unknown: \['real\+kde'\]"):
            load_lowdata_config(full)
        data["methods"].remove("real+kde")
    config = LowDataConfig.from_dict(data)
    assert config.train_sizes == (10, 50, 100) and len(config.seed_list) >= 10
    assert config.synthetic_ratios == (1, 5, 10) and config.classifier.early_stopping_patience
    assert {"real", "torchio", "monai", "real+prior", "real+gmm", "real+riemannian", "real+ae-gmm"} <= set(
        config.methods)


def test_command_line_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--config", str(TINY), "--set", "methods=[nope]", "--out", str(tmp_path / "x")]) == 2
    assert "invalid configuration" in capsys.readouterr().err
    missing = tmp_path / "data" / "absent.json"  # out lies outside the list's folder (else that is refused first)
    assert main(["--config", str(TINY), "--set", "data.source=datadicts", "--set", f"data.path={missing}",
                 "--out", str(tmp_path / "y")]) == 1
    assert f"data list {missing} does not exist" in capsys.readouterr().err


def test_the_simulated_oasis_cohort_runs_through_the_low_data_study(tmp_path: Path) -> None:
    oasis_tiny = {"data_dir": None, "simulation": {"n_cn": 14, "n_ad": 8, "shape": [22, 26, 22], "effect_size": 3.0}}
    config = load_lowdata_config(TINY, {
        "seeds": 1, "methods": ["real", "torchio", "riemannian"], "classifier_seeds": 1, "train_sizes": [2, 4],
        "data.source": "oasis", "data.oasis": oasis_tiny, "split.val_per_class": 1, "split.test_per_class": 2,
        "vae.architecture.hidden": [16],
    })
    result = run_lowdata(config, tmp_path / "run", cache_dir=tmp_path / "cache")
    assert len(result.per_run) == 2 * 3
    study = json.loads((tmp_path / "run" / "study.json").read_text())
    assert study["image_shape"] == [1, 26, 22] and study["class_counts"] == [14, 8]
