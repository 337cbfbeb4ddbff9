"""The 3D OASIS study: volumes through the 3D VAE and the 3D Table 4 classifier, end to end in a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from augmentor import GeometricAugmentor
from augmentor.utils.config import ConfigError
from augmentor.utils.volume_figure import mid_slices, save_orthogonal_slices
from pipelines.common.classifier import OasisClassifier, TorchIOAugmentation, train_classifier
from pipelines.common.settings import AugmentationConfig, ClassifierConfig
from pipelines.oasis_study.config import load_study_config
from pipelines.common.study_data import StudyData
from pipelines.common.jobs import augmentor_config
from pipelines.oasis_study.study import run_study

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_3D = CONFIGS / "oasis_3d_tiny.yaml"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sim-cache-3d")


@pytest.fixture(scope="module")
def tiny():
    return load_study_config(TINY_3D)


@pytest.fixture(scope="module")
def reference(tiny, cache, tmp_path_factory):
    """An uninterrupted run of the tiny 3D study."""
    return run_study(tiny, tmp_path_factory.mktemp("runs-3d") / "reference", cache_dir=cache)


def results(out: Path) -> dict[str, dict]:
    """Every result JSON without its wall time (training curves included: bitwise determinism)."""
    loaded = {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted((out / "results").rglob("*.json"))}
    for value in loaded.values():
        value.pop("seconds")
    return loaded


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*")) if p.is_file()
            and "tensorboard" not in p.parts and "report" not in p.parts and p.name != ".lock"}


def volumes(n_per_class: int, size: tuple[int, int, int] = (12, 14, 12), seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Two classes of noisy volumes: a bright cube in the centre (class 1) or not (class 0)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(2 * n_per_class, 1, *size, generator=g)
    x[n_per_class:, :, 4:8, 5:9, 4:8] += 0.6
    return x, torch.tensor([0] * n_per_class + [1] * n_per_class)


# --------------------------------------------------------------------------- the study


def test_3d_study_end_to_end(reference, tiny):
    assert reference.jobs_run == 2 + 1 + 7 and reference.jobs_skipped == 0  # 2 class VAEs, generate, classifiers
    assert list(reference.summary.index) == list(tiny.methods) and (reference.summary["runs"] == 1).all()
    data = StudyData.load(reference.out / "data.pt")
    assert data.images.shape == (22, 1, 12, 14, 12)  # 24 x 28 x 24 simulated, read with downsample 2
    assert json.loads((reference.out / "study.json").read_text())["image_size"] == [12, 14, 12]
    augmentor = GeometricAugmentor.load(reference.out / "generate" / "seed_0" / "augmentor")
    assert augmentor.config.vae.in_shape == (1, 12, 14, 12) and augmentor.config.encode_batch_size == 8
    synthetic = augmentor.decode(torch.zeros(3, 2), torch.tensor([0, 1, 1]))
    assert synthetic.shape == (3, 1, 12, 14, 12)
    for name in ("real_vs_synthetic.png", "samples_riemannian.png", "diagnostics_riemannian.json"):
        assert (reference.out / "generate" / "seed_0" / name).is_file()
    row = json.loads((reference.out / "results" / "seed_0" / "real+riemannian.json").read_text())
    assert row["n_train"] == len(json.loads((reference.out / "splits" / "seed_0.json").read_text())["indices"]
                                 ["train"]) + 2 * tiny.sampling.n_per_class
    assert set(row["test"]["per_class"]) == {"0", "1"}
    assert (reference.out / "report" / "summary.md").is_file()
    assert (reference.out / "report" / "fit_views_seed_0.png").read_bytes()[:4] == b"\x89PNG"
    # 12 x 14 x 12 volumes are too coarse for the ventricle measure: no class-effect rows, no failure.
    assert not (reference.out / "report" / "class_effect.csv").exists()


def test_orthogonal_mid_slices_follow_the_axes(tmp_path):
    volume = torch.zeros(1, 5, 7, 9)
    volume[0, 2, :, :] = 1.0  # the sagittal mid-plane x = 2
    axial, coronal, sagittal = mid_slices(volume)
    assert axial.shape == (7, 5) and coronal.shape == (9, 5) and sagittal.shape == (9, 7)
    assert (axial[:, 2] == 1).all() and (coronal[:, 2] == 1).all() and (sagittal == 1).all()
    assert axial.sum() == 7 and coronal.sum() == 9
    path = save_orthogonal_slices({0: {"real": volume[None]}}, tmp_path / "views.png", "t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="volumes"):
        save_orthogonal_slices({0: {"real": volume}}, tmp_path / "bad.png", "t")
    from augmentor.plots import pyplot

    assert pyplot().get_fignums() == []  # neither call leaves a figure open


def test_3d_study_is_deterministic_and_a_rerun_recomputes_nothing(reference, tiny, cache, tmp_path):
    before = mtimes(reference.out)
    rerun = run_study(tiny, reference.out, cache_dir=cache)
    assert rerun.jobs_run == 0 and rerun.jobs_skipped == 10
    assert mtimes(reference.out) == before  # no model, latent set, figure or result rewritten
    assert rerun.table == reference.table

    again = run_study(tiny, tmp_path / "again", cache_dir=cache)
    assert results(again.out) == results(reference.out)
    assert again.per_run.equals(reference.per_run)


# --------------------------------------------------------------------------- the 3D classifier


def test_3d_classifier_is_table_4_with_3d_layers():
    model = OasisClassifier((1, 44, 52, 44), ClassifierConfig(padding=1))
    assert model.flat_features == 64  # 44 x 52 x 44 -> 1 x 1 x 1 after four blocks
    kinds = {type(m) for m in model.modules()}
    assert {nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d} <= kinds and nn.Conv2d not in kinds
    assert model(torch.rand(2, 1, 44, 52, 44)).shape == (2, 2)
    with pytest.raises(ConfigError, match=r"images of size \(12, 14, 12\) vanish"):
        OasisClassifier((1, 12, 14, 12), ClassifierConfig())


def test_3d_classifier_training_lowers_the_loss():
    x, y = volumes(6)
    torch.manual_seed(0)
    model = OasisClassifier(x.shape[1:], ClassifierConfig(channels=(4, 8), strides=(1, 1), padding=1, hidden=8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    config = ClassifierConfig(channels=(4, 8), strides=(1, 1), padding=1, hidden=8, epochs=4, batch_size=4, lr=1e-2)
    trained = train_classifier(x, y, *volumes(2, seed=1), config, seed=0)
    assert trained.history[-1]["train_loss"] < trained.history[0]["train_loss"]
    assert trained.best_val_balanced_accuracy == 1.0


def test_classical_augmentation_of_volumes_moves_content_along_every_axis():
    config = AugmentationConfig(elastic_control_points=5)
    batch = torch.rand(3, 1, 12, 14, 12)
    augment = TorchIOAugmentation(config, (12, 14, 12), seed=1)
    a, b, c = augment(batch, 0), augment(batch, 0), augment(batch, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == batch.shape and 0 <= a.min() and a.max() <= 1
    # A ramp along z: in-plane (2D) transforms would leave every axial slice's mean as it was.
    ramp = torch.linspace(0.1, 0.9, 12).expand(2, 1, 12, 14, 12).clone()
    shift = TorchIOAugmentation(AugmentationConfig(degrees=0, scales=0, translation=0.2, p_elastic=0), (12, 14, 12), 0)
    moved = shift(ramp, 0)[..., 3:9].mean((2, 3))
    assert (moved - ramp[..., 3:9].mean((2, 3))).abs().max() > 0.05


# --------------------------------------------------------------------------- configuration


def test_3d_configs_and_their_checks(tmp_path):
    quick = load_study_config(CONFIGS / "oasis_3d_quick.yaml")
    assert quick.data.dim == 3 and quick.data.expected_image_size() == (29, 35, 29)
    # A real OASIS-1 copy on the T88 grid: the same volumes' size, given or as T88 / 4.
    assert quick.data.replace(data_dir=str(tmp_path)).expected_image_size() == (29, 35, 29)
    real = quick.data.replace(data_dir=str(tmp_path), image_size=None, downsample=4)
    assert real.expected_image_size() == (44, 52, 44)
    assert augmentor_config(quick, 0, (1, 29, 35, 29)).encode_batch_size == quick.vae.encode_batch_size == 16
    gpu = load_study_config(CONFIGS / "oasis_3d_gpu.yaml")
    assert gpu.data.expected_image_size() == (88, 104, 88) and gpu.data.simulation.n_cn == 316
    assert load_study_config(TINY_3D).data.expected_image_size() == (12, 14, 12)
    for text, message in [
        ("data: {dim: 3, image_size: [12, 14]}\n", r"DataConfig\.image_size: must be \[X, Y, Z\]"),
        ("data: {dim: 3, slice_index: 5}\n", r"DataConfig\.slice_index: applies to 2D slices only"),
        ("data: {dim: 3, data_dir: somewhere/OASIS.npz}\n", r"DataConfig\.dim: the authors' OASIS\.npz holds 2D"),
        ("data: {dim: 4}\n", r"DataConfig\.dim"),
        ("vae: {encode_batch_size: 0}\n", r"VAESection\.encode_batch_size: must be >= 1"),
        ("data: {dim: 3, downsample: 8}\nclassifier: {padding: 0}\n", r"images of size \(22, 26, 22\) vanish"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_study_config(path)
