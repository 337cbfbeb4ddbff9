"""Tests of the command line (augmentor.cli): fit on NIfTI files listed in a CSV, generate, refusals, exit codes."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


from augmentor import GeometricAugmentor, cli

SIZE = 12
AFFINE = np.array([[1.5, 0, 0, -9.0], [0, 1.25, 0, 4.0], [0, 0, 2.0, -12.0], [0, 0, 0, 1]])
# Tiny settings: a 2-layer VAE with 2 latent dimensions, a few optimiser steps, short HMC chains.
TINY = [
    "--set", "vae.architecture.channels=[4, 8]", "--set", "vae.architecture.strides=[2, 2]",
    "--set", "vae.architecture.latent_dim=2", "--set", "vae.trainer.max_steps=4",
    "--set", "vae.trainer.eval_every=2", "--set", "vae.trainer.batch_size=4",
    "--set", "hmc.n_steps=3", "--set", "hmc.n_leapfrog=2", "--set", "gmm_components=2",
    "--set", "figure_per_class=2", "--device", "cpu", "--no-progress",
]


def _volume(label: int, rng: np.random.Generator) -> np.ndarray:
    """A cube of 12^3 voxels: a bright slab on the left (class 0) or on the right (class 1), plus noise."""
    volume = rng.normal(10, 2, (SIZE,) * 3).astype(np.float32)
    half = slice(0, SIZE // 2) if label == 0 else slice(SIZE // 2, SIZE)
    volume[half] += 50
    return volume


@pytest.fixture(scope="module")
def data_list(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(0)
    with open(folder / "list.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        for label in (0, 1):
            for i in range(6):
                nib.save(nib.Nifti1Image(_volume(label, rng), AFFINE), folder / f"s{label}_{i}.nii.gz")
                writer.writerow([f"s{label}_{i}.nii.gz", label])
    return folder / "list.csv"


@pytest.fixture(scope="module")
def model_dir(data_list, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "model"
    assert cli.main(["fit", "--data", str(data_list), "--out", str(out), *TINY]) == 0
    return out


def _digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fit_writes_the_augmentor_report_figure_and_logs_with_the_auto_config(model_dir):
    for name in ("augmentor/manifest.json", "fit.json", "fit_report.json", "fit_report.md", "fit_grid.png",
                 "manifest.json"):
        assert (model_dir / name).is_file(), name
    assert any((model_dir / "tensorboard").rglob("events.out.tfevents.*"))
    record = json.loads((model_dir / "fit.json").read_text())
    assert record["config_source"] == "3d-small"  # no --config: chosen from the 12^3 volumes
    assert record["classes"] == {"0": 6, "1": 6} and record["image_shape"] == [1, SIZE, SIZE, SIZE]
    np.testing.assert_allclose(record["affine"], AFFINE)
    report = json.loads((model_dir / "fit_report.json").read_text())
    assert set(report["classes"]) == {"0", "1"}
    assert all(fit["recon_class_mean"] > 0 for fit in report["classes"].values())
    augmentor = GeometricAugmentor.load(model_dir / "augmentor")
    assert augmentor.classes == [0, 1] and augmentor.config.vae.latent_dim == 2
    assert augmentor.config.trainer.max_steps == 4


def test_generate_writes_nifti_with_the_input_affine_and_monai_data_lists(model_dir, tmp_path):
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    out = tmp_path / "synthetic"
    assert cli.main(["generate", str(model_dir), "--n", "3", "--sampler", "riemannian", "--seed", "0",
                     "--out", str(out)]) == 0
    files = sorted((out / "images").glob("*.nii.gz"))
    assert len(files) == 6
    for file in files:
        image = nib.load(file)
        np.testing.assert_allclose(image.affine, AFFINE, atol=1e-6)
        assert image.shape == (SIZE,) * 3
        assert 0 <= image.get_fdata().min() and image.get_fdata().max() <= 1
    items = load_decathlon_datalist(str(out / "datalist.json"), is_segmentation=False, data_list_key="training")
    assert sorted(item["label"] for item in items) == [0, 0, 0, 1, 1, 1]
    loaded = LoadImaged("image", image_only=True)(items[0])
    assert tuple(loaded["image"].shape) == (SIZE,) * 3
    with open(out / "datalist.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], int(r["label"])) for r in rows] == [
        (item["image"], item["label"]) for item in json.loads((out / "datalist.json").read_text())["training"]
    ]
    # The synthetic list is read back by the command's own reader, as a real list would be.
    from pipelines.lowdata.sources import read_data_list

    assert len(read_data_list(out / "datalist.csv")) == 6


def test_generate_with_the_same_seed_is_byte_identical_and_another_seed_differs(model_dir, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert cli.main(["generate", str(model_dir), "--n", "2", "--sampler", "gmm", "--seed", str(seed),
                         "--out", str(tmp_path / name)]) == 0
        runs[name] = _digests(tmp_path / name)
    assert runs["a"] == runs["b"]
    images = [k for k in runs["a"] if k.endswith(".nii.gz")]
    assert len(images) == 4 and any(runs["a"][k] != runs["c"][k] for k in images)


def test_generate_absolute_paths_point_at_the_published_folder(model_dir, tmp_path):
    out = tmp_path / "abs"
    assert cli.main(["generate", str(model_dir), "--n", "1", "--sampler", "prior", "--out", str(out),
                     "--absolute-paths"]) == 0
    for item in json.loads((out / "datalist.json").read_text())["training"]:
        assert Path(item["image"]).is_absolute() and Path(item["image"]).is_file()


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error:") or "\nerror:" in err, err
    assert "Traceback" not in err
    return err


def test_fit_refuses_a_non_empty_out_and_leaves_it_alone(data_list, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert cli.main(["fit", "--data", str(data_list), "--out", str(out), *TINY]) == 2
    assert "already exists" in _error(capsys)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep"


def test_generate_refuses_a_non_empty_out(model_dir, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert cli.main(["generate", str(model_dir), "--out", str(tmp_path / "x")]) == 2
    assert "already exists" in _error(capsys)


def test_generate_refuses_an_unknown_sampler(model_dir, tmp_path, capsys):
    assert cli.main(["generate", str(model_dir), "--sampler", "magic", "--out", str(tmp_path / "s")]) == 2
    assert "'magic'" in _error(capsys)
    assert not (tmp_path / "s").exists()


def test_fit_names_a_missing_image_file(data_list, tmp_path, capsys):
    listed = tmp_path / "list.csv"
    listed.write_text(data_list.read_text() + "absent.nii.gz,1\n")
    for name in data_list.parent.glob("*.nii.gz"):
        (tmp_path / name.name).symlink_to(name)
    assert cli.main(["fit", "--data", str(listed), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "absent.nii.gz" in _error(capsys)
    assert not (tmp_path / "m").exists()


def test_fit_names_an_unreadable_image(data_list, tmp_path, capsys):
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps({"training": [{"image": str(p), "label": i % 2} for i, p in
                                               enumerate(sorted(data_list.parent.glob("*.nii.gz")))]
                                  + [{"image": "broken.nii.gz", "label": 0}]}))
    assert cli.main(["fit", "--data", str(listed), "--out", str(tmp_path / "m"), *TINY]) == 2
    assert "broken.nii.gz" in _error(capsys)


def test_fit_refuses_a_missing_data_list_and_unknown_settings(tmp_path, data_list, capsys):
    assert cli.main(["fit", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "m")]) == 2
    assert "none.csv" in _error(capsys)
    assert cli.main(["fit", "--data", str(data_list), "--out", str(tmp_path / "m"), "--set", "vae.trainer.epoch=3"]) == 2
    assert "epoch" in _error(capsys)
    assert cli.main(["fit", "--data", str(data_list), "--out", str(tmp_path / "m"), "--config", "4d-huge"]) == 2
    assert "4d-huge" in _error(capsys)
    assert not (tmp_path / "m").exists()


def test_generate_refuses_a_tampered_model_folder(model_dir, tmp_path, capsys):
    copy = tmp_path / "model"
    for name, data in _digests(model_dir).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    record = json.loads((copy / "fit.json").read_text())
    record["affine"][0][0] = 9.0
    (copy / "fit.json").write_text(json.dumps(record))
    assert cli.main(["generate", str(copy), "--out", str(tmp_path / "s")]) == 2
    assert "fit.json" in _error(capsys)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("raised, code", [(KeyboardInterrupt, 130), (RuntimeError("boom"), 1)])
def test_interrupted_or_failed_fit_leaves_no_folder(data_list, tmp_path, monkeypatch, capsys, raised, code):
    def fail(*args, **kwargs):
        raise raised

    monkeypatch.setattr(GeometricAugmentor, "fit", fail)
    assert cli.main(["fit", "--data", str(data_list), "--out", str(tmp_path / "m"), *TINY]) == code
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling
    if code == 1:
        assert "boom" in _error(capsys)


def test_choose_config_by_dimension_and_size():
    assert cli.choose_config((28, 28)) == "2d-small"
    assert cli.choose_config((208, 176)) == "2d-large"
    assert cli.choose_config((32, 32, 32)) == "3d-small"
    assert cli.choose_config((44, 52, 65)) == "3d-large"
    for name in cli.BUILTIN_CONFIGS:  # every built-in config is valid and round-trips through JSON
        config = cli.load_fit_config(name, {})
        assert cli.FitConfig.from_json(config.to_json()) == config


def test_python_dash_m_entry_point_exits_with_main_s_status(monkeypatch, tmp_path, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["augmentor", "generate", str(tmp_path / "absent"), "--out", str(tmp_path / "s")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("augmentor", run_name="__main__")
    assert exit_info.value.code == 2 and "absent" in _error(capsys)


def test_fit_names_an_image_with_nan_voxels(data_list, tmp_path, capsys):
    volume = np.full((SIZE,) * 3, 0.5, dtype=np.float32)
    volume[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(volume, AFFINE), tmp_path / "odd.nii.gz")
    listed = tmp_path / "list.csv"
    listed.write_text(data_list.read_text() + "odd.nii.gz,1\n")
    for name in data_list.parent.glob("*.nii.gz"):
        (tmp_path / name.name).symlink_to(name)
    assert cli.main(["fit", "--data", str(listed), "--out", str(tmp_path / "m"), *TINY]) == 2
    err = _error(capsys)
    assert "odd.nii.gz" in err and "NaN" in err


def test_fit_names_the_first_image_outside_the_unit_range_without_scaling(data_list, tmp_path, capsys):
    assert cli.main(["fit", "--data", str(data_list), "--out", str(tmp_path / "m"), *TINY,
                     "--set", "preprocessing.intensity=none"]) == 2
    err = _error(capsys)
    assert "s0_0.nii.gz" in err and "not [0, 1]" in err and "preprocessing.intensity" in err


def test_terminated_fit_removes_its_temporary_folder(data_list, tmp_path, monkeypatch):
    import os
    import signal
    import time

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler interrupts this
        raise AssertionError("SIGTERM was not handled")

    monkeypatch.setattr(GeometricAugmentor, "fit", terminated)
    before = signal.getsignal(signal.SIGTERM)  # not always SIG_DFL: ray.init, run by earlier tests, installs one
    assert cli.main(["fit", "--data", str(data_list), "--out", str(tmp_path / "m"), *TINY]) == 130
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the process's again
