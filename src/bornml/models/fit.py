"""Regularised linear least squares accumulated block by block (memory O(M²)).

Minimises ``||Φ w − z||² + λ_q ||Φ_q w − t||² + ω s wᵀRw`` over ``w`` (M,), where the rows of
Φ and Φ_q arrive frame by frame. ``R`` is the regulariser matrix (identity, or the kernel
matrix between reference environments); ``s = tr(ΦᵀΦ)/M`` makes ω dimensionless (the same ω
works for data sets of different size and charge scale). float64 throughout.
"""

import warnings

import numpy as np
import scipy.linalg


class NormalEquations:
    """Running ``A = ΦᵀΦ`` (M, M) and ``b = Φᵀz`` (M,) over blocks of rows."""

    def __init__(self, n_params):
        self.a = np.zeros((n_params, n_params))
        self.b = np.zeros(n_params)
        self.n_rows = 0

    def add(self, design, target):
        """Add rows ``design`` (n_rows, M) with targets (n_rows,)."""
        self.a += design.T @ design
        self.b += design.T @ target
        self.n_rows += design.shape[0]


def solve_regularised(a, b, tikhonov, regulariser=None, scale=None):
    """Weights (M,) for ``(A + ω s R) w = b``; R defaults to the identity, s to tr(A)/M."""
    m = len(b)
    if scale is None:
        scale = np.trace(a) / m if np.trace(a) > 0 else 1.0
    reg = np.eye(m) if regulariser is None else regulariser
    lhs = a + tikhonov * scale * reg
    # Cholesky; when the system is singular to working precision (e.g. more references than
    # independent features with ζ = 1, or a tiny ω) retry with a small ridge δ·I,
    # δ = 1e-12 … 1e-8 × mean(diag): the same effect as dropping eigen-directions below δ,
    # at the cost of a Cholesky rather than an eigen-decomposition
    mean_diag = max(np.trace(lhs) / m, np.finfo(float).tiny)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8):
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            try:
                factor = scipy.linalg.cho_factor(lhs + jitter * mean_diag * np.eye(m),
                                                 check_finite=False)
                w = scipy.linalg.cho_solve(factor, b, check_finite=False)
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError,
                    scipy.linalg.LinAlgWarning):
                continue
        if np.all(np.isfinite(w)):
            return w
    # last resort: minimum-norm solution from the eigen-decomposition
    vals, vecs = scipy.linalg.eigh(lhs)
    keep = vals > 1e-12 * vals.max()
    return vecs[:, keep] @ ((vecs[:, keep].T @ b) / vals[keep])


def solve_in_place(build, b):
    """Weights for ``build(jitter) w = b`` where ``build`` returns a fresh (M, M) matrix with
    ``jitter`` × mean(diag) added to its diagonal. Cholesky in place (no copy); when the
    system is singular to working precision it is rebuilt with a small ridge (1e-12 … 1e-8),
    and as the last resort solved by an eigen-decomposition."""
    for jitter in (0.0, 1e-12, 1e-10, 1e-8):
        lhs = build(jitter)
        with warnings.catch_warnings():
            warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
            try:
                factor = scipy.linalg.cho_factor(lhs, overwrite_a=True, check_finite=False)
                w = scipy.linalg.cho_solve(factor, b, check_finite=False)
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError,
                    scipy.linalg.LinAlgWarning):
                continue
        if np.all(np.isfinite(w)):
            return w
    lhs = build(0.0)
    vals, vecs = scipy.linalg.eigh(lhs, overwrite_a=True)
    keep = vals > 1e-12 * vals.max()
    return vecs[:, keep] @ ((vecs[:, keep].T @ b) / vals[keep])
