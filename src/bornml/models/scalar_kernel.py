"""Per-atom scalar kernel s_i = Σ_k w_k (x̂_i · x̂_k)^ζ and its derivatives with respect to the
pair vectors d_p = r_{j_p} + T_p − r_{i_p} (Å), for any term whose quantity is a sum of such
site values (charges q_i, site energies e_i).

- :func:`reference_pair_gradients` — the design route: every reference column separately,
  ∂K_ik/∂d_p (P_z, 3, M_z) from the pair Jacobians (one GEMM per neighbour species);
- :func:`site_values_and_pair_gradients` — the prediction route: the weighted sum pulled back
  through the power spectrum and the density expansion in one adjoint pass, (N,) and (P, 3).

Derivative of one kernel entry (k_ik = x̂_i·x̂_k):
    ∂K_ik/∂d_p = ζ k_ik^(ζ−1)/|x_i| · (x̂_k·∂x_i/∂d_p − k_ik x̂_i·∂x_i/∂d_p)
"""

import numpy as np

from ..descriptors._kernels import pair_feature_jacobian
from ..descriptors.soap import atom_blocks, power_spectrum_vjp, scratch
from .kernel import contracted_weights, weighted_gradient

#: pairs per block of the design route (bounds the (pairs, 3, features) Jacobian in memory)
PAIR_BLOCK = 2048

#: priors of the weights of a scalar-kernel term: ω·wᵀK_MM·w or ω·|w|²
REGULARISERS = ("kernel", "identity")


def checked_settings(zeta, regulariser):
    """(ζ as int, regulariser) of a scalar-kernel term; ValueError naming a bad one."""
    if int(zeta) != zeta or zeta < 1:
        raise ValueError("zeta must be a positive integer")
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {REGULARISERS}")
    return int(zeta), regulariser


def reference_pair_gradients(refs, ctx, frame, z, zeta, rows, self_term=None):
    """Kernel values and pair gradients of the centres of species ``z`` against its references.

    ``refs``: :class:`~bornml.models.reference_set.ReferenceSet`; ``ctx``: its FrameContext of
    ``frame``; ``rows``: ``refs.rows(...)``. Returns (atoms (n_z,) atom indices, K (n_z, M_z),
    pair_ids (P_z,) pairs centred on those atoms, G (P_z, 3, M_z) with
    G[p, :, k] = ∂K_{i_p k}/∂d_p in 1/Å). ``self_term``: ``fe.norm_pair_gradients(x̂)``
    (P, 3) when the caller has it (it serves every species), else computed here.
    """
    fe, xhat, norms = ctx
    settings = refs.settings
    n_atoms = len(frame)
    ref = refs.references[z]
    m = len(ref)
    atoms = np.flatnonzero(frame.numbers == z)
    local = np.full(n_atoms, -1)
    local[atoms] = np.arange(len(atoms))
    k_atoms = xhat[atoms] @ ref.T  # (n_z, M)
    values = k_atoms ** zeta
    scale = zeta * k_atoms ** (zeta - 1) / norms[atoms, None]
    coef = fe.coefficients.reshape(n_atoms, fe.n_channels * (settings.max_radial + 1), -1)
    factors = 2.0 / np.sqrt(2 * np.arange(settings.max_angular + 1) + 1.0)
    if self_term is None:
        self_term = fe.norm_pair_gradients(xhat)  # x̂_i·∂x_i/∂d_p (P, 3)
    pair_ids = np.flatnonzero(local[fe.pairs.centers] >= 0)
    grads = np.empty((len(pair_ids), 3, m))
    pair_species = fe._pair_species[pair_ids]
    for s in range(len(refs.species)):
        for sub in np.array_split(np.flatnonzero(pair_species == s),
                                  max(1, -(-int(np.sum(pair_species == s)) // PAIR_BLOCK))):
            if len(sub) == 0:
                continue
            ids = pair_ids[sub]
            centers = fe.pairs.centers[ids]
            w = pair_feature_jacobian(fe.pair_jacobian_subset(ids), coef, centers, factors)
            g = (rows[z, s] @ w.reshape(len(sub) * 3, -1).T).reshape(m, len(sub), 3)
            g = g.transpose(1, 2, 0)  # (n, 3, M)
            loc = local[centers]
            g -= k_atoms[loc, None, :] * self_term[ids, :, None]
            g *= scale[loc, None, :]
            grads[sub] = g
    return atoms, values, pair_ids, grads


def contract(refs, weights, zeta):
    """{z: Σ_k w_k x̂_k (ζ=1) or Σ_k w_k x̂_k x̂_kᵀ (ζ=2)} for the species with more references
    than half the features (there the contracted form is cheaper)."""
    D = refs.n_features
    out = {z: contracted_weights(refs.references[z], weights[z], zeta)
           for z in refs.species if len(refs.references[z]) > D // 2}
    return {z: c for z, c in out.items() if c is not None}  # ζ > 2: no contracted form


def site_values_and_pair_gradients(refs, ctx, frame, weights, zeta, contracted):
    """Site values s (N,) and g (P, 3), g_p = ∂s_{i_p}/∂d_p, by the adjoint route.

    ``weights``: {z: (M_z,)}; ``contracted``: :func:`contract` of them (may be empty; a
    species without one, or with None, sums over its references).

    Block by block of :data:`~bornml.descriptors.soap.ATOM_BLOCK` atoms, end to end: the
    block's power spectra (or rows of ``ctx.xhat`` when the frame's are held), Σ_k w_k ∂K/∂x̂
    for each species in the block, the power-spectrum adjoint and the pull-back to the
    block's pairs — every (block, D) temporary stays in cache and no (N, D) array is formed,
    so the cost per atom does not grow with the frame. The same numbers as whole-frame
    arrays: every step is row by row (atom by atom, pair by pair).
    """
    fe = ctx.fe
    L = refs.settings.max_angular
    kinds = fe.species_index  # index into refs.species (the expansion was made with them)
    D = refs.n_features
    s = np.empty(fe.n_atoms)
    g = np.empty((len(fe.pairs.centers), 3))
    for a, b in atom_blocks(fe.n_atoms):
        n = b - a
        xhat, norms = ctx.block(a, b, (scratch("site_xhat", (n, D)), scratch("site_norms", n)))
        v = scratch("site_v", (n, D))
        block_kinds = kinds[a:b]
        for k, z in enumerate(refs.species):
            rows = np.flatnonzero(block_kinds == k)
            if len(rows) == 0:
                continue
            ref, w, c = refs.references[z], weights[z], contracted.get(z)
            if len(rows) == n:  # one species in the block: no gather
                weighted_gradient(xhat, norms, ref, w, zeta, c, out=(v, s[a:b]))
                continue
            m = len(rows)
            vz, sz = weighted_gradient(
                np.take(xhat, rows, axis=0, out=scratch("site_xhat_z", (m, D)), mode="clip"),
                norms[rows], ref, w, zeta, c,
                out=(scratch("site_v_z", (m, D)), scratch("site_s_z", m)))
            v[rows] = vz
            s[a + rows] = sz
        adjoint = power_spectrum_vjp(fe.coefficients[a:b], v, L,
                                     scratch("site_adjoint", fe.coefficients[a:b].shape))
        g[fe.pair_range(a, b)] = fe.pair_vjp(adjoint, a)
    return s, g
