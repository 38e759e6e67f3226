"""Compiled inner loops of the density expansion (numba), one pass over pairs each.

Layouts: ``fr``/``dfr`` (P, L+1, N) smoothed radial functions and their r-derivatives;
``y`` (P, LM) and ``dy`` (P, 3, LM) spherical harmonics and their gradients with respect to
the pair vector; ``segment`` (P,) index of the (centre, neighbour species) density each pair
adds to; ``unit`` (P, 3) unit pair vectors.
"""

import numba
import numpy as np


@numba.njit(cache=True)
def accumulate_density(fr, y, bounds):
    """c[s, n, lm] = Σ_{p in segment s} fr[p, l(lm), n] y[p, lm] → (n_segments, N, LM).

    Pairs are sorted by segment; ``bounds`` (n_segments + 1,) are the segment starts
    (segments are independent).
    """
    n_l, n_rad = fr.shape[1], fr.shape[2]
    n_lm = y.shape[1]
    n_segments = bounds.shape[0] - 1
    out = np.zeros((n_segments, n_rad, n_lm))
    for s in range(n_segments):
        for p in range(bounds[s], bounds[s + 1]):
            for l in range(n_l):
                for n in range(n_rad):
                    f = fr[p, l, n]
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        out[s, n, lm] += f * y[p, lm]
    return out


@numba.njit(cache=True)
def smoothed_radial(coef, dx, r, cutoff, width, n_l, n_rad):
    """Cubic-Hermite spline times shifted-cosine cut-off, and its r-derivative.

    ``coef`` (n_intervals, 4, L·N) polynomial coefficients in t = r/dx − k;
    returns two arrays (P, L, N).
    """
    n_pairs = r.shape[0]
    n_int = coef.shape[0]
    val = np.empty((n_pairs, n_l, n_rad))
    der = np.empty((n_pairs, n_l, n_rad))
    for p in range(n_pairs):
        x = r[p] / dx
        k = min(int(x), n_int - 1)
        t = x - k
        if width > 0.0 and r[p] > cutoff - width:
            s = (r[p] - cutoff + width) / width
            if s >= 1.0:
                f = 0.0
                df = 0.0
            else:
                f = 0.5 * (1.0 + np.cos(np.pi * s))
                df = -0.5 * np.pi * np.sin(np.pi * s) / width
        elif r[p] >= cutoff:
            f = 0.0
            df = 0.0
        else:
            f = 1.0
            df = 0.0
        q = 0
        for l in range(n_l):
            for n in range(n_rad):
                c0 = coef[k, 0, q]
                c1 = coef[k, 1, q]
                c2 = coef[k, 2, q]
                c3 = coef[k, 3, q]
                v = ((c3 * t + c2) * t + c1) * t + c0
                dv = ((3.0 * c3 * t + 2.0 * c2) * t + c1) / dx
                val[p, l, n] = v * f
                der[p, l, n] = dv * f + v * df
                q += 1
    return val, der


@numba.njit(cache=True)
def pair_feature_jacobian(jac, coef, centers, factors):
    """W[p, b, l, n, a] = factors[l] Σ_m jac[p, n, l²+l+m, b] coef[centers[p], a, l²+l+m].

    ``jac`` (P, N, LM, 3) = ∂c[i_p, s_p, n, lm]/∂d_p; ``coef`` (n_atoms, S·N, LM). Contracting
    W with the power-spectrum matrices of a reference (rows of its neighbour-species block)
    gives the derivative of the kernel numerator with respect to the pair vector.
    Returns (P, 3, L+1, N, S·N).
    """
    n_pairs, n_rad = jac.shape[0], jac.shape[1]
    n_l = factors.shape[0]
    sn = coef.shape[1]
    out = np.zeros((n_pairs, 3, n_l, n_rad, sn))
    for p in range(n_pairs):
        i = centers[p]
        for l in range(n_l):
            f = factors[l]
            for n in range(n_rad):
                for a in range(sn):
                    s0 = 0.0
                    s1 = 0.0
                    s2 = 0.0
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        c = coef[i, a, lm]
                        s0 += jac[p, n, lm, 0] * c
                        s1 += jac[p, n, lm, 1] * c
                        s2 += jac[p, n, lm, 2] * c
                    out[p, 0, l, n, a] = f * s0
                    out[p, 1, l, n, a] = f * s1
                    out[p, 2, l, n, a] = f * s2
    return out


