"""Axial, coronal and sagittal mid-slices of volumes, per class and image kind, in one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .plots import pyplot, save_figure

__all__ = ["VIEWS", "mid_slices", "save_orthogonal_slices"]

VIEWS = ("axial", "coronal", "sagittal")
"""The three mid-slices of a volume ``(X, Y, Z)``, in the order :func:`mid_slices` returns them."""


def mid_slices(volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The axial ``(Y, X)``, coronal ``(Z, X)`` and sagittal ``(Z, Y)`` mid-slices of a ``(C, X, Y, Z)`` volume.

    Rows of each slice run along the second named axis, so that drawn with the
    origin at the bottom an ``LAS`` volume (the OASIS T88 files) shows anterior
    (axial) or superior (coronal, sagittal) at the top.
    """
    if volume.ndim != 4:
        raise ValueError(f"expected a (C, X, Y, Z) volume, got shape {tuple(volume.shape)}")
    image = volume[0]
    x, y, z = (n // 2 for n in image.shape)
    return image[:, :, z].T, image[:, y, :].T, image[x, :, :].T


def save_orthogonal_slices(
    rows: Mapping[int, Mapping[str, torch.Tensor]],
    path: str | Path,
    title: str,
    per_row: int = 2,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """One PNG: per class and image kind a row with the three mid-slices of its first ``per_row`` volumes.

    Args:
        rows: class -> {kind (e.g. "real", "reconstructed", "synthetic (riemannian)"):
            volumes ``(n, C, X, Y, Z)`` in [0, 1]}, drawn in the given order.
        path: PNG file to write (atomically).
        title: the figure's title.
        per_row: volumes per row (each takes three panels); missing ones leave blanks.
        class_names: row titles by class (default: the class number).
    """
    names = class_names or {}
    lines = [(f"{names.get(label, label)} {kind}", volumes) for label, kinds in rows.items()
             for kind, volumes in kinds.items()]
    if not lines:
        raise ValueError("nothing to draw: no rows")
    for name, volumes in lines:  # checked before a figure is opened, so an error leaves none behind
        if volumes.ndim != 5:
            raise ValueError(f"{name}: expected volumes (n, C, X, Y, Z), got shape {tuple(volumes.shape)}")
    plt = pyplot()
    columns = per_row * len(VIEWS)
    fig, axes = plt.subplots(len(lines), columns, figsize=(columns * 1.3, len(lines) * 1.35), squeeze=False)
    for row, (name, volumes) in enumerate(lines):
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            index, view = divmod(col, len(VIEWS))
            if index < len(volumes):
                panel = mid_slices(volumes[index].detach().float().cpu())[view]
                ax.imshow(panel.numpy(), cmap="gray", vmin=0, vmax=1, origin="lower", interpolation="nearest")
            else:
                ax.axis("off")
            if row == 0:
                ax.set_title(VIEWS[view], fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
