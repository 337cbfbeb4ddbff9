"""A fit in per-class pieces (GeometricAugmentor.fit_class_model, ClassModel, fit_from_class_models) equals fit."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from augmentor import ClassModel, GeometricAugmentor
from augmentor.metrics.features import images_digest
from augmentor.utils.io import CorruptSaveError
from conftest import blobs, tiny_config


def _uneven_classes() -> tuple[torch.Tensor, torch.Tensor]:
    """10 images of class 0 and 6 of class 5: labels that are not 0..K-1 and classes of unequal size."""
    images, labels = blobs(10, (1, 16, 16))
    keep = torch.cat([torch.arange(10), torch.arange(10, 16)])
    return images[keep], torch.where(labels[keep] == 1, 5, 0)


def _same(a: Any, b: Any) -> bool:
    """Exact equality of nested state (tensors bit for bit, dtype included)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("model", ["vae", "vamp"])
def test_fit_in_pieces_equals_fit(model: str, tmp_path) -> None:
    images, labels = _uneven_classes()
    config = tiny_config(n_steps=4, n_leapfrog=3).replace(model=model)
    whole = GeometricAugmentor(config).fit(images, labels)

    pieces = GeometricAugmentor(config)
    trained = []
    for label in (5, 0):  # any order, each through its saved folder (as separate jobs would)
        class_model = pieces.fit_class_model(images, labels, label)
        assert not pieces.is_fitted  # training a class changes nothing of the augmentor
        trained.append(ClassModel.load(class_model.save(tmp_path / f"class_{label}")))
    pieces.fit_from_class_models(images, labels, trained)

    assert pieces.classes == whole.classes == [0, 5] and pieces.config == whole.config
    for label in whole.classes:
        assert _same(pieces.models[label].state_dict(), whole.models[label].state_dict())
        assert pieces.histories[label] == whole.histories[label]
        assert pieces.samplers[label].keys() == whole.samplers[label].keys()
        for name, sampler in whole.samplers[label].items():
            assert _same(pieces.samplers[label][name].state_dict(), sampler.state_dict()), (label, name)
    sampler = "vamp" if model == "vamp" else "riemannian"
    for got, expected in zip(pieces.generate(3, sampler, seed=1), whole.generate(3, sampler, seed=1)):
        assert torch.equal(got, expected)


@pytest.fixture(scope="module")
def quick_models() -> tuple[GeometricAugmentor, torch.Tensor, torch.Tensor, list[ClassModel]]:
    """Class models of a one-step training (what is checked here does not need trained weights)."""
    images, labels = _uneven_classes()
    config = tiny_config()
    augmentor = GeometricAugmentor(config.replace(trainer=config.trainer.replace(max_steps=1, eval_every=1)))
    return augmentor, images, labels, [augmentor.fit_class_model(images, labels, c) for c in (0, 5)]


def test_models_of_other_data_or_settings_are_refused(quick_models) -> None:
    augmentor, images, labels, models = quick_models
    with pytest.raises(ValueError, match=r"missing for \[5\]"):
        augmentor.fit_from_class_models(images, labels, models[:1])
    with pytest.raises(ValueError, match="two models of class 0"):
        augmentor.fit_from_class_models(images, labels, [models[0], *models])
    changed = torch.where((labels == 5).view(-1, 1, 1, 1), images.flip(-1), images)
    with pytest.raises(ValueError, match="class 5 was trained on other images"):
        augmentor.fit_from_class_models(changed, labels, models)
    other = GeometricAugmentor(augmentor.config.replace(trainer=augmentor.config.trainer.replace(lr=0.5)))
    with pytest.raises(ValueError, match="trainer.lr differ"):
        other.fit_from_class_models(images, labels, models)
    # A third class (3) ahead of class 5 moves it to position 2: its seed would differ.
    more_images, more_labels = torch.cat([images, images[:2]]), torch.cat([labels, torch.tensor([3, 3])])
    third = dataclasses.replace(models[0], label=3, index=1, images_digest=images_digest(images[:2]))
    with pytest.raises(ValueError, match="class 5 was trained as class number 1"):
        augmentor.fit_from_class_models(more_images, more_labels, [*models, third])
    assert not augmentor.is_fitted  # nothing of a refused assembly is kept


def test_per_class_pieces_refuse_the_shared_vae_and_unknown_classes(quick_models) -> None:
    augmentor, images, labels, models = quick_models
    shared = GeometricAugmentor(augmentor.config.replace(shared_vae=True))
    with pytest.raises(ValueError, match="shared_vae=True"):
        shared.fit_class_model(images, labels, 0)
    with pytest.raises(ValueError, match="shared_vae=True"):
        shared.fit_from_class_models(images, labels, models)
    with pytest.raises(ValueError, match=r"class 7 is not in the data; its classes are \[0, 5\]"):
        augmentor.fit_class_model(images, labels, 7)


@pytest.mark.parametrize("damage", ["model", "class", "manifest"])
def test_a_damaged_class_model_is_named(quick_models, tmp_path, damage: str) -> None:
    folder = quick_models[3][1].save(tmp_path / "model")
    loaded = ClassModel.load(folder)
    assert loaded.label == 5 and loaded.index == 1 and _same(loaded.model.state_dict(),
                                                             quick_models[3][1].model.state_dict())
    target = {"model": "model.pt", "class": "class.json", "manifest": "manifest.json"}[damage]
    (folder / target).write_bytes((folder / target).read_bytes()[:-5])
    with pytest.raises(CorruptSaveError, match=str(folder)):
        ClassModel.load(folder)
