"""Normalised polynomial kernel on power-spectrum features and its feature derivative.

``K(x_i, x_k) = (x̂_i · x̂_k)^ζ`` with ``x̂ = x / |x|``. For the reference rows ``X̂`` (M, D):

    ∂K_ik/∂x_i = ζ k_ik^(ζ−1) / |x_i| · (x̂_k − k_ik x̂_i),   k_ik = x̂_i · x̂_k
"""

import numpy as np

from ..descriptors.soap import atom_blocks, scratch


def normalise(x, out=None):
    """Rows of ``x`` (n, D) divided by their norms; returns (x̂, norms (n,)), in blocks of
    rows (:data:`~bornml.descriptors.soap.ATOM_BLOCK`) for large frames (the same numbers).
    ``out``: arrays (x̂ (n, D), norms (n,)) to write into; x̂ may be ``x`` itself."""
    xhat, norms = (np.empty_like(x), np.empty(len(x))) if out is None else out
    for a, b in atom_blocks(len(x)):
        n = norms[a:b]
        squares = np.multiply(x[a:b], x[a:b], out=scratch("normalise", (b - a, x.shape[1])))
        np.sqrt(np.add.reduce(squares, axis=1, out=n), out=n)  # = np.linalg.norm(axis=1)
        if np.any(n == 0):
            raise ValueError("an environment has an all-zero power spectrum")
        np.divide(x[a:b], n[:, None], out=xhat[a:b])
    return xhat, norms


def _fresh(name, shape):
    """A new array (the stand-in for :func:`~bornml.descriptors.soap.scratch` when the caller
    passes whole-frame arrays, which should not be kept)."""
    return np.empty(shape)


def kernel(xhat, ref, zeta):
    """K (n, M) between normalised rows ``xhat`` (n, D) and references ``ref`` (M, D)."""
    return (xhat @ ref.T) ** zeta


def kernel_weighted_gradient(xhat, norms, ref, weights, zeta, out=None):
    """Σ_k w_k ∂K_ik/∂x_i for every row i: (n, D). Also returns q_i = Σ_k w_k K_ik (n,).
    ``out``: arrays (v (n, D), q (n,)) to write into; then the (n, M) temporaries are
    :func:`~bornml.descriptors.soap.scratch` arrays too (a block of atoms)."""
    n = len(xhat)
    v, q = (np.empty_like(xhat), np.empty(n)) if out is None else out
    work = _fresh if out is None else scratch
    m = len(ref)
    k = np.matmul(xhat, ref.T, out=work("kernel_k", (n, m)))
    kz1 = np.power(k, zeta - 1, out=work("kernel_kz1", (n, m)))
    product = np.multiply(kz1, k, out=work("kernel_product", (n, m)))
    np.matmul(product, weights, out=q)
    np.matmul(np.multiply(kz1, weights, out=product), ref, out=v)
    v -= np.multiply(q[:, None], xhat, out=work("kernel_qx", xhat.shape))
    v *= zeta
    v /= norms[:, None]
    return v, q


def contracted_weights(ref, weights, zeta):
    """For ζ = 1 or 2 the sum over references collapses: Σ_k w_k x̂_k (D,) or
    Σ_k w_k x̂_k x̂_kᵀ (D, D). Returns None for other ζ (evaluate the sum explicitly)."""
    if zeta == 1:
        return weights @ ref
    if zeta == 2:
        return (ref.T * weights) @ ref
    return None


def contracted_weighted_gradient(xhat, norms, contracted, zeta, out=None):
    """Same result as :func:`kernel_weighted_gradient` from :func:`contracted_weights`
    (row by row: callers pass blocks of atoms, :data:`~bornml.descriptors.soap.ATOM_BLOCK`).
    ``out``: arrays (v (n, D), q (n,)) to write into (then temporaries are scratch arrays)."""
    v, q = (np.empty_like(xhat), np.empty(len(xhat))) if out is None else out
    if zeta == 1:
        np.matmul(xhat, contracted, out=q)
        np.subtract(contracted[None, :], np.multiply(q[:, None], xhat, out=v), out=v)
    else:
        work = _fresh if out is None else scratch
        ax = np.matmul(xhat, contracted, out=work("kernel_ax", xhat.shape))  # symmetric
        np.einsum("id,id->i", ax, xhat, out=q)
        np.subtract(ax, np.multiply(q[:, None], xhat, out=v), out=v)
        v *= 2.0
    v /= norms[:, None]
    return v, q


def weighted_gradient(xhat, norms, ref, weights, zeta, contracted=None, out=None):
    """(Σ_k w_k ∂K_ik/∂x_i (n, D), q (n,)): by :func:`contracted_weighted_gradient` when
    ``contracted`` is given, else by :func:`kernel_weighted_gradient`."""
    if contracted is not None:
        return contracted_weighted_gradient(xhat, norms, contracted, zeta, out)
    return kernel_weighted_gradient(xhat, norms, ref, weights, zeta, out)
