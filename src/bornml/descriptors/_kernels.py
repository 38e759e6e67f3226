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
