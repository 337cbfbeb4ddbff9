"""MONAI transforms that bring pre-generated synthetic subjects into a training loop.

The synthetic pool is generated *before* training (``GeometricAugmentor.generate``):
HMC never runs inside a DataLoader worker. The transforms only index into the
pool, so they are cheap and, seeded through MONAI's ``set_random_state`` /
``set_determinism``, reproducible in multi-worker loaders.

Following TorchIO's pattern, the random transform samples its parameters
(whether to swap, which synthetic subject) and calls a small deterministic twin,
:class:`SyntheticSwap`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform

from augmentor.utils.io import class_id, class_labels, export_nifti

__all__ = ["SyntheticPool", "SyntheticSwap", "RandSyntheticSwap", "RandSyntheticSwapd", "synthetic_data_dicts"]


class SyntheticPool:
    """Pre-generated synthetic images grouped by class.

    Args:
        images: ``(M, C, H, W[, D])`` synthetic images.
        labels: ``(M,)`` their integer class labels (checked by :func:`augmentor.io.class_labels`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> None:
        if images.ndim not in (4, 5):
            raise ValueError(f"expected images (M, C, H, W[, D]), got {tuple(images.shape)}")
        labels = class_labels(labels, len(images))
        self.images = images.detach().cpu()
        self.by_class = {int(c): torch.nonzero(labels == c).flatten() for c in labels.unique()}

    def count(self, label: int) -> int:
        """Number of synthetic images of class ``label`` (0 if none)."""
        index = self.by_class.get(int(label))
        return 0 if index is None else len(index)

    def get(self, label: int, position: int) -> torch.Tensor:
        """The ``position``-th synthetic image of class ``label``, ``(C, H, W[, D])``."""
        return self.images[self.by_class[int(label)][position]]


class SyntheticSwap(Transform):
    """Deterministic twin: replace an image by a given synthetic image of its class.

    Args:
        pool: the synthetic images.
    """

    def __init__(self, pool: SyntheticPool) -> None:
        self.pool = pool

    def __call__(self, img: torch.Tensor, label: int, position: int) -> torch.Tensor:
        """Return synthetic image ``position`` of class ``label``, shaped and typed like ``img``.

        The result is a copy: changing it in place never changes the pool.

        Raises:
            ValueError: the pool has no image of this class, or its shape differs.
        """
        if self.pool.count(label) == 0:
            raise ValueError(f"the synthetic pool holds no image of class {label}")
        synthetic = self.pool.get(label, position)
        if tuple(synthetic.shape) != tuple(img.shape):
            raise ValueError(
                f"synthetic images have shape {tuple(synthetic.shape)} but the real image has {tuple(img.shape)}; "
                "generate them at the training resolution"
            )
        # copy=True: the batch is often modified in place (augmentations, normalisation),
        # which must never reach the pool shared by every sample.
        synthetic = synthetic.to(device=img.device, dtype=img.dtype, copy=True)
        if isinstance(img, MetaTensor):  # keep the real subject's affine and metadata keys
            out = MetaTensor(synthetic)
            out.copy_meta_from(img)
            return out
        return synthetic


class RandSyntheticSwap(RandomizableTransform):
    """With probability ``prob``, replace an image by a random synthetic image of its class.

    Args:
        pool: pre-generated synthetic images.
        prob: swap probability.
    """

    def __init__(self, pool: SyntheticPool, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        RandomizableTransform.__init__(self, prob)
        self.swap = SyntheticSwap(pool)
        self._position = 0

    def randomize(self, label: int) -> None:  # type: ignore[override]
        super().randomize(None)
        count = self.swap.pool.count(label)
        self._do_transform = self._do_transform and count > 0
        self._position = int(self.R.randint(count)) if self._do_transform else 0

    def __call__(self, img: torch.Tensor, label: int, randomize: bool = True) -> torch.Tensor:
        """Return ``img`` or a synthetic image of class ``label``, ``(C, H, W[, D])``."""
        label = class_id(label)
        if randomize:
            self.randomize(label)
        return self.swap(img, label, self._position) if self._do_transform else img


class RandSyntheticSwapd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandSyntheticSwap`.

    Reads the class from ``label_key``, swaps the image(s) under ``keys`` and sets
    ``synthetic_key`` to 1 for a swapped sample, 0 otherwise (so the loader can
    tell them apart).

    Args:
        keys: image keys to swap (one synthetic subject for all of them).
        pool: pre-generated synthetic images.
        label_key: key of the integer class label.
        prob: swap probability.
        synthetic_key: key of the flag written into each sample.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pool: SyntheticPool,
        label_key: str = "label",
        prob: float = 0.5,
        synthetic_key: str = "synthetic",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.synthetic_key = synthetic_key
        self.swapper = RandSyntheticSwap(pool, prob=1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> "RandSyntheticSwapd":
        super().set_random_state(seed, state)
        self.swapper.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = class_id(d[self.label_key], repr(self.label_key))
        self.randomize(None)
        swapped = self._do_transform and self.swapper.swap.pool.count(label) > 0
        if swapped:
            self.swapper.randomize(label)
            for key in self.key_iterator(d):
                d[key] = self.swapper(d[key], label, randomize=False)
        d[self.synthetic_key] = int(swapped)
        return d


def synthetic_data_dicts(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    folder: str | Path | None = None,
    affine: np.ndarray | None = None,
    image_key: str = "image",
    label_key: str = "label",
) -> list[dict[str, Any]]:
    """Synthetic subjects as MONAI data dicts, to concatenate with the real training set.

    Args:
        images: ``(M, C, H, W[, D])`` synthetic images.
        labels: ``(M,)`` their labels.
        folder: if given, each image is written there as NIfTI (with ``affine``)
            and the dicts hold file paths, so the same ``LoadImaged`` pipeline
            reads real and synthetic subjects; otherwise the dicts hold tensors.

    Returns:
        ``[{image_key: path or (C, H, W[, D]) tensor, label_key: int, "synthetic": 1}, ...]``
    """
    labels = class_labels(labels, len(images)).tolist()
    items = export_nifti(images, folder, labels, affine) if folder is not None else list(images)
    return [
        {image_key: str(item) if folder is not None else item, label_key: label, "synthetic": 1}
        for item, label in zip(items, labels)
    ]
