"""Refusing sizes that cannot fit in memory before anything is allocated.

Settings that pass their range checks can still ask for terabytes (``n_per_class =
10**12``, ``latent_dim = 10**9``, a ``spatial_size`` of ``[10**6, 10**6]``); allocating
them first ends in a bare ``MemoryError`` or the operating system killing the process,
after a run directory has been claimed. :func:`check_fits` estimates the bytes a
request needs and refuses, naming the setting and the size, when they exceed the
machine's physical memory. The estimates are lower bounds (float32 values, the
model's parameters with their gradients and Adam moments), so only requests that
cannot possibly fit are refused.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .config import ConfigError

__all__ = ["SizeError", "check_fits", "physical_memory", "vae_parameter_count"]

FLOAT32_BYTES = 4
# Training holds each parameter, its gradient and Adam's two moments.
TRAINING_COPIES = 4


class SizeError(ConfigError):
    """A requested size cannot fit in this machine's memory."""


def physical_memory() -> int:
    """Bytes of physical memory of this machine (1 TiB where the system does not tell)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def check_fits(n_values: int, what: str, bytes_per_value: int = FLOAT32_BYTES) -> None:
    """Refuse a request of ``n_values`` values that cannot fit in memory.

    Args:
        n_values: how many values the request allocates at least.
        what: names the setting and what it sizes, e.g. ``"n_per_class = 10**12: the images"``.
        bytes_per_value: bytes per value (float32: 4).

    Raises:
        SizeError: naming ``what``, the bytes needed and the memory there is.
    """
    needed = int(n_values) * bytes_per_value
    available = physical_memory()
    if needed > available:
        raise SizeError(f"{what} need at least {_gib(needed)} ({n_values:,} values), more than this machine's "
                        f"{_gib(available)} of memory; choose a smaller size")


def vae_parameter_count(config: Any) -> int:
    """Parameters of the VAE of a :class:`~augmentor.models.VAEConfig`, estimated from below.

    Counts the weights of the layers whose size the settings drive (convolutions,
    the latent heads and the decoder's input layer; MLP layers), without biases
    and normalisation.
    """
    latent = config.latent_dim
    if config.kind == "mlp":
        widths = [math.prod(config.in_shape), *config.hidden]
        hidden = sum(a * b for a, b in zip(widths, widths[1:]))
        return 2 * hidden + 3 * widths[-1] * latent
    kernel = config.kernel_size ** config.spatial_dims
    channels = [config.in_shape[0], *config.channels]
    convolutions = sum(a * b * kernel for a, b in zip(channels, channels[1:]))
    flat = config.channels[-1] * math.prod(config.encoder_grid())
    total_stride = math.prod(config.strides)
    decoder_grid = math.prod(math.ceil(n / total_stride) for n in config.in_shape[1:])
    return 2 * convolutions + 2 * flat * latent + latent * config.channels[-1] * decoder_grid
