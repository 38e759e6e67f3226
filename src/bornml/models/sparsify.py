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
        return _cur(x, n_sparse, seed)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(n_env, n_sparse, replace=False))
    raise ValueError(f"unknown sparse_method {method!r}; use one of {METHODS}")


EXACT_SIDE = 4096  # below this min(n_env, D) the principal axes come from an exact Gram


def _principal_coordinates(x, variance=0.9999, max_dim=256, seed=0):
    """Coordinates of the rows of ``x`` on the leading principal axes (float32) that keep
    ``variance`` of the total (at most ``max_dim``): distances between rows change by a
    relative ~sqrt(1 − variance), and each FPS step reads a fraction of the memory.

    Never forms the D×D covariance: the axes come from the smaller Gram matrix, the
    (n_env, n_env) one ``C Cᵀ`` when there are fewer environments than features (C the
    centred rows; its eigenvectors scaled by the square roots of the eigenvalues are the
    principal coordinates), or ``Cᵀ C`` when D is the smaller side; when both sides exceed
    :data:`EXACT_SIDE` a randomised range finder gives the top ``max_dim`` axes in
    O(n_env·D·max_dim). The coordinates equal those of the D×D route up to the sign of
    each axis, which no distance sees.
    """
    centred = x - x.mean(axis=0)
    n_env, dim = centred.shape
    total = float(np.einsum("ij,ij->", centred, centred))
    if total <= 0:
        return np.zeros((n_env, 1), dtype=np.float32)
    if min(n_env, dim) > EXACT_SIDE:
        coords, vals = _randomised_coordinates(centred, max_dim + 16, seed)
    elif n_env <= dim:
        vals, vecs = _top_eigenpairs(centred @ centred.T, max_dim)
        coords = vecs * np.sqrt(vals)
    else:
        vals, vecs = _top_eigenpairs(centred.T @ centred, max_dim)
        coords = centred @ vecs
    keep = int(np.searchsorted(np.cumsum(vals), variance * total) + 1)
    keep = min(max(keep, 1), max_dim, coords.shape[1])
    return np.ascontiguousarray(coords[:, :keep].astype(np.float32))


def _top_eigenpairs(gram, k):
    """The ``k`` largest eigenvalues (descending, clipped at 0) and eigenvectors of the
    symmetric ``gram`` (only those are computed: ~10× cheaper than all of them)."""
    import scipy.linalg

    n = gram.shape[0]
    k = min(k, n)
    vals, vecs = scipy.linalg.eigh(gram, subset_by_index=[n - k, n - 1], overwrite_a=True,
                                   check_finite=False)
    return np.clip(vals[::-1], 0, None), vecs[:, ::-1]


def _randomised_coordinates(centred, rank, seed, power_iterations=3):
    """Top-``rank`` principal coordinates (n_env, rank) and variances of ``centred`` by a
    randomised range finder (Halko, Martinsson & Tropp 2011) with power iterations."""
    rng = np.random.default_rng(seed)
    rank = min(rank, *centred.shape)
    basis, _ = np.linalg.qr(centred @ rng.standard_normal((centred.shape[1], rank)))
    for _ in range(power_iterations):
        basis, _ = np.linalg.qr(centred.T @ basis)
        basis, _ = np.linalg.qr(centred @ basis)
    small = basis.T @ centred  # (rank, D)
    u, sing, _ = np.linalg.svd(small, full_matrices=False)
    return basis @ (u * sing), sing ** 2


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


def _cur(x, n_sparse, seed=0):
    k = min(n_sparse, min(x.shape))
    if min(x.shape) > EXACT_SIDE:  # leading left singular vectors without a full SVD
        coords, vals = _randomised_coordinates(x, k, seed)
        u = coords / np.sqrt(np.maximum(vals, np.finfo(float).tiny))
    else:
        u, _, _ = np.linalg.svd(x, full_matrices=False)
    leverage = np.sum(u[:, :k] ** 2, axis=1)
    return np.sort(np.argsort(-leverage, kind="stable")[:n_sparse])
