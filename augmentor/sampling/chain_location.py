"""Where latent samples sit: on the metric's lambda floor, or near the training codes.

A chain on the Riemannian uniform law only feels the metric where ``g(z)``
rises above its floor ``lambda``; far from every centroid the target is flat
and HMC random-walks. These diagnostics say, per run, how much of it happened
there, and how far the samples lie from the training codes compared with the
codes' own spacing (0: replayed codes; about 1: as far as neighbouring codes
lie from each other; much more: away from the data):

* ``start_floor_share`` / ``final_floor_share``: share of chain starts / final
  samples with ``g_m(z) <= (1 + tolerance) lambda`` in every dimension ``m``;
* ``chain_floor_share``: share of chains whose log-density stayed within
  ``(d / 2) log(1 + tolerance)`` of the floor's ``(d / 2) log lambda`` at every
  kept iteration (the geometric mean of ``g / lambda`` within ``1 + tolerance``:
  the chain never climbed onto a bump);
* ``distance_ratio``: median distance of the samples to their nearest training
  code, divided by the median nearest-neighbour distance among the codes.

A warning is logged (and kept in ``warning``) when most chains sit on the floor.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import torch

from .metric import RiemannianMetric

__all__ = [
    "ChainLocation",
    "DEFAULT_FLOOR_TOLERANCE",
    "floor_mask",
    "locate_chains",
    "nearest_code_distance_ratio",
    "nearest_distances",
]

logger = logging.getLogger(__name__)

# "Within a few per cent of lambda": a bump adds at least 5 % of lambda somewhere.
DEFAULT_FLOOR_TOLERANCE = 0.05
# Rows of the (rows x N) distance block computed at once.
_DISTANCE_ROWS = 1024


@dataclasses.dataclass
class ChainLocation:
    """Where a run's chains and samples sit (see the module docstring).

    Attributes:
        floor_tolerance: relative margin above ``lambda`` that still counts as the floor.
        start_floor_share: share of chains that started on the floor.
        final_floor_share: share of the final samples on the floor.
        chain_floor_share: share of chains that never left the floor (None without a trace).
        distance_ratio: median nearest-code distance of the samples over the codes' median
            nearest-neighbour spacing (None without codes).
        warning: a message when most chains sit on the floor, else None.
    """

    floor_tolerance: float
    start_floor_share: float | None
    final_floor_share: float
    chain_floor_share: float | None = None
    distance_ratio: float | None = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def floor_mask(metric: RiemannianMetric, z: torch.Tensor, tolerance: float = DEFAULT_FLOOR_TOLERANCE) -> torch.Tensor:
    """``(B,)`` bool: ``g_m(z) <= (1 + tolerance) lambda`` in every dimension, for ``z`` of shape ``(B, d)``."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return (metric.metric_diagonal(z) <= (1.0 + tolerance) * metric.lam).all(dim=1)


def nearest_distances(points: torch.Tensor, codes: torch.Tensor, exclude_self: bool = False) -> torch.Tensor:
    """``(B,)`` Euclidean distance of each of ``points`` ``(B, d)`` to its nearest row of ``codes`` ``(N, d)``.

    With ``exclude_self`` (``points`` is ``codes``), each point's own row is left out.
    Computed in float64, in row blocks, so memory stays ``O(block x N)``.
    """
    if points.ndim != 2 or codes.ndim != 2 or points.shape[1] != codes.shape[1]:
        raise ValueError(f"points and codes must be (B, d) and (N, d), got {tuple(points.shape)} "
                         f"and {tuple(codes.shape)}")
    if exclude_self and len(codes) < 2:
        raise ValueError("the codes' spacing needs at least 2 codes")
    points, codes = points.detach().cpu().double(), codes.detach().cpu().double()
    out = torch.empty(len(points), dtype=torch.float64)
    for start in range(0, len(points), _DISTANCE_ROWS):
        block = torch.cdist(points[start : start + _DISTANCE_ROWS], codes)
        if exclude_self:
            rows = torch.arange(block.shape[0])
            block[rows, rows + start] = math.inf
        out[start : start + _DISTANCE_ROWS] = block.min(dim=1).values
    return out


def nearest_code_distance_ratio(z: torch.Tensor, codes: torch.Tensor) -> float:
    """Median distance of samples ``z`` ``(B, d)`` to the nearest code over the codes' ``(N, d)`` median spacing."""
    spacing = float(nearest_distances(codes, codes, exclude_self=True).median())
    if spacing == 0.0:
        raise ValueError("the codes' median nearest-neighbour distance is 0 (duplicated codes)")
    return float(nearest_distances(z, codes).median()) / spacing


def locate_chains(
    metric: RiemannianMetric,
    final: torch.Tensor,
    start: torch.Tensor | None = None,
    log_density_trace: torch.Tensor | None = None,
    codes: torch.Tensor | None = None,
    tolerance: float = DEFAULT_FLOOR_TOLERANCE,
) -> ChainLocation:
    """Where a run's chains sat on ``metric`` (see the module docstring).

    Args:
        metric: the metric the chains ran on (its ``lambda`` is the floor).
        final: ``(n, d)`` final samples.
        start: ``(n, d)`` starting points of the chains, or None.
        log_density_trace: ``(n_steps, n)`` log-densities ``0.5 log det G`` of the kept
            iterations (finite), or None.
        codes: ``(N, d)`` training codes for the distance ratio, or None.
        tolerance: relative margin above ``lambda`` that still counts as the floor.
    """
    share = lambda mask: float(mask.float().mean())  # noqa: E731
    chain_share = None
    if log_density_trace is not None:
        bound = 0.5 * metric.dim * math.log((1.0 + tolerance) * metric.lam)
        chain_share = share((log_density_trace <= bound).all(dim=0))
    location = ChainLocation(
        floor_tolerance=tolerance,
        start_floor_share=None if start is None else share(floor_mask(metric, start, tolerance)),
        final_floor_share=share(floor_mask(metric, final, tolerance)),
        chain_floor_share=chain_share,
        distance_ratio=None if codes is None else nearest_code_distance_ratio(final, codes),
    )
    on_floor = max(s for s in (location.final_floor_share, chain_share) if s is not None)
    if on_floor > 0.5:
        location.warning = (
            f"{100 * on_floor:.0f}% of the chains sit on the metric's lambda floor (g within "
            f"{100 * tolerance:.0f}% of lambda), where the target is flat: they random-walk instead of "
            "sampling the metric. Start them at centroids, use more centroids or a wider rho."
        )
        logger.warning("%s", location.warning)
    return location
