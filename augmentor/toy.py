"""The paper's rings-and-disks experiment (Sec. 4.5, Fig. 1): a latent-geometry plot, and the experiment.

A VAE with a 2-D latent space trained on the toy's disks and rings
(:func:`augmentor.data.toy.rings_and_disks`) shows the geometric structure the metric
captures, which :func:`plot_latent_geometry` draws: the log volume element
``0.5 log det G(z)`` in grey, the training codes, and samples.
:func:`toy_latent_geometry` runs the whole experiment (the demo's last step).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .augmentor import AugmentorConfig, GeometricAugmentor
from .data.toy import rings_and_disks
from .sampling.hmc import HMCConfig
from .sampling.interpolation import geodesic_interpolation
from .sampling.metric import RiemannianMetric
from .models.vae import VAEConfig
from .utils.plots import pyplot, save_figure
from .models.training import TrainerConfig

__all__ = ["plot_latent_geometry", "rings_and_disks", "toy_latent_geometry"]


def plot_latent_geometry(
    metric: RiemannianMetric,
    codes: torch.Tensor,
    path: str | Path,
    samples: torch.Tensor | None = None,
    code_colours: torch.Tensor | None = None,
    curves: dict[str, torch.Tensor] | None = None,
    resolution: int = 200,
) -> Path:
    """PNG of ``0.5 log det G(z)`` over the domain of a 2-D metric, with codes and samples.

    Args:
        metric: a metric with ``d = 2``.
        codes: ``(N, 2)`` training codes (dots).
        path: PNG file to write (atomically).
        samples: ``(M, 2)`` latents drawn by a sampler (crosses).
        code_colours: ``(N,)`` values colouring the codes (e.g. a size parameter).
        curves: named ``(n, 2)`` polylines to draw (e.g. interpolations).
        resolution: grid points per axis.
    """
    if metric.dim != 2:
        raise ValueError(f"the latent-geometry plot needs a 2-D latent space, got d = {metric.dim}")
    plt = pyplot()
    lo, hi = metric.lower.cpu().double(), metric.upper.cpu().double()
    xs, ys = (torch.linspace(float(lo[i]), float(hi[i]), resolution, dtype=torch.float64) for i in range(2))
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
    log_volume = metric.to(dtype=torch.float64).log_density(grid).reshape(resolution, resolution)

    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(log_volume.numpy(), origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
                      cmap="gray", aspect="auto")
    fig.colorbar(image, ax=ax, label="0.5 log det G(z)")
    colours = {} if code_colours is None else {"c": code_colours, "cmap": "viridis"}
    ax.scatter(codes[:, 0], codes[:, 1], s=8, label="training codes", **colours)
    if samples is not None:
        ax.scatter(samples[:, 0], samples[:, 1], s=10, marker="x", c="tab:red", label="samples")
    for (name, curve), colour in zip((curves or {}).items(), ("tab:orange", "tab:cyan", "tab:green")):
        ax.plot(curve[:, 0].cpu(), curve[:, 1].cpu(), "-", color=colour, linewidth=2, label=name)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Riemannian volume element of the latent space")
    return save_figure(fig, path, dpi=110, bbox_inches="tight")


def toy_latent_geometry(out: Path, epochs: int, hmc: HMCConfig, device: str, seed: int) -> dict[str, float]:
    """Fit a 2-D latent VAE per class of rings and disks and plot each class's latent geometry.

    Writes ``latent_geometry_{disks,rings}.png`` into ``out``: the metric's volume
    element, the training codes, 300 Riemannian samples, and the interpolation along
    the metric next to the straight line between the two codes farthest apart.

    Args:
        out: an existing folder.
        epochs: VAE training epochs.
        hmc: the Riemannian sampler's settings.
        device: where training and sampling run.
        seed: seeds the data, the training and the samples.

    Returns:
        The HMC acceptance rate of each class, ``{"disks": ..., "rings": ...}``.
    """
    images, labels = rings_and_disks(150, size=24, seed=seed)
    config = AugmentorConfig(
        vae=VAEConfig(in_shape=(1, 24, 24), latent_dim=2, channels=(16, 32), strides=(2, 2)),
        trainer=TrainerConfig(epochs=epochs, batch_size=32, lr_patience=10, early_stopping_patience=30,
                              seed=seed, progress=False),
        hmc=hmc,
        device=device,
    )
    augmentor = GeometricAugmentor(config).fit(images, labels)
    acceptance = {}
    for label, name in enumerate(("disks", "rings")):
        sampler = augmentor.samplers[label]["riemannian"]
        samples = augmentor.sample_latents(label, 300, seed=seed)
        codes = sampler.metric.centroids.cpu()  # every training code is a centroid here
        # Interpolate between the two codes farthest apart, along the metric and straight.
        first, last = divmod(int(torch.cdist(codes, codes).argmax()), len(codes))
        curves = {
            "geodesic interpolation": geodesic_interpolation(sampler.metric, codes[first], codes[last]),
            "straight line": torch.stack([codes[first], codes[last]]),
        }
        plot_latent_geometry(sampler.metric, codes, out / f"latent_geometry_{name}.png", samples=samples, curves=curves)
        acceptance[name] = augmentor.diagnostics[label].acceptance_rate
    return acceptance
