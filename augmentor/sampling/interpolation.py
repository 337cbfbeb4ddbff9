"""Interpolation along the learned geometry (paper Eq. 8, Fig. 1).

The paper interpolates between two latents through regions where the potential
``V(z) = 1 / sqrt(det G(z))`` is small. We minimise the discretised curve length
in the conformal metric ``V^2 I``, ``L(gamma) = integral V(gamma(t)) |gamma'(t)| dt``:
cheap near the data, where the Riemannian volume is large, and expensive across
empty regions. (The speed factor keeps the problem well posed; without it the
points of a discretised curve need not stay connected.)

Far from the codes ``V`` is flat, so a straight-line start is a poor local
minimum. We therefore start from the shortest path in a k-nearest-neighbour
graph over the centroids and both end points (edge weights: conformal segment
lengths), resample it evenly, and refine its interior points with Adam. The
refinement measures each segment with several midpoint samples (with one, it
learns to hop from bump to bump across empty space), and of the refined curve,
its start and the straight line the one measured shortest, more finely still, is
returned.
"""

from __future__ import annotations

import numpy as np
import torch

from .metric import RiemannianMetric

__all__ = ["conformal_length", "geodesic_interpolation", "resample_polyline"]

# The returned curve is chosen by its length measured with this many times the
# optimiser's samples per segment.
FINE_MEASURE_FACTOR = 8


def _segment_costs(metric: RiemannianMetric, a: torch.Tensor, b: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
    """Conformal lengths of the segments ``a[i] -> b[i]`` (midpoint rule on ``n_samples`` pieces)."""
    t = (torch.arange(n_samples, dtype=a.dtype, device=a.device) + 0.5) / n_samples
    points = a[:, None] + t[None, :, None] * (b - a)[:, None]
    g = metric.metric_diagonal(points.reshape(-1, metric.dim))
    potential = torch.exp(-0.5 * g.log().sum(dim=1)).reshape(len(a), n_samples)
    return potential.mean(dim=1) * (b - a).norm(dim=1)


def conformal_length(metric: RiemannianMetric, curve: torch.Tensor, samples_per_segment: int = 1) -> float:
    """Discretised ``integral V(gamma) |gamma'| dt`` of a polyline ``(n, d)``.

    Args:
        metric: the latent metric.
        curve: ``(n, d)`` polyline.
        samples_per_segment: midpoint-rule pieces per segment; more than 1 measures a
            curve more finely than the optimiser did (1, the default, is its own cost).
    """
    if samples_per_segment < 1:
        raise ValueError(f"samples_per_segment must be >= 1, got {samples_per_segment}")
    curve = curve.detach().to(metric.centroids)
    with torch.no_grad():
        return float(_segment_costs(metric, curve[:-1], curve[1:], samples_per_segment).sum())


def _graph_path(metric: RiemannianMetric, start: torch.Tensor, end: torch.Tensor, n_neighbours: int) -> torch.Tensor:
    """Shortest conformal path start -> end through a kNN graph of the centroids."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    nodes = torch.cat([start[None], end[None], metric.centroids])
    k = min(n_neighbours, len(nodes) - 1)
    neighbours = torch.cdist(nodes, nodes).topk(k + 1, largest=False).indices[:, 1:]
    rows = torch.arange(len(nodes), device=nodes.device).repeat_interleave(k)
    cols = neighbours.flatten()
    rows, cols = torch.cat([rows, torch.tensor([0], device=rows.device)]), torch.cat([cols, torch.tensor([1], device=cols.device)])
    with torch.no_grad():
        costs = _segment_costs(metric, nodes[rows], nodes[cols], n_samples=8)
    graph = coo_matrix((costs.cpu().numpy(), (rows.cpu().numpy(), cols.cpu().numpy())), shape=(len(nodes),) * 2)
    _, predecessors = dijkstra(graph, directed=False, indices=0, return_predecessors=True)
    path, node = [1], 1
    while node != 0:  # the direct edge 0 - 1 guarantees a path
        node = int(predecessors[node])
        path.append(node)
    return nodes[torch.as_tensor(path[::-1], device=nodes.device)]


def resample_polyline(polyline: torch.Tensor, n_points: int) -> torch.Tensor:
    """``(n_points, d)`` points evenly spaced along the Euclidean arc length of a polyline ``(n, d)``."""
    steps = (polyline[1:] - polyline[:-1]).norm(dim=1)
    arc = torch.cat([steps.new_zeros(1), steps.cumsum(0)]).cpu().numpy()
    targets = np.linspace(0.0, arc[-1], n_points)
    coords = polyline.cpu().numpy()
    columns = [np.interp(targets, arc, coords[:, m]) for m in range(coords.shape[1])]
    return torch.as_tensor(np.stack(columns, axis=1)).to(polyline)


def geodesic_interpolation(
    metric: RiemannianMetric,
    start: torch.Tensor,
    end: torch.Tensor,
    n_points: int = 30,
    n_iterations: int = 200,
    lr: float | None = None,
    n_neighbours: int = 10,
    samples_per_segment: int = 8,
) -> torch.Tensor:
    """A curve from ``start`` to ``end`` of (locally) minimal conformal length.

    Args:
        metric: the latent metric.
        start, end: ``(d,)`` end points (kept fixed).
        n_points: points of the discretised curve, end points included.
        n_iterations: Adam steps refining the interior points (0: the graph path only).
        lr: Adam learning rate; default 1% of the domain's mean width.
        n_neighbours: neighbours per node of the initial graph.
        samples_per_segment: midpoint-rule pieces per segment of the length the
            refinement minimises. With one, the optimiser learns to put each
            segment's midpoint on a narrow bump and let the rest of the segment
            cross empty space: the curve's cost falls while its true length rises.

    Returns:
        ``(n_points, d)`` curve; decode it to see the interpolation. Of the refined
        curve, its graph start and the straight line, the one of least length
        measured with ``8 * samples_per_segment`` pieces per segment.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    if samples_per_segment < 1:
        raise ValueError(f"samples_per_segment must be >= 1, got {samples_per_segment}")
    start = start.detach().to(metric.centroids).flatten()
    end = end.detach().to(metric.centroids).flatten()
    if start.shape != (metric.dim,) or end.shape != (metric.dim,):
        raise ValueError(f"start and end must have {metric.dim} coordinates")
    curve = resample_polyline(_graph_path(metric, start, end, n_neighbours), n_points)
    interior = curve[1:-1].clone().requires_grad_()
    lr = lr if lr is not None else 0.01 * float((metric.upper - metric.lower).mean())
    optimiser = torch.optim.Adam([interior], lr=lr)
    for _ in range(n_iterations):
        optimiser.zero_grad()
        points = torch.cat([start[None], interior, end[None]])
        _segment_costs(metric, points[:-1], points[1:], samples_per_segment).sum().backward()
        optimiser.step()
        with torch.no_grad():  # stay inside the bounded domain A
            interior.clamp_(metric.lower, metric.upper)
    refined = torch.cat([start[None], interior.detach(), end[None]])
    # Where bumps are narrower than the segments, a local minimum of the discretised
    # length can be longer than where it started, or than the straight line: keep
    # the shortest of the three, measured more finely than the optimiser measures.
    t = torch.linspace(0, 1, n_points, dtype=start.dtype, device=start.device)[:, None]
    candidates = (refined, curve, (1 - t) * start + t * end)
    fine = FINE_MEASURE_FACTOR * samples_per_segment
    return min(candidates, key=lambda c: conformal_length(metric, c, fine))