@numba.njit(cache=True)
def vector_feature_atom_jacobian(jac, centers, neighbors, pair_species, center_species, t_pad,
                                 r_pad, xhat_vec, inv_norm, self_term, n_species, n_l,
                                 mixing, only_species):
    """D[j, a, b, z, f] = Σ_{i of species z} ∂X̂_i[a, f]/∂r_{j,b} (see lambda_soap).

    ``mixing`` (C, S): weight of a pair's neighbour species in each density channel (the
    identity without compression). ``only_species`` ≥ 0 restricts the centres to that
    species index and returns (n_atoms, 3, 3, 1, F); −1 keeps all (n_atoms, 3, 3, S, F).

    ``jac`` (P, N, LM, 3) = ∂c[i_p, s_p, n, lm]/∂d_p; ``t_pad`` (n_atoms, L, 3, 2L+1, SN) and
    ``r_pad`` (n_atoms, L, 3, 2L+3, SN) the half-contracted coefficient blocks T_l, R_l
    (zero-padded in m); ``xhat_vec`` (n_atoms, 3, F); ``self_term`` (P, 3). Every pair adds
    ∂X̂_i/∂d_p to its neighbour j_p and subtracts it from its centre i_p (pairs are sorted by
    centre, so the centre's share is summed first and written once). Returns
    (n_atoms, 3, 3, S, F).
    """
    n_pairs, n_rad = jac.shape[0], jac.shape[1]
    n_atoms = t_pad.shape[0]
    sn = t_pad.shape[4]
    n_feat = xhat_vec.shape[2]
    n_channels = mixing.shape[0]
    out = np.zeros((n_atoms, 3, 3, n_species if only_species < 0 else 1, n_feat))
    centre_sum = np.zeros((3, 3, n_feat))
    buf = np.empty(n_feat)
    for p in range(n_pairs):
        i = centers[p]
        j = neighbors[p]
        skip = only_species >= 0 and center_species[i] != only_species
        if i != j and not skip:  # a periodic image of the centre itself adds nothing
            z = center_species[i] if only_species < 0 else 0
            sp = pair_species[p]
            w = inv_norm[i]
            for b in range(3):
                for a in range(3):
                    for f in range(n_feat):
                        buf[f] = -w * xhat_vec[i, a, f] * self_term[p, b]
                    for l in range(n_l):
                        base = l * sn * sn
                        l0 = l * l
                        l1 = (l + 1) * (l + 1)
                        for ch in range(n_channels):
                            wc = w * mixing[ch, sp]
                            if wc == 0.0:
                                continue
                            for n in range(n_rad):
                                alpha = ch * n_rad + n
                                # c[α, l m1] varies: X[a,l,α,β] += Σ_m1 J[n,l m1,b] T[a,m1,β]
                                row = base + alpha * sn
                                for m1 in range(2 * l + 1):
                                    jv = wc * jac[p, n, l0 + m1, b]
                                    for beta in range(sn):
                                        buf[row + beta] += jv * t_pad[i, l, a, m1, beta]
                                # c[β, (l+1) m2] varies: X[a,l,α,β] += Σ_m2 J R[a,m2,α]
                                col = base + alpha
                                for m2 in range(2 * l + 3):
                                    jv = wc * jac[p, n, l1 + m2, b]
                                    for al in range(sn):
                                        buf[col + al * sn] += jv * r_pad[i, l, a, m2, al]
                    for f in range(n_feat):
                        out[j, a, b, z, f] += buf[f]
                        centre_sum[a, b, f] += buf[f]
        if p + 1 == n_pairs or centers[p + 1] != i:
            zc = center_species[i] if only_species < 0 else 0
            for a in range(3):
                for b in range(3):
                    for f in range(n_feat):
                        out[i, a, b, zc, f] -= centre_sum[a, b, f]
                        centre_sum[a, b, f] = 0.0
    return out


