"""The dipole term of a kernel model: atomic dipoles from a λ=1 (vector) kernel.

    p_i = Σ_{k ∈ refs(s_i)} K¹(i, k) w_k,   K¹(i, k) = X̂_i X̂_kᵀ·(x̂_i·x̂_k)^(ζ_p−1) (3×3),
    w_k ∈ R³

**ζ_p = 1 (linear, the default).**
with the λ-SOAP features X̂_i = X_i/|x_i| (3, F) of :mod:`bornml.descriptors.lambda_soap`, so
``p_i = X̂_i u_z`` with u_z = Σ_k X̂_kᵀ w_k (F,). With the kernel prior ω_p·wᵀK¹_MM w = ω_p|u|²
the fit is ridge regression for u_z in the span of the reference features: u_z = Q_z y_z with
Q_z (F, r_z) an orthonormal basis of span{X̂_k[a]}, r_z ≤ min(F, 3·M_z). Columns: Σ_z r_z —
memory O(M²) whatever the number of species. The design is either accumulated in feature
space (S·F columns) and projected once, or projected frame by frame onto Q_z; whichever has
fewer columns is used ("features" / "references" route; the same equations, tested).
Regulariser ω_p·s_p·|y|², s_p = tr(Φ_yᵀΦ_y)/Σ r_z.

**ζ_p > 1 (the λ-SOAP × scalar kernel of SA-GPR; route "kernel").** With t_ik = x̂_i·x̂_k
(normalised scalar power spectra, :mod:`bornml.models.reference_set`), s_ik = t_ik^(ζ_p−1) and
v_k = X̂_kᵀ w_k (F,):

    p_i = X̂_i u_i,   u_i = Σ_k s_ik v_k   (a per-atom F-vector)

The weights are the w_k themselves: 3·M_z columns per species z, column (k, c) the dipoles of
w_k = e_c. Regulariser ω_p·s_p·wᵀK¹_MM w with K¹_MM[(k,c),(l,d)] = (X̂_k[c]·X̂_l[d])·s_kl
(the Gaussian-process prior), s_p = tr(Φ_pᵀΦ_p)/(3M). The route is also available at ζ_p = 1
(then it is the span route in other coordinates, tested), but the span route is the default
there: Σ r_z ≤ 3M columns and no per-reference work.

Derivative of p_i with respect to a pair vector d_p centred on i (x_i the scalar power
spectrum, X_i = |x_i| X̂_i, ∂|x_i|/∂d_p = x̂_i·∂x_i/∂d_p):

    ∂p_ia/∂d_p = (∂X_i[a]/∂d_p)·u_i/|x_i| − p_ia x̂_i·∂x_i/∂d_p/|x_i| + h_ia·∂x_i/∂d_p,
    h_ia = (1 − x̂_i x̂_iᵀ) g_ia/|x_i|,   g_ia = (ζ_p−1) Σ_k t_ik^(ζ_p−2) (X̂_i v_k)_a x̂_k  (D,)

Prediction pulls u_i back through the λ=1 features and h_ia through the power spectrum (one
adjoint pass, three components). The design takes the pair Jacobians ∂X_i/∂d_p (9 × F per
pair, :func:`~bornml.descriptors.lambda_soap.pair_jacobian`) of blocks of
:data:`PAIR_BLOCK` pairs and multiplies them by the 3M reference rows X̂_k[c] at once (one
matrix product, 2·9·F·3M flops per pair: ≈ 3e11 for a 192-atom water frame, cutoff 4 Å,
1000 references per species, F = 1536); ∂t_ik/∂d_p comes from
:func:`~bornml.models.scalar_kernel.reference_pair_gradients` (ζ = 1).

Z_j ⊃ Σ_i ∂p_i/∂r_j: every neighbour-image pair adds ∂p_i/∂d_p to its neighbour and subtracts
it from its centre, so the term is local, single valued in a crystal and obeys the acoustic sum
rule exactly.
"""

import numpy as np
import scipy.linalg

