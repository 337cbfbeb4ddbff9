"""GeometricAugmentor end to end: fit, generate, save/load, data dicts, bad input."""

import hashlib
import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Resized, ScaleIntensityd

from augmentor import ConfigError, GeometricAugmentor, HMCConfig, MetricConfig, vae_preset
from augmentor.utils.io import CorruptSaveError, OutputExistsError
from augmentor.utils.seeding import class_seed
from conftest import blobs, tiny_config


@pytest.mark.parametrize("sampler", ["riemannian", "gmm", "prior"])
def test_generate_2d_every_sampler(fitted_2d, sampler):
    augmentor, _, _ = fitted_2d
    images, labels = augmentor.generate(4, sampler=sampler, seed=0)
    assert images.shape == (8, 1, 16, 16) and images.dtype == torch.float32
    assert labels.tolist() == [0] * 4 + [1] * 4
    assert 0 <= images.min() and images.max() <= 1
    again, _ = augmentor.generate(4, sampler=sampler, seed=0)
    assert torch.equal(images, again)
    assert not torch.equal(images, augmentor.generate(4, sampler=sampler, seed=1)[0])


def test_riemannian_diagnostics_reported(fitted_2d):
    augmentor, _, _ = fitted_2d
    hmc = HMCConfig(n_steps=7, n_leapfrog=2)
    augmentor.generate(3, sampler="riemannian", seed=0, hmc=hmc)
    for index, label in enumerate(augmentor.classes):
        diagnostics = augmentor.diagnostics[label]
        assert diagnostics.n_steps == 7 and diagnostics.n_chains == 3
        # The report is that of the chains generate ran: the same chains run again report the same.
        sampler = augmentor.samplers[label]["riemannian"]
        sampler.sample(3, seed=class_seed(0, index), hmc_config=hmc, device="cpu")
        assert sampler.diagnostics.acceptance_rate == diagnostics.acceptance_rate


def test_fit_generate_3d():
    images, labels = blobs(6, (1, 12, 12, 12))
    augmentor = GeometricAugmentor(tiny_config("tiny3d")).fit(images, labels)
    fake, fake_labels = augmentor.generate(2, seed=0)
    assert fake.shape == (4, 1, 12, 12, 12) and fake_labels.tolist() == [0, 0, 1, 1]


def test_default_architecture_from_data_shape():
    images, labels = blobs(4, (1, 10, 12))
    config = tiny_config().replace(vae=None)
    augmentor = GeometricAugmentor(config).fit(images, labels)
    assert augmentor.config.vae.in_shape == (1, 10, 12)
    assert augmentor.generate(1)[0].shape == (2, 1, 10, 12)