@numba.njit(cache=True)
def vector_feature_pair_jacobian(jac, centers, pair_species, t_pad, r_pad, n_l, mixing):
    """J[p, a, b, f] = ∂X_{i_p}[a, f]/∂d_{p,b} of the unnormalised λ=1 features, one row per
    pair given (see lambda_soap); ``jac`` (P, N, LM, 3) = ∂c[i_p, s_p, n, lm]/∂d_p of those
    pairs, ``centers`` and ``pair_species`` (P,) theirs; ``t_pad``/``r_pad`` and ``mixing``
    as in :func:`vector_feature_atom_jacobian`. Returns (P, 3, 3, F)."""
    n_pairs, n_rad = jac.shape[0], jac.shape[1]
    sn = t_pad.shape[4]
    n_channels = mixing.shape[0]
    out = np.zeros((n_pairs, 3, 3, n_l * sn * sn))
    for p in range(n_pairs):
        i = centers[p]
        sp = pair_species[p]
        for a in range(3):
            for b in range(3):
                for l in range(n_l):
                    base = l * sn * sn
                    l0 = l * l
                    l1 = (l + 1) * (l + 1)
                    for ch in range(n_channels):
                        wc = mixing[ch, sp]
                        if wc == 0.0:
                            continue
                        for n in range(n_rad):
                            alpha = ch * n_rad + n
                            row = base + alpha * sn
                            for m1 in range(2 * l + 1):
                                jv = wc * jac[p, n, l0 + m1, b]
                                for beta in range(sn):
                                    out[p, a, b, row + beta] += jv * t_pad[i, l, a, m1, beta]
                            col = base + alpha
                            for m2 in range(2 * l + 3):
                                jv = wc * jac[p, n, l1 + m2, b]
                                for al in range(sn):
                                    out[p, a, b, col + al * sn] += jv * r_pad[i, l, a, m2, al]
    return out


