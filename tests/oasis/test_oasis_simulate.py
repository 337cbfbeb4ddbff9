"""The simulated OASIS-1 cohort: offline, read back by the real loader, cached, with a measurable AD effect."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

import oasis.simulate as simulate
from augmentor.utils.config import ConfigError
from augmentor.utils.io import CorruptSaveError
from oasis.anatomy import template_anatomy
from oasis.loader import CSV_COLUMNS, CSV_NAME, load_oasis, scan_oasis
from oasis.simulate import SimulationConfig, cohort_hash, load_simulated, simulate_cohort

TINY = {"shape": (44, 52, 44), "n_cn": 3, "n_ad": 3, "subjects_per_disc": 4}
IMAGE_RE = re.compile(
    r"disc\d+/(OAS1_\d{4}_MR1)/PROCESSED/MPRAGE/T88_111/\1_mpr_n[34]_anon_111_t88_masked_gfc\.img"
)


@pytest.fixture(scope="module")
def offline_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """A tiny cohort generated with the network cut and an empty nilearn data folder."""
    cache = tmp_path_factory.mktemp("cache")
    nilearn_data = tmp_path_factory.mktemp("nilearn_data")
    attempts: list[str] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(repr(address))
        raise OSError("network access attempted during cohort simulation")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setenv("NILEARN_DATA", str(nilearn_data))
        simulate._anatomy.cache_clear()  # make this run read nilearn's templates
        template_anatomy.cache_clear()
        folder = simulate_cohort(SimulationConfig(**TINY), cache, progress=False)
    return folder, nilearn_data, attempts


def test_generation_is_offline(offline_cohort: tuple[Path, Path, list[str]]) -> None:
    _, nilearn_data, attempts = offline_cohort
    assert attempts == []
    assert list(nilearn_data.iterdir()) == []  # nothing fetched into nilearn's data folder


def test_tiny_cohort_is_read_by_the_real_loader(offline_cohort: tuple[Path, Path, list[str]]) -> None:
    folder = offline_cohort[0]
    table = pd.read_csv(folder / CSV_NAME, dtype=str, keep_default_na=False)
    assert tuple(table.columns) == CSV_COLUMNS
    cdr = dict(zip(table["ID"], table["CDR"]))
    assert sorted(v for v in cdr.values() if v not in ("", "0")) and all(
        v in ("", "0", "0.5", "1", "2") for v in cdr.values()
    )

    data = load_oasis(folder)
    assert len(data) == 6 and data.labels.sum() == 3
    assert data.skipped == [] and data.excluded == [] and data.table_only == []
    assert data.images.shape == (6, 1, 52, 44)
    for subject_id, label in zip(data.subject_ids, data.labels.tolist()):
        assert label == int(cdr[subject_id] not in ("", "0"))
    assert load_oasis(folder, dim=3).images.shape == (6, 1, 44, 52, 44)

    images = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.img"))
    assert len(images) == 6 and all(IMAGE_RE.fullmatch(p) for p in images)
    assert {p.split("/")[0] for p in images} == {"disc1", "disc2"}  # 4 subjects per disc
    image = nib.load(str(folder / images[0]))
    assert image.header.endianness == ">" and image.get_data_dtype() == np.dtype(">i2")
    assert image.shape == (44, 52, 44, 1) and image.header.get_zooms()[:3] == (4.0, 4.0, 4.0)
    volume = np.asarray(image.dataobj)
    assert volume.min() == 0 and (volume == 0).mean() > 0.3  # masked: background is exactly 0


def test_cache_is_reused_and_keyed_by_parameters(
    offline_cohort: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = offline_cohort[0]
    config = SimulationConfig(**TINY)
    assert folder.name == cohort_hash(config)
    mtimes = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    def no_generation(*args: object) -> None:
        raise AssertionError("the cached cohort was generated again")

    monkeypatch.setattr(simulate, "_generate", no_generation)
    assert simulate_cohort(config, folder.parent, progress=False) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == mtimes
    assert cohort_hash(config.replace(seed=1)) != folder.name
    assert cohort_hash(config.replace(effect_size=2.0)) != folder.name
    assert cohort_hash(SimulationConfig(**TINY)) == folder.name


def test_same_parameters_give_identical_files(offline_cohort: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    folder = offline_cohort[0]
    again = simulate_cohort(SimulationConfig(**TINY), tmp_path, progress=False)
    assert again != folder and again.name == folder.name
    manifest = json.loads((folder / "manifest.json").read_text())["files"]
    assert json.loads((again / "manifest.json").read_text())["files"] == manifest


def test_an_interrupted_generation_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SimulationConfig(**{**TINY, "seed": 5})
    real = simulate._simulate_volume
    calls = []

    def crash_on_third(*args: object) -> np.ndarray:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(simulate, "_simulate_volume", crash_on_third)
    (tmp_path / f".{cohort_hash(config)}.stale.tmp").mkdir()  # debris of an older crash: ignored
    with pytest.raises(KeyboardInterrupt):
        simulate_cohort(config, tmp_path, progress=False)
    assert not (tmp_path / cohort_hash(config)).exists()
    assert [p.name for p in tmp_path.iterdir()] == [f".{cohort_hash(config)}.stale.tmp"]

    monkeypatch.setattr(simulate, "_simulate_volume", real)
    folder = simulate_cohort(config, tmp_path, progress=False)
    assert len(load_oasis(folder)) == 6


def test_a_damaged_cache_is_reported(offline_cohort: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    copy = tmp_path / offline_cohort[0].name
    shutil.copytree(offline_cohort[0], copy)
    image = next(copy.rglob("*.img"))
    image.write_bytes(image.read_bytes()[:1000])
    with pytest.raises(CorruptSaveError, match="delete"):
        simulate_cohort(SimulationConfig(**TINY), tmp_path, progress=False)


def dark_fraction(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per subject: share of brain voxels darker than 0.4 (CSF-like, max-scaled), and labels."""
    data = load_oasis(folder, dim=3)
    images = data.images[:, 0].numpy()
    brain = images > 0.05
    return ((images < 0.4) & brain).sum((1, 2, 3)) / brain.sum((1, 2, 3)), data.labels.numpy()


