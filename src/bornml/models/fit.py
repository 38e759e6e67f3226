"""A Cholesky solve in place with a small-ridge fallback for systems singular to working
precision (the regularised normal equations are built in :mod:`bornml.models.equations`).
float64 throughout.
"""

import warnings

import numpy as np
import scipy.linalg


def solve_in_place(build, b):
    """Weights for ``build(jitter) w = b`` where ``build`` returns a fresh (M, M) matrix with
    ``jitter`` × mean(diag) added to its diagonal. Cholesky in place (no copy); when the
    system is singular to working precision it is rebuilt with a small ridge (1e-12 … 1e-8),
    and as the last resort solved by an eigen-decomposition."""
    lhs = None
    for jitter in (0.0, 1e-12, 1e-10, 1e-8):
        del lhs  # release a failed factorisation before building the next matrix
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
    del lhs
    lhs = build(0.0)
    vals, vecs = scipy.linalg.eigh(lhs, overwrite_a=True)
    keep = vals > 1e-12 * vals.max()
    return vecs[:, keep] @ ((vecs[:, keep].T @ b) / vals[keep])