def test_save_load_reproduces_samples_bit_for_bit(fitted_2d, tmp_path):
    augmentor, _, _ = fitted_2d
    augmentor.save(tmp_path / "model")
    loaded = GeometricAugmentor.load(tmp_path / "model")
    assert loaded.config == augmentor.config and loaded.classes == augmentor.classes
    for sampler in ("riemannian", "gmm", "prior"):
        expected = augmentor.generate(3, sampler=sampler, seed=5)
        got = loaded.generate(3, sampler=sampler, seed=5)
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_save_refuses_a_folder_with_files(fitted_2d, tmp_path):
    augmentor, _, _ = fitted_2d
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("finished result")
    with pytest.raises(OutputExistsError, match="already exists"):
        augmentor.save(tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "finished result"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest", "edit_config"])
def test_corrupt_saved_folder_is_reported(fitted_2d, tmp_path, damage):
    augmentor, _, _ = fitted_2d
    folder = augmentor.save(tmp_path / "model")
    weights = folder / "class_1" / "model.pt"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "delete":
        weights.unlink()
    elif damage == "manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "config.json").write_text("{}")
    with pytest.raises(CorruptSaveError):
        GeometricAugmentor.load(folder)


def test_load_refuses_pickled_code(fitted_2d, tmp_path):
    """A weights file that smuggles a Python object is rejected by weights_only loading."""
    import json

    augmentor, _, _ = fitted_2d
    folder = augmentor.save(tmp_path / "model")
    weights = folder / "class_0" / "model.pt"
    torch.save({"payload": ValueError("not a tensor")}, weights)  # arbitrary object
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["class_0/model.pt"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptSaveError, match="tensor archive"):
        GeometricAugmentor.load(folder)


def test_fit_does_not_modify_inputs():
    images, labels = blobs(5, (1, 16, 16))
    before_images, before_labels = images.clone(), labels.clone()
    GeometricAugmentor(tiny_config()).fit(images, labels)
    assert torch.equal(images, before_images) and torch.equal(labels, before_labels)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda x, y: (x[0], y), ValueError, "shape"),
        (lambda x, y: (x.unsqueeze(1).unsqueeze(1), y), ValueError, "shape"),
        (lambda x, y: (x.index_fill(0, torch.tensor([3]), math.nan), y), ValueError, "NaN"),
        (lambda x, y: (x.index_fill(0, torch.tensor([3]), math.inf), y), ValueError, "NaN or infinite"),
        (lambda x, y: (x * 255, y), ValueError, r"\[0, 1\]"),
        (lambda x, y: (x - 0.5, y), ValueError, r"\[0, 1\]"),
        (lambda x, y: (x, torch.zeros_like(y)), ValueError, "single class"),
        (lambda x, y: (x, torch.cat([y[:-1], torch.tensor([7])])), ValueError, r"fewer than 2 subjects"),
        (lambda x, y: (x, y[:-1]), ValueError, "labels must have shape"),
        (lambda x, y: (x, y.float() + 0.5), ValueError, "integers"),
    ],
)
def test_bad_input_is_named(make, error, message):
    images, labels = blobs(4, (1, 16, 16))
    bad_images, bad_labels = make(images, labels)
    with pytest.raises(error, match=message):
        GeometricAugmentor(tiny_config()).fit(bad_images, bad_labels)


def test_more_centroids_than_codes_is_named():
    images, labels = blobs(4, (1, 16, 16))
    config = tiny_config().replace(metric=MetricConfig(n_centroids=5))
    with pytest.raises(ValueError, match="n_centroids=5 is larger than the number of codes of class"):
        GeometricAugmentor(config).fit(images, labels)


def test_generate_before_fit_and_unknown_sampler(fitted_2d):
    with pytest.raises(RuntimeError, match="not fitted"):
        GeometricAugmentor(tiny_config()).generate(2)
    with pytest.raises(ValueError, match="unknown sampler"):
        fitted_2d[0].generate(2, sampler="vampire")
    # A peer model's own sampler is known, but does not apply to the VAE.
    with pytest.raises(ValueError, match="'vamp' does not apply to model 'vae'"):
        fitted_2d[0].generate(2, sampler="vamp")


def _write_nifti_subjects(folder, images, labels):
    """Write images as NIfTI files (H, W) with a non-trivial scale, like scanner data."""
    items = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / f"subject_{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image((image[0].numpy() * 800 + 100).astype(np.int16), np.diag([1.2, 1.2, 1, 1])), path)
        items.append({"image": str(path), "label": int(label)})
    return items


def test_fit_from_monai_data_dicts_and_files_untouched(tmp_path):
    images, labels = blobs(5, (1, 20, 20))
    items = _write_nifti_subjects(tmp_path, images, labels)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    preprocess = Compose([
        LoadImaged("image"), EnsureChannelFirstd("image", channel_dim="no_channel"),
        ScaleIntensityd("image"), Resized("image", spatial_size=(16, 16)),
    ])
    snapshot = [dict(item) for item in items]
    augmentor = GeometricAugmentor(tiny_config()).fit(items, transform=preprocess)
    assert augmentor.classes == [0, 1]
    assert augmentor.generate(2)[0].shape == (4, 1, 16, 16)
    assert items == snapshot
    assert digests == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}


