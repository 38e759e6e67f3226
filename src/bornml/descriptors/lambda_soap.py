"""λ = 1 (vector) SOAP features from the density coefficients, and their derivatives.

For every l = 0 … L−1 the coefficient blocks of angular momenta l and l+1 are coupled to a
Cartesian vector (a = x, y, z):

    X_i[a, l, α, β] = Σ_{m1, m2} C_l[a, m1, m2] c_i[α, l m1] c_i[β, (l+1) m2]

with α, β = (neighbour species, radial index) ∈ S·N and ``C_l`` the (3, 2l+1, 2l+3) coupling
of l ⊗ (l+1) → 1 (Clebsch–Gordan up to a sign per l, computed as the Gaunt integral
∫ r̂_a Y_lm1 Y_(l+1)m2 dΩ and normalised so that Σ_{m1 m2} C_l[a] C_l[b] = δ_ab). l and l+1
have opposite parity, so X_i is a polar vector: it rotates and inverts like a dipole. Flattened
feature index f = (l, α, β), F = L·(S·N)². X_i is quadratic in the density, like the scalar
power spectrum x_i; the model uses X̂_i = X_i / |x_i| (scale free, and |x_i| never vanishes).

Derivatives (all exact): ``vector_features_vjp`` pulls u·X_i[a] back to the coefficients (the
adjoint); ``dipoles_and_adjoints`` gives a dipole model's p_i = X̂_i u and ∂p_i/∂c_i in one
compiled pass without forming X (for predictions); ``atom_jacobian`` accumulates
∂(Σ_{i∈species z} X̂_i)/∂r_j for every atom j (for design matrices); ``pair_jacobian`` gives
∂X_i/∂d_p pair by pair (for the design of the nonlinear dipole kernel, where each centre has
its own weight).
"""

from functools import lru_cache

import numpy as np

from ._kernels import (
    pull_back_vectors_to_pairs,
    vector_dipoles_and_adjoints,
    vector_feature_atom_jacobian,
    vector_feature_pair_jacobian,
)


@lru_cache(maxsize=16)
def coupling(l):
    """C_l (3, 2l+1, 2l+3): Cartesian vector coupling of Y_l ⊗ Y_(l+1) (sphericart order)."""
    import sphericart

    n = l + 4  # Gauss–Legendre in cos θ, exact for the degree 2l+2 integrand
    x, w = np.polynomial.legendre.leggauss(n)
    n_phi = 2 * n + 2
    phi = 2 * np.pi * np.arange(n_phi) / n_phi
    st = np.sqrt(1 - x ** 2)
    pts = np.stack([np.outer(st, np.cos(phi)).ravel(), np.outer(st, np.sin(phi)).ravel(),
                    np.repeat(x, n_phi)], axis=1)
    weights = np.repeat(w, n_phi) * (2 * np.pi / n_phi)
    y = sphericart.SphericalHarmonics(l + 1).compute(pts)
    y1 = y[:, l * l:(l + 1) ** 2]
    y2 = y[:, (l + 1) ** 2:(l + 2) ** 2]
    c = np.einsum("p,pa,pm,pn->amn", weights, pts, y1, y2)
    return c / np.sqrt(np.sum(c[0] ** 2))


#: couplings below this (× the largest of their l) are quadrature noise of exact zeros
COUPLING_ZERO = 1e-13


@lru_cache(maxsize=16)
def sparse_couplings(max_angular):
    """Non-zero entries of C_0 … C_(L−1) as flat arrays: (start (L+1,), a, m1, m2, value);
    the entries of C_l are ``start[l]:start[l+1]``. Real harmonics couple each m1 to at most
    two m2 per Cartesian component, so about 5·(2l+1) of the 3·(2l+1)(2l+3) entries remain."""
    start, a, m1, m2, val = [0], [], [], [], []
    for l in range(max_angular):
        c = coupling(l)
        idx = np.nonzero(np.abs(c) > COUPLING_ZERO * np.abs(c).max())
        for lst, part in zip((a, m1, m2), idx):
            lst.extend(part.tolist())
        val.extend(c[idx].tolist())
        start.append(len(val))
    ints = [np.array(x, dtype=np.int64) for x in (start, a, m1, m2)]
    return (*ints, np.array(val, dtype=float))