@numba.njit(cache=True)
def scatter_kernel_dipole_pairs(main, s_col, lin_s, lin_ds, self_term, grad_t, local, centers,
                                neighbors, design):
    """Born-charge rows of the nonlinear dipole kernel from one block of pairs, in place.

    For pair p (centre i = centers[p], row ``local[p]`` of the per-centre arrays) and column
    K = (k, c): g[a, b, K] = main[p, a, b, K]·s_col[i, K] − lin_s[i, a, K]·self_term[p, b]
    + lin_ds[i, a, K]·grad_t[p, b, k] (the last term only when ``lin_ds`` has rows), added
    to design[neighbors[p], a, b, K] and subtracted from design[i, a, b, K]."""
    n_pairs = main.shape[0]
    n_cols = main.shape[3]
    with_t = lin_ds.shape[0] > 0
    for p in range(n_pairs):
        r = local[p]
        i = centers[p]
        j = neighbors[p]
        for a in range(3):
            for b in range(3):
                st = self_term[p, b]
                for col in range(n_cols):
                    g = main[p, a, b, col] * s_col[r, col] - lin_s[r, a, col] * st
                    if with_t:
                        g += lin_ds[r, a, col] * grad_t[p, b, col // 3]
                    design[j, a, b, col] += g
                    design[i, a, b, col] -= g
    return design


@numba.njit(cache=True)
def pull_back_many_to_pairs(adjoints, segment, fr, dfr, y, dy, unit):
    """g[k, p, :] = Σ_{n,lm} adjoints[k, seg_p, n, lm] ∂(fr[p,l,n] y[p,lm])/∂d_p for K
    adjoints (K, n_segments, N, LM) in one call (the pair's tables stay in cache across the K
    passes) → (K, P, 3)."""
    n_pairs, n_l, n_rad = fr.shape
    n_k = adjoints.shape[0]
    g = np.zeros((n_k, n_pairs, 3))
    for p in range(n_pairs):
        s = segment[p]
        for k in range(n_k):
            radial_part = 0.0
            gx = 0.0
            gy = 0.0
            gz = 0.0
            for l in range(n_l):
                for lm in range(l * l, (l + 1) * (l + 1)):
                    a = 0.0
                    b = 0.0
                    for n in range(n_rad):
                        u = adjoints[k, s, n, lm]
                        a += u * fr[p, l, n]
                        b += u * dfr[p, l, n]
                    radial_part += b * y[p, lm]
                    gx += a * dy[p, 0, lm]
                    gy += a * dy[p, 1, lm]
                    gz += a * dy[p, 2, lm]
            g[k, p, 0] = gx + radial_part * unit[p, 0]
            g[k, p, 1] = gy + radial_part * unit[p, 1]
            g[k, p, 2] = gz + radial_part * unit[p, 2]
    return g


#: reassociation (vectorised radial sums) and fused multiply-adds, no assumptions about
#: infinities or NaNs: results differ from strict order by rounding only (~1e-16 relative)
REASSOCIATE = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=REASSOCIATE)
def _power_matrices(c, ps):
    """Fill ps[l] (L+1, SN, SN) with P^l = Σ_m c[lm] c[lm]ᵀ / sqrt(2l+1) of one atom's
    coefficients c (LM, SN); return 1/|x_i|, x_i the power spectrum (all P^l entries)."""
    sn = c.shape[1]
    norm2 = 0.0
    for l in range(ps.shape[0]):
        inv = 1.0 / np.sqrt(2.0 * l + 1.0)
        ps[l] = 0.0
        for lm in range(l * l, (l + 1) * (l + 1)):
            for al in range(sn):
                cv = c[lm, al]
                for be in range(sn):
                    ps[l, al, be] += cv * c[lm, be]
        for al in range(sn):
            for be in range(sn):
                ps[l, al, be] *= inv
                norm2 += ps[l, al, be] * ps[l, al, be]
    return 1.0 / np.sqrt(norm2)


@numba.njit(cache=True, fastmath=REASSOCIATE)
def _norm_gradient(c, ps, w, dnorm):
    """Fill dnorm (LM, SN) with ∂|x_i|/∂c = 2w/sqrt(2l+1)·P^l c (P^l symmetric: rows are
    columns), from :func:`_power_matrices`' ps and w = 1/|x_i|."""
    sn = c.shape[1]
    for l in range(ps.shape[0]):
        scale = 2.0 * w / np.sqrt(2.0 * l + 1.0)
        for lm in range(l * l, (l + 1) * (l + 1)):
            for al in range(sn):
                t = 0.0
                for be in range(sn):
                    t += ps[l, al, be] * c[lm, be]
                dnorm[lm, al] = scale * t


