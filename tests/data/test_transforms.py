"""MONAI drop-in: the swap transform in multi-worker loaders, and synthetic data dicts."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai.utils import set_determinism

from augmentor.data.transforms import RandSyntheticSwap, RandSyntheticSwapd, SyntheticPool, synthetic_data_dicts


def _pool():
    # Synthetic images are constant images whose value encodes (class, index).
    labels = torch.tensor([0] * 5 + [1] * 5)
    values = torch.cat([10 + torch.arange(5.0), 20 + torch.arange(5.0)])
    return SyntheticPool(values.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone(), labels)


def _real(n=40):
    return [{"image": torch.full((1, 4, 4), -1.0 - i), "label": i % 2} for i in range(n)]


def _epoch(seed, num_workers, prob=0.5):
    set_determinism(seed)
    transform = Compose([RandSyntheticSwapd("image", _pool(), prob=prob)])
    loader = DataLoader(Dataset(_real(), transform), batch_size=4, num_workers=num_workers, shuffle=False)
    batches = list(loader)
    return torch.cat([b["image"][:, 0, 0, 0] for b in batches]), torch.cat([b["synthetic"] for b in batches])


def test_swaps_are_deterministic_in_a_multi_worker_loader():
    first, flags = _epoch(seed=0, num_workers=2)
    second, _ = _epoch(seed=0, num_workers=2)
    other, _ = _epoch(seed=1, num_workers=2)
    set_determinism(None)
    assert torch.equal(first, second) and not torch.equal(first, other)
    swapped = flags.bool()
    assert 8 <= swapped.sum() <= 32  # prob 0.5 of 40 samples: far outside this is a bug
    labels = torch.arange(40) % 2
    # Swapped samples hold a synthetic image of their own class, the others are untouched.
    assert ((first[swapped] >= 20) == labels[swapped].bool()).all() and (first[swapped] >= 10).all()
    assert torch.equal(first[~swapped], -1.0 - torch.arange(40.0)[~swapped])


def test_prob_zero_and_one():
    assert _epoch(0, 0, prob=0.0)[1].sum() == 0
    assert _epoch(0, 0, prob=1.0)[1].sum() == 40
    set_determinism(None)


def test_set_random_state_makes_the_transform_reproducible():
    values = []
    for _ in range(2):
        transform = RandSyntheticSwapd("image", _pool(), prob=0.5).set_random_state(seed=3)
        values.append([float(transform(item)["image"][0, 0, 0]) for item in _real(20)])
    assert values[0] == values[1]


def test_metadata_of_the_real_subject_is_kept():
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    item = {"image": MetaTensor(torch.zeros(1, 4, 4), affine=affine), "label": 1}
    out = RandSyntheticSwapd("image", _pool(), prob=1.0).set_random_state(0)(item)
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, affine)
    assert out["image"][0, 0, 0] >= 20 and out["synthetic"] == 1
    assert item["image"].sum() == 0  # the input dict's image is not modified


def test_class_missing_from_pool_is_never_swapped():
    pool = SyntheticPool(torch.zeros(2, 1, 4, 4), torch.tensor([0, 0]))
    transform = RandSyntheticSwapd("image", pool, prob=1.0)
    assert transform({"image": torch.ones(1, 4, 4), "label": 1})["synthetic"] == 0


def test_shape_mismatch_is_named():
    transform = RandSyntheticSwap(_pool(), prob=1.0)
    with pytest.raises(ValueError, match="training resolution"):
        transform(torch.zeros(1, 8, 8), 0)
    with pytest.raises(ValueError, match="prob"):
        RandSyntheticSwap(_pool(), prob=1.5)


def test_synthetic_data_dicts_in_memory_and_as_nifti(tmp_path):
    images, labels = torch.rand(3, 1, 6, 5), torch.tensor([0, 1, 1])
    in_memory = synthetic_data_dicts(images, labels)
    assert [d["label"] for d in in_memory] == [0, 1, 1] and torch.equal(in_memory[2]["image"], images[2])
    affine = np.diag([1.5, 1.5, 1.0, 1.0])
    on_disk = synthetic_data_dicts(images, labels, folder=tmp_path / "synthetic", affine=affine)
    loaded = Compose([LoadImaged("image"), EnsureChannelFirstd("image", channel_dim="no_channel")])(on_disk[1])
    np.testing.assert_allclose(loaded["image"][0].numpy(), images[1, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(nib.load(on_disk[1]["image"]).affine, affine)


@pytest.mark.parametrize("wrap", [lambda x: x, MetaTensor], ids=["tensor", "MetaTensor"])
def test_in_place_change_of_a_swapped_image_leaves_the_pool_unchanged(wrap):
    pool = _pool()
    before = pool.images.clone()
    swapped = RandSyntheticSwapd("image", pool, prob=1.0).set_random_state(0)(
        {"image": wrap(torch.zeros(1, 4, 4)), "label": 1}
    )["image"]
    direct = RandSyntheticSwap(pool, prob=1.0).set_random_state(0)(wrap(torch.zeros(1, 4, 4)), 0)
    assert type(swapped) is type(wrap(torch.zeros(1)))
    swapped.add_(100.0)  # e.g. an in-place intensity transform later in the pipeline
    direct.mul_(-1.0)
    assert torch.equal(pool.images, before)


def test_non_integer_labels_are_named():
    with pytest.raises(ValueError, match=r"labels\[1\] is 0.5; class labels must be integers"):
        SyntheticPool(torch.zeros(2, 1, 4, 4), [0.0, 0.5])
    with pytest.raises(TypeError, match="got the string '01'"):
        synthetic_data_dicts(torch.zeros(2, 1, 4, 4), "01")
    transform = RandSyntheticSwapd("image", _pool(), prob=1.0)
    with pytest.raises(ValueError, match="'label' is 0.7"):
        transform({"image": torch.zeros(1, 4, 4), "label": 0.7})
    # A label carried as a one-element tensor (as MONAI loaders often do) is read as the integer it holds.
    assert transform({"image": torch.zeros(1, 4, 4), "label": torch.tensor([1])})["image"][0, 0, 0] >= 20
