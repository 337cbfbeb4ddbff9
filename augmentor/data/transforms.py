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

import math
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import ensure_tuple

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


def _check_prob(prob: Any) -> float:
    """A swap probability in [0, 1] (NaN and booleans refused)."""
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not (math.isfinite(prob) and 0 <= prob <= 1):
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    return float(prob)


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

        NumPy images give a NumPy array of their dtype.

        Raises:
            ValueError: the pool has no image of this class, or its shape differs.
        """
        if isinstance(img, np.ndarray):
            return self(torch.from_numpy(np.asarray(img)), label, position).numpy()
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
        RandomizableTransform.__init__(self, _check_prob(prob))
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

    Reads the class from ``label_key``, swaps the image under ``keys`` and sets
    ``synthetic_key`` to 1 for a swapped sample, 0 otherwise (so the loader can
    tell them apart).

    The pool holds one image per synthetic subject, so ``keys`` names one image
    key. A synthetic subject has no label map (segmentation): the keys of label maps
    go in ``label_map_keys``, and a swapped sample carries there a map of the same
    shape and dtype filled with ``label_map_fill`` (e.g. the loss's ignore index),
    never the real subject's map nor a synthetic image.

    Args:
        keys: the image key to swap.
        pool: pre-generated synthetic images.
        label_key: key of the integer class label.
        prob: swap probability in [0, 1].
        synthetic_key: key of the flag written into each sample.
        allow_missing_keys: don't raise if a key is missing.
        label_map_keys: keys of label maps, filled with ``label_map_fill`` in swapped samples.
        label_map_fill: the value of a swapped sample's label maps (required with ``label_map_keys``).

    Raises:
        ValueError: ``prob`` outside [0, 1], more than one key in ``keys``, or
            ``label_map_keys`` without ``label_map_fill``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pool: SyntheticPool,
        label_key: str = "label",
        prob: float = 0.5,
        synthetic_key: str = "synthetic",
        allow_missing_keys: bool = False,
        label_map_keys: KeysCollection = (),
        label_map_fill: float | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(
                f"keys must name one image key, got {list(self.keys)}: the pool holds one image per synthetic "
                "subject and no label map; name label maps in label_map_keys (with label_map_fill)"
            )
        self.label_map_keys = tuple(ensure_tuple(label_map_keys))
        if self.label_map_keys and label_map_fill is None:
            raise ValueError("label_map_keys needs label_map_fill, the value a swapped sample's label maps hold "
                             "(a synthetic subject has no label map), e.g. the loss's ignore index")
        self.label_map_fill = label_map_fill
        RandomizableTransform.__init__(self, _check_prob(prob))
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
            for key in self.label_map_keys:
                if key in d:
                    d[key] = _filled_like(d[key], self.label_map_fill)
        d[self.synthetic_key] = int(swapped)
        return d


def _filled_like(label_map: Any, value: float | None) -> Any:
    """A new label map of ``label_map``'s type, shape and dtype, holding ``value`` everywhere."""
    if isinstance(label_map, np.ndarray):
        return np.full_like(label_map, value)
    filled = torch.full_like(torch.as_tensor(label_map), value)
    if isinstance(label_map, MetaTensor):
        filled = MetaTensor(filled)
        filled.copy_meta_from(label_map)
    return filled


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
