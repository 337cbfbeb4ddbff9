"""Shared fixtures: tiny labelled image sets, a fitted augmentor and a small MNIST file (module-scoped)."""

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from augmentor import AugmentorConfig, GeometricAugmentor, HMCConfig, TrainerConfig, vae_preset


def blobs(n_per_class: int, shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes of smooth random images in [0, 1]: bright centre vs bright corner."""
    g = torch.Generator().manual_seed(seed)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape[1:]], indexing="ij")
    radius = sum(x**2 for x in grids)
    corner = sum((x - 0.7) ** 2 for x in grids)
    images, labels = [], []
    for label, field in enumerate((radius, corner)):
        width = 0.2 + 0.3 * torch.rand(n_per_class, generator=g)
        base = torch.exp(-field[None] / width.view(-1, *[1] * len(shape[1:])))
        noise = 0.05 * torch.rand(n_per_class, *shape[1:], generator=g)
        images.append(((base + noise) / 1.05).unsqueeze(1).expand(-1, shape[0], *shape[1:]).clone())
        labels.append(torch.full((n_per_class,), label))
    return torch.cat(images), torch.cat(labels)


def tiny_config(preset: str = "tiny2d", **hmc) -> AugmentorConfig:
    return AugmentorConfig(
        vae=vae_preset(preset),
        trainer=TrainerConfig(epochs=3, batch_size=8, progress=False, image_log_every=0),
        hmc=HMCConfig(n_steps=hmc.get("n_steps", 10), n_leapfrog=hmc.get("n_leapfrog", 5)),
        gmm_components=3,
        device="cpu",
    )


@pytest.fixture(scope="module")
def fitted_2d():
    images, labels = blobs(12, (1, 16, 16))
    return GeometricAugmentor(tiny_config()).fit(images, labels), images, labels


@pytest.fixture(scope="module")
def mnist_file(tmp_path_factory) -> Path:
    """A small ``mnist.pkl.gz`` in the classic layout: scikit-learn digits upsampled to 28 x 28, pixel / 256."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images / 16.0).float()[:, None]
    pixels = (F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False) * 255).round()
    values = (pixels.clamp(0, 255) / 256).reshape(len(images), 784).numpy().astype(np.float32)
    labels = digits.target.astype(np.int64)
    parts = ((0, 400), (400, 550), (550, 800))
    data = tuple((values[a:b], labels[a:b]) for a, b in parts)
    path = tmp_path_factory.mktemp("mnist") / "mnist.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    return path