def dipoles_and_adjoints(coefficients, weights, species_index, max_angular):
    """Atomic dipoles of a linear λ=1 model and their derivatives with respect to the
    coefficients, in one compiled pass over atoms (see ``_kernels.vector_dipoles_and_adjoints``).

    ``coefficients`` (N, C, n, LM); ``weights`` (S, F) contracted weights u_z of each centre
    species index; ``species_index`` (N,). Returns p (N, 3), p_i = X̂_i u_(z_i) (units of u;
    X̂ = X/|x| with the power-spectrum norm |x_i| computed from the same coefficients), and
    the adjoints (N, C, LM, 3, n): ∂p_i[a]/∂c_i[γ, n, lm] at [i, γ, lm, a, n] — the
    normalisation differentiated too, so a pull-back to the pairs gives ∂p_i/∂d_p whole.
    """
    n_atoms, n_ch, n_rad, n_lm = coefficients.shape
    sn = n_ch * n_rad
    c = np.ascontiguousarray(coefficients.reshape(n_atoms, sn, n_lm).transpose(0, 2, 1))
    u = np.ascontiguousarray(np.asarray(weights, dtype=float).reshape(
        len(weights), max_angular, sn, sn))
    return vector_dipoles_and_adjoints(c, u, np.asarray(species_index, dtype=np.int64),
                                       *sparse_couplings(max_angular), n_rad)


def pair_vjp_vectors(expansion, adjoints):
    """Pull the coefficient adjoints of a vector's 3 components, (N, C, LM, 3, n) (the layout
    of :func:`dipoles_and_adjoints`), back to the pairs of ``expansion`` (a FrameExpansion):
    g[p, a] = Σ_{n,lm} adjoints[i_p, s_p, lm, a, n] ∂c[i_p, s_p, n, lm]/∂d_p → (P, 3, 3).
    What ``expansion.pair_vjp_many`` gives for the same adjoints (transposed), in one pass
    over pairs that shares each pair's tables between the components; channels are mapped
    back to elements first."""
    fe = expansion
    if fe.mixing is not None:
        adjoints = np.einsum("cs,iclan->islan", fe.mixing, adjoints)
    n_atoms, n_species = adjoints.shape[:2]
    flat = np.ascontiguousarray(adjoints.reshape((n_atoms * n_species,) + adjoints.shape[2:]))
    return pull_back_vectors_to_pairs(flat, fe._segment, fe._fr, fe._dfr, fe._y, fe._dy,
                                      fe._unit)


def _blocks(coefficients, max_angular):
    """c (N, SN, LM) and, per l < L, T_l[i, a, m1, β] = Σ_m2 C_l[a,m1,m2] c[i,β,(l+1)m2]
    and R_l[i, a, α, m2] = Σ_m1 C_l[a,m1,m2] c[i,α,l m1] (batched matrix products)."""
    n_atoms = coefficients.shape[0]
    c = coefficients.reshape(n_atoms, -1, coefficients.shape[-1])
    sn = c.shape[1]
    ts, rs = [], []
    for l in range(max_angular):
        w1, w2 = 2 * l + 1, 2 * l + 3
        cl = c[:, :, l * l:(l + 1) ** 2].reshape(n_atoms * sn, w1)
        cl1 = c[:, :, (l + 1) ** 2:(l + 2) ** 2].reshape(n_atoms * sn, w2)
        C = coupling(l)
        t = (cl1 @ C.reshape(3 * w1, w2).T).reshape(n_atoms, sn, 3, w1)
        ts.append(t.transpose(0, 2, 3, 1))
        r = (cl @ C.transpose(1, 0, 2).reshape(w1, 3 * w2)).reshape(n_atoms, sn, 3, w2)
        rs.append(r.transpose(0, 2, 1, 3))
    return c, ts, rs


def n_vector_features(n_species, max_radial, max_angular):
    """F = L·(S·N)²."""
    sn = n_species * (max_radial + 1)
    return max_angular * sn * sn


def vector_features(coefficients, max_angular, blocks=None):
    """X (N, 3, F) from coefficients (N, S, n, LM) (not normalised); ``blocks``: the
    result of ``_blocks(coefficients, max_angular)`` when the caller has it."""
    c, ts, _ = blocks or _blocks(coefficients, max_angular)
    out = [np.matmul(c[:, None, :, l * l:(l + 1) ** 2], ts[l]).reshape(len(c), 3, -1)
           for l in range(max_angular)]
    return np.concatenate(out, axis=2)


