"""Sampled predictive uncertainty of the kernel models: K posterior weight draws pushed through
the adjoint prediction together (the default route of ``predict(return_std=True)``).

Every learnt term is linear in its weights, so a weight deviation δw = w − w* changes the Born
charges by Φ δw, and with δw_k = σ L⁻ᵀ ε_k (ε_k ~ N(0, I), L the Cholesky factor of A_reg;
:mod:`bornml.models.posterior`) the deviations δZ_k = Φ δw_k are exact draws of the
posterior of Z about the mean prediction. The variance of each component is estimated about
the *known* mean (zero):

    bec_std² = (1/K) Σ_k δZ_k²        (unbiased; relative error of the std ≈ 1/sqrt(2K))

and ``uncertainty_score`` = RMS of ``bec_std`` over the frame's 9N components (its square is
an unbiased estimate of the exact score's square). The K deviations never form the design
Φ (9N, n): per term they go through the same adjoint pass as a prediction, with K right-hand
sides at once (the descriptor expanded once):

- charge term: Σ_k-batched kernel-weighted feature gradients v (K, N, D) → one power-spectrum
  vector-Jacobian product → one pull-back of K adjoints to the pair vectors (K, P, 3) → one
  Born-charge assembly with K trailing right-hand sides;
- dipole term: the λ=1 vector-feature adjoints of the K dipole weights (3K coefficient
  adjoints) pulled back to the pairs in one call.

Another learnt term, and the dipole term on its per-reference "kernel" route (ζ_p > 1, no
span basis), falls back to :func:`looped_deviations` (a copy of the term per draw: the
reference the batched routes are tested against). The draws are the same for every frame
(``seed``), so scores of different frames share their sampling noise.
"""

import copy

import numba
import numpy as np

from .. import keys
from ..descriptors.lambda_soap import _blocks, vector_features, vector_features_vjp
from ..descriptors.soap import _triangle_maps
from .bec_assembly import assemble_bec
from .dipole_term import scatter_pairs

DEFAULT_SAMPLES = 16  #: K, posterior weight draws per frame (see the module docstring)
DEFAULT_SEED = 0  #: seed of the draws ε_k
CHUNK_BYTES = 2 ** 28  #: memory bound of the per-chunk (K, N, D) temporaries (256 MiB)
ATOM_ROWS = 64  #: atoms per block of the per-atom feature matrices (ζ ≠ 1; cache-sized)


# -- draws -------------------------------------------------------------------------------------
def weight_deviations(posterior, n_samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED):
    """δw (n, K): posterior weight draws minus the fitted weights, σ L⁻ᵀ ε (design-column
    order, the coordinates of the posterior)."""
    import scipy.linalg

    if n_samples < 1:
        raise ValueError(f"n_samples must be ≥ 1, got {n_samples}")
    eps = np.random.default_rng(seed).standard_normal((len(posterior.factor), n_samples))
    draws = scipy.linalg.solve_triangular(posterior.factor, eps, lower=True, trans="T",
                                          check_finite=False)
    return np.sqrt(posterior.noise_variance) * draws