from .. import keys
from ..descriptors._kernels import scatter_kernel_dipole_pairs
from ..descriptors.lambda_soap import (
    _blocks,
    _padded_blocks,
    atom_jacobian,
    dipoles_and_adjoints,
    n_vector_features,
    pair_jacobian,
    pair_vjp_vectors,
    vector_features,
    vector_features_vjp,
)
from ..descriptors.soap import power_spectrum_vjp
from ..memory import FEWER_REFERENCES, FLOAT
from .bec_assembly import _pair_to_atom
from .scalar_kernel import reference_pair_gradients

BASIS_TOLERANCE = 1e-8  # singular values below this × the largest span no direction
#: "features" / "references": the span routes of ζ_p = 1; "kernel": per-reference weights
#: (the only route for ζ_p > 1); "auto": "kernel" for ζ_p > 1, else the smaller span route
ROUTES = ("auto", "features", "references", "kernel")
#: pairs per block of the "kernel" design: the (pairs·9, F) Jacobian times the (F, 3M)
#: reference features is one matrix product; its temporaries are ≈ 4·pairs·9·3M floats
PAIR_BLOCK = 256


def scatter_pairs(values, centers, neighbors, n_atoms):
    """Σ_{p: j_p = j} values_p − Σ_{p: i_p = j} values_p for every atom j: (n_atoms, ...)."""
    flat = values.reshape(len(values), -1)
    out = _pair_to_atom(neighbors, n_atoms) @ flat - _pair_to_atom(centers, n_atoms) @ flat
    return out.reshape((n_atoms,) + values.shape[1:])


def checked_zeta(zeta):
    """ζ_p as an int; ValueError unless it is an integer ≥ 1."""
    if isinstance(zeta, bool) or int(zeta) != zeta or zeta < 1:
        raise ValueError(f"dipole_zeta must be an integer ≥ 1, got {zeta!r}")
    return int(zeta)