@numba.njit(cache=True, fastmath=REASSOCIATE)
def vector_dipoles_and_adjoints(coef_t, u, center_species, cg_start, cg_a, cg_m1, cg_m2, cg_val,
                                n_rad):
    """Dipoles p_i = X̂_i u_i and their coefficient adjoints ∂p_i[a]/∂c_i, atom by atom.

    ``coef_t`` (n_atoms, LM, SN) density coefficients with the SN = C·N (channel-major)
    index last; ``u`` (n_species, L, SN, SN) the contracted λ=1 weights u_z[l, α, β] of each
    centre species; ``center_species`` (n_atoms,); the non-zero couplings
    C_l[a, m1, m2] = ``cg_val`` of l ⊗ (l+1) → 1 are the entries ``cg_start[l]:cg_start[l+1]``.

    With X_i[a, l, α, β] = Σ C_l[a, m1, m2] c[α, l m1] c[β, (l+1) m2], the power spectrum
    matrices P^l = c_l c_lᵀ/√(2l+1) (|x|² = Σ_l |P^l|²_F) and X̂ = X/|x|:
    p_i[a] = Σ_f X̂_i[a, f] u[f] (units of u), and the adjoint is
    ∂p_i[a]/∂c = (∂(u·X_i[a])/∂c − p_i[a] ∂|x_i|/∂c)/|x_i| with
    ∂|x_i|/∂c[α, lm] = 2/(√(2l+1)|x_i|) Σ_β P^l[α, β] c[β, lm].
    U is contracted with the coefficients first (G1 = U_l c_(l+1), G2 = U_lᵀ c_l, SN² work
    per m), then with the sparse couplings: no (3, F) features are formed. Every inner loop
    runs over SN, contiguous (vectorised; sums reassociated: rounding-level differences).

    Returns dipoles (n_atoms, 3) and the adjoints (n_atoms, C, LM, 3, N) (radial index last,
    the layout :func:`pull_back_vectors_to_pairs` reads contiguously).
    """
    n_atoms, n_lm, sn = coef_t.shape
    n_l = cg_start.shape[0] - 1
    n_ps = int(np.sqrt(n_lm) + 0.5)  # L+1 angular channels of the power spectrum
    n_ch = sn // n_rad
    dipoles = np.zeros((n_atoms, 3))
    adjoint = np.zeros((n_atoms, n_ch, n_lm, 3, n_rad))
    raw = np.zeros((n_lm, 3, sn))
    dnorm = np.zeros((n_lm, sn))
    ps = np.zeros((n_ps, sn, sn))
    g1 = np.zeros((2 * n_l + 1, sn))
    g2 = np.zeros((2 * n_l + 1, sn))
    d = np.zeros(3)
    for i in range(n_atoms):
        c = coef_t[i]
        z = center_species[i]
        w = _power_matrices(c, ps)  # P^l and 1/|x_i|
        # u·X_i[a] and its adjoint, unnormalised
        raw[:] = 0.0
        d[:] = 0.0
        for l in range(n_l):
            o1 = l * l
            o2 = (l + 1) * (l + 1)
            ul = u[z, l]
            for m2 in range(2 * l + 3):  # G1[m2, α] = Σ_β U[α, β] c[β, (l+1) m2]
                for al in range(sn):
                    t = 0.0
                    for be in range(sn):
                        t += ul[al, be] * c[o2 + m2, be]
                    g1[m2, al] = t
            for m1 in range(2 * l + 1):  # G2[m1, β] = Σ_α U[α, β] c[α, l m1]
                g2[m1] = 0.0
                for al in range(sn):
                    cv = c[o1 + m1, al]
                    for be in range(sn):
                        g2[m1, be] += cv * ul[al, be]
            for q in range(cg_start[l], cg_start[l + 1]):
                a = cg_a[q]
                m1 = cg_m1[q]
                m2 = cg_m2[q]
                v = cg_val[q]
                t = 0.0
                for al in range(sn):
                    raw[o1 + m1, a, al] += v * g1[m2, al]
                    raw[o2 + m2, a, al] += v * g2[m1, al]
                    t += c[o1 + m1, al] * g1[m2, al]
                d[a] += v * t
        for a in range(3):
            d[a] *= w
            dipoles[i, a] = d[a]
        _norm_gradient(c, ps, w, dnorm)  # ∂|x_i|/∂c
        for ch in range(n_ch):
            for lm in range(n_lm):
                for a in range(3):
                    for n in range(n_rad):
                        al = ch * n_rad + n
                        adjoint[i, ch, lm, a, n] = w * (raw[lm, a, al] - d[a] * dnorm[lm, al])
    return dipoles, adjoint