def vector_features_vjp(coefficients, u, max_angular, blocks=None):
    """∂(u_i · X_i[a])/∂c_i for a = x, y, z: u (N, F) → adjoint (3, N, S, n, LM)."""
    c, ts, rs = blocks or _blocks(coefficients, max_angular)
    n_atoms, sn = c.shape[:2]
    adj = np.zeros((3,) + c.shape)
    ublocks = u.reshape(n_atoms, max_angular, sn, sn)
    for l in range(max_angular):
        ul = ublocks[:, l]
        # adj[a, i, α, l m1] = Σ_β U[i,α,β] T[i,a,m1,β]
        # adj[a, i, β, (l+1) m2] = Σ_α U[i,α,β] R[i,a,α,m2]
        first = np.matmul(ul[:, None], ts[l].transpose(0, 1, 3, 2))  # (N, 3, SN, 2l+1)
        second = np.matmul(ul.transpose(0, 2, 1)[:, None], rs[l])  # (N, 3, SN, 2l+3)
        adj[:, :, :, l * l:(l + 1) ** 2] += first.transpose(1, 0, 2, 3)
        adj[:, :, :, (l + 1) ** 2:(l + 2) ** 2] += second.transpose(1, 0, 2, 3)
    return adj.reshape((3,) + coefficients.shape)


def _padded_blocks(coefficients, max_angular):
    """T_l and R_l of :func:`_blocks` zero-padded in m to one array each:
    (N, L, 3, 2L+1, SN) and (N, L, 3, 2L+3, SN) (the layout of the compiled kernels)."""
    c, ts, rs = _blocks(coefficients, max_angular)
    n_atoms, sn = c.shape[:2]
    width = 2 * max_angular + 1
    t_pad = np.zeros((n_atoms, max_angular, 3, width, sn))
    r_pad = np.zeros((n_atoms, max_angular, 3, width + 2, sn))
    for l in range(max_angular):
        t_pad[:, l, :, :2 * l + 1, :] = ts[l]
        r_pad[:, l, :, :2 * l + 3, :] = rs[l].transpose(0, 1, 3, 2)
    return t_pad, r_pad


def pair_jacobian(expansion, pair_index, padded, max_angular):
    """J[p, a, b, f] = ∂X_{i_p}[a, f]/∂d_{p,b} (unnormalised features) for the pairs
    ``pair_index``: (n, 3, 3, F). ``padded``: :func:`_padded_blocks` of the expansion's
    coefficients. Contracted with many feature vectors at once (one matrix product) it gives
    the design of the nonlinear dipole kernel."""
    pairs = expansion.pairs
    t_pad, r_pad = padded
    return vector_feature_pair_jacobian(
        np.ascontiguousarray(expansion.pair_jacobian_subset(pair_index)),
        pairs.centers[pair_index], expansion._pair_species[pair_index], t_pad, r_pad,
        max_angular, np.ascontiguousarray(expansion.channel_weights()))


def atom_jacobian(expansion, xhat_vec, inv_norm, self_term, max_angular, only_species=None):
    """D[j, a, b, z, f] = ∂(Σ_{i of species z} X̂_i[a, f])/∂r_{j,b} for X̂ = X/|x|.

    ``xhat_vec`` (N, 3, F) normalised vector features, ``inv_norm`` (N,) 1/|x_i|,
    ``self_term`` (P, 3) x̂_i·∂x_i/∂d_p of the scalar power spectrum. Returns (N, 3, 3, S, F),
    or (N, 3, 3, F) for the centres of the one species index ``only_species``.
    Translation invariance makes Σ_j D[j] = 0 exactly.
    """
    t_pad, r_pad = _padded_blocks(expansion.coefficients, max_angular)
    pairs = expansion.pairs
    jac = expansion.pair_jacobian_subset(np.arange(len(pairs.centers)))
    out = vector_feature_atom_jacobian(
        np.ascontiguousarray(jac), pairs.centers, pairs.neighbors, expansion._pair_species,
        expansion.species_index, t_pad, r_pad, np.ascontiguousarray(xhat_vec), inv_norm,
        np.ascontiguousarray(self_term), len(expansion.species), max_angular,
        np.ascontiguousarray(expansion.channel_weights()),
        -1 if only_species is None else int(only_species))
    return out if only_species is None else out[:, :, :, 0]
