"""Batches: shuffled index batches for training, a model run over a tensor batch by batch, encoding and decoding."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

__all__ = ["decode_batches", "encode_batches", "index_batches", "map_batches"]

T = TypeVar("T")


def index_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split the indices ``order`` ``(N,)`` into batches of ``batch_size``.

    A trailing batch of a single index is folded into the previous batch:
    BatchNorm cannot normalise one image (nor one voxel of a 1 x 1 feature map).
    """
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


@torch.no_grad()
def map_batches(
    fn: Callable[[torch.Tensor], T], x: torch.Tensor, batch_size: int, device: torch.device | str
) -> list[T]:
    """``fn`` applied, without gradients, to consecutive batches of ``x`` moved to ``device``.

    Args:
        fn: e.g. a model's ``decode``; it should move what it keeps back to the CPU,
            so that only one batch at a time occupies the device.
        x: ``(N, ...)`` inputs, on any device.
        batch_size: rows per call.
        device: where ``fn`` runs.

    Returns:
        One result per batch, in order.
    """
    return [fn(x[i : i + batch_size].to(device)) for i in range(0, len(x), batch_size)]


def encode_batches(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Posterior means and log-variances ``(N, d)`` of images ``(N, C, H, W[, D])``, on the CPU.

    The model runs in eval mode on ``device``, ``batch_size`` images at a time, and
    is left on the CPU. The log-variances are None for a deterministic model
    (whose ``encode`` returns None in their place).
    """
    model = model.to(device).eval()
    parts = map_batches(lambda x: tuple(None if p is None else p.cpu() for p in model.encode(x)), images,
                        batch_size, device)
    model.cpu()
    log_vars = [p[1] for p in parts]
    return torch.cat([p[0] for p in parts]), None if log_vars[0] is None else torch.cat(log_vars)


def decode_batches(model: torch.nn.Module, z: torch.Tensor, batch_size: int, device: torch.device | str) -> torch.Tensor:
    """Images ``(N, C, H, W[, D])`` in [0, 1] of latents ``(N, d)``, on the CPU.

    The model runs in eval mode on ``device``, ``batch_size`` latents at a time, and
    is left on the CPU.
    """
    model = model.to(device).eval()
    parts = map_batches(lambda x: model.decode(x).cpu(), z, batch_size, device)
    model.cpu()
    return torch.cat(parts).clamp_(0, 1)
