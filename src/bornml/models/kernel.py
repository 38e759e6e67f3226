"""Normalised polynomial kernel on power-spectrum features and its feature derivative.

``K(x_i, x_k) = (x̂_i · x̂_k)^ζ`` with ``x̂ = x / |x|``. For the reference rows ``X̂`` (M, D):

    ∂K_ik/∂x_i = ζ k_ik^(ζ−1) / |x_i| · (x̂_k − k_ik x̂_i),   k_ik = x̂_i · x̂_k
"""

import numpy as np


def normalise(x, out=None):
    """Rows of ``x`` (n, D) divided by their norms; returns (x̂, norms (n,)), in blocks of
    rows (:data:`~bornml.descriptors.soap.ATOM_BLOCK`) for large frames (the same numbers).
    ``out``: arrays (x̂ (n, D), norms (n,)) to write into; x̂ may be ``x`` itself."""
    from ..descriptors.soap import atom_blocks

    xhat, norms = (np.empty_like(x), np.empty(len(x))) if out is None else out
    for a, b in atom_blocks(len(x)):
        n = norms[a:b]
        n[:] = np.linalg.norm(x[a:b], axis=1)
        if np.any(n == 0):
            raise ValueError("an environment has an all-zero power spectrum")
        np.divide(x[a:b], n[:, None], out=xhat[a:b])
    return xhat, norms


def kernel(xhat, ref, zeta):
    """K (n, M) between normalised rows ``xhat`` (n, D) and references ``ref`` (M, D)."""
    return (xhat @ ref.T) ** zeta


def kernel_weighted_gradient(xhat, norms, ref, weights, zeta):
    """Σ_k w_k ∂K_ik/∂x_i for every row i: (n, D). Also returns q_i = Σ_k w_k K_ik (n,)."""
    k = xhat @ ref.T
    kz1 = k ** (zeta - 1)
    q = (kz1 * k) @ weights
    v = zeta * ((kz1 * weights) @ ref - q[:, None] * xhat) / norms[:, None]
    return v, q


def contracted_weights(ref, weights, zeta):
    """For ζ = 1 or 2 the sum over references collapses: Σ_k w_k x̂_k (D,) or
    Σ_k w_k x̂_k x̂_kᵀ (D, D). Returns None for other ζ (evaluate the sum explicitly)."""
    if zeta == 1:
        return weights @ ref
    if zeta == 2:
        return (ref.T * weights) @ ref
    return None


def contracted_weighted_gradient(xhat, norms, contracted, zeta):
    """Same result as :func:`kernel_weighted_gradient` from :func:`contracted_weights`
    (row by row: callers pass blocks of atoms, :data:`~bornml.descriptors.soap.ATOM_BLOCK`)."""
    if zeta == 1:
        q = xhat @ contracted
        return (contracted[None, :] - q[:, None] * xhat) / norms[:, None], q
    ax = xhat @ contracted  # (n, D); contracted is symmetric
    q = np.einsum("id,id->i", ax, xhat)
    return 2.0 * (ax - q[:, None] * xhat) / norms[:, None], q


def weighted_gradient(xhat, norms, ref, weights, zeta, contracted=None):
    """(Σ_k w_k ∂K_ik/∂x_i (n, D), q (n,)): by :func:`contracted_weighted_gradient` when
    ``contracted`` is given, else by :func:`kernel_weighted_gradient`."""
    if contracted is not None:
        return contracted_weighted_gradient(xhat, norms, contracted, zeta)
    return kernel_weighted_gradient(xhat, norms, ref, weights, zeta)
