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
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            return scipy.linalg.solve(lhs, b, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, scipy.linalg.LinAlgWarning):
            pass
    # numerically singular (e.g. more references than independent features, ζ = 1):
    # minimum-norm solution from the eigen-decomposition, dropping directions below 1e-12
    vals, vecs = scipy.linalg.eigh(lhs)
    keep = vals > 1e-12 * vals.max()
    return vecs[:, keep] @ ((vecs[:, keep].T @ b) / vals[keep])