@numba.njit(cache=True, fastmath=REASSOCIATE)
def pull_back_vectors_to_pairs(adjoints, segment, fr, dfr, y, dy, unit):
    """g[p, a, :] = Σ_{n,lm} adjoints[seg_p, lm, a, n] ∂(fr[p,l,n] y[p,lm])/∂d_p for the three
    Cartesian components a of a vector quantity, adjoints (n_segments, LM, 3, N), in one pass
    over pairs: the three components share each pair's tables, and each radial sum is a
    contiguous dot product of length N (vectorised) → (P, 3, 3)."""
    n_pairs, n_l, n_rad = fr.shape
    g = np.zeros((n_pairs, 3, 3))
    for p in range(n_pairs):
        s = segment[p]
        r0 = 0.0
        r1 = 0.0
        r2 = 0.0
        g00 = 0.0
        g01 = 0.0
        g02 = 0.0
        g10 = 0.0
        g11 = 0.0
        g12 = 0.0
        g20 = 0.0
        g21 = 0.0
        g22 = 0.0
        for l in range(n_l):
            for lm in range(l * l, (l + 1) * (l + 1)):
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                b0 = 0.0
                b1 = 0.0
                b2 = 0.0
                for n in range(n_rad):
                    f = fr[p, l, n]
                    df = dfr[p, l, n]
                    v0 = adjoints[s, lm, 0, n]
                    v1 = adjoints[s, lm, 1, n]
                    v2 = adjoints[s, lm, 2, n]
                    a0 += v0 * f
                    a1 += v1 * f
                    a2 += v2 * f
                    b0 += v0 * df
                    b1 += v1 * df
                    b2 += v2 * df
                yv = y[p, lm]
                dx = dy[p, 0, lm]
                dyy = dy[p, 1, lm]
                dz = dy[p, 2, lm]
                r0 += b0 * yv
                r1 += b1 * yv
                r2 += b2 * yv
                g00 += a0 * dx
                g01 += a0 * dyy
                g02 += a0 * dz
                g10 += a1 * dx
                g11 += a1 * dyy
                g12 += a1 * dz
                g20 += a2 * dx
                g21 += a2 * dyy
                g22 += a2 * dz
        ux = unit[p, 0]
        uy = unit[p, 1]
        uz = unit[p, 2]
        g[p, 0, 0] = g00 + r0 * ux
        g[p, 0, 1] = g01 + r0 * uy
        g[p, 0, 2] = g02 + r0 * uz
        g[p, 1, 0] = g10 + r1 * ux
        g[p, 1, 1] = g11 + r1 * uy
        g[p, 1, 2] = g12 + r1 * uz
        g[p, 2, 0] = g20 + r2 * ux
        g[p, 2, 1] = g21 + r2 * uy
        g[p, 2, 2] = g22 + r2 * uz
    return g