def _sample_chunks(n_samples, n_atoms, width):
    """Slices of the K draws whose (k, N, width) float temporaries fit in :data:`CHUNK_BYTES`."""
    step = max(1, min(n_samples, CHUNK_BYTES // max(1, 8 * n_atoms * width)))
    return [slice(a, min(a + step, n_samples)) for a in range(0, n_samples, step)]


# -- charge term -------------------------------------------------------------------------------
def transposed_coefficients(fe):
    """c (N, LM, C·n): the density coefficients with the (l, m) axis before the channels."""
    c = fe.coefficients
    return np.ascontiguousarray(c.reshape(c.shape[0], -1, c.shape[-1]).transpose(0, 2, 1))


def triangle_weights(cn, max_angular):
    """(D,) weight of each power-spectrum entry in its symmetric matrix form: 1 on the
    diagonal (α = β), 1/√2 off it (:func:`bornml.descriptors.soap.feature_to_matrices`)."""
    iu = np.triu_indices(cn)
    return np.tile(np.where(iu[0] == iu[1], 1.0, 1.0 / np.sqrt(2.0)), max_angular + 1)


def feature_matrices(u, cn, max_angular, n_rows):
    """Symmetric matrix form of feature vectors, K per row: u (D, rows·K) (row-major in
    (row, k)), already multiplied by :func:`triangle_weights` → V (rows, L+1, CN, CN·K) with
    ``u_{row,k} · x = Σ_l <V^l_{row,k}, P^l>_F`` (the layout of
    :func:`bornml.descriptors.soap.feature_to_matrices` with the right-hand sides last)."""
    position, _ = _triangle_maps(cn)
    width = u.shape[1]
    mats = np.take(u.reshape(max_angular + 1, -1, width), position, axis=1)
    if n_rows == 1:
        return mats.reshape(1, max_angular + 1, cn, -1)
    mats = mats.reshape(max_angular + 1, cn * cn, n_rows, width // n_rows)
    return np.ascontiguousarray(mats.transpose(2, 0, 1, 3)).reshape(
        n_rows, max_angular + 1, cn, -1)


def apply_feature_matrices(ct, mats, max_angular):
    """∂(u_k · x_i)/∂c_i for rows sharing (B = 1) or owning (B = n) their matrices:
    ct (B, n/B, LM, CN) transposed coefficients, mats (B, L+1, CN, CN·K) → (n, LM, CN, K)."""
    b, rows, lm, cn = ct.shape
    n_samples = mats.shape[-1] // cn
    out = np.empty((b, rows, lm, cn * n_samples))
    start = 0
    for l in range(max_angular + 1):
        sl = slice(start, start + 2 * l + 1)
        block = ct[:, :, sl].reshape(b, -1, cn)
        out[:, :, sl] = (np.matmul(block, mats[:, l]) * (2.0 / np.sqrt(2 * l + 1))).reshape(
            b, rows, 2 * l + 1, -1)
        start += 2 * l + 1
    return out.reshape(b * rows, lm, cn, n_samples)


def species_adjoints(ct, xhat, norms, ref, weights, zeta, max_angular):
    """Coefficient adjoints and charges of the atoms of one species for K weight vectors.

    ``ct`` (n, LM, CN) their transposed coefficients, ``xhat`` (n, D), ``norms`` (n,),
    ``ref`` (M, D), ``weights`` (M, K). The feature adjoint of draw k is
    v_ik = ζ/|x_i| (Σ_m w_mk k_im^(ζ−1) x̂_m − q_ik x̂_i) (:mod:`bornml.models.kernel`); the
    part along x̂_i is left out here (it is a multiple of the pulled-back norm gradient, see
    :func:`charge_deviations`). Returns (a (n, LM, CN, K), q (n, K) e)."""
    n, cn = len(xhat), ct.shape[-1]
    n_samples = weights.shape[1]
    ref_t = ref.T * triangle_weights(cn, max_angular)[:, None]  # (D, M), matrix-form weights
    if zeta == 1:  # one feature vector per draw, shared by every atom of the species
        mats = feature_matrices(ref_t @ weights, cn, max_angular, 1)
        adj = apply_feature_matrices(ct[None], mats, max_angular)
        return adj / norms[:, None, None, None], xhat @ (ref.T @ weights)
    k = xhat @ ref.T  # (n, M)
    kz1 = k ** (zeta - 1)
    q = (kz1 * k) @ weights
    adj = np.empty((n,) + ct.shape[1:] + (n_samples,))
    for a in range(0, n, ATOM_ROWS):  # one GEMM per block of atoms, temporaries bounded
        rows = slice(a, min(a + ATOM_ROWS, n))
        n_rows = rows.stop - rows.start
        scaled = kz1[rows].T[:, :, None] * weights[:, None, :]  # (M, rows, K)
        u = ref_t @ scaled.reshape(len(ref), -1)  # Σ_m w_mk k_im^(ζ−1) x̂_m: (D, rows·K)
        adj[rows] = apply_feature_matrices(
            ct[rows, None], feature_matrices(u, cn, max_angular, n_rows), max_angular)
    return adj * (zeta / norms)[:, None, None, None], q


def charge_deviations(term, ctx, frame, dw):
    """Born-charge and charge deviations of a :class:`~bornml.models.charge_term.ChargeTerm`
    for weight deviations ``dw`` (M, K): (δZ (N, 3, 3, K) e, δq' (N, K) e).

    g_p = ∂q_{i_p}/∂d_p of draw k is the pull-back of the coefficient adjoints of
    :func:`species_adjoints` minus ζ q_{i_p k}/|x_{i_p}| · x̂_{i_p}·∂x_{i_p}/∂d_p (the norm
    gradient the prediction already has)."""
    fe, xhat, _ = ctx
    n_atoms, n_samples = len(frame), dw.shape[1]
    bec = np.empty((n_atoms, 3, 3, n_samples))
    charges = np.empty((n_atoms, n_samples))
    ct = transposed_coefficients(fe)
    for chunk in _sample_chunks(n_samples, n_atoms, max(xhat.shape[1], ct[0].size)):
        bec[..., chunk], charges[:, chunk] = _charge_chunk(term, ctx, ct, frame, dw[:, chunk])
    return bec, charges


def _charge_chunk(term, ctx, ct, frame, dw):
    fe, xhat, norms = ctx
    refs = term.refs
    n_samples = dw.shape[1]
    adj = np.zeros(ct.shape + (n_samples,))
    q = np.zeros((len(frame), n_samples))
    start = 0
    for z in refs.species:
        ref = refs.references[z]
        weights = dw[start:start + len(ref)]
        start += len(ref)
        atoms = np.flatnonzero(frame.numbers == z)
        if len(atoms):
            adj[atoms], q[atoms] = species_adjoints(ct[atoms], xhat[atoms], norms[atoms], ref,
                                                    weights, term.zeta,
                                                    refs.settings.max_angular)
    grads = pull_back(fe, adj)  # (P, 3, K)
    centers = fe.pairs.centers
    grads -= (term.zeta * q[centers] / norms[centers, None])[:, None, :] * \
        fe.norm_pair_gradients(xhat)[:, :, None]
    pairs = fe.pairs
    bec, neutral, _ = assemble_bec(q, grads, centers, pairs.neighbors, pairs.vectors,
                                   fe.positions, fe.periodic_directions)
    return bec, neutral


def pull_back(fe, adj):
    """:meth:`FrameExpansion.pair_vjp <bornml.descriptors.soap.FrameExpansion.pair_vjp>` of K
    coefficient adjoints adj (N, LM, C·n, K) (channels, then radial index) → (P, 3, K)."""
    n_atoms, lm, _, n_samples = adj.shape
    n_rad = fe.settings.max_radial + 1
    adj = adj.reshape(n_atoms, lm, -1, n_rad, n_samples)
    if fe.mixing is not None:  # channel adjoints back to elements: Σ_γ U[γ, s] adj[γ]
        adj = np.einsum("cs,ilcnk->ilsnk", fe.mixing, adj)
    return _pull_back_kernel(np.ascontiguousarray(adj), fe.pairs.centers,
                             fe.species_index[fe.pairs.neighbors], fe._fr, fe._dfr, fe._y,
                             fe._dy, fe._unit)


@numba.njit(cache=True)
def _pull_back_kernel(adj, centers, species, fr, dfr, y, dy, unit):
    """g[p, :, k] = Σ_{n,lm} adj[i_p, lm, s_p, n, k] ∂(fr[p,l,n] y[p,lm])/∂d_p, the draws k
    innermost (contiguous, vectorised)."""
    n_pairs, n_l, n_rad = fr.shape
    n_k = adj.shape[-1]
    g = np.zeros((n_pairs, 3, n_k))
    a = np.empty(n_k)
    b = np.empty(n_k)
    radial = np.empty(n_k)
    for p in range(n_pairs):
        i = centers[p]
        s = species[p]
        radial[:] = 0.0
        for l in range(n_l):
            for lm in range(l * l, (l + 1) * (l + 1)):
                a[:] = 0.0
                b[:] = 0.0
                for n in range(n_rad):
                    f = fr[p, l, n]
                    df = dfr[p, l, n]
                    for k in range(n_k):
                        u = adj[i, lm, s, n, k]
                        a[k] += u * f
                        b[k] += u * df
                ylm = y[p, lm]
                dx = dy[p, 0, lm]
                dyy = dy[p, 1, lm]
                dz = dy[p, 2, lm]
                for k in range(n_k):
                    radial[k] += b[k] * ylm
                    g[p, 0, k] += a[k] * dx
                    g[p, 1, k] += a[k] * dyy
                    g[p, 2, k] += a[k] * dz
        for c in range(3):
            for k in range(n_k):
                g[p, c, k] += radial[k] * unit[p, c]
    return g


# -- dipole term -------------------------------------------------------------------------------
def dipole_deviations(term, ctx, frame, dw):
    """Born-charge deviations of a :class:`~bornml.models.dipole_term.DipoleTerm` for weight
    deviations ``dw`` (Σ_z r_z, K) in its span coordinates: (δZ (N, 3, 3, K) e, None)."""
    fe, xhat, norms = ctx
    n_atoms, n_samples = len(frame), dw.shape[1]
    L = term.refs.settings.max_angular
    blocks = _blocks(fe.coefficients, L)
    xvec = vector_features(fe.coefficients, L, blocks) / norms[:, None, None]  # (N, 3, F)
    self_term = fe.norm_pair_gradients(xhat)  # (P, 3)
    u = _dipole_weights(term, dw)[fe.species_index]  # (N, F, K)
    bec = np.empty((n_atoms, 3, 3, n_samples))
    for chunk in _sample_chunks(n_samples, 3 * n_atoms, fe.coefficients[0].size):
        bec[..., chunk] = _dipole_chunk(fe, norms, xvec, self_term, blocks, L, u[..., chunk])
    return bec, None


def _dipole_weights(term, dw):
    """u (S, F, K): each species' feature-space dipole weights Q_z δy_z."""
    out, start = [], 0
    for z in term.refs.species:
        basis = term.bases[z]
        out.append(basis @ dw[start:start + basis.shape[1]])
        start += basis.shape[1]
    return np.stack(out)


def _dipole_chunk(fe, norms, xvec, self_term, blocks, L, u):
    n_samples = u.shape[-1]
    dipoles = np.einsum("iaf,ifk->kia", xvec, u)  # (K, N, 3)
    adj = np.stack([vector_features_vjp(fe.coefficients, u[..., k], L, blocks)
                    for k in range(n_samples)])  # (K, 3, N, C, n, LM)
    adj /= norms[None, None, :, None, None, None]
    pulled = fe.pair_vjp_many(adj.reshape((3 * n_samples,) + adj.shape[2:]))  # (3K, P, 3)
    pulled = pulled.reshape(n_samples, 3, -1, 3)
    centers = fe.pairs.centers
    grads = pulled.transpose(0, 2, 1, 3) - \
        (dipoles[:, centers] / norms[None, centers, None])[..., None] * self_term[None, :, None]
    return scatter_pairs(grads.transpose(1, 2, 3, 0), centers, fe.pairs.neighbors,
                         len(norms))  # (N, 3, 3, K)


# -- any term: the reference --------------------------------------------------------------------
def looped_deviations(term, ctx, frame, dw):
    """(δZ (N, 3, 3, K), δq' (N, K) or None) by predicting with a copy of ``term`` per draw,
    its weights set to δw_k (the terms are linear in their weights, so this is Φ δw_k): the
    reference route (one adjoint pass per draw) the batched routes are tested against, and
    the fallback for terms without one."""
    twin = copy.copy(term)
    bec, charges = [], []
    for k in range(dw.shape[1]):
        twin.set_weights(dw[:, k])
        part = twin.predict(ctx, frame)
        bec.append(part[keys.BEC])
        charges.append(part.get(keys.CHARGES) if term.name == "charges" else None)
    charges = None if charges[0] is None else np.stack(charges, axis=-1)
    return np.stack(bec, axis=-1), charges


BATCHED = {"charges": charge_deviations, "dipoles": dipole_deviations}


def deviations(model, ctx, frame, dw, batched=True):
    """Σ over the learnt terms of (δZ (N, 3, 3, K), δq' (N, K)) for model weight deviations
    ``dw`` (n, K) in design-column order; ``batched=False``: :func:`looped_deviations` for
    every term."""
    n_atoms, n_samples = len(frame), dw.shape[1]
    bec = np.zeros((n_atoms, 3, 3, n_samples))
    charges = np.zeros((n_atoms, n_samples))
    start = 0
    for term in model._learnt():
        n = term.n_columns()
        route = BATCHED.get(term.name, looped_deviations) if batched else looped_deviations
        if getattr(term, "route_", None) == "kernel":  # ζ_p > 1: weights per reference
            route = looped_deviations
        z, q = route(term, ctx, frame, dw[start:start + n])
        start += n
        bec += z
        if q is not None:
            charges += q
    return bec, charges


def sampled_frame_uncertainty(model, ctx, frame, dw):
    """{bec_std (N, 3, 3), charges_std (N,), uncertainty_score} (e) of one frame from the
    weight deviations ``dw`` (n, K) (:func:`weight_deviations`)."""
    bec, charges = deviations(model, ctx, frame, dw)
    bec_var = np.mean(bec ** 2, axis=-1)
    return {keys.BEC_STD: np.sqrt(bec_var),
            keys.CHARGES_STD: np.sqrt(np.mean(charges ** 2, axis=-1)),
            keys.UNCERTAINTY_SCORE: float(np.sqrt(bec_var.mean()))}