def test_data_dicts_with_mismatched_shapes_are_named(tmp_path):
    images, labels = blobs(3, (1, 20, 20))
    items = _write_nifti_subjects(tmp_path, images, labels)
    preprocess = Compose([LoadImaged("image"), EnsureChannelFirstd("image", channel_dim="no_channel"), ScaleIntensityd("image")])
    nib.save(nib.Nifti1Image(np.zeros((9, 9), np.int16), np.eye(4)), items[0]["image"])
    with pytest.raises(ValueError, match="Resized"):
        GeometricAugmentor(tiny_config()).fit(items, transform=preprocess)


def _no_training(monkeypatch):
    """Make any VAE training fail the test: the checks must come before it."""
    import augmentor.augmentor

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(augmentor.augmentor, "train_vae", refuse)


def test_generate_changes_no_fitted_state(fitted_2d):
    import copy

    augmentor, _, _ = fitted_2d
    samplers = {label: augmentor.samplers[label]["riemannian"] for label in augmentor.classes}
    before = {label: s.state_dict()["hmc_config"] for label, s in samplers.items()}
    override = HMCConfig(n_steps=3, n_leapfrog=2)
    snapshot = copy.deepcopy(override)
    augmentor.generate(2, seed=0, hmc=override)
    augmentor.sample_latents(0, 2, seed=0, hmc=override)
    assert override == snapshot
    for label, sampler in samplers.items():
        assert sampler.state_dict()["hmc_config"] == before[label] and sampler.device is None


def test_failed_refit_keeps_the_previous_models(tmp_path):
    images, labels = blobs(4, (1, 16, 16))
    augmentor = GeometricAugmentor(tiny_config()).fit(images, labels, checkpoint_dir=tmp_path / "checkpoints")
    expected = augmentor.generate(2, sampler="riemannian", seed=0)
    before = json.loads((augmentor.save(tmp_path / "before") / "manifest.json").read_text())["files"]
    # Class 1's images change, so its checkpoint belongs to another run: the refit
    # trains class 0, then fails on class 1.
    changed = torch.where((labels == 1).view(-1, 1, 1, 1), images.flip(-1), images)
    with pytest.raises(ValueError, match="different run"):
        augmentor.fit(changed, labels, checkpoint_dir=tmp_path / "checkpoints")
    got = augmentor.generate(2, sampler="riemannian", seed=0)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    after = json.loads((augmentor.save(tmp_path / "after") / "manifest.json").read_text())["files"]
    assert after == before


def test_labels_are_kept_as_given(tmp_path):
    images, labels = blobs(4, (1, 16, 16))
    augmentor = GeometricAugmentor(tiny_config()).fit(images, labels * 5)  # classes {0, 5}
    assert augmentor.classes == [0, 5]
    assert augmentor.generate(2, sampler="gmm")[1].tolist() == [0, 0, 5, 5]
    loaded = GeometricAugmentor.load(augmentor.save(tmp_path / "model"))
    assert (tmp_path / "model" / "class_5").is_dir() and loaded.generate(1, sampler="gmm")[1].tolist() == [0, 5]


def test_numpy_images_and_labels_are_taken_as_tensors(fitted_2d):
    augmentor, images, labels = fitted_2d
    from_numpy = GeometricAugmentor(tiny_config()).fit(images.numpy(), labels.numpy())
    assert torch.equal(from_numpy.generate(2, sampler="gmm")[0], augmentor.generate(2, sampler="gmm")[0])


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (["AD"] * 4 + ["CN"] * 4, TypeError, r"labels\[0\] is 'AD' \(str\).*map class names to integers"),
        ("00001111", TypeError, "got the string '00001111'"),
        ([0, 0, 0, 0.7, 1, 1, 1, 1], ValueError, r"labels\[3\] is 0.7; class labels must be integers"),
    ],
)
def test_non_integer_labels_are_named_before_training(monkeypatch, labels, error, message):
    _no_training(monkeypatch)
    images, _ = blobs(4, (1, 16, 16))
    with pytest.raises(error, match=message):
        GeometricAugmentor(tiny_config()).fit(images, labels)


