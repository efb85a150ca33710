"""A direct float64 transcription of the semantics (DESIGN section 1), the
independent reference of the Python tests: the projection loops as written,
never the Gram-matrix algorithm of the library."""

import numpy as np


def expand_mask(has_grad, segments, tasks, dim):
    """The (T, N) bool mask of the (T, S) per-segment mask."""
    if has_grad is None:
        return np.ones((tasks, dim), dtype=bool)
    if segments is None:
        segments = [dim]
    return np.repeat(np.asarray(has_grad, dtype=bool), segments, axis=1)


def reference(grads, mode="sequential", orders=None, reduction="mean", segments=None, has_grad=None):
    """Returns (merged, projected, projections, conflicting_pairs, margin) in
    float64: ``orders[i]`` lists the tasks j != i in visiting order
    (ascending when None); ``margin`` is the smallest |d| / (|p| |g_j|) over
    the decisions taken, to tell cases too close to call."""
    g = np.array(grads, dtype=np.float64)
    tasks, dim = g.shape
    mask = expand_mask(has_grad, segments, tasks, dim)
    g = np.where(mask, g, 0.0)
    norms2 = [float(np.dot(g[j], g[j])) for j in range(tasks)]
    projected = np.empty_like(g)
    projections = 0
    margin = np.inf
    for i in range(tasks):
        p = g[i].copy()
        order = [j for j in range(tasks) if j != i] if orders is None else list(orders[i])
        for j in order:
            if j == i:
                continue
            base = g[i] if mode == "simultaneous" else p
            d = float(np.dot(base, g[j]))
            scale = np.sqrt(norms2[i] * norms2[j])
            if scale > 0:
                margin = min(margin, abs(d) / scale)
            if d < 0 and norms2[j] > 0:
                p = p - (d / norms2[j]) * g[j]
                projections += 1
        projected[i] = p
    conflicting = sum(
        1 for i in range(tasks) for j in range(i + 1, tasks) if float(np.dot(g[i], g[j])) < 0
    )
    total = projected.sum(axis=0)
    if reduction == "mean":
        shared = mask.all(axis=0)
        total = np.where(shared, total / tasks, total)
    return total, projected, projections, conflicting, margin
