"""Choice of the sparse (reference) environments of a kernel model, per species.

All methods act on normalised feature vectors (rows of ``x``, shape (n_env, D)) and return
sorted row indices. ``fps``: farthest-point sampling in the kernel-induced (Euclidean)
distance, computed on the principal coordinates that keep 99.99 % of the variance
(deterministic start: the environment farthest from the mean); ``cur``: leverage scores of
the top singular vectors (deterministic, highest scores first); ``random``: uniform without
replacement (the baseline), seeded.
"""

import numpy as np

METHODS = ("fps", "cur", "random")


def select_sparse(x, n_sparse, method="fps", seed=0):
    """Indices (≤ n_sparse,) of reference rows of ``x`` (n_env, D)."""
    n_env = x.shape[0]
    if n_sparse >= n_env:
        return np.arange(n_env)
    if method == "fps":
        return _farthest_point(x, n_sparse)
    if method == "cur":
        return _cur(x, n_sparse)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(n_env, n_sparse, replace=False))
    raise ValueError(f"unknown sparse_method {method!r}; use one of {METHODS}")


def _principal_coordinates(x, variance=0.9999, max_dim=256):
    """Coordinates of the rows of ``x`` on the leading principal axes (float32) that keep
    ``variance`` of the total (at most ``max_dim``): distances between rows change by a
    relative ~sqrt(1 − variance), and each FPS step reads a fraction of the memory."""
    centred = x - x.mean(axis=0)
    gram = centred.T @ centred
    vals, vecs = np.linalg.eigh(gram)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    total = vals.sum()
    keep = int(np.searchsorted(np.cumsum(vals), variance * total) + 1) if total > 0 else 1
    keep = min(max(keep, 1), max_dim, x.shape[1])
    return np.ascontiguousarray((centred @ vecs[:, :keep]).astype(np.float32))


def _farthest_point(x, n_sparse):
    if x.shape[1] > 64:
        x = _principal_coordinates(x)
    sq = np.einsum("ij,ij->i", x, x)
    centre = x.mean(axis=0)
    first = int(np.argmax(sq - 2 * x @ centre))
    chosen = [first]
    dist = sq + sq[first] - 2 * x @ x[first]
    for _ in range(n_sparse - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, sq + sq[nxt] - 2 * x @ x[nxt])
    return np.sort(np.array(chosen))


def _cur(x, n_sparse):
    k = min(n_sparse, min(x.shape))
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    leverage = np.sum(u[:, :k] ** 2, axis=1)
    return np.sort(np.argsort(-leverage, kind="stable")[:n_sparse])
