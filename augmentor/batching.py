"""Batches: shuffled index batches for training, and a model run over a tensor batch by batch."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch

__all__ = ["index_batches", "map_batches"]

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
