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

- charge term: per species the K kernel-weighted feature vectors (ζ = 1: one per draw for all
  atoms of the species; else per atom, one GEMM), their symmetric-matrix form applied to the
  density coefficients as GEMMs (the power-spectrum vector-Jacobian product), one compiled
  pull-back of the K coefficient adjoints to the pair vectors with the draws innermost, the
  part along x̂_i from the norm gradient the prediction already has, and one Born-charge
  assembly with K trailing right-hand sides;
- dipole term: per atom, the 3K coefficient adjoints of the K dipoles in one compiled pass
  (:func:`~bornml.descriptors._kernels.vector_dipole_adjoints_many`: the draws' weights
  contracted with the coefficients first, then with the sparse couplings; the
  normalisation differentiated inside, so no λ=1 features and no norm gradients are
  formed), pulled back per centre and neighbour species as one matrix product: the pairs'
  derivative tables (3·pairs, LM·N), built once, times the (LM·N, 3K) adjoints
  (:func:`~bornml.descriptors._kernels.pull_back_tables_to_pairs`).

Atoms are processed in blocks (:data:`BLOCK_BYTES`) and the draws in chunks
(:data:`CHUNK_BYTES`), so memory stays bounded for any frame and K.

Another learnt term, and the dipole term on its per-reference "kernel" route (ζ_p > 1, no
span basis), falls back to :func:`looped_deviations` (a copy of the term per draw: the
reference the batched routes are tested against). The draws are the same for every frame
(``seed``), so scores of different frames share their sampling noise.
"""

import copy

import numpy as np

from .. import keys
from ..descriptors._kernels import (
    pull_back_tables_to_pairs,
    vector_dipole_adjoints_many,
)
from ..descriptors.lambda_soap import sparse_couplings
from ..descriptors.soap import _triangle_maps
from .bec_assembly import assemble_bec
from .dipole_term import scatter_pairs

DEFAULT_SAMPLES = 16  #: K, posterior weight draws per frame (see the module docstring)
DEFAULT_SEED = 0  #: seed of the draws ε_k
#: bound of the whole-frame arrays of one chunk of draws, e.g. pair gradients (P, 3, 3, k)
CHUNK_BYTES = 2 ** 26
#: bound of the per-atom temporaries of one block of atoms (coefficient adjoints of its draws):
#: small arrays are reused from the heap, large fresh ones cost page faults at every frame
BLOCK_BYTES = 2 ** 22


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


def _sample_chunks(n_samples, per_draw):
    """Slices of the K draws whose whole-frame arrays, ``per_draw`` floats per draw, fit in
    :data:`CHUNK_BYTES`."""
    step = max(1, min(n_samples, CHUNK_BYTES // max(1, 8 * per_draw)))
    return [slice(a, min(a + step, n_samples)) for a in range(0, n_samples, step)]


def _atom_blocks(fe, per_atom):
    """(atoms, pairs) slices of consecutive blocks of atoms whose temporaries, ``per_atom``
    floats per atom, fit in :data:`BLOCK_BYTES`, and of the pairs centred on them (the
    neighbour list is sorted by centre)."""
    n_atoms, centers = fe.n_atoms, fe.pairs.centers
    rows = max(1, BLOCK_BYTES // max(1, 8 * per_atom))
    if np.any(np.diff(centers) < 0):  # not sorted by centre: one block
        rows = n_atoms
    starts = np.arange(0, n_atoms, rows)
    stops = np.minimum(starts + rows, n_atoms)
    first = np.searchsorted(centers, starts)
    last = np.searchsorted(centers, stops)
    return [(slice(int(a), int(b)), slice(int(p), int(q)))
            for a, b, p, q in zip(starts, stops, first, last)]


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


def species_operators(refs, dw, zeta, cn, max_angular):
    """Per species of ``refs``: (references (M, D), their transpose weighted for the matrix
    form (D, M), weight deviations (M, K), and for ζ = 1 the contracted Σ_m w_mk x̂_m (D, K)
    with its matrix form (1, L+1, CN, CN·K), shared by every atom of the species)."""
    weights = triangle_weights(cn, max_angular)[:, None]
    out, start = [], 0
    for z in refs.species:
        ref = refs.references[z]
        w = dw[start:start + len(ref)]
        start += len(ref)
        ref_t = ref.T * weights
        shared = None
        if zeta == 1:
            shared = (ref.T @ w, feature_matrices(ref_t @ w, cn, max_angular, 1))
        out.append((ref, ref_t, w, shared))
    return out


def species_adjoints(ct, xhat, norms, operator, zeta, max_angular):
    """Coefficient adjoints and charges of some atoms of one species for K weight vectors.

    ``ct`` (n, LM, CN) their transposed coefficients, ``xhat`` (n, D), ``norms`` (n,),
    ``operator``: the species' entry of :func:`species_operators`. The feature adjoint of
    draw k is v_ik = ζ/|x_i| (Σ_m w_mk k_im^(ζ−1) x̂_m − q_ik x̂_i)
    (:mod:`bornml.models.kernel`); the part along x̂_i is left out here (it is a multiple
    of the pulled-back norm gradient, see :func:`charge_deviations`). Returns
    (a (n, LM, CN, K), q (n, K) e)."""
    ref, ref_t, weights, shared = operator
    cn = ct.shape[-1]
    if shared is not None:  # ζ = 1: one feature vector per draw for the whole species
        contracted, mats = shared
        adj = apply_feature_matrices(ct[None], mats, max_angular)
        return adj / norms[:, None, None, None], xhat @ contracted
    k = xhat @ ref.T  # (n, M)
    kz1 = k ** (zeta - 1)
    q = (kz1 * k) @ weights
    scaled = kz1.T[:, :, None] * weights[:, None, :]  # (M, n, K)
    u = ref_t @ scaled.reshape(len(ref), -1)  # Σ_m w_mk k_im^(ζ−1) x̂_m: (D, n·K)
    adj = apply_feature_matrices(ct[:, None], feature_matrices(u, cn, max_angular, len(ct)),
                                 max_angular)
    return adj * (zeta / norms)[:, None, None, None], q


def charge_operators(term, dw):
    """:func:`species_operators` of a charge term for ``dw`` (M, K): frame independent."""
    refs = term.refs
    cn = refs.n_channels * (refs.settings.max_radial + 1)
    return species_operators(refs, dw, term.zeta, cn, refs.settings.max_angular)


def charge_deviations(term, ctx, frame, dw, operators=None):
    """Born-charge and charge deviations of a :class:`~bornml.models.charge_term.ChargeTerm`
    for weight deviations ``dw`` (M, K): (δZ (N, 3, 3, K) e, δq' (N, K) e); ``operators``:
    :func:`charge_operators` of ``dw`` when the caller keeps them across frames.

    g_p = ∂q_{i_p}/∂d_p of draw k is the pull-back of the coefficient adjoints of
    :func:`species_adjoints` minus ζ q_{i_p k}/|x_{i_p}| · x̂_{i_p}·∂x_{i_p}/∂d_p (the norm
    gradient the prediction already has)."""
    fe = ctx.fe
    n_atoms, n_samples = len(frame), dw.shape[1]
    bec = np.empty((n_atoms, 3, 3, n_samples))
    charges = np.empty((n_atoms, n_samples))
    ct = transposed_coefficients(fe)
    chunks = _sample_chunks(n_samples, 3 * len(fe.pairs.centers) + 10 * n_atoms)
    for chunk in chunks:
        ops = operators if operators is not None and len(chunks) == 1 else \
            charge_operators(term, dw[:, chunk])
        bec[..., chunk], charges[:, chunk] = _charge_chunk(term, ctx, ct, ops)
    return bec, charges


def _charge_chunk(term, ctx, ct, operators):
    fe, xhat, norms = ctx
    max_angular = term.refs.settings.max_angular
    n_samples = operators[0][2].shape[1]
    q = np.empty((fe.n_atoms, n_samples))
    grads = np.empty((len(fe.pairs.centers), 3, n_samples))
    for atoms, pairs in _atom_blocks(fe, ct[0].size * n_samples * 2):
        adj = np.empty((atoms.stop - atoms.start,) + ct.shape[1:] + (n_samples,))
        kinds = fe.species_index[atoms]
        for kind, operator in enumerate(operators):
            local = np.flatnonzero(kinds == kind)
            if len(local):
                rows = atoms.start + local
                adj[local], q[rows] = species_adjoints(ct[rows], xhat[rows], norms[rows],
                                                       operator, term.zeta, max_angular)
        grads[pairs] = pull_back(fe, adj, atoms, pairs)
    centers = fe.pairs.centers
    grads -= (term.zeta * q[centers] / norms[centers, None])[:, None, :] * \
        fe.norm_pair_gradients(xhat)[:, :, None]
    pairs = fe.pairs
    bec, neutral, _ = assemble_bec(q, grads, centers, pairs.neighbors, pairs.vectors,
                                   fe.positions, fe.periodic_directions)
    return bec, neutral


def pull_back(fe, adj, atoms, pairs):
    """:meth:`FrameExpansion.pair_vjp <bornml.descriptors.soap.FrameExpansion.pair_vjp>` of J
    coefficient adjoints adj (n, LM, C·n, J) (channels, then radial index) of the ``atoms``
    (a slice) → g (P_b, 3, J) of the ``pairs`` (a slice) centred on them."""
    n_atoms, lm, _, n_rhs = adj.shape
    adj = adj.reshape(n_atoms, lm, -1, fe.settings.max_radial + 1, n_rhs)
    if fe.mixing is not None:  # channel adjoints back to elements: Σ_γ U[γ, s] adj[γ]
        adj = np.einsum("cs,lcnj->lsnj", fe.mixing, adj.reshape((-1,) + adj.shape[2:]))
        adj = adj.reshape((n_atoms, lm) + adj.shape[1:])
    adj = np.ascontiguousarray(adj.transpose(0, 2, 1, 3, 4))  # (n, S, LM, N, J)
    return pull_back_tables_to_pairs(adj, fe.pairs.centers[pairs] - atoms.start,
                                     fe.species_index[fe.pairs.neighbors[pairs]], fe._fr[pairs],
                                     fe._dfr[pairs], fe._y[pairs], fe._dy[pairs],
                                     fe._unit[pairs])


# -- dipole term -------------------------------------------------------------------------------
def dipole_deviations(term, ctx, frame, dw, operators=None):
    """Born-charge deviations of a :class:`~bornml.models.dipole_term.DipoleTerm` for weight
    deviations ``dw`` (Σ_z r_z, K) in its span coordinates: (δZ (N, 3, 3, K) e, None);
    ``operators``: :func:`dipole_operators` of ``dw`` when the caller keeps them."""
    fe = ctx.fe
    n_atoms, n_samples = len(frame), dw.shape[1]
    max_angular = term.refs.settings.max_angular
    u = dipole_operators(term, dw) if operators is None else operators  # (S, F, K)
    coef_t = transposed_coefficients(fe)  # (N, LM, C·n)
    bec = np.empty((n_atoms, 3, 3, n_samples))
    for chunk in _sample_chunks(n_samples, 9 * len(fe.pairs.centers) + 12 * n_atoms):
        bec[..., chunk] = _dipole_chunk(fe, coef_t, max_angular, u[..., chunk])
    return bec, None


def dipole_operators(term, dw):
    """u (S, F, K): each species' feature-space dipole weights Q_z δy_z."""
    out, start = [], 0
    for z in term.refs.species:
        basis = term.bases[z]
        out.append(basis @ dw[start:start + basis.shape[1]])
        start += basis.shape[1]
    return np.stack(out)


def _dipole_chunk(fe, coef_t, max_angular, u):
    """δZ (N, 3, 3, k) of one chunk of draws u (S, F, k): per block of atoms the compiled
    dipole adjoints of all draws (normalisation included, no λ=1 features formed), pulled
    back to the block's pairs, per centre and neighbour species one matrix product with
    the 3k right-hand sides."""
    n_atoms, n_samples = fe.n_atoms, u.shape[-1]
    lm, cn = coef_t.shape[1:]
    ublocks = u.reshape(len(u), max_angular, cn, cn, n_samples)  # U_l[α, β, k]
    uflat = np.ascontiguousarray(ublocks).reshape(len(u), max_angular, cn, -1)
    uswap = np.ascontiguousarray(ublocks.transpose(0, 1, 3, 2, 4)).reshape(uflat.shape)
    couplings = sparse_couplings(max_angular)
    species = np.asarray(fe.species_index, dtype=np.int64)
    pulled = np.empty((len(fe.pairs.centers), 3, 3 * n_samples))
    n_rad = fe.settings.max_radial + 1
    for atoms, pairs in _atom_blocks(fe, 3 * lm * cn * n_samples * 2):
        _, adj = vector_dipole_adjoints_many(coef_t[atoms], uflat, uswap, species[atoms],
                                             *couplings, n_rad)  # (n, C, LM, n_rad, 3, k)
        if fe.mixing is not None:  # channel adjoints back to elements: Σ_γ U[γ, s] adj[γ]
            adj = np.einsum("cs,icx->isx", fe.mixing, adj.reshape(adj.shape[:2] + (-1,)))
        adj = np.ascontiguousarray(adj).reshape(
            (atoms.stop - atoms.start, -1, lm, n_rad, 3 * n_samples))
        pulled[pairs] = pull_back_tables_to_pairs(
            adj, fe.pairs.centers[pairs] - atoms.start,
            fe.species_index[fe.pairs.neighbors[pairs]], fe._fr[pairs], fe._dfr[pairs],
            fe._y[pairs], fe._dy[pairs], fe._unit[pairs])
    # [p, b, a, k] = ∂p_{i_p a k}/∂d_{p b}: scattered to the atoms, then (a, b) swapped
    pulled = pulled.reshape(-1, 3, 3, n_samples)
    bec = scatter_pairs(pulled, fe.pairs.centers, fe.pairs.neighbors, n_atoms)
    return bec.transpose(0, 2, 1, 3)  # (N, 3, 3, K)


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


#: term name → (batched route, its frame-independent operators)
BATCHED = {"charges": (charge_deviations, charge_operators),
           "dipoles": (dipole_deviations, dipole_operators)}


def _has_batched_route(term):
    """A batched route exists for the term (not for a dipole term on the per-reference
    "kernel" route, ζ_p > 1: its weights have no span basis to batch in)."""
    return term.name in BATCHED and getattr(term, "route_", None) != "kernel"


def _term_deviations(model, dw):
    """(term, its rows of ``dw``) for every learnt term, in design-column order."""
    out, start = [], 0
    for term in model._learnt():
        n = term.n_columns()
        out.append((term, dw[start:start + n]))
        start += n
    return out


def prepare(model, dw):
    """Frame-independent operators of every learnt term for ``dw`` (n, K) (None for a term
    without a batched route): computed once, used for every frame."""
    return [BATCHED[t.name][1](t, d) if _has_batched_route(t) else None
            for t, d in _term_deviations(model, dw)]


def deviations(model, ctx, frame, dw, batched=True, prepared=None):
    """Σ over the learnt terms of (δZ (N, 3, 3, K), δq' (N, K)) for model weight deviations
    ``dw`` (n, K) in design-column order; ``prepared``: :func:`prepare` of ``dw``;
    ``batched=False``: :func:`looped_deviations` for every term."""
    n_atoms, n_samples = len(frame), dw.shape[1]
    bec = np.zeros((n_atoms, 3, 3, n_samples))
    charges = np.zeros((n_atoms, n_samples))
    parts = _term_deviations(model, dw)
    for k, (term, rows) in enumerate(parts):
        if batched and _has_batched_route(term):
            ops = None if prepared is None else prepared[k]
            z, q = BATCHED[term.name][0](term, ctx, frame, rows, ops)
        else:
            z, q = looped_deviations(term, ctx, frame, rows)
        bec += z
        if q is not None:
            charges += q
    return bec, charges


def sampled_frame_uncertainty(model, ctx, frame, dw, prepared=None):
    """{bec_std (N, 3, 3), charges_std (N,), uncertainty_score} (e) of one frame from the
    weight deviations ``dw`` (n, K) (:func:`weight_deviations`; ``prepared``: their
    :func:`prepare`)."""
    bec, charges = deviations(model, ctx, frame, dw, prepared=prepared)
    bec_var = np.mean(bec ** 2, axis=-1)
    return {keys.BEC_STD: np.sqrt(bec_var),
            keys.CHARGES_STD: np.sqrt(np.mean(charges ** 2, axis=-1)),
            keys.UNCERTAINTY_SCORE: float(np.sqrt(bec_var.mean()))}
