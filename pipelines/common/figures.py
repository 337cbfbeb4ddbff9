"""Figures of the studies' reports as PNG bytes (written atomically by the caller)."""

from __future__ import annotations

import io
from typing import Any

from augmentor.utils.plots import pyplot

__all__ = ["figure_png"]


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure laid out tightly, as PNG bytes; the figure is closed.

    The PNG carries no software version, so the same figure gives the same bytes on every install.
    """
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    return buffer.getvalue()