@numba.njit(cache=True, fastmath=REASSOCIATE)
def vector_dipole_adjoints_many(coef_t, u, ut, center_species, cg_start, cg_a, cg_m1, cg_m2,
                                cg_val, n_rad):
    """:func:`vector_dipoles_and_adjoints` for K weight vectors per species at once (the
    sampled uncertainty's draws): ``u`` (n_species, L, SN, SN·K) the weights U_l[α, (β, k)]
    and ``ut`` the same with α and β swapped, U_l[β, (α, k)], the draws innermost.

    Per atom and l, U_l is contracted with the coefficients first, two small matrix products
    (G1[m2, (α, k)] = Σ_β c[β, (l+1) m2] U[α, β, k], G2[m1, (β, k)] = Σ_α c[α, l m1]
    U[α, β, k]), then with the sparse couplings (inner loops over the K draws, contiguous); the normalisation is differentiated inside the adjoint (∂|x_i|/∂c from
    the P^l matrices of the same coefficients), so a pull-back to the pairs gives ∂p_ik/∂d_p
    whole. Returns the dipoles (n_atoms, 3, K) and the adjoints (n_atoms, C, LM, N, 3, K)
    (∂p_ik[a]/∂c_i[γ, n, lm] at [i, γ, lm, n, a, k], SN = C·N channel-major: per centre and
    channel an (LM·N, 3K) matrix, the layout :func:`pull_back_tables_to_pairs` reads)."""
    n_atoms, n_lm, sn = coef_t.shape
    n_k = u.shape[-1] // sn
    n_l = cg_start.shape[0] - 1
    n_ps = int(np.sqrt(n_lm) + 0.5)
    dipoles = np.zeros((n_atoms, 3, n_k))
    adjoint = np.empty((n_atoms, sn // n_rad, n_lm, n_rad, 3, n_k))
    raw = np.zeros((n_lm, sn, 3, n_k))
    dnorm = np.zeros((n_lm, sn))
    ps = np.zeros((n_ps, sn, sn))
    d = np.zeros((3, n_k))
    for i in range(n_atoms):
        c = coef_t[i]
        z = center_species[i]
        w = _power_matrices(c, ps)
        raw[:] = 0.0
        d[:] = 0.0
        for l in range(n_l):
            o1 = l * l
            o2 = (l + 1) * (l + 1)
            g1 = np.dot(np.ascontiguousarray(c[o2:o2 + 2 * l + 3]), ut[z, l]).reshape(
                2 * l + 3, sn, n_k)
            g2 = np.dot(np.ascontiguousarray(c[o1:o1 + 2 * l + 1]), u[z, l]).reshape(
                2 * l + 1, sn, n_k)
            for q in range(cg_start[l], cg_start[l + 1]):
                a = cg_a[q]
                m1 = cg_m1[q]
                m2 = cg_m2[q]
                v = cg_val[q]
                da = d[a]
                for al in range(sn):
                    r1 = raw[o1 + m1, al, a]
                    r2 = raw[o2 + m2, al, a]
                    h1 = g1[m2, al]
                    h2 = g2[m1, al]
                    vc = v * c[o1 + m1, al]
                    for k in range(n_k):
                        r1[k] += v * h1[k]
                        r2[k] += v * h2[k]
                        da[k] += vc * h1[k]
        for a in range(3):
            for k in range(n_k):
                d[a, k] *= w
                dipoles[i, a, k] = d[a, k]
        _norm_gradient(c, ps, w, dnorm)
        for lm in range(n_lm):
            for al in range(sn):
                dn = dnorm[lm, al]
                for a in range(3):
                    out = adjoint[i, al // n_rad, lm, al % n_rad, a]
                    r = raw[lm, al, a]
                    da = d[a]
                    for k in range(n_k):
                        out[k] = w * (r[k] - da[k] * dn)
    return dipoles, adjoint


@numba.njit(cache=True, fastmath=REASSOCIATE)
def pull_back_tables_to_pairs(adjoints, centers, species, fr, dfr, y, dy, unit):
    """g[p, c, j] = Σ_{lm,n} adjoints[i_p, s_p, lm, n, j] ∂(fr[p,l,n] y[p,lm])/∂d_{p,c} for J
    right-hand sides, adjoints (n_atoms, S, LM, N, J). Per run of consecutive pairs with the
    same centre and neighbour species (pairs sorted by centre: one run per centre and
    species), the derivative table D[(p, c), (lm, n)] = dfr y û_c + fr ∂y/∂d_c (3·pairs,
    LM·N) is built once and multiplied with adjoints[i, s] (LM·N, J) as one matrix product
    → (P, 3, J). Correct for any order of the pairs (more, shorter runs)."""
    n_pairs, n_l, n_rad = fr.shape
    n_atoms, n_s, n_lm = adjoints.shape[0], adjoints.shape[1], adjoints.shape[2]
    n_j = adjoints.shape[4]
    flat = adjoints.reshape(n_atoms, n_s, n_lm * n_rad, n_j)
    g = np.empty((n_pairs, 3, n_j))
    start = 0
    while start < n_pairs:
        i = centers[start]
        s = species[start]
        stop = start + 1
        while stop < n_pairs and centers[stop] == i and species[stop] == s:
            stop += 1
        m = stop - start
        table = np.empty((3 * m, n_lm * n_rad))
        for q in range(m):
            p = start + q
            for c in range(3):
                uc = unit[p, c]
                row = table[3 * q + c]
                for l in range(n_l):
                    for lm in range(l * l, (l + 1) * (l + 1)):
                        yu = y[p, lm] * uc
                        dyc = dy[p, c, lm]
                        base = lm * n_rad
                        for n in range(n_rad):
                            row[base + n] = dfr[p, l, n] * yu + fr[p, l, n] * dyc
        g[start:stop] = np.dot(table, flat[i, s]).reshape(m, 3, n_j)
        start = stop
    return g