def test_non_integer_data_dict_label_is_named(tmp_path):
    images, labels = blobs(3, (1, 20, 20))
    items = _write_nifti_subjects(tmp_path, images, labels)
    items[4]["label"] = 0.7
    preprocess = Compose([LoadImaged("image"), EnsureChannelFirstd("image", channel_dim="no_channel")])
    message = r"data item 4 \('.*subject_04.nii.gz'\) 'label' is 0.7; class labels must be integers"
    with pytest.raises(ValueError, match=message):
        GeometricAugmentor(tiny_config()).fit(items, transform=Compose([preprocess, ScaleIntensityd("image")]))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_per_class": 2.5}, TypeError, r"n_per_class must be an integer, got 2.5 \(float\)"),
        ({"n_per_class": "10"}, TypeError, r"n_per_class must be an integer, got '10' \(str\)"),
        ({"n_per_class": True}, TypeError, "n_per_class must be an integer, got True"),
        ({"n_per_class": 0}, ValueError, "n_per_class must be >= 1, got 0"),
        ({"n_per_class": 1, "seed": 2**70}, ValueError, r"seed must lie in \[-2\*\*63, 2\*\*64 - 1\]"),
        ({"n_per_class": 1, "seed": 1.5}, TypeError, "seed must be an integer"),
    ],
)
def test_bad_generate_arguments_are_named(fitted_2d, kwargs, error, message):
    with pytest.raises(error, match=message):
        fitted_2d[0].generate(sampler="gmm", **kwargs)


def test_every_valid_seed_generates(fitted_2d):
    augmentor = fitted_2d[0]
    for seed in (2**62, 2**64 - 1, -(2**63)):  # 2**62 * 1009 overflowed the class seed before
        assert augmentor.generate(1, sampler="gmm", seed=seed)[0].shape == (2, 1, 16, 16)
    # Seeds that worked before give the same images: class i still draws with seed * 1009 + i.
    z = torch.cat([augmentor.sample_latents(label, 2, "gmm", seed=-1009 + i)
                   for i, label in enumerate(augmentor.classes)])
    labels = torch.tensor(augmentor.classes).repeat_interleave(2)
    assert torch.equal(augmentor.generate(2, sampler="gmm", seed=-1)[0], augmentor.decode(z, labels))


def test_decode_uses_each_codes_class_model_in_any_order(fitted_2d):
    augmentor = fitted_2d[0]
    images, labels = augmentor.generate(3, sampler="prior", seed=2)
    z = torch.cat([augmentor.sample_latents(label, 3, "prior", seed=class_seed(2, i))
                   for i, label in enumerate(augmentor.classes)])
    shuffled = torch.randperm(len(z), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(augmentor.decode(z[shuffled], labels[shuffled]), images[shuffled], atol=1e-6)
    with pytest.raises(ValueError, match=r"unknown class\(es\) \[7\]"):
        augmentor.decode(z[:2], torch.tensor([0, 7]))


def test_saved_config_without_vae_is_named(fitted_2d, tmp_path):
    augmentor, _, _ = fitted_2d
    folder = augmentor.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["vae"] = None
    (folder / "config.json").write_text(json.dumps(config))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["config.json"] = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptSaveError, match="AugmentorConfig.vae = null"):
        GeometricAugmentor.load(folder)


def test_one_voxel_feature_map_with_two_subjects_is_refused_before_training(monkeypatch):
    _no_training(monkeypatch)
    images, labels = blobs(4, (1, 16, 16))
    keep = torch.tensor([0, 1, 2, 3, 4, 5])  # class 0: 4 images, class 1: 2 images
    config = tiny_config().replace(vae=vae_preset("tiny2d", channels=(4, 8, 8, 8), strides=(2, 2, 2, 2)))
    message = r"class 1: the VAE's last encoder feature map is 1 x 1.* class 1 has 2 images"
    with pytest.raises(ValueError, match=message):
        GeometricAugmentor(config).fit(images[keep], labels[keep])


