"""Figures written as PNG files: matplotlib without a display, saved atomically, and a grid of samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .io import atomic_write

__all__ = ["pyplot", "save_figure", "save_sample_grid"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100, **savefig: Any) -> Path:
    """Write ``fig`` to the PNG file ``path`` atomically and close it."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=dpi, **savefig)
    finally:
        pyplot().close(fig)
    return path


def save_sample_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    path: str | Path,
    title: str,
    per_class: int = 8,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """A PNG grid of the first ``per_class`` images of each class, one row per class.

    Args:
        images: ``(N, C, H, W)`` in [0, 1]; the first channel is shown.
        labels: ``(N,)`` class of each image; rows follow the sorted classes.
        path: PNG file to write (atomically).
        title: the figure's title.
        per_class: columns; a class with fewer images leaves its last cells blank.
        class_names: row titles by class (default: the class number).
    """
    plt = pyplot()
    names = class_names or {}
    classes = labels.unique().tolist()
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 1.2, len(classes) * 1.4), squeeze=False)
    for row, label in enumerate(classes):
        chosen = images[labels == label][:per_class]
        for col in range(per_class):
            ax = axes[row][col]
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(chosen[col, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[row][0].set_title(names.get(label, str(label)), fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=80)
