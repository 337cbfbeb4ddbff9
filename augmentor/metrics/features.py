"""Feature extraction shared by the generation metrics: the extractor protocol, batching, data digests.

Every metric of :mod:`augmentor.metrics` compares two image sets through the
features of a network (the FID Inception network or the toolkit's domain
classifier). Features are extracted here in fixed-size batches under
``torch.no_grad`` so that memory stays bounded whatever the number of images.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import torch
from tqdm.auto import tqdm

__all__ = ["FeatureExtractor", "check_image_batch", "extract_features", "images_digest"]


@runtime_checkable
class FeatureExtractor(Protocol):
    """A network mapping images in [0, 1] to feature vectors.

    Attributes:
        name: short label printed next to every distance computed in its features
            (e.g. ``"inception-v3-pool3"``); it also names cache files.
        cache_key: a string that changes whenever the features would change (weights,
            preprocessing); cached statistics are keyed by it.
        device: where the network runs; batches are moved there.
    """

    name: str
    device: torch.device

    @property
    def cache_key(self) -> str: ...

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, D)`` of images ``(B, C, H, W)`` in [0, 1]."""
        ...


def check_image_batch(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validate a ``(N, C, H, W)`` floating-point tensor with values in [0, 1] and return it.

    Raises:
        TypeError: not a tensor.
        ValueError: wrong rank, non-float dtype, empty, non-finite or out-of-range values.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor scaled to [0, 1], got dtype {images.dtype}")
    if len(images) == 0:
        raise ValueError(f"{name} is empty")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    low, high = images.min().item(), images.max().item()
    if low < 0 or high > 1:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
                         "clamp or rescale them first")
    return images


def extract_features(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    batch_size: int = 50,
    progress: bool = False,
) -> torch.Tensor:
    """Features of an image set, computed batch by batch without gradients.

    Args:
        images: ``(N, C, H, W)`` in [0, 1], on any device (batches are moved to the extractor's).
        extractor: the feature network.
        batch_size: images per forward pass; bounds the memory of the activations.
        progress: show a progress bar.

    Returns:
        ``(N, D)`` float32 features on the CPU.
    """
    check_image_batch(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = []
    with torch.no_grad():
        for start in tqdm(range(0, len(images), batch_size), desc=f"{extractor.name} features",
                          disable=not progress, unit="batch"):
            batch = images[start:start + batch_size].to(extractor.device)
            features = extractor(batch)
            if features.ndim != 2 or len(features) != len(batch):
                raise RuntimeError(
                    f"{extractor.name} returned features of shape {tuple(features.shape)} "
                    f"for a batch of {len(batch)} images; expected ({len(batch)}, D)"
                )
            chunks.append(features.float().cpu())
    return torch.cat(chunks)


def images_digest(images: torch.Tensor, chunk_size: int = 1024) -> str:
    """SHA-256 of an image set's shape, dtype and values, read in chunks (no full copy).

    Args:
        images: ``(N, ...)`` tensor on any device.
        chunk_size: images hashed per step.
    """
    digest = hashlib.sha256(f"{tuple(images.shape)}|{images.dtype}".encode())
    for start in range(0, len(images), chunk_size):
        chunk = images[start:start + chunk_size].detach().cpu().contiguous()
        # raw bytes, so that dtypes NumPy lacks (bfloat16) hash too
        digest.update(chunk.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()