class DipoleTerm:
    """Atomic dipoles from the λ=1 kernel (see module docstring)."""

    name = "dipoles"
    learnt = True

    def __init__(self, route="auto", zeta=1):
        if route not in ROUTES:
            raise ValueError(f"dipole route must be one of {ROUTES}")
        self.zeta = checked_zeta(zeta)
        if self.zeta > 1 and route not in ("auto", "kernel"):
            raise ValueError(f"dipole_zeta {self.zeta} > 1 needs the 'kernel' route, not "
                             f"{route!r}")
        self.route = route
        # ζ_p = 1 span routes: u_z (F,) per species; "kernel": w_z (M_z, 3) per species
        self.weights = None
        self._contracted = None  # "kernel": v_k = X̂_kᵀ w_k stacked (M_z, F) per species
        self._regulariser = None

    @property
    def n_features(self):
        """F = L·(C·N)² λ=1 features per Cartesian component."""
        return n_vector_features(self.refs.n_channels, self.refs.settings.max_radial,
                                 self.refs.settings.max_angular)

    def _vector_features(self, ctx):
        return vector_features(ctx.fe.coefficients, self.refs.settings.max_angular) / \
            ctx.norms[:, None, None]

    # -- preparation ----------------------------------------------------------------------
    def prepare(self, refs, frames, check_memory):
        """Orthonormal bases of the references' λ=1 feature spans, and the route; for the
        "kernel" route the reference features X̂_k themselves."""
        self.refs = refs
        self.check_memory = check_memory
        F = self.n_features
        m_total = refs.n_references()
        check_memory(FLOAT * 3 * m_total * F * 2,
                     f"λ=1 features of the {m_total} references (3 × {F} each)",
                     FEWER_REFERENCES)
        feats = {z: np.zeros((len(src), 3, F)) for z, src in refs.sources.items()}
        needed = sorted({int(f) for src in refs.sources.values() for f in src[:, 0]})
        for index in needed:
            xvec = self._vector_features(refs.expand(frames[index], index))
            for z, src in refs.sources.items():
                rows = np.flatnonzero(src[:, 0] == index)
                feats[z][rows] = xvec[src[rows, 1]]
        self._regulariser = None
        if self.zeta > 1 or self.route == "kernel":
            largest = 3 * max(len(f) for f in feats.values())
            check_memory(FLOAT * (PAIR_BLOCK * 9 * (F + 2 * largest) + largest * F
                                  + 2 * largest ** 2),
                         f"the λ=1 kernel design ({largest} columns per species: one block of "
                         f"{PAIR_BLOCK} pair Jacobians and its product with the reference "
                         "features, the regulariser block)", FEWER_REFERENCES)
            self.ref_features = feats  # X̂_k (M_z, 3, F)
            self.bases = {}
            self.route_ = "kernel"
            return self
        bases = {}
        for z in refs.species:
            ref = feats[z].reshape(-1, F)
            _, sing, vt = np.linalg.svd(ref, full_matrices=False)
            keep = sing > BASIS_TOLERANCE * sing.max() if len(sing) and sing.max() > 0 else []
            bases[z] = vt[keep].T  # (F, r_z)
        span = sum(b.shape[1] for b in bases.values())
        route = self.route
        if route == "auto":
            route = "features" if len(bases) * F <= span else "references"
        self.route_ = route
        self.bases = bases
        return self

    def adopt(self, prepared):
        """Take the preparation (span bases or reference features, route; not the weights)
        of the term that built the equations."""
        if prepared.zeta != self.zeta:
            raise ValueError(f"the equations were accumulated with dipole_zeta "
                             f"{prepared.zeta}, this model has dipole_zeta {self.zeta}")
        self.refs, self.bases, self.route_ = prepared.refs, prepared.bases, prepared.route_
        self.ref_features = getattr(prepared, "ref_features", None)
        self.check_memory = prepared.check_memory
        self._regulariser = None
        return self

    def n_columns(self):
        """Σ_z r_z (the design columns after projection), or 3·Σ_z M_z ("kernel")."""
        if self.route_ == "kernel":
            return 3 * self.refs.n_references()
        return sum(b.shape[1] for b in self.bases.values())

    def is_fitted(self):
        return self.weights is not None

    def n_raw_columns(self):
        """Columns of one frame's design before projection: S·F, Σ_z r_z or 3·Σ_z M_z."""
        if self.route_ == "features":
            return len(self.refs.species) * self.n_features
        return self.n_columns()

    # -- fitting --------------------------------------------------------------------------
    def design(self, ctx, frame):
        """(Born-charge rows (N·9, n_raw_columns), None, None): per contracted weight u_z[f]
        ("features"), or on the span coordinates y_z ("references"). No charge rows, and no
        sum-rule rows: Σ_j Z_j of a dipole term is zero by translation invariance."""
        if self.route_ == "kernel":
            return self._kernel_design(ctx, frame), None, None
        return self._design(ctx), None, None

    def _design(self, ctx):
        fe, xhat, norms = ctx
        n_atoms = fe.n_atoms
        xvec = self._vector_features(ctx)
        self_term = fe.norm_pair_gradients(xhat)
        L = self.refs.settings.max_angular
        if self.route_ == "features":
            return atom_jacobian(fe, xvec, 1.0 / norms, self_term, L).reshape(n_atoms * 9, -1)
        blocks = []
        for k, z in enumerate(self.refs.species):
            basis = self.bases[z]
            if not np.any(fe.species_index == k):
                blocks.append(np.zeros((n_atoms * 9, basis.shape[1])))
                continue
            jac = atom_jacobian(fe, xvec, 1.0 / norms, self_term, L, k)
            blocks.append(jac.reshape(n_atoms * 9, -1) @ basis)
        return np.concatenate(blocks, axis=1)

    def _kernel_design(self, ctx, frame):
        """Born-charge rows (N·9, 3·Σ M_z) of the "kernel" route: column (k, c) of species z
        is Z^(p) for w_k = e_c (see module docstring), references in species order."""
        fe, xhat, norms = ctx
        refs, zeta = self.refs, self.zeta
        n_atoms = fe.n_atoms
        L = refs.settings.max_angular
        padded = _padded_blocks(fe.coefficients, L)
        xvec = vector_features(fe.coefficients, L) / norms[:, None, None]
        self_term = fe.norm_pair_gradients(xhat)
        pairs = fe.pairs
        rows = refs.rows(self.check_memory)
        masks = self._pair_feature_masks(fe)
        out = []
        for k_species, z in enumerate(refs.species):
            vectors = self.ref_features[z].reshape(-1, self.n_features)  # row (k, c): X̂_k[c]
            n_cols = len(vectors)
            design = np.zeros((n_atoms, 3, 3, n_cols))
            atoms = np.flatnonzero(fe.species_index == k_species)
            if len(atoms) == 0:
                out.append(design.reshape(n_atoms * 9, n_cols))
                continue
            # t_ik (n_z, M) and ∂t_ik/∂d_p (P_z, 3, M) of the pairs centred on species z
            _, t, pair_ids, dt = reference_pair_gradients(refs, ctx, frame, z, 1, rows,
                                                          self_term)
            local = np.full(n_atoms, -1)
            local[atoms] = np.arange(len(atoms))
            s_col = np.repeat(t ** (zeta - 1), 3, axis=1) / norms[atoms, None]  # s_ik/|x_i|
            lin = (xvec[atoms].reshape(-1, self.n_features) @ vectors.T).reshape(
                len(atoms), 3, n_cols)  # X̂_i[a]·X̂_k[c]
            lin_s = lin * s_col[:, None, :]
            lin_ds = lin * np.repeat((zeta - 1) * t ** (zeta - 2), 3, axis=1)[:, None, :] \
                if zeta > 1 else np.zeros((0, 3, n_cols))
            centre_pairs = pairs.centers[pair_ids]
            moving = pairs.neighbors[pair_ids] != centre_pairs  # not an image of the centre
            for mask, neighbour in masks:  # pairs whose Jacobian lives on the columns `mask`
                chosen = np.flatnonzero(moving & neighbour[pair_ids])
                if len(chosen) == 0:
                    continue
                rhs = np.ascontiguousarray(vectors[:, mask].T)  # (F', 3M)
                for chunk in np.array_split(chosen, -(-len(chosen) // PAIR_BLOCK)):
                    ids = pair_ids[chunk]
                    jac = pair_jacobian(fe, ids, padded, L)  # (n, 3, 3, F) ∂X_i[a]/∂d_p,b
                    main = (jac.reshape(len(ids) * 9, -1)[:, mask] @ rhs).reshape(
                        len(ids), 3, 3, n_cols)
                    scatter_kernel_dipole_pairs(
                        main, s_col, lin_s, lin_ds, np.ascontiguousarray(self_term[ids]),
                        np.ascontiguousarray(dt[chunk]), local[pairs.centers[ids]],
                        pairs.centers[ids], pairs.neighbors[ids], design)
            out.append(design.reshape(n_atoms * 9, n_cols))
        return np.concatenate(out, axis=1)

    def _pair_feature_masks(self, fe):
        """[(feature mask (F,), pair mask (P,))]: a pair whose neighbour is of species s
        changes only the features X[a, l, α, β] with α or β in s's channel (one element per
        channel, no mixing); with mixed channels every feature, one group."""
        F = self.n_features
        if fe.mixing is not None:
            return [(np.ones(F, dtype=bool), np.ones(len(fe.pairs.centers), dtype=bool))]
        n_rad = self.refs.settings.max_radial + 1
        channel = np.repeat(np.arange(fe.n_channels), n_rad)  # channel of α (or β)
        alpha = np.tile(np.repeat(channel, len(channel)), self.refs.settings.max_angular)
        beta = np.tile(np.tile(channel, len(channel)), self.refs.settings.max_angular)
        return [((alpha == s) | (beta == s), fe._pair_species == s)
                for s in range(fe.n_channels)]

    def projection(self):
        """Q (n_raw_columns, n_columns) mapping raw design columns to span coordinates, or
        None when the design is already in span (or weight) coordinates."""
        if self.route_ in ("references", "kernel"):
            return None
        return scipy.linalg.block_diag(*[self.bases[z] for z in self.refs.species])

    def regulariser_matrix(self):
        """None: the identity (ω_p|y|²), added to the diagonal without a matrix (span
        routes); "kernel": K¹_MM (3M, 3M) per species, block diagonal, plus 1e-10·mean
        diagonal·I (built once)."""
        if self.route_ != "kernel":
            return None
        if self._regulariser is None:
            blocks = []
            for z in self.refs.species:
                vectors = self.ref_features[z].reshape(-1, self.n_features)  # (3M, F)
                ref = self.refs.references[z]
                s = (ref @ ref.T) ** (self.zeta - 1)
                block = (vectors @ vectors.T) * np.kron(s, np.ones((3, 3)))
                blocks.append(block)
            matrix = scipy.linalg.block_diag(*blocks)
            matrix[np.diag_indices(len(matrix))] += 1e-10 * np.trace(matrix) / len(matrix)
            self._regulariser = matrix
        return self._regulariser

    def set_weights(self, y):
        self.weights = {}
        start = 0
        if self.route_ == "kernel":
            for z in self.refs.species:
                m = len(self.refs.references[z])
                self.weights[z] = np.asarray(y[start:start + 3 * m]).reshape(m, 3)
                start += 3 * m
            self._contract()
            return
        for z in self.refs.species:
            basis = self.bases[z]
            self.weights[z] = basis @ y[start:start + basis.shape[1]]
            start += basis.shape[1]

    def _contract(self):
        """v_k = X̂_kᵀ w_k (M_z, F) per species, for predictions."""
        self._contracted = {z: np.einsum("kc,kcf->kf", self.weights[z], self.ref_features[z])
                            for z in self.refs.species}

    def design_weights(self):
        """The weights in (projected) design-column order: y_z = Q_zᵀ u_z, or w_z ("kernel")."""
        if self.route_ == "kernel":
            return np.concatenate([self.weights[z].ravel() for z in self.refs.species])
        return np.concatenate([self.bases[z].T @ self.weights[z] for z in self.refs.species])

    # -- prediction -----------------------------------------------------------------------
    def dipoles_and_pair_gradients(self, ctx):
        """p (N, 3) e·Å and G (P, 3, 3), G_p[a, b] = ∂p_{i_p,a}/∂d_{p,b} (e).

        One compiled pass over atoms gives p and ∂p_i/∂c_i (normalisation included, no λ=1
        features formed), one pass over pairs pulls the three components back together."""
        if self.route_ == "kernel":
            return self._kernel_dipoles_and_pair_gradients(ctx)
        fe = ctx.fe
        u = np.stack([self.weights[z] for z in self.refs.species])  # (S, F)
        dipoles, adjoints = dipoles_and_adjoints(fe.coefficients, u, fe.species_index,
                                                 self.refs.settings.max_angular)
        return dipoles, pair_vjp_vectors(fe, adjoints)

    def _kernel_dipoles_and_pair_gradients(self, ctx):
        """("kernel" route) p and G as :meth:`dipoles_and_pair_gradients`: the per-atom
        u_i = Σ_k s_ik v_k pulled back through the λ=1 features, h_ia through the power
        spectrum (see module docstring)."""
        fe, xhat, norms = ctx
        L = self.refs.settings.max_angular
        blocks = _blocks(fe.coefficients, L)
        xvec = vector_features(fe.coefficients, L, blocks) / norms[:, None, None]
        u, h = self._kernel_contraction(ctx, xvec)
        dipoles = np.einsum("iaf,if->ia", xvec, u)
        adj = vector_features_vjp(fe.coefficients, u, L, blocks) / \
            norms[None, :, None, None, None]
        if h is not None:  # the dependence through s_ik = t_ik^(ζ−1)
            for a in range(3):
                adj[a] += power_spectrum_vjp(fe.coefficients, h[a], L)
        self_term = fe.norm_pair_gradients(xhat)
        centers = fe.pairs.centers
        pulled = fe.pair_vjp_many(adj)  # (3, P, 3): all three components in one pass
        grads = pulled.transpose(1, 0, 2) - \
            (dipoles[centers] / norms[centers, None])[:, :, None] * self_term[:, None, :]
        return dipoles, grads

    def _kernel_contraction(self, ctx, xvec):
        """("kernel" route) u_i = Σ_k s_ik v_k (N, F) and h (3, N, D) = ∂p_ia/∂x_i through
        s_ik (see module docstring; zero at ζ_p = 1)."""
        fe, xhat, norms = ctx
        zeta = self.zeta
        u = np.zeros((fe.n_atoms, xvec.shape[2]))
        h = np.zeros((3,) + xhat.shape) if zeta > 1 else None
        for k_species, z in enumerate(self.refs.species):
            atoms = np.flatnonzero(fe.species_index == k_species)
            if len(atoms) == 0:
                continue
            ref = self.refs.references[z]  # (M, D)
            v = self._contracted[z]  # (M, F)
            t = xhat[atoms] @ ref.T  # (n, M)
            u[atoms] = t ** (zeta - 1) @ v
            if zeta > 1:
                a_ik = (xvec[atoms].reshape(-1, v.shape[1]) @ v.T).reshape(
                    len(atoms), 3, len(v))  # (X̂_i v_k)_a
                g = (a_ik * ((zeta - 1) * t ** (zeta - 2))[:, None, :]) @ ref  # (n, 3, D)
                x = xhat[atoms]
                g -= np.einsum("iad,id->ia", g, x)[:, :, None] * x[:, None, :]
                h[:, atoms] = (g / norms[atoms, None, None]).transpose(1, 0, 2)
        return u, h

    def predict(self, ctx, frame):
        """{bec: Z^(p) (N, 3, 3), dipoles: p (N, 3) e·Å}."""
        dipoles, grads = self.dipoles_and_pair_gradients(ctx)
        pairs = ctx.fe.pairs
        return {keys.BEC: scatter_pairs(grads, pairs.centers, pairs.neighbors, len(frame)),
                keys.DIPOLES: dipoles}

    def dipole_derivative(self, ctx, frame, velocities):
        _, grads = self.dipoles_and_pair_gradients(ctx)
        pairs = ctx.fe.pairs
        return np.einsum("pab,pb->a", grads,
                         velocities[pairs.neighbors] - velocities[pairs.centers])

    # -- files ----------------------------------------------------------------------------
    def arrays(self):
        """ζ_p = 1 span routes: ``dipole_weights_<Z>`` u_Z (F,); "kernel": the weights w_Z
        (M_Z, 3) and the reference λ=1 features ``dipole_reference_features_<Z>``
        X̂_k (M_Z, 3, F) (so that a loaded model can also build design rows, for the
        posterior)."""
        out = {f"dipole_weights_{z}": self.weights[z] for z in self.refs.species}
        if self.route_ == "kernel":
            out.update({f"dipole_reference_features_{z}": self.ref_features[z]
                        for z in self.refs.species})
        return out

    def extra(self):
        return {"dipole_route": self.route_} if self.route_ == "kernel" else {}

    def load(self, refs, arrays, extra, path):
        from ..errors import ModelFileError

        self.refs = refs
        self.weights = {z: arrays[f"dipole_weights_{z}"] for z in refs.species}
        kernel = self.zeta > 1 or extra.get("dipole_route") == "kernel"
        self.route_ = None  # a span route: restored with its bases by the posterior, if any
        if kernel:
            self.route_, self.bases = "kernel", {}
            self.ref_features = {z: arrays[f"dipole_reference_features_{z}"]
                                 for z in refs.species}
        for z, u in self.weights.items():
            if kernel:
                m = len(refs.references[z])
                for name, value, shape in (
                        ("dipole_weights", u, (m, 3)),
                        ("dipole_reference_features", self.ref_features[z],
                         (m, 3, self.n_features))):
                    if value.shape != shape:
                        raise ModelFileError(f"{path}: {name}_{z} has shape {value.shape}, "
                                             f"expected {shape} for these settings")
            elif u.shape != (self.n_features,):
                raise ModelFileError(f"{path}: dipole_weights_{z} has shape {u.shape}, "
                                     f"expected ({self.n_features},) for these settings")
        if kernel:
            self._contract()
        return self

