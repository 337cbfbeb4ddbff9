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
lengths), resample it evenly, and refine its interior points with Adam.
"""

from __future__ import annotations

import numpy as np
import torch

from .metric import RiemannianMetric

__all__ = ["conformal_length", "geodesic_interpolation"]


def _segment_costs(metric: RiemannianMetric, a: torch.Tensor, b: torch.Tensor, n_samples: int = 1) -> torch.Tensor:
    """Conformal lengths of the segments ``a[i] -> b[i]`` (midpoint rule on ``n_samples`` pieces)."""
    t = (torch.arange(n_samples, dtype=a.dtype, device=a.device) + 0.5) / n_samples
    points = a[:, None] + t[None, :, None] * (b - a)[:, None]
    g = metric.metric_diagonal(points.reshape(-1, metric.dim))
    potential = torch.exp(-0.5 * g.log().sum(dim=1)).reshape(len(a), n_samples)
    return potential.mean(dim=1) * (b - a).norm(dim=1)


def conformal_length(metric: RiemannianMetric, curve: torch.Tensor) -> float:
    """Discretised ``integral V(gamma) |gamma'| dt`` of a polyline ``(n, d)``."""
    curve = curve.detach().to(metric.centroids)
    with torch.no_grad():
        return float(_segment_costs(metric, curve[:-1], curve[1:]).sum())


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


def _resample(polyline: torch.Tensor, n_points: int) -> torch.Tensor:
    """``n_points`` points evenly spaced along the polyline's Euclidean arc length."""
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
) -> torch.Tensor:
    """A curve from ``start`` to ``end`` of (locally) minimal conformal length.

    Args:
        metric: the latent metric.
        start, end: ``(d,)`` end points (kept fixed).
        n_points: points of the discretised curve, end points included.
        n_iterations: Adam steps refining the interior points (0: the graph path only).
        lr: Adam learning rate; default 1% of the domain's mean width.
        n_neighbours: neighbours per node of the initial graph.

    Returns:
        ``(n_points, d)`` curve; decode it to see the interpolation.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    start = start.detach().to(metric.centroids).flatten()
    end = end.detach().to(metric.centroids).flatten()
    if start.shape != (metric.dim,) or end.shape != (metric.dim,):
        raise ValueError(f"start and end must have {metric.dim} coordinates")
    curve = _resample(_graph_path(metric, start, end, n_neighbours), n_points)
    interior = curve[1:-1].clone().requires_grad_()
    lr = lr if lr is not None else 0.01 * float((metric.upper - metric.lower).mean())
    optimiser = torch.optim.Adam([interior], lr=lr)
    for _ in range(n_iterations):
        optimiser.zero_grad()
        points = torch.cat([start[None], interior, end[None]])
        _segment_costs(metric, points[:-1], points[1:]).sum().backward()
        optimiser.step()
        with torch.no_grad():  # stay inside the bounded domain A
            interior.clamp_(metric.lower, metric.upper)
    return torch.cat([start[None], interior.detach(), end[None]])