def test_ad_effect_is_measurable(tmp_path: Path) -> None:
    base = {**TINY, "n_cn": 4, "n_ad": 4, "young_cn_fraction": 0.0, "seed": 2}
    none, labels = dark_fraction(simulate_cohort(SimulationConfig(**base, effect_size=0.0), tmp_path, progress=False))
    strong, same = dark_fraction(simulate_cohort(SimulationConfig(**base, effect_size=1.5), tmp_path, progress=False))
    assert (labels == same).all() and labels.sum() == 4
    # Same subjects with and without the effect: CN unchanged, every AD brain holds more CSF.
    np.testing.assert_array_equal(none[labels == 0], strong[labels == 0])
    assert (strong[labels == 1] > none[labels == 1] + 0.005).all()
    assert strong[labels == 1].mean() > strong[labels == 0].mean() + 0.01


def test_load_simulated_and_config_checks(offline_cohort: tuple[Path, Path, list[str]]) -> None:
    data = load_simulated(SimulationConfig(**TINY), offline_cohort[0].parent, progress=False, image_size=(26, 22))
    assert data.images.shape == (6, 1, 26, 22) and data.source.startswith("simulated cohort")
    assert len(scan_oasis(offline_cohort[0]).entries) == 6
    for bad in ({"n_cn": -1}, {"n_cn": 0, "n_ad": 0}, {"effect_size": -1.0}, {"shape": (44, 52)},
                {"shape": (400, 52, 44)}, {"noise": "poisson"}, {"young_cn_fraction": 1.5}):
        with pytest.raises(ConfigError):
            SimulationConfig(**bad)
    with pytest.raises(ConfigError, match="unknown key"):
        SimulationConfig.from_dict({"n_subjects": 3})
    assert SimulationConfig.from_json(SimulationConfig(**TINY).to_json()) == SimulationConfig(**TINY)
    assert os.fspath(simulate.default_cache_root()).endswith(os.path.join("geometric-augmentor", "oasis-sim"))


def test_volume_mode_of_the_study_data(offline_cohort: tuple[Path, Path, list[str]]) -> None:
    """data.dim 3 reads the simulated cohort as volumes of the predicted size; the 2D image is their middle slice."""
    from oasis.loader import axial_slices
    from pipelines.common.study_data import DataConfig
    from pipelines.common.study_data import load_study_data

    cache = offline_cohort[0].parent
    config = DataConfig(dim=3, downsample=2, simulation=SimulationConfig(**TINY))
    volumes = load_study_data(config, cache, progress=False)
    assert volumes.images.shape == (6, 1, 22, 26, 22) and config.expected_image_size() == (22, 26, 22)
    assert "3D volumes" in volumes.source
    full = load_study_data(config.replace(downsample=1), cache, progress=False).images
    slices = load_study_data(config.replace(dim=2, downsample=1), cache, progress=False).images
    middle = axial_slices(full).flatten(1)
    low, high = middle.min(1, keepdim=True).values, middle.max(1, keepdim=True).values
    torch.testing.assert_close(((middle - low) / (high - low)).view_as(slices), slices)
