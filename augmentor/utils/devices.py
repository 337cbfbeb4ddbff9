"""Device names: which ones a config accepts, and the torch device each one means.

A setting is ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``,
``"cuda:N"`` or ``"mps"``. Configs check the spelling when they are built
(:func:`is_device_name`); whether the accelerator exists is checked only when
the device is used (:func:`resolve_device`), so a config written for a GPU
machine still loads elsewhere.
"""

from __future__ import annotations

import re

import torch

__all__ = ["DEVICE_CHOICES", "DEVICE_PATTERN", "is_device_name", "resolve_device"]

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
"""The device names a config accepts (matched whole)."""

DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
"""The accepted names, as error messages list them."""


def is_device_name(name: object) -> bool:
    """Whether ``name`` is a device setting this package accepts (spelling only)."""
    return isinstance(name, str) and DEVICE_PATTERN.fullmatch(name) is not None


def resolve_device(name: str) -> torch.device:
    """The torch device for a device setting.

    Raises:
        ValueError: unknown name, or the requested accelerator is not available.
    """
    if not is_device_name(name):
        raise ValueError(f"device must be {DEVICE_CHOICES}, got {name!r}")
    mps_available = torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not mps_available:
        raise ValueError("device 'mps' requested but MPS is not available; use 'cpu' or 'auto'")
    return device
