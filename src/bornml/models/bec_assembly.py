"""Born charges of a monopole model from its charges and their pair gradients.

Inputs for one frame (trailing axes ``...`` allow many right-hand sides at once, e.g. the
columns of a design matrix):
- ``charges`` (N, ...): raw model charges q_i (e);
- ``pair_grad`` (P, 3, ...): g_p = ∂q_{i_p}/∂d_p for every neighbour image p (e/Å), where
  d_p = r_{j_p} + T_p − r_{i_p}.

Neutral charges q'_i = q_i − mean(q) are reported and used. Born charges:

    Z_j[a] = q'_j e_a + Σ_{p: j_p = j} (−d_p[a]) g_p            ("local" part, image resolved)
             + (r_j − r̄)[a] ∂Q/∂r_j       for a non-periodic direction a
             − mean_k Z^local_k[a]          for a periodic direction a

row by row (a = the polarisation direction). ``periodic``: a bool (every direction or none)
or a (3,) bool mask — a Cartesian direction is periodic when some pair's image shift has a
component along it (:attr:`FrameExpansion.periodic_directions`). For a molecule every row is
the exact derivative of P = Σ q'_i r_i (which also obeys Σ_j Z_j = 0); so are the rows along
the normal of a slab. Along a periodic direction the position relative to the centroid r̄
has no meaning; the term is replaced by its cell average, which is exactly the projection onto
the acoustic sum rule. The residual that projection removes is returned as ``asr_residual``
(3, 3, ...), zero in the non-periodic rows.
"""

import numpy as np
import scipy.sparse


def _pair_to_atom(index, n_atoms, weights=None):
    n_pairs = len(index)
    data = np.ones(n_pairs) if weights is None else weights
    return scipy.sparse.csr_matrix((data, (index, np.arange(n_pairs))), shape=(n_atoms, n_pairs))


def assemble_bec(charges, pair_grad, centers, neighbors, vectors, positions, periodic):
    """Return (Z (N, 3, 3, ...), neutral charges (N, ...), asr_residual (3, 3, ...))."""
    n_atoms = charges.shape[0]
    rest = charges.shape[1:]
    neutral = charges - charges.mean(axis=0)
    g = pair_grad.reshape(len(centers), -1)  # (P, 3·R)
    bec = np.zeros((n_atoms, 3, 3) + rest)
    for a in range(3):
        local = _pair_to_atom(neighbors, n_atoms, -vectors[:, a]) @ g
        bec[:, a] = local.reshape((n_atoms, 3) + rest)
        bec[:, a, a] += neutral
    rows = _periodic_rows(periodic)
    if not rows.all():
        dq = (_pair_to_atom(neighbors, n_atoms) - _pair_to_atom(centers, n_atoms)) @ g
        dq = dq.reshape((n_atoms, 3) + rest)
        rel = positions - positions.mean(axis=0)
        for a in np.flatnonzero(~rows):
            bec[:, a] += np.einsum("j,jb...->jb...", rel[:, a], dq)
    residual = bec.sum(axis=0)
    if rows.any():
        correction = np.where(rows.reshape((3, 1) + (1,) * len(rest)), residual, 0.0)
        bec -= correction / n_atoms
        residual = correction  # what the projection removed (non-periodic rows: nothing)
    return bec, neutral, residual


def _periodic_rows(periodic):
    """(3,) bool mask of the periodic Cartesian directions from a bool or a mask."""
    mask = np.asarray(periodic, dtype=bool)
    return np.full(3, bool(mask)) if mask.ndim == 0 else mask


def dipole_derivative(charges, pair_grad, centers, neighbors, vectors, positions, periodic,
                      velocities):
    """Ṁ = Σ_j Z_j v_j (e·Å/fs) without forming Z: the same terms as :func:`assemble_bec`
    contracted with the velocities (N, 3) Å/fs pair by pair. Returns (3,)."""
    neutral = charges - charges.mean()
    along = np.einsum("pb,pb->p", pair_grad, velocities[neighbors])  # g_p · v_{j_p}
    mdot = neutral @ velocities - vectors.T @ along
    rows = _periodic_rows(periodic)
    if rows.any():
        # minus the ASR residual's share: (1/N) Σ_p d_p ⊗ g_p applied to Σ_j v_j
        mdot += rows * (vectors.T @ (pair_grad @ velocities.sum(axis=0))) / len(charges)
    if not rows.all():
        rel = positions - positions.mean(axis=0)
        back = np.einsum("pb,pb->p", pair_grad, velocities[centers])  # g_p · v_{i_p}
        mdot += ~rows * (rel[neighbors].T @ along - rel[centers].T @ back)
    return mdot