def test_trainer_seed_of_a_later_class_is_checked_before_training(monkeypatch):
    _no_training(monkeypatch)
    images, labels = blobs(4, (1, 16, 16))
    config = tiny_config()
    config = config.replace(trainer=config.trainer.replace(seed=2**32 - 1))  # class 1 would train with 2**32
    with pytest.raises(ConfigError, match="TrainerConfig.seed"):
        GeometricAugmentor(config).fit(images, labels)


def _uneven_classes():
    """20 images of class 0 and 6 of class 5 (labels kept as given)."""
    images, labels = blobs(20, (1, 16, 16))
    keep = torch.cat([torch.arange(20), torch.arange(20, 26)])
    return images[keep], torch.where(labels[keep] == 1, 5, 0)


def test_step_budget_gives_every_class_the_same_number_of_steps():
    images, labels = _uneven_classes()
    config = tiny_config().replace(trainer=tiny_config().trainer.replace(max_steps=5, eval_every=2))
    augmentor = GeometricAugmentor(config).fit(images, labels)
    assert {label: history[-1]["step"] for label, history in augmentor.histories.items()} == {0: 5, 5: 5}


@pytest.fixture(scope="module")
def shared_fit():
    images, labels = _uneven_classes()
    augmentor = GeometricAugmentor(tiny_config().replace(shared_vae=True)).fit(images, labels)
    return augmentor, images, labels


def test_shared_vae_is_one_model_with_samplers_on_each_class_codes(shared_fit):
    augmentor, images, labels = shared_fit
    assert augmentor.classes == [0, 5]
    assert augmentor.models[0] is augmentor.models[5]
    # One training on all 26 images (not one per class).
    assert augmentor.histories[0] is augmentor.histories[5]
    for label in augmentor.classes:
        mu, _ = augmentor.encode(images[labels == label], label)
        centroids = augmentor.samplers[label]["riemannian"].metric.centroids
        assert len(centroids) == int((labels == label).sum())
        assert torch.allclose(centroids, mu, atol=1e-5)
    # The classes' codes differ, so their GMMs do too: each class samples near its own codes.
    z0 = augmentor.sample_latents(0, 200, "gmm", seed=0).mean(0)
    z5 = augmentor.sample_latents(5, 200, "gmm", seed=0).mean(0)
    mu0 = augmentor.encode(images[labels == 0], 0)[0].mean(0)
    mu5 = augmentor.encode(images[labels == 5], 5)[0].mean(0)
    assert (z0 - mu0).norm() < (z0 - mu5).norm() and (z5 - mu5).norm() < (z5 - mu0).norm()


def test_shared_vae_save_load_round_trip(shared_fit, tmp_path):
    augmentor, _, _ = shared_fit
    fake, fake_labels = augmentor.generate(3, seed=0)
    augmentor.save(tmp_path / "model")
    assert (tmp_path / "model" / "shared_vae" / "model.pt").is_file()
    assert not (tmp_path / "model" / "class_0" / "model.pt").exists()
    again = GeometricAugmentor.load(tmp_path / "model")
    assert again.config.shared_vae and again.models[0] is again.models[5]
    again_fake, again_labels = again.generate(3, seed=0)
    assert torch.equal(again_fake, fake) and torch.equal(again_labels, fake_labels)


def test_shared_vae_checks_batches_on_all_images():
    # 2 + 2 images: each class alone could not fill a BatchNorm batch after validation, all four can.
    images, labels = blobs(2, (1, 16, 16))
    config = tiny_config().replace(vae=vae_preset("tiny2d", strides=(4, 4)))
    with pytest.raises(ValueError, match="batch normalisation"):
        GeometricAugmentor(config).fit(images, labels)
    augmentor = GeometricAugmentor(config.replace(shared_vae=True)).fit(images, labels)
    assert augmentor.models[0] is augmentor.models[1]
